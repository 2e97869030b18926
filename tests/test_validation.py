"""Input hardening: malformed files, numbers, texts and requests are refused with what + why."""

from __future__ import annotations

import io
import json
import math
import stat
import struct
import zipfile
import zlib
from functools import partial
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from nava_core.jobs import JobQueue
from nava_core.request import RenderRequest
from nava_core.validation import (
    InputError,
    check_audio_file,
    check_image_file,
    check_number,
    check_request_dict,
    check_seed,
    check_text,
    check_zip_bundle,
    extract_zip_bundle,
)

SR = 16000


# ---- real fixture files -------------------------------------------------------------------


def _tone(seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def write_wav(path: Path, seconds: float = 1.5) -> Path:
    sf.write(path, _tone(seconds), SR, subtype="PCM_16", format="WAV")
    return path


def write_encoded(path: Path, codec: str, fmt: str, seconds: float = 1.5) -> Path:
    """Encode a tone with PyAV (mp3/flac/m4a) regardless of the name's extension."""
    with av.open(str(path), "w", format=fmt) as out:
        rate = 44100 if codec == "libmp3lame" else SR
        st = out.add_stream(codec, rate=rate, layout="mono")
        samples = np.interp(np.arange(int(rate * seconds)) / rate, np.arange(len(_tone(seconds))) / SR, _tone(seconds))
        fmt_name = "s16p" if codec == "libmp3lame" else ("s16" if codec == "flac" else "fltp")
        arr = samples.astype(np.float32)[None]
        if fmt_name.startswith("s16"):
            arr = (arr * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(arr, format=fmt_name, layout="mono")
        frame.sample_rate = rate
        for pkt in st.encode(frame):
            out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


def write_png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    arr = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG")
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path: Path, side: int = 100_000) -> Path:
    """A few hundred bytes declaring a 10-gigapixel picture (decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))
    return path


def write_zip(path: Path, members: list[tuple[str, bytes]], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name) if name.startswith("/") else name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# ---- the table --------------------------------------------------------------------------------

GOOD = {"prompt": "A lighthouse keeper says <S>Storm's coming.<E> Wind howls."}


def req(**changes) -> dict:
    return {**GOOD, **changes}


# (case id, maker(tmp) -> callable that must raise, words the message must contain)
CASES: list[tuple[str, Callable[[Path], Callable[[], object]], tuple[str, ...]]] = [
    ("truncated wav", lambda t: partial(check_audio_file, _cut(write_wav(t / "v.wav"), 0.5)), ("truncated",)),
    ("wav header only", lambda t: partial(check_audio_file, _cut(write_wav(t / "v.wav"), 0.001)), ("wav",)),
    ("png renamed .wav", lambda t: partial(check_audio_file, write_png(t / "v.wav")), ("not an audio file", "png")),
    ("text renamed .mp3", lambda t: partial(check_audio_file, _write(t / "v.mp3", b"hello, this is not audio\n" * 50)),
     ("not an audio file", "plain text")),
    ("empty wav", lambda t: partial(check_audio_file, _write(t / "v.wav", b"")), ("empty",)),
    ("missing audio", lambda t: partial(check_audio_file, t / "nope.wav"), ("does not exist",)),
    ("audio too big", lambda t: partial(check_audio_file, write_wav(t / "v.wav"), max_bytes=1000), ("limit",)),
    ("audio too long", lambda t: partial(check_audio_file, write_wav(t / "v.wav", 3.0), max_seconds=1.0), ("longer",)),
    ("mp3 cut to garbage", lambda t: partial(check_audio_file, _write(t / "v.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 30)),
     ("mp3",)),
    ("zero-byte image", lambda t: partial(check_image_file, _write(t / "i.png", b"")), ("empty",)),
    ("truncated png", lambda t: partial(check_image_file, _cut(write_png(t / "i.png", (256, 256)), 0.4)), ("png", "decoded")),
    ("wav renamed .png", lambda t: partial(check_image_file, write_wav(t / "i.png")), ("not a png", "wav")),
    ("png bomb", lambda t: partial(check_image_file, write_png_bomb(t / "i.png")), ("megapixels",)),
    ("zip with ../ member", lambda t: partial(check_zip_bundle, write_zip(t / "b.zip", [("../evil.txt", b"x")])), ("traversal",)),
    ("zip with nested ../", lambda t: partial(check_zip_bundle, write_zip(t / "b.zip", [("voices/../../x", b"x")])), ("traversal",)),
    ("zip absolute member", lambda t: partial(check_zip_bundle, write_zip(t / "b.zip", [("/etc/cron.d/x", b"x")])), ("absolute",)),
    ("zip symlink member", lambda t: partial(check_zip_bundle, write_zip(t / "b.zip", [("a.txt", b"a")], symlink="voice.wav")),
     ("symbolic link",)),
    ("zip bomb member", lambda t: partial(check_zip_bundle, write_zip(t / "b.zip", [("project.json", b"\x00" * (20 * 1024 * 1024))])),
     ("zip bomb",)),
    ("zip too many members", lambda t: partial(check_zip_bundle, write_zip(t / "b.zip", [(f"f{i}", b"x") for i in range(70)])),
     ("over the limit",)),
    ("not a zip", lambda t: partial(check_zip_bundle, write_png(t / "b.zip")), ("not a zip", "png")),
    ("NaN guidance", lambda t: partial(check_request_dict, req(guidance={"video": math.nan})), ("guidance", "video")),
    ("NaN guidance in JSON text", lambda t: partial(check_request_dict, '{"prompt": "x", "guidance": {"timbre": NaN}}'), ("timbre",)),
    ("inf seconds", lambda t: partial(check_request_dict, req(seconds=math.inf)), ("duration",)),
    ("negative steps", lambda t: partial(check_request_dict, req(steps=-4)), ("steps",)),
    ("seed 2**32", lambda t: partial(check_request_dict, req(seed=2**32)), ("seed",)),
    ("seed -1", lambda t: partial(check_request_dict, req(seed=-1)), ("seed",)),
    ("unknown field", lambda t: partial(check_request_dict, req(stpes=20)), ("unknown", "stpes")),
    ("wrong version", lambda t: partial(check_request_dict, req(version=99)), ("version",)),
    ("10 MB prompt", lambda t: partial(check_request_dict, req(prompt="a" * (10 * 1024 * 1024))), ("prompt", "limit")),
    ("prompt with NUL", lambda t: partial(check_request_dict, req(prompt="hello\x00world")), ("prompt", "nul")),
    ("prompt with control char", lambda t: partial(check_request_dict, req(prompt="hello\x1b[31m")), ("prompt", "u+001b")),
    ("empty prompt", lambda t: partial(check_request_dict, req(prompt="   \n")), ("prompt", "empty")),
    ("no prompt", lambda t: partial(check_request_dict, {"seed": 3}), ("prompt",)),
    ("non-object JSON", lambda t: partial(check_request_dict, "[1, 2, 3]"), ("json object", "list")),
    ("invalid JSON", lambda t: partial(check_request_dict, '{"prompt": "x",'), ("not valid json",)),
    ("prompt wrong type", lambda t: partial(check_request_dict, req(prompt=42)), ("prompt", "int")),
    ("steps wrong type", lambda t: partial(check_request_dict, req(steps="50")), ("steps",)),
    ("speaker_wavs wrong type", lambda t: partial(check_request_dict, req(speaker_wavs=5)), ("render request",)),
    ("gpus=5", lambda t: partial(check_request_dict, req(gpus=5)), ("gpus",)),
    ("size not multiple of 32", lambda t: partial(check_request_dict, req(width=1000)), ("multiples of 32",)),
    ("0x0 size", lambda t: partial(check_request_dict, req(width=0, height=0)), ("0x0",)),
    ("image mode without image", lambda t: partial(check_request_dict, req(mode="image_audio_video")), ("image",)),
    ("image is a text file", lambda t: partial(check_request_dict, 
        req(mode="image_audio_video", image=str(_write(t / "f.jpg", b"just text")))), ("first-frame image", "plain text")),
    ("voice file missing", lambda t: partial(check_request_dict, req(speaker_wavs=["gone.wav"]), base_dir=t),
     ("voice reference 1", "does not exist")),
    ("voice is a png", lambda t: partial(check_request_dict, req(speaker_wavs=[str(write_png(t / "v.wav"))])),
     ("voice reference 1", "png")),
    ("negative prompt with NUL", lambda t: partial(check_request_dict, req(negative_prompt="bad\x00")), ("negative_prompt",)),
    ("number NaN", lambda t: partial(check_number, "guidance.audio", math.nan, 0, 20), ("guidance.audio", "finite")),
    ("number inf", lambda t: partial(check_number, "seconds", math.inf, 0, 20), ("seconds", "finite")),
    ("number bool", lambda t: partial(check_number, "steps", True, 1, 200), ("steps", "bool")),
    ("seed float fraction", lambda t: partial(check_seed, 1.5), ("seed", "whole")),
    ("seed string", lambda t: partial(check_seed, "7"), ("seed", "str")),
    ("text bytes", lambda t: partial(check_text, b"bytes"), ("prompt", "bytes")),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def queue(tmp_path_factory: pytest.TempPathFactory) -> JobQueue:
    q = JobQueue(tmp_path_factory.mktemp("q") / "queue.db")
    q.enqueue_many([RenderRequest(prompt="existing job", seed=s) for s in range(3)], batch_id="b")
    return q


@pytest.mark.parametrize("name,make,words", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_refused_clearly(
    name: str, make: Callable, words: tuple[str, ...], tmp_path: Path, queue: JobQueue
) -> None:
    before = queue.counts()
    call = make(tmp_path)
    files_before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputError) as info:
        call()
        queue.enqueue(RenderRequest(prompt="unreachable"))  # only if the check wrongly passed
    err = info.value
    msg = str(err).lower()
    assert err.what and err.why and err.what in str(err) and err.why in str(err)
    for w in words:
        assert w.lower() in msg, f"{name}: {w!r} not in {str(err)!r}"
    assert queue.counts() == before  # the queue alongside is unchanged
    assert sorted(p.name for p in tmp_path.rglob("*")) == files_before  # nothing written


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30


# ---- what must pass -------------------------------------------------------------------------


def test_good_audio_files_pass_and_type_follows_content(tmp_path: Path) -> None:
    wav = check_audio_file(write_wav(tmp_path / "a.wav"))
    assert wav.kind == "wav" and abs(wav.duration_s - 1.5) < 0.01 and wav.sample_rate == SR and not wav.warnings
    mp3_as_wav = check_audio_file(write_encoded(tmp_path / "voice.wav", "libmp3lame", "mp3"))
    assert mp3_as_wav.kind == "mp3" and 1.4 < mp3_as_wav.duration_s < 1.7
    assert "named .wav but contains MP3" in mp3_as_wav.warnings[0]
    flac = check_audio_file(write_encoded(tmp_path / "a.flac", "flac", "flac"))
    assert flac.kind == "flac" and not flac.warnings
    m4a = check_audio_file(write_encoded(tmp_path / "a.m4a", "aac", "mp4"))
    assert m4a.kind == "m4a" and m4a.duration_s > 1.0


def test_good_image_and_text_and_numbers_pass(tmp_path: Path) -> None:
    img = check_image_file(write_png(tmp_path / "a.png"))
    assert (img.kind, img.width, img.height) == ("png", 64, 48)
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buf, format="JPEG")
    jpg_named_png = _write(tmp_path / "b.png", buf.getvalue())
    assert check_image_file(jpg_named_png).kind == "jpeg"
    assert check_text("line one\r\n\tline two") == "line one\n\tline two"
    assert check_number("shift", 5, 0, 20) == 5 and check_seed(2**32 - 1) == 2**32 - 1 and check_seed(7.0) == 7


def test_request_with_files_resolves_relative_paths(tmp_path: Path) -> None:
    write_wav(tmp_path / "voice.wav")
    write_png(tmp_path / "first.png")
    d = req(mode="image_audio_video", image="first.png", speaker_wavs=["voice.wav"], seed=3)
    r = check_request_dict(json.dumps(d), base_dir=tmp_path)
    assert r.image == str(tmp_path / "first.png") and r.speaker_wavs == (str(tmp_path / "voice.wav"),)
    assert r.seed == 3


def test_good_bundle_extracts_and_bad_extract_writes_nothing(tmp_path: Path) -> None:
    z = write_zip(tmp_path / "ok.zip", [("project.json", b"{}"), ("voices/a.wav", write_wav(tmp_path / "a.wav").read_bytes())])
    check = check_zip_bundle(z)
    assert check.members == ("project.json", "voices/a.wav")
    files = extract_zip_bundle(z, tmp_path / "x")
    assert sorted(p.relative_to(tmp_path / "x").as_posix() for p in files) == ["project.json", "voices/a.wav"]
    bad = write_zip(tmp_path / "bad.zip", [("../../escape.txt", b"x")])
    with pytest.raises(InputError):
        extract_zip_bundle(bad, tmp_path / "y")
    assert not (tmp_path / "y").exists() and not (tmp_path.parent / "escape.txt").exists()
