"""Small media helpers for the page: thumbnails and waveform images.

These work on files and numpy arrays only (PyAV, soundfile, Pillow); the engine's tensors never reach
the studio. The waveform/spectrogram picture is what audio-only renders show instead of a video.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)


def video_thumbnail(mp4: str | Path, png: str | Path, width: int = 320) -> Path | None:
    """The middle frame of a video as a small PNG for the history list."""
    import av

    try:
        with av.open(str(mp4)) as container:
            if not container.streams.video:
                return None
            frames = [f.to_image() for f in container.decode(video=0)]
    except Exception as e:  # noqa: BLE001 - a missing thumbnail must not fail a render
        log.warning("no thumbnail for %s: %s", mp4, e)
        return None
    if not frames:
        return None
    img = frames[len(frames) // 2]
    img = img.resize((width, max(1, round(img.height * width / img.width))))
    img.save(png)
    return Path(png)


def audio_picture(wav: str | Path, png: str | Path, width: int = 960, height: int = 360) -> Path:
    """Waveform (both channels) above a log-magnitude spectrogram: the 'video' of an audio-only render."""
    import soundfile as sf

    data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    chans = data.T  # [C, N]
    img = Image.new("RGB", (width, height), (17, 24, 39))
    draw = ImageDraw.Draw(img)
    wave_h = height // 3
    colors = [(96, 165, 250), (244, 114, 182)]
    n = chans.shape[1]
    for c, ch in enumerate(chans[:2]):
        top = c * wave_h // 2
        mid = top + wave_h // 4
        if n == 0:
            continue
        edges = np.linspace(0, n, width + 1).astype(int)
        for x in range(width):
            seg = ch[edges[x]:max(edges[x + 1], edges[x] + 1)]
            lo, hi = float(seg.min(initial=0)), float(seg.max(initial=0))
            draw.line([(x, mid - hi * wave_h / 4), (x, mid - lo * wave_h / 4)], fill=colors[c % 2])
    mono = chans.mean(axis=0)
    n_fft, hop = 512, max(1, n // width) if n > 512 else 128
    if mono.size >= n_fft:
        starts = np.arange(0, mono.size - n_fft + 1, hop)
        win = np.hanning(n_fft).astype(np.float32)
        frames = np.stack([mono[s:s + n_fft] * win for s in starts])
        mag = np.abs(np.fft.rfft(frames, axis=1)).T  # [freq, time]
        db = 20 * np.log10(mag + 1e-6)
        db = np.clip((db - db.max() + 80) / 80, 0, 1)
        spec = (np.flipud(db) * 255).astype(np.uint8)
        rgb = np.stack([spec, (spec * 0.6).astype(np.uint8), (255 - spec) // 3], axis=-1)
        spec_img = Image.fromarray(rgb).resize((width, height - wave_h))
        img.paste(spec_img, (0, wave_h))
    draw.text((6, 4), f"{chans.shape[0]} ch, {sr} Hz, {n / max(sr, 1):.2f} s", fill=(229, 231, 235))
    img.save(png)
    return Path(png)
