"""The project's example assets (assets/, made by scripts/make_assets.py) and a shipped preset rendered with them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from nava_core.validation import check_audio_file, check_image_file

REPO = Path(__file__).resolve().parents[1]
VOICES = sorted((REPO / "assets" / "voices").glob("*.wav"))
IMAGES = sorted((REPO / "assets" / "images").glob("*.png"))
BUCKETS = {(1280, 704), (704, 1280), (960, 960)}


def test_assets_exist() -> None:
    assert len(VOICES) >= 4 and len(IMAGES) >= 2
    assert {"mia_en.wav", "tom_en.wav", "narrator_en.wav", "lin_zh.wav"} <= {p.name for p in VOICES}


@pytest.mark.parametrize("path", VOICES, ids=lambda p: p.name)
def test_reference_voice_format(path: Path) -> None:
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)
    assert 4.0 <= info.duration <= 8.0
    assert path.stat().st_size < 300 * 1024
    audio, _ = sf.read(str(path), dtype="float64")
    peak = np.abs(audio).max()
    assert 10 ** (-1.5 / 20) <= peak <= 10 ** (-0.5 / 20)  # peak-normalised to -1 dBFS
    frame = 400  # 25 ms frames: speech, i.e. mostly voiced frames, not a tone or silence
    rms = np.sqrt((audio[: len(audio) // frame * frame].reshape(-1, frame) ** 2).mean(axis=1))
    assert (rms > 0.02).mean() > 0.5
    checked = check_audio_file(path, max_seconds=10)
    assert checked.kind == "wav" and checked.sample_rate == 16000 and not checked.warnings


def test_reference_voices_are_distinct() -> None:
    """Different speakers: their long-term spectra differ (no two files are the same voice re-cut)."""
    spectra = []
    for path in VOICES:
        audio, rate = sf.read(str(path), dtype="float64")
        frames = audio[: len(audio) // 512 * 512].reshape(-1, 512) * np.hanning(512)
        s = np.log(np.abs(np.fft.rfft(frames, axis=1)).mean(axis=0) + 1e-6)
        spectra.append((s - s.mean()) / s.std())
    for i in range(len(spectra)):
        for j in range(i + 1, len(spectra)):
            assert np.corrcoef(spectra[i], spectra[j])[0, 1] < 0.995, (VOICES[i].name, VOICES[j].name)


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_example_image_format(path: Path) -> None:
    assert path.stat().st_size < 300 * 1024
    checked = check_image_file(path)
    assert checked.kind == "png" and (checked.width, checked.height) in BUCKETS
    with Image.open(path) as im:
        assert len(im.convert("RGB").getcolors(1 << 24)) > 50  # a picture, not a flat fill


def test_assets_ship_in_the_wheel() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "assets*" in cfg["packages"]["find"]["include"]
    data = cfg["package-data"]["assets"]
    shipped = {p.relative_to(REPO / "assets") for p in VOICES + IMAGES}
    assert all(any(p.match(pattern) for pattern in data) for p in shipped)


def test_shipped_preset_renders_with_its_voices(tiny_pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shipped image-to-video preset through the batch path: its voices and image reach the render."""
    from nava_core.batch import BatchDefinition, BatchItem, expand_batch
    from nava_core.export import probe
    from nava_core.render import render_to_files

    monkeypatch.chdir(tmp_path)  # like the studio or `nava-render batch` started anywhere but the checkout
    defn = BatchDefinition(name="preset with voices", items=[BatchItem(preset="cafe_first_frame")],
                           overrides={"width": 160, "height": 96, "seconds": 0.5, "steps": 2})
    [job] = expand_batch(defn)
    req = job.request
    expected = [str(REPO / "assets/voices/walt_en.wav"), str(REPO / "assets/voices/sam_en.wav")]
    assert list(req.speaker_wavs) == expected
    assert all(Path(w).is_absolute() and Path(w).is_file() for w in req.speaker_wavs)
    assert req.mode == "image_audio_video" and req.image == str(REPO / "assets/images/cafe_two_people.png")
    out = render_to_files(tiny_pipe, req, tmp_path / "out")
    assert out.mp4 is not None and out.mp4.is_file() and out.wav.is_file()
    meta = probe(out.mp4)
    assert (meta.width, meta.height) == (160, 96) and meta.channels == 2
    rendered = json.loads(out.sidecar.read_text(encoding="utf-8"))  # the request the file was rendered from
    assert rendered["speaker_wavs"] == expected and rendered["image"] == req.image
    assert not [w for w in out.warnings if "voice" in w.lower() or "speaker" in w.lower()], out.warnings
