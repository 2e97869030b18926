"""The page's voice and image uploads (StudioService.add_voice / add_image): refused from their headers
with the studio's own message before anything is decoded or stored; a long voice is never decoded past
what is used (30 s), and its preview is capped the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_malformed_inputs import _long_flac, _png_bomb, _png_bytes, _png_header, _wav_bytes


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path):
    from app import engine as E
    from app.paths import StudioPaths
    from app.service import StudioService

    service = StudioService(StudioPaths.from_env(tmp_path_factory.mktemp("studio")),
                            E.Engine(E.WeightChoice("tiny", str(tiny_weights), "test weights")))
    yield service
    service.close()


def _uploads(service) -> list[str]:
    return sorted(str(p.relative_to(service.paths.uploads)) for p in service.paths.uploads.rglob("*") if p.is_file())


IMAGES = {
    "81-megapixels": (_png_header(9000, 9000), r"81 megapixels.*40 MP limit"),
    "2.5-gigapixel-bomb": (_png_bomb(), r"2500 megapixels|decompression bomb"),
    "0-bytes": (b"", r"empty \(0 bytes\)"),
    "wav-renamed-png": (_wav_bytes(), r"not a PNG, JPEG or WebP image.*WAV"),
    "truncated": (_png_bytes(64, 64)[:60], r"cannot be decoded|truncated"),
}


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_page_image_upload_refused_before_storing(studio, tmp_path: Path, case: str, refused) -> None:
    import re

    from app.service import StudioError

    data, expect = IMAGES[case]
    path = tmp_path / "upload.png"
    path.write_bytes(data)
    before = _uploads(studio)
    with pytest.raises(StudioError) as info:
        studio.add_image(path)
    message = str(info.value)
    assert re.search(expect, message, re.IGNORECASE) and "What to do" in message, message
    assert _uploads(studio) == before
    refused(f"page-image-{case}", message)


def test_page_image_upload_accepts_a_real_image(studio, tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    path.write_bytes(_png_bytes(640, 352))
    stored, bucket = studio.add_image(path)
    assert studio.paths.images in Path(stored).parents and bucket == "landscape"


def test_page_voice_declaring_an_hour_is_refused_from_its_header(studio, tmp_path: Path, refused) -> None:
    path = tmp_path / "long.flac"
    path.write_bytes(_long_flac(3600))
    before = _uploads(studio)
    t0 = time.perf_counter()
    from app.service import StudioError

    with pytest.raises(StudioError, match=r"declares 3,600 s of audio.*300 s limit") as info:
        studio.add_voice(path)
    assert time.perf_counter() - t0 < 5  # header only; decoding an hour takes far longer on this machine
    assert _uploads(studio) == before, "nothing stored, no preview written"
    refused("page-voice-1-hour", str(info.value))


def test_voice_preview_is_capped_at_what_is_used(studio, tmp_path: Path) -> None:
    """A 100 s voice (within the limit) is accepted; its preview holds the first 30 s only."""
    import soundfile as sf

    path = tmp_path / "long-speech.flac"
    t = np.arange(100 * 16000) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000, format="FLAC")
    up = studio.add_voice(path)
    info = sf.info(up.preview)
    assert info.duration == pytest.approx(30.0, abs=0.1)
    assert up.duration_s == pytest.approx(100.0, abs=0.5)
