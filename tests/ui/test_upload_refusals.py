"""Through the page, as a person uploads: a bad first-frame image gets the studio's own message (what
and why), not Gradio's blank error, and nothing is stored; a real image is accepted."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tests.ui.conftest import studio_page

pytestmark = pytest.mark.slow


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_declaring(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")


def test_bad_images_are_refused_with_the_studios_message(studio, tmp_path: Path, refused) -> None:
    from PIL import Image

    url, _ = studio
    cases = {
        "bomb.png": (_png_declaring(50_000, 50_000), "decompression bomb"),
        "big.png": (_png_declaring(9000, 9000), "81 megapixels"),
        "empty.png": (b"", "empty (0 bytes)"),
        "voice.png": (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 40, "not a PNG, JPEG or WebP"),
    }
    with studio_page(url) as page:
        page.get_by_text("First frame (image to video)").click()
        note = page.get_by_text("Adding an image switches")
        assert note.count() == 1
        for name, (data, expect) in cases.items():
            path = tmp_path / name
            path.write_bytes(data)
            page.locator("#first-image input[type=file]").set_input_files(str(path))
            message = page.get_by_text(expect, exact=False)
            try:
                message.first.wait_for(timeout=30_000)
            except Exception:
                page.screenshot(path=str(tmp_path / f"{name}.png"))
                raise AssertionError(f"{name}: no refusal shown; page says: "
                                     f"{page.locator('#first-image').locator('..').inner_text()[:800]}")
            text = message.first.inner_text()
            assert "⛔" in text and "What to do" in text, text
            refused(f"page-upload-{name}", text)
        images = tmp_path / "home" / "uploads" / "images"  # the studio fixture's data folder
        assert not [p for p in images.rglob("*") if p.is_file()], "a refused image was stored"
        ok = tmp_path / "frame.png"
        Image.new("RGB", (640, 352), (20, 90, 160)).save(ok)
        page.locator("#first-image input[type=file]").set_input_files(str(ok))
        page.get_by_text("proposed aspect bucket").first.wait_for(timeout=30_000)
    assert len([p for p in images.rglob("*") if p.is_file()]) == 1
