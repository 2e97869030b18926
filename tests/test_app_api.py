"""The studio's named API endpoints, called the way users call them: through gradio_client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app import builder as B
from app.cli import build_parser, create_app, launch_kwargs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    args = build_parser().parse_args(["--weights", "tiny", "--port", "0", "--home", str(home)])
    demo, service = create_app(args)
    kw = launch_kwargs(args, service)
    kw.pop("server_port")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **kw)
    yield url, service
    demo.close()
    service.close()


def _project_json(**changes) -> str:
    project = B.default_state()["project"]
    project.update(changes)
    return json.dumps(project)


def test_api_lists_named_endpoints_with_str_inputs(studio_url):
    from gradio_client import Client

    url, _ = studio_url
    info = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    named = info["named_endpoints"]
    for name in ("/render", "/lint", "/compile"):
        assert name in named
        params = named[name]["parameters"]
        assert len(params) == 1 and params[0]["python_type"]["type"] == "str"


def test_compile_and_lint_over_the_api(studio_url):
    from gradio_client import Client

    url, _ = studio_url
    client = Client(url, verbose=False)
    compiled = json.loads(client.predict(_project_json(), api_name="/compile"))
    assert compiled["prompt"].count("<S>") == 2 and compiled["span_speakers"] == ["A", "B"]
    assert compiled["voices"] == [None, None]
    findings = json.loads(client.predict(_project_json(seconds=1.0), api_name="/lint"))
    assert any(f["severity"] == "error" and "cannot fit" in f["message"] for f in findings)


def test_api_refuses_invalid_request_with_a_message(studio_url):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, _ = studio_url
    with pytest.raises(AppError, match="unknown field"):
        Client(url, verbose=False).predict(json.dumps({"prompt": "x", "bogus": 1}), api_name="/render")

    with pytest.raises(AppError, match="dialogue: dialogue cannot fit.*the clip is 0.5 s"):
        Client(url, verbose=False).predict(json.dumps({"prompt": "A man says <S>" + "word " * 20 + "<E>",
                                                       "seconds": 0.5}), api_name="/render")
    with pytest.raises(AppError, match="(?i)prompt.*empty|empty.*prompt"):
        Client(url, verbose=False).predict(json.dumps({"prompt": "  "}), api_name="/render")


@pytest.mark.slow
def test_render_over_the_api_returns_stereo_mp4(studio_url):
    import av
    from gradio_client import Client

    url, service = studio_url
    request = B.request_from_state(B.default_state()).replace(steps=2)
    path = Client(url, verbose=False).predict(request.to_json(), api_name="/render")
    with av.open(path) as container:
        assert container.streams.video and container.streams.audio[0].codec_context.channels == 2
    entry = service.history.list()[0]
    assert entry.state == "done" and entry.source == "api" and json.loads(entry.request_json)["steps"] == 2


@pytest.mark.slow
def test_result_by_job_id_only_to_the_client_that_submitted_it(studio_url):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, service = studio_url
    request = B.request_from_state(B.default_state()).replace(steps=2)
    mine = Client(url, verbose=False)
    job_id = json.loads(mine.predict(request.to_json(), api_name="/submit"))["job_id"]
    service.worker.wait(int(job_id))
    other = Client(url, verbose=False)
    with pytest.raises(AppError, match=f"no render {job_id} in this studio's queue"):
        other.predict(job_id, api_name="/result")
    with pytest.raises(AppError, match="no render 999999 in this studio's queue"):
        other.predict("999999", api_name="/result")  # the same answer as for someone else's job
    path = mine.predict(job_id, api_name="/result")
    assert Path(path).suffix == ".mp4" and Path(path).stat().st_size > 0


def test_cli_help_lists_launch_options():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for opt in ("--weights", "--host", "--port", "--auth", "--share", "--max-upload-mb", "--gpus", "--memory-profile"):
        assert opt in out.stdout
