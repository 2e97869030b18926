"""`nava-render`: the release's JSONL on the tiny weights, request files, and refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nava_core.export import probe, read_request
from nava_core.cli import main
from nava_core.request import RenderRequest

FAST = ["--steps", "2", "--seconds", "0.5", "--size", "160x96", "-q"]


@pytest.fixture()
def release_jsonl(tmp_path: Path, data_dir: Path, voices: list[Path]) -> Path:
    """The official prompts with their voice and image files replaced by generated ones, paths relative."""
    from PIL import Image

    work = tmp_path / "cases"
    src = data_dir / "official_prompts.jsonl"
    rows = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, row in enumerate(rows):
        for j, wav in enumerate(row.get("spk_wavs", [])):
            dst = work / wav
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(voices[j % len(voices)], dst)
        if row.get("image_path"):
            dst = work / row["image_path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (640, 352), (30 * i, 90, 160)).save(dst)
    out = work / "prompts.jsonl"
    out.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    return out


def test_release_jsonl_renders_one_mp4_per_line(release_jsonl, tiny_weights, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([str(release_jsonl), "--weights", str(tiny_weights), "--out", str(out), *FAST])
    assert code == 0
    mp4s = sorted(out.glob("*.mp4"))
    lines = [json.loads(x) for x in release_jsonl.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(mp4s) == len(lines) == 4
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p) for p in printed) == mp4s
    modes = []
    for mp4 in mp4s:
        info = probe(mp4)
        assert info.video_codec == "h264" and info.channels == 2 and info.frames == 13
        req = RenderRequest.from_json(read_request(mp4))
        modes.append(req.mode)
        assert req.steps == 2 and (req.width, req.height) == (160, 96)
        assert all(Path(w).is_file() for w in req.speaker_wavs)
    assert modes.count("image_audio_video") == 1


def test_request_json_with_guidance_flags_and_audio_mode(tiny_weights, tmp_path, voices):
    req = RenderRequest(prompt="Narrator: <S>Welcome to the studio.<E> Soft room tone.", mode="audio", seconds=1.0,
                        speaker_wavs=[str(voices[0])])
    f = tmp_path / "req.json"
    f.write_text(req.to_json())
    code = main([str(f), "--weights", str(tiny_weights), "--out", str(tmp_path / "o"), "--steps", "2",
                 "--timbre-guidance", "1.5", "--audio-guidance", "0", "-q"])
    assert code == 0
    wav = next((tmp_path / "o").glob("*.wav"))
    back = RenderRequest.from_json(read_request(wav))
    assert back.guidance.timbre == 1.5 and back.guidance.audio == 0
    assert back.guidance.video_align == req.guidance.video_align  # flags change only the scales they name
    assert not list((tmp_path / "o").glob("*.mp4"))


@pytest.mark.parametrize(
    "content, args, needle",
    [
        (None, [], "no such file"),
        ("{not json", [], "not valid JSON"),
        ('{"prompt": "x", "colour": 1}', [], "unknown field"),
        ('{"prompt": "x"}', ["--size", "1280x720"], "multiples of 32"),
        ('{"prompt": "x"}', ["--seed", "-3"], "seed"),
        ('{"prompt": "x"}', ["--video-guidance", "nan"], "guidance"),
        ('{"prompt": ""}', [], "prompt: it is empty"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_reason(tmp_path, capsys, content, args, needle):
    f = tmp_path / "in.json"
    if content is not None:
        f.write_text(content)
    code = main([str(f), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("nava-render: ") and needle in err[0]
    assert not (tmp_path / "o").exists()


def test_jsonl_audio_mode_takes_the_release_text_to_audio_settings(tmp_path):
    from nava_core.config import GuidanceScales
    from nava_core.cli import requests_from_file

    f = tmp_path / "t2a.jsonl"
    f.write_text('{"prompt": "Rain on a tin roof, no speech.", "mode": "audio"}\n')
    (req,) = requests_from_file(f, {})
    assert req.mode == "audio" and req.guidance == GuidanceScales.audio_only()


def test_jsonl_line_errors_name_the_line(tmp_path, capsys):
    f = tmp_path / "in.jsonl"
    f.write_text('{"prompt": "fine"}\n{"prompt": 3}\n')
    assert main([str(f)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_help_documents_every_option():
    out = subprocess.run([sys.executable, "-m", "nava_core.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    for opt in ("--weights", "--out", "--steps", "--seconds", "--frames", "--size", "--seed", "--video-guidance",
                "--audio-guidance", "--video-align-guidance", "--audio-align-guidance", "--timbre-guidance", "--mode"):
        assert opt in out.stdout


@pytest.mark.slow
def test_gpus_flag_renders_through_the_ulysses_worker_group(tiny_weights, tmp_path):
    req = RenderRequest(prompt="A dog barks twice in a yard.", width=160, height=96, seconds=0.5, steps=2)
    f = tmp_path / "req.json"
    f.write_text(req.to_json())
    code = main([str(f), "--weights", str(tiny_weights), "--out", str(tmp_path / "o"), "--gpus", "2", "--device",
                 "cpu", "-q"])
    assert code == 0
    mp4 = next((tmp_path / "o").glob("*.mp4"))
    assert probe(mp4).frames == 13
    assert RenderRequest.from_json(read_request(mp4)).gpus == 2
