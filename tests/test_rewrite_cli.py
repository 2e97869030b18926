"""`nava-rewrite`: line-aligned output, fields kept, failed rows marked, concurrency, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nava_core.rewrite_cli import main, partial_path
from tests.chat_server import ChatServer, ServerState, expand

LINES = [f"Person {i} on the left says <S>Line number {i}.<E> in a small room" for i in range(8)]


@pytest.fixture()
def server():  # noqa: ANN201
    with ChatServer(ServerState(api_key="sk-test", delay_s=0.15)) as s:
        yield s


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAVA_REWRITE_KEY", "sk-test")  # the key comes from the environment, never a file


def jsonl_input(tmp_path: Path) -> Path:
    src = tmp_path / "in.jsonl"
    rows = [{"prompt": p, "image_path": f"img{i}.png", "spk_wavs": [f"v{i}.wav"]} for i, p in enumerate(LINES)]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return src


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_batch_keeps_fields_order_and_lines_with_n_in_flight(server: ChatServer, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    rc = main([str(jsonl_input(tmp_path)), "-o", str(out), "--endpoint", server.url, "--model", "writer",
               "--concurrency", "4", "-q"])
    assert rc == 0
    rows = read(out)
    assert [r["line"] for r in rows] == list(range(1, 9))
    for i, r in enumerate(rows):
        assert r["prompt"] == expand(LINES[i]) and r["original_prompt"] == LINES[i]
        assert r["image_path"] == f"img{i}.png" and r["spk_wavs"] == [f"v{i}.wav"]
        assert r["rewrite_status"] == "ok"
    assert server.state.max_in_flight == 4  # four at a time, never more
    text = out.read_text(encoding="utf-8")
    assert "sk-test" not in text and server.url not in text and "writer" not in text  # no settings in the output
    assert not partial_path(out).exists()


def test_failed_rows_are_marked_not_dropped(server: ChatServer, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a quiet beach at dawn, no dialogue\n\nA man says <S>Hi.<E>\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    rc = main([str(src), "-o", str(out), "--endpoint", server.url, "--model", "paraphraser", "--attempts", "2", "-q"])
    assert rc == 1
    rows = read(out)
    assert [r["line"] for r in rows] == [1, 3]
    assert rows[0]["rewrite_status"] == "ok"
    assert rows[1]["rewrite_status"] == "failed" and rows[1]["prompt"] == "A man says <S>Hi.<E>"
    assert "line 1 changed" in rows[1]["rewrite_message"] and rows[1]["rewrite_attempts"] == 2


def test_resume_after_the_key_stops_working(server: ChatServer, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src, out = jsonl_input(tmp_path), tmp_path / "out.jsonl"
    args = [str(src), "-o", str(out), "--endpoint", server.url, "--model", "writer", "--concurrency", "2"]
    server.state.refuse_after = 3
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "refused the API key" in err and "run the same command again" in err
    assert not out.exists()
    saved = read(partial_path(out))
    assert len(saved) == 3 and all(r["rewrite_status"] == "ok" for r in saved)
    # a crash mid-write leaves half a line: that row is simply redone
    with partial_path(out).open("a", encoding="utf-8") as f:
        f.write('{"line": 8, "rewrite_st')
    server.state.refuse_after = None
    asked_before = list(server.state.prompts)
    assert main(args) == 0
    asked_now = server.state.prompts[len(asked_before):]
    assert sorted(asked_now) == sorted(set(LINES) - set(asked_before))  # only the missing rows were sent
    assert [r["prompt"] for r in read(out)] == [expand(p) for p in LINES]
    assert "resuming: 3 of 8" in capsys.readouterr().err
    # once finished, running again asks for nothing
    assert main(args) == 0 and len(server.state.prompts) == 8


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "ok"}\nnot json\n', "line 2: not valid JSON"),
    ('{"image_path": "x.png"}\n', "line 1: no 'prompt' text"),
    ("", "no prompts found"),
])
def test_bad_input_is_refused_before_anything_is_written(server: ChatServer, tmp_path: Path, content: str,
                                                         message: str, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(content, encoding="utf-8")
    assert main([str(src), "-o", str(out), "--endpoint", server.url]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not partial_path(out).exists() and server.state.chat_requests == 0


def test_nava_render_rewrite_renders_the_rewritten_prompt_with_the_same_voices(
        server: ChatServer, tiny_weights: Path, voices: list[Path], tmp_path: Path) -> None:
    from nava_core.export import read_request
    from nava_core.cli import main as render_main
    from nava_core.request import RenderRequest

    prompt = "A man on the left says <S>Hello.<E> A woman on the right answers <S>Hi.<E>"
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": prompt, "spk_wavs": [str(voices[0]), str(voices[1])]}) + "\n",
                   encoding="utf-8")
    out = tmp_path / "o"
    rc = render_main([str(src), "--weights", str(tiny_weights), "--out", str(out), "--steps", "1", "--seconds",
                      "0.5", "--size", "160x96", "-q", "--rewrite", "--rewrite-endpoint", server.url,
                      "--rewrite-model", "writer"])
    assert rc == 0
    (mp4,) = out.glob("*.mp4")
    req = RenderRequest.from_json(read_request(mp4))
    assert req.prompt == expand(prompt)
    assert [Path(w).name for w in req.speaker_wavs] == [voices[0].name, voices[1].name]
    sidecar = next(out.glob("*.json")).read_text(encoding="utf-8")
    assert "sk-test" not in sidecar and server.url not in sidecar


def test_nava_render_rewrite_stops_before_loading_weights_when_the_endpoint_is_wrong(
        server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nava_core.cli import main as render_main

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "a quiet street"}) + "\n", encoding="utf-8")
    rc = render_main([str(src), "--weights", str(tmp_path / "no-weights"), "--out", str(tmp_path / "o"), "-q",
                      "--rewrite", "--rewrite-endpoint", server.url, "--rewrite-model", "gpt-none"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot rewrite: model 'gpt-none' was not found" in err and "run without --rewrite" in err


def test_ctrl_c_stops_at_once_keeps_finished_rows_and_resumes(server: ChatServer, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    server.state.delay_s = 0.5
    src, out = jsonl_input(tmp_path), tmp_path / "out.jsonl"
    args = [str(src), "-o", str(out), "--endpoint", server.url, "--model", "writer", "--concurrency", "2"]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "nava_core.rewrite_cli", *args], cwd=root, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.PIPE)
    part = partial_path(out)
    deadline = time.monotonic() + 60
    while not (part.is_file() and len(part.read_text(encoding="utf-8").splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err and "run the same command again" in err
    saved = len(read(part))
    assert 2 <= saved < len(LINES) and server.state.chat_requests < len(LINES)  # the queue did not run on
    assert main(args) == 0
    assert [r["prompt"] for r in read(out)] == [expand(p) for p in LINES]
