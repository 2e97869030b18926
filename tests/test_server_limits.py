"""A studio on a network (issue 15), against a launched server on 127.0.0.1 with the tiny weights:

- every malformed request row of test_malformed_inputs is refused over HTTP with its reason, nothing is
  queued or recorded, and /lint still answers within 1 s after each refusal;
- request paths outside the uploads folder get one and the same answer whether the file exists or not;
- bounded load: 100 renders from 10 clients fill the queue to its limits (per client 10, total 100),
  the 101st and a client's 11th are refused with "queue full", /lint, /compile and the page answer
  within 1 s while the 100 wait (half of them as open /render calls), and nothing refused is recorded;
- admin events (download, inspect, use folder) called raw: refused for remote clients without --auth,
  weights folders outside the data folder refused with one message, nothing created on disk;
- with --auth: no API description for clients that are not logged in, login attempts rate-limited.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_malformed_inputs import BASE, REQ_CHANNELS, ROWS, _materialise

pytestmark = pytest.mark.slow


def _launch(home: Path, weights: Path, *extra: str):
    from app.cli import build_parser, create_app, launch_kwargs

    args = build_parser().parse_args(["--weights", str(weights), "--port", "0", "--home", str(home), *extra])
    demo, service = create_app(args)
    kw = launch_kwargs(args, service)
    kw.pop("server_port")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **kw)
    return demo, service, url


def _project() -> str:
    from app import builder as B

    return json.dumps(B.default_state()["project"])


def _timed(fn, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path):
    home = tmp_path_factory.mktemp("served")
    demo, service, url = _launch(home, tiny_weights, "--allow-path", str(tmp_path_factory.getbasetemp()))
    yield service, url
    demo.close()
    service.close()


def test_every_malformed_request_is_refused_over_http_and_lint_stays_fast(server, tmp_path: Path, refused) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    service, url = server
    client = Client(url, verbose=False)
    project = _project()
    rows = [r for r in ROWS if "api_render" in r.channels or set(r.channels) == set(REQ_CHANNELS)]
    assert len(rows) >= 60
    for row in rows:
        work = tmp_path / row.id
        work.mkdir()
        data = _materialise(row, work)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        with pytest.raises(AppError) as info:
            client.predict(text, api_name="/render")
        message = str(info.value)
        assert re.search(row.expect, message, re.IGNORECASE), f"{row.id}: {message}"
        refused(f"http-{row.id}", message)
        assert service.pending() == [] and service.history.list() == [], f"{row.id} left a trace"
        dt, findings = _timed(client.predict, project, api_name="/lint")
        assert dt < 1.0, f"/lint took {dt:.2f} s after {row.id}"
        assert isinstance(json.loads(findings), list)


PROBES = ["/etc/shadow", "/etc/passwd", "../../../../etc/passwd", "../../../.git/config", "/root/.ssh/id_rsa",
          "/no/such/file.wav", "/dev/zero", "/proc/self/environ"]


def test_paths_outside_uploads_get_one_answer_whether_or_not_they_exist(tmp_path_factory, tiny_weights: Path,
                                                                        refused) -> None:
    """A studio without --allow-path: no server file is read, and the answers are all the same."""
    import gradio as gr

    from app import engine as E
    from app import api as H
    from app.paths import StudioPaths
    from app.service import StudioService

    repo = Path(__file__).resolve().parents[1]
    checkout_voice = next(iter(sorted((repo / "assets").rglob("*.wav"))), repo / "assets" / "x.wav")
    home = tmp_path_factory.mktemp("strict")
    service = StudioService(StudioPaths.from_env(home), E.Engine(E.WeightChoice("tiny", str(tiny_weights), "test")))
    try:
        link = service.paths.voices / "link.wav"
        os.symlink("/etc/passwd", link)
        answers: dict[str, set[str]] = {"voice": set(), "image": set()}
        for probe in [*PROBES, str(checkout_voice), str(link)]:
            for kind, req in (("voice", {**BASE, "speaker_wavs": [probe]}),
                              ("image", {**BASE, "mode": "image_audio_video", "image": probe})):
                with pytest.raises(gr.Error) as info:
                    H.api_render(service, json.dumps(req))
                answers[kind].add(str(info.value))
                refused(f"path-{kind}-{probe}", str(info.value))
        assert all(len(a) == 1 for a in answers.values()), answers
        assert "not a file uploaded to the studio" in answers["voice"].pop()
        # a relative path starts in the uploads folder, never in the server's working folder (the checkout)
        with pytest.raises(gr.Error, match=re.escape(str(service.paths.uploads / ".git" / "config"))):
            H.api_render(service, json.dumps({**BASE, "speaker_wavs": [".git/config"]}))
        assert service.history.list() == [] and service.pending() == []
    finally:
        service.close()


def test_bounded_load_100_renders_from_10_clients(tmp_path_factory, tiny_weights: Path, refused) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    home = tmp_path_factory.mktemp("load")
    demo, service, url = _launch(home, tiny_weights, "--max-queued-per-client", "10", "--max-queued", "100")
    service.gpu_lock.acquire()  # the worker waits at the GPU (as behind a long render): every render stays queued
    pending: list[Any] = []
    try:
        clients = [Client(url, verbose=False) for _ in range(10)]
        request = json.dumps({**BASE, "seconds": 2.0})  # long enough for its line (lint passes)

        def fill(i: int, client: Client) -> None:
            for _ in range(10):
                if i % 2:  # half as open /render calls, half through /submit (returns at once)
                    pending.append(client.submit(request, api_name="/render"))
                else:
                    json.loads(client.predict(request, api_name="/submit"))

        def wait_for(n: int) -> None:
            deadline = time.monotonic() + 120
            while len(service.pending()) < n and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(service.pending()) == n and len(service.history.list(limit=1000)) == n

        threads = [threading.Thread(target=fill, args=(i, c)) for i, c in enumerate(clients[:9])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        wait_for(90)
        with pytest.raises(AppError, match=r"queue is full for you.*limit per client is 10") as mine:
            clients[0].predict(request, api_name="/submit")
        refused("load-11th-of-a-client", str(mine.value))
        fill(9, clients[9])
        wait_for(100)
        deadline = time.monotonic() + 20  # the client learns of each call's start over its event stream
        while {j.status().code.name for j in pending} != {"PROCESSING"} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(pending) == 50 and {j.status().code.name for j in pending} == {"PROCESSING"}  # none stuck
        with pytest.raises(AppError, match=r"queue is full \(100 renders.*limit is 100\)") as total:
            Client(url, verbose=False).predict(request, api_name="/submit")
        refused("load-101st-render", str(total.value))
        assert len(service.pending()) == 100 and len(service.history.list(limit=1000)) == 100

        project = _project()
        for _ in range(3):  # responsive while 100 renders wait (50 of them as open /render calls)
            dt, out = _timed(clients[3].predict, project, api_name="/lint")
            assert dt < 1.0 and isinstance(json.loads(out), list), f"/lint took {dt:.2f} s"
            dt, out = _timed(clients[4].predict, project, api_name="/compile")
            assert dt < 1.0 and "<S>" in json.loads(out)["prompt"], f"/compile took {dt:.2f} s"
            dt, page = _timed(httpx.get, url)
            assert dt < 1.0 and page.status_code == 200, f"the page took {dt:.2f} s"
    finally:
        service.gpu_lock.release()
        for job in service.pending():
            service.worker.cancel(job.id)
        for job in pending:
            job.cancel()
        demo.close()
        service.close()


def _event(demo: Any, name: str):
    for fn in demo.fns.values():
        if getattr(fn.fn, "__name__", "") == name:
            return fn.fn
    raise LookupError(name)


def _request_from(host: str, username: str | None = None):
    import gradio as gr
    from starlette.requests import Request

    req = gr.Request(request=Request({"type": "http", "client": (host, 40000), "headers": [], "method": "POST",
                                      "path": "/", "query_string": b""}))
    if username:
        req.username = username
    return req


def test_admin_events_called_raw(tmp_path_factory, tiny_weights: Path, refused) -> None:
    """Download / inspect / use-folder: remote clients refused without --auth; folders outside refused."""
    import gradio as gr

    from app.cli import build_parser, create_app

    home = tmp_path_factory.mktemp("admin")
    outside = tmp_path_factory.mktemp("outside-root") / "weights-here"
    demo, service = create_app(build_parser().parse_args(["--weights", str(tiny_weights), "--home", str(home)]))
    try:
        download, use, inspect = _event(demo, "_download"), _event(demo, "_use_folder"), _event(demo, "_inspect")
        remote, local = _request_from("203.0.113.7"), _request_from("127.0.0.1")
        for name, call in (("download", lambda r: download(str(home / "weights" / "x"), r)),
                           ("use-folder", lambda r: use(str(home / "weights" / "x"), "auto", 1, "nava", r)),
                           ("inspect", lambda r: inspect(str(home / "weights" / "x"), r))):
            with pytest.raises(gr.Error, match="only allowed from the studio's own machine") as info:
                call(remote)
            refused(f"admin-remote-{name}", str(info.value))
        answers = set()
        for folder in (str(outside), "/etc", "/root/.cache/huggingface", "../../../../tmp/x", str(home / ".." / "y")):
            for name, call in (("download", lambda r, f=folder: download(f, r)),
                               ("inspect", lambda r, f=folder: inspect(f, r))):
                with pytest.raises(gr.Error) as info:
                    call(local)
                answers.add(str(info.value))
                refused(f"admin-outside-{name}-{folder}", str(info.value))
        assert len(answers) == 1 and "outside the folders this studio may use" in answers.pop()
        assert not outside.exists(), "a refused download created its folder"
        # inside the data folder, from this machine: allowed (the report of an empty folder)
        text = inspect(str(home / "weights" / "nava"), local)[0]
        assert "incomplete" in text
    finally:
        service.close()
    # the same events from a remote client when the operator allows it, and with --auth for a logged-in user
    demo, service = create_app(build_parser().parse_args(["--weights", str(tiny_weights), "--home", str(home),
                                                          "--auth", "u:p"]))
    try:
        inspect = _event(demo, "_inspect")
        with pytest.raises(gr.Error, match="needs a login"):
            inspect(str(home / "weights" / "nava"), _request_from("127.0.0.1"))
        text = inspect(str(home / "weights" / "nava"), _request_from("203.0.113.7", username="u"))[0]
        assert "incomplete" in text
    finally:
        service.close()


def test_auth_hides_the_api_description_and_rate_limits_logins(tmp_path_factory, tiny_weights: Path,
                                                                 refused) -> None:
    home = tmp_path_factory.mktemp("auth")
    demo, service, url = _launch(home, tiny_weights, "--auth", "ada:secret-1")
    try:
        with httpx.Client() as good:
            assert good.post(url + "login", data={"username": "ada", "password": "secret-1"}).status_code == 200
            page = good.get(url).text
            assert '"/render"' in page or '"render"' in page, "a logged-in client sees the API description"
        for path in ("", "?view=api", "gradio_api/runs"):
            r = httpx.get(url + path)
            assert r.status_code == 200 and "window.gradio_api_info = null;" in r.text, path
            assert "Render a request" not in r.text and '"/lint"' not in r.text, path
        assert httpx.get(url + "gradio_api/info").status_code == 401
        codes = [httpx.post(url + "login", data={"username": "ada", "password": f"guess-{i}"}).status_code
                 for i in range(30)]
        assert codes[:5] == [400] * 5 and set(codes[5:]) == {429}, codes
        r = httpx.post(url + "login", data={"username": "ada", "password": "secret-1"})
        assert r.status_code == 429 and "try again in" in r.json()["detail"]
        refused("login-rate-limited", r.json()["detail"])
    finally:
        demo.close()
        service.close()
