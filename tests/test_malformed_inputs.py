"""Malformed inputs are refused with one clear line (what and why), before anything is queued or written.

Table-driven: each row is fed to every channel it applies to:
- `cli_request`: `nava-render REQUEST.json` (in-process `nava_core.cli.main`): exit 2, one line, no files;
- `cli_batch`: `nava-render batch FILE` with an existing queue in the out folder: exit 2, one line, the
  queue file and folder unchanged;
- `api_render` / `api_lint` / `api_compile`: the studio's API functions (`app.api`): a gr.Error
  with the reason, history and render queue unchanged.
A few rows then go through a real gradio_client against a launched studio, which keeps serving.
Rows a channel does not refuse yet are xfail(strict=True) with the exact missing check.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import wave
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

TINY = {"width": 160, "height": 96, "seconds": 0.5, "steps": 2, "seed": 1}
BASE = {"prompt": "A man in a red coat says <S>Hello there.<E> Wind blows.", **TINY}

# ---- malformed files ------------------------------------------------------------------------------


def _wav_bytes(seconds: float = 1.5, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate), w.writeframes(pcm)
    return buf.getvalue()


def _png_bytes(w: int = 32, h: int = 32) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb() -> bytes:
    """A valid PNG header declaring 50000 x 50000 pixels (2.5 gigapixels) with almost no data."""
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _chunk(b"IEND", b"")


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h pixels (no pixel data worth decoding)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")


def _long_flac(seconds: int = 3600) -> bytes:
    """A small FLAC (silence compresses to almost nothing) whose header declares `seconds` of audio."""
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=8000, channels=1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(8000 * 60, dtype="int16")
        for _ in range(seconds // 60):
            f.write(block)
    return buf.getvalue()


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(data)
        return p
    return make


def _voice(make_file: Callable[[Path], Path]) -> Callable[[Path], dict]:
    return lambda tmp: {**BASE, "speaker_wavs": [str(make_file(tmp))]}


def _image(make_file: Callable[[Path], Path]) -> Callable[[Path], dict]:
    return lambda tmp: {**BASE, "mode": "image_audio_video", "image": str(make_file(tmp))}


def _dir(tmp: Path) -> Path:
    (tmp / "voice.wav").mkdir()
    return tmp / "voice.wav"


def _symlink(tmp: Path) -> Path:
    (tmp / "real.wav").write_bytes(_wav_bytes())
    os.symlink(tmp / "real.wav", tmp / "link.wav")
    return tmp / "link.wav"


def _zip(members: dict[str, bytes], symlink: str | None = None) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        p = tmp / "scene.zip"
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
            if symlink:
                info = zipfile.ZipInfo(symlink)
                info.external_attr = (0o120777 << 16)
                zf.writestr(info, "/etc/passwd")
        return p
    return make


def _bundle(make_zip: Callable[[Path], Path]) -> Callable[[Path], dict]:
    return lambda tmp: {"name": "b", "items": [{"bundle": str(make_zip(tmp))}]}


def _batch(**item: Any) -> Callable[[Path], dict]:
    return lambda tmp: {"name": "b", "overrides": TINY, "items": [{"request": BASE, **item}]}


def _req(**changes: Any) -> Callable[[Path], dict]:
    return lambda tmp: {**BASE, **changes}


def _project(**changes: Any) -> Callable[[Path], dict]:
    def make(tmp: Path) -> dict:
        from app import builder as B

        p = B.default_state()["project"]
        for k, v in changes.items():
            if "." in k:
                a, b = k.split(".")
                p[a] = {**p[a], b: v}
            else:
                p[k] = v
        return p
    return make


# ---- the table ------------------------------------------------------------------------------------

RENDER_NO_CHECK = ("app.api.api_render parses with RenderRequest.from_json only; it must call "
                   "nava_core.validation.check_request_dict(request_json, check_files=True) before service.render_blocking")
CLI_NO_CHECK = ("nava_core.cli.requests_from_file builds RenderRequest.from_dict only; it must call "
                "nava_core.validation.check_request_dict(d, base_dir=path.parent, check_files=True) for .json requests")
PROJECT_NO_CHECK = ("app.api._project_from_text must run nava_core.validation.check_text on the project JSON "
                    "and its text fields (control characters, length) before pb.Project.from_json")
REQ_CHANNELS = ("cli_request", "cli_batch", "api_render")


@dataclass
class Row:
    id: str
    make: Callable[[Path], Any]  # -> dict (JSON object), str (raw text) or bytes (raw file)
    expect: str  # the reason, as a case-insensitive regex
    channels: tuple[str, ...] = REQ_CHANNELS
    xfail: dict[str, str] = field(default_factory=dict)


def _unchecked(*channels: str) -> dict[str, str]:
    reasons = {"cli_request": CLI_NO_CHECK, "api_render": RENDER_NO_CHECK, "api_lint": PROJECT_NO_CHECK,
               "api_compile": PROJECT_NO_CHECK}
    wired = {"cli_request", "api_render", "api_lint", "api_compile"}  # channels that route through nava_core.validation
    return {c: reasons[c] for c in channels if c not in wired}


ROWS: list[Row] = [
    # request fields
    Row("nan-guidance", lambda t: json.dumps({**BASE, "guidance": {"video": float("nan")}}), r"guidance.*video.*finite"),
    Row("inf-guidance", lambda t: json.dumps({**BASE, "guidance": {"audio": float("inf")}}), r"guidance.*audio.*finite"),
    Row("negative-guidance", _req(guidance={"timbre": -1.0}), r"timbre.*>= 0"),
    Row("string-guidance", _req(guidance={"video": "high"}), r"video.*number"),
    Row("unknown-guidance-scale", _req(guidance={"loudness": 2.0}), r"unknown guidance scale.*loudness"),
    Row("seed-2**32", _req(seed=2**32), r"seed.*0 to 4294967295"),
    Row("seed-negative", _req(seed=-1), r"seed.*0 to 4294967295"),
    Row("seed-fraction", _req(seed=1.5), r"seed.*whole number"),
    Row("seed-bool", _req(seed=True), r"seed.*whole number"),
    Row("steps-zero", _req(steps=0), r"steps.*1 to 200"),
    Row("steps-huge", _req(steps=10**9), r"steps.*1 to 200"),
    Row("unknown-field", _req(bogus=1), r"unknown field.*bogus"),
    Row("prompt-10MB", _req(prompt="a" * (10 * 1024 * 1024)), r"prompt.*characters long.*limit",
        channels=("cli_batch",)),
    # 1 MB (50x the limit) where the check is missing: the unchecked paths tokenize all of it (~25 s for 10 MB)
    Row("prompt-1MB", _req(prompt="a" * (1024 * 1024)), r"prompt.*characters long.*limit",
        xfail=_unchecked("cli_request", "api_render")),
    Row("prompt-NUL", _req(prompt="A cat\x00 says <S>hi<E>."), r"prompt.*NUL",
        xfail=_unchecked("cli_request", "api_render")),
    Row("prompt-control-char", _req(prompt="A cat\x07 says <S>hi<E>."), r"prompt.*control character U\+0007",
        xfail=_unchecked("cli_request", "api_render")),
    Row("title-escape-char", _req(title="x\x1b[2Jy"), r"title.*control character U\+001B",
        xfail=_unchecked("cli_request", "api_render")),
    Row("prompt-empty", _req(prompt="   "), r"prompt.*empty"),
    # the unchecked paths answer "the prompt is empty" for a number: not the reason
    Row("prompt-number", _req(prompt=12), r"prompt.*expected text", xfail=_unchecked("cli_request", "api_render")),
    Row("mode-unknown", _req(mode="hologram"), r"mode must be one of"),
    Row("width-not-multiple", _req(width=161), r"161"),
    Row("seconds-negative", _req(seconds=-1), r"duration.*positive"),
    Row("seconds-huge", _req(seconds=1e6), r"longer than"),
    Row("version-99", _req(version=99), r"version 99 is not supported"),
    Row("voice-not-a-path", _req(speaker_wavs=[5]), r"speaker_wavs\[0\].*file path"),
    Row("sample-rate-44100", _req(audio_sample_rate=44100), r"audio_sample_rate.*16000 or 48000"),
    Row("not-json", lambda t: '{"prompt": "x",', r"not valid JSON"),
    Row("json-array", lambda t: "[1, 2]", r"(JSON object|object)"),
    # typed schema (issue 15): no coercion, bounds, sanitised text, the voices-vs-spans rule
    Row("image-number", _req(image=123), r"image must be a file path.*got int"),
    Row("image-list", _req(image=["a.png"]), r"image must be a file path.*got list"),
    Row("image-object", _req(image={"path": "a.png"}), r"image must be a file path.*got dict"),
    Row("width-string", _req(width="160"), r"width must be a whole number.*got str"),
    Row("width-infinity", lambda t: json.dumps(BASE)[:-1] + ', "width": Infinity}', r"width must be a whole number.*inf"),
    Row("width-fraction", _req(width=160.5), r"width must be a whole number.*160\.5"),
    Row("width-1e300", _req(width=1e300), r"width must be a whole number.*1e\+300"),
    Row("width-beyond-buckets", _req(width=4096, height=96), r"width.*at most \d+.*got 4096"),
    Row("frame-area-beyond-buckets", _req(width=1280, height=1280), r"more pixels than any release bucket"),
    Row("voice-path-1MB", _req(speaker_wavs=["v" * (1 << 20)]), r"speaker_wavs\[0\].*characters long.*limit"),
    Row("prompt-lone-surrogate", _req(prompt="A cat \ud800 says <S>hi<E>."), r"prompt.*lone surrogate U\+D800"),
    Row("title-lone-surrogate", _req(title="x\udfff"), r"title.*lone surrogate U\+DFFF"),
    Row("nesting-100000", lambda t: '{"prompt": "x", "project": ' + "[" * 100_000 + "]" * 100_000 + "}",
        r"nested too deeply"),
    Row("nesting-40", _req(project={"a": json.loads("[" * 40 + "]" * 40)}), r"nested too deeply"),
    Row("tiled-vae-string", _req(tiled_vae="yes please"), r"tiled_vae must be true or false"),
    Row("project-string", _req(project="not an object"), r"project must be a builder project.*got str"),
    Row("project-10MB", _req(project={"title": "p" * (10 * 1024 * 1024)}), r"(project.*over the .* limit|characters long)"),
    Row("project-NUL", _req(project={"title": "a\x00b"}), r"project\.title.*NUL"),
    Row("memory-profile-path", _req(memory_profile="../../etc"), r"unknown memory profile '\.\./\.\./etc'; choose one of auto"),
    Row("speaker-wavs-string", _req(speaker_wavs="voice.wav"), r"speaker_wavs must be a list.*got str"),
    Row("voices-2-for-3-spans", _req(prompt="<S>a<E> <S>b<E> <S>c<E>", speaker_wavs=["a.wav", "b.wav"]),
        r"3 <S>...<E> spans but 2 reference voices"),
    Row("voices-1000", _req(speaker_wavs=[""] * 1000), r"speaker_wavs must be a list.*at most 64.*1,000"),
    Row("spans-1000", _req(prompt="A man says " + "<S>hi<E> " * 1000), r"1000 <S>...<E> spans, over the limit"),
    Row("voice-flac-declares-1-hour", _voice(_file("long.flac", _long_flac())), r"declares 3,600 s.*longer than"),
    Row("image-81-megapixels", _image(_file("big.png", _png_header(9000, 9000))), r"81 megapixels.*limit"),
    Row("project-nesting-100000", lambda t: '{"title": ' + "[" * 100_000 + "]" * 100_000 + "}",
        r"nested too deeply|characters long", channels=("api_lint", "api_compile")),
    Row("project-nesting-5000", lambda t: '{"title": ' + "[" * 5000 + "]" * 5000 + "}", r"nested too deeply",
        channels=("api_lint", "api_compile")),
    Row("project-lone-surrogate", _project(title="x\ud800"), r"lone surrogate", channels=("api_lint", "api_compile")),
    # voice and image files (judged by content, not name)
    Row("voice-truncated-wav", _voice(_file("cut.wav", _wav_bytes()[:12000])), r"WAV file is truncated",
        xfail=_unchecked("cli_request", "api_render")),
    Row("voice-png-renamed-wav", _voice(_file("voice.wav", _png_bytes())), r"not an audio file.*PNG",
        xfail=_unchecked("cli_request", "api_render")),
    Row("voice-text-renamed-wav", _voice(_file("voice.wav", b"hello, I am not audio\n" * 20)),
        r"not an audio file.*plain text", xfail=_unchecked("cli_request", "api_render")),
    Row("voice-0-bytes", _voice(_file("empty.wav", b"")), r"empty \(0 bytes\)",
        xfail=_unchecked("cli_request", "api_render")),
    Row("voice-missing", lambda t: {**BASE, "speaker_wavs": [str(t / "nowhere.wav")]}, r"does not exist",
        xfail=_unchecked("cli_request", "api_render")),
    Row("voice-is-a-folder", _voice(_dir), r"not a regular file", xfail=_unchecked("cli_request", "api_render")),
    Row("voice-symlink", _voice(_symlink), r"not a regular file", xfail=_unchecked("cli_request", "api_render")),
    Row("image-0-bytes", _image(_file("first.png", b"")), r"empty \(0 bytes\)",
        xfail=_unchecked("cli_request", "api_render")),
    Row("image-truncated-png", _image(_file("first.png", _png_bytes(64, 64)[:60])), r"cannot be decoded|truncated",
        xfail=_unchecked("cli_request", "api_render")),
    Row("image-wav-renamed-png", _image(_file("first.png", _wav_bytes())), r"not a PNG, JPEG or WebP.*WAV",
        xfail=_unchecked("cli_request", "api_render")),
    Row("image-decompression-bomb", _image(_file("bomb.png", _png_bomb())), r"megapixels|decompression bomb",
        xfail=_unchecked("cli_request", "api_render")),
    # bundles (batch items)
    Row("bundle-zip-bomb", _bundle(_zip({"project.json": b"\0" * (20 * 1024 * 1024)})), r"zip bomb",
        channels=("cli_batch",)),
    Row("bundle-path-traversal", _bundle(_zip({"../../evil.json": b"{}"})), r"path traversal",
        channels=("cli_batch",)),
    Row("bundle-absolute-path", _bundle(_zip({"/etc/cron.d/x": b"x"})), r"absolute path", channels=("cli_batch",)),
    Row("bundle-symlink-member", _bundle(_zip({"project.json": b"{}"}, symlink="voice.wav")), r"symbolic link",
        channels=("cli_batch",)),
    Row("bundle-png-renamed-zip", _bundle(_file("scene.zip", _png_bytes())), r"not a ZIP archive.*PNG",
        channels=("cli_batch",)),
    Row("bundle-0-bytes", _bundle(_file("scene.zip", b"")), r"empty \(0 bytes\)", channels=("cli_batch",)),
    # batch definitions
    Row("batch-unknown-field", lambda t: {"name": "b", "items": [{"request": BASE}], "priority": 1},
        r"unknown field.*priority", channels=("cli_batch",)),
    Row("batch-no-items", lambda t: {"name": "b", "items": []}, r"no items", channels=("cli_batch",)),
    Row("batch-seeds-zero", _batch(seeds=0), r"seeds.*1 to", channels=("cli_batch",)),
    Row("batch-seed-2**32", _batch(seeds=[1, 2**32]), r"seed.*out of range", channels=("cli_batch",)),
    Row("batch-empty-grid", _batch(grid={"audio": []}), r"grid 'audio' is empty", channels=("cli_batch",)),
    Row("batch-unknown-grid-key", _batch(grid={"loudness": [1]}), r"unknown grid key", channels=("cli_batch",)),
    Row("batch-10000-jobs", _batch(seeds=100, grid={"audio": list(range(100))}), r"10,000 renders.*limit",
        channels=("cli_batch",)),
    Row("batch-unknown-preset", lambda t: {"name": "b", "items": [{"preset": "no_such_preset"}]},
        r"preset 'no_such_preset' cannot be loaded", channels=("cli_batch",)),
    Row("batch-not-utf8", lambda t: b"\xff\xfe{\x00", r"not UTF-8", channels=("cli_batch",)),
    # projects (studio /lint and /compile)
    Row("project-not-json", lambda t: "{", r"not valid JSON", channels=("api_lint", "api_compile")),
    Row("project-array", lambda t: "[]", r"JSON object", channels=("api_lint", "api_compile")),
    Row("project-unknown-field", _project(bogus=1), r"unknown field.*bogus", channels=("api_lint", "api_compile")),
    Row("project-control-char", _project(**{"scene.setting": "a cafe\x1b[31m"}), r"control character",
        channels=("api_lint", "api_compile"), xfail=_unchecked("api_lint", "api_compile")),
]


def _cases() -> list[Any]:
    out = []
    for row in ROWS:
        for ch in row.channels:
            marks = [pytest.mark.xfail(strict=True, reason=row.xfail[ch])] if ch in row.xfail else []
            out.append(pytest.param(row, ch, id=f"{row.id}-{ch}", marks=marks))
    return out


def _materialise(row: Row, tmp: Path) -> str | bytes:
    v = row.make(tmp)
    return v if isinstance(v, (str, bytes)) else json.dumps(v)


def _tree(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_reason(err: str, expect: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("nava-render:")]
    assert len(lines) == 1, f"expected one refusal line, got:\n{err[-2000:]}"
    assert re.search(expect, lines[0], re.IGNORECASE | re.DOTALL), lines[0]
    return lines[0]


def test_table_is_large_enough() -> None:
    assert len(ROWS) >= 30 and len({r.id for r in ROWS}) == len(ROWS)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path):
    from app import engine as E
    from app.paths import StudioPaths
    from app.service import StudioService

    # the test files lie in pytest's temporary folders: allowed as an operator would with --allow-path
    service = StudioService(StudioPaths.from_env(tmp_path_factory.mktemp("studio")),
                            E.Engine(E.WeightChoice("tiny", str(tiny_weights), "test weights")),
                            allowed_roots=(tmp_path_factory.getbasetemp(),))
    yield service
    service.close()


@pytest.mark.parametrize("row,channel", _cases())
def test_malformed_input_is_refused(row: Row, channel: str, tmp_path: Path, request: pytest.FixtureRequest,
                                    capsys: pytest.CaptureFixture[str], refused) -> None:
    data = _materialise(row, tmp_path)
    if channel.startswith("cli"):
        from nava_core.jobs import JobQueue
        from nava_core.cli import main

        weights = request.getfixturevalue("tiny_weights")
        out = tmp_path / "out"
        if channel == "cli_batch":
            if _is_object(data) and "items" not in json.loads(data):  # a request row: one batch item
                data = json.dumps({"name": "b", "items": [{"request": json.loads(data)}]})
            with JobQueue(out / "queue.sqlite") as q:  # a queue with history that must stay untouched
                q.enqueue(BASE, batch_id="earlier", label="earlier job")
            before = _tree(out)
            src = tmp_path / "batch.json"
            argv = ["batch", str(src)]
        else:
            before = {}
            src = tmp_path / "request.json"
            argv = [str(src)]
        src.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        capsys.readouterr()
        rc = main([*argv, "--weights", str(weights), "--out", str(out), "-q"])
        err = capsys.readouterr().err
        assert rc == 2, err[-2000:]
        refused(f"{row.id}-{channel}", _one_line_reason(err, row.expect))
        assert _tree(out) == before, "the refusal wrote or changed files"
        return

    import gradio as gr

    from app import api as H

    service = request.getfixturevalue("studio")
    history_before = [(e.id, e.state) for e in service.history.list()]
    outputs_before = _tree(service.paths.outputs)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    fn = {"api_render": lambda s: H.api_render(service, s), "api_lint": H.api_lint, "api_compile": H.api_compile}[channel]
    with pytest.raises(gr.Error) as info:
        fn(text)
    message = str(info.value.message if hasattr(info.value, "message") else info.value)
    assert "\n" not in message.strip() and re.search(row.expect, message, re.IGNORECASE), message
    refused(f"{row.id}-{channel}", message)
    assert [(e.id, e.state) for e in service.history.list()] == history_before, "the refusal touched the history"
    assert service.pending() == [] and _tree(service.paths.outputs) == outputs_before


def _is_object(data: str | bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, RecursionError):
        return False


def test_mp3_named_wav_is_accepted_by_content(tmp_path: Path) -> None:
    """The counterpart of `voice-png-renamed-wav`: a real MP3 with a .wav name is read as MP3, with a note."""
    import av

    from nava_core.batch_cli import plan_batch
    from nava_core.validation import check_audio_file

    path = tmp_path / "voice.wav"
    with av.open(str(path), "w", format="mp3") as c:
        s = c.add_stream("mp3", rate=16000, layout="mono")
        t = np.arange(24000, dtype=np.float32) / 16000
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate = 16000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    check = check_audio_file(path)
    assert check.kind == "mp3" and check.duration_s > 1.0 and "contains MP3" in check.warnings[0]
    batch = tmp_path / "b.json"
    # 1 s: the line must fit the clip (the batch runs the Studio's lint too)
    batch.write_text(json.dumps({"name": "mp3", "items": [{"request": {**BASE, "seconds": 1.0,
                                                                       "speaker_wavs": ["voice.wav"]}}]}))
    plan = plan_batch(batch, out_dir=tmp_path / "out")
    assert plan.jobs[0].request.speaker_wavs == (str(path),)


SERVER_ROWS = ("nan-guidance", "seed-2**32", "unknown-field", "not-json")


def test_server_keeps_serving_after_refusals(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> None:
    """Refusals through a real gradio_client; the studio still answers afterwards and its history is untouched."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from app.cli import build_parser, create_app, launch_kwargs

    home = tmp_path_factory.mktemp("served")
    args = build_parser().parse_args(["--weights", str(tiny_weights), "--port", "0", "--home", str(home)])
    demo, service = create_app(args)
    kw = launch_kwargs(args, service)
    kw.pop("server_port")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **kw)
    try:
        client = Client(url, verbose=False)
        rows = {r.id: r for r in ROWS}
        for rid in SERVER_ROWS:
            row = rows[rid]
            with pytest.raises(AppError, match=re.compile(row.expect, re.IGNORECASE)):
                client.predict(_materialise(row, tmp_path_factory.mktemp(rid)), api_name="/render")
        with pytest.raises(AppError, match="unknown field"):
            client.predict(json.dumps({"bogus": 1}), api_name="/compile")
        assert service.history.list() == [] and service.pending() == []
        from app import builder as B

        compiled = json.loads(client.predict(json.dumps(B.default_state()["project"]), api_name="/compile"))
        assert compiled["prompt"].count("<S>") == 2  # still serving
    finally:
        demo.close()
        service.close()
