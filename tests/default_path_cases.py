"""The default audio+video path's recorded cases (tests/data/default_path/latents.safetensors).

Shared by the test that asserts the path still reproduces them and by `scripts/record_default_path.py`
(which wrote them before the release-exact changes of issue 17). Inputs are synthesised from seeds so
the fixture needs no binary media: a 16 kHz mono voice (no resampling or channel mixing involved) and
a gradient image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "data" / "default_path" / "latents.safetensors"

PROMPT = (
    "A bright kitchen at noon. A man on the left says <S>Good morning, the coffee is ready.<E> "
    "A woman on the right answers <S>Thanks, I needed that.<E> Quiet room tone, no music."
)


def write_voice(path: Path, seed: int) -> Path:
    """2 s of a seeded 'voice' (harmonics of a wobbling pitch plus a little noise), 16 kHz mono float WAV."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(32000, dtype=np.float64) / 16000
    f0 = 110 + 40 * seed + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.01 * rng.standard_normal(t.size)
    sf.write(str(path), wave.astype(np.float32), 16000, subtype="FLOAT")
    return path


def write_image(path: Path, width: int = 200, height: int = 120) -> Path:
    """A smooth RGB gradient with a disc, PNG."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = x / width * 255
    g = y / height * 255
    b = ((x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 3) ** 2) * 200.0
    Image.fromarray(np.stack([r, g, b], -1).astype(np.uint8)).save(path)
    return path


def requests(tmp: Path):
    """The recorded cases: name -> RenderRequest (default guidance, precision "nava", tiny sizes)."""
    from nava_core.request import RenderRequest

    voices = [str(write_voice(tmp / f"voice{i}.wav", i)) for i in range(2)]
    image = str(write_image(tmp / "first.png"))
    base = dict(prompt=PROMPT, width=160, height=96, seconds=0.5, steps=3, seed=11)
    return {
        "t2av_two_voices": RenderRequest(**base, speaker_wavs=tuple(voices)),
        "i2av": RenderRequest(**base, mode="image_audio_video", image=image),
    }
