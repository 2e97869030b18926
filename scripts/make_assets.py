#!/usr/bin/env python3
"""Generate NAVA Studio's example assets: reference voices and first-frame images.

Everything in `assets/` is made by the project from scratch, here, so it carries no third-party
licence and can be rebuilt bit for bit:

    python scripts/make_assets.py            # (re)write assets/voices/*.wav and assets/images/*.png
    python scripts/make_assets.py --check    # rebuild into a temp folder and compare with the committed files

Voices (`assets/voices/`): espeak-ng (1.51, formant synthesis, no MBROLA) speaks a couple of sentences
with a per-speaker voice variant, pitch and speed; sox resamples to 16 kHz and applies a
light per-speaker colour (low-pass for a mellow voice, bass lift for a deep one, a touch of overdrive
for a grainy one) with dither off (`-D`) so the output is deterministic; numpy trims the silence at
both ends, adds 150 ms of silence either side and peak-normalises to -1 dBFS; soundfile writes 16 kHz
mono 16-bit PCM WAV. Each is 4-8 s of speech and well under 300 KB (16 kHz x 2 bytes = 32 KB/s).

Images (`assets/images/`): drawn procedurally with PIL (gradients, polygons, ellipses; no fonts and
no randomness without a fixed seed) at the studio's resolution buckets 1280x704, 704x1280 and 960x960,
saved as optimised PNG (< 300 KB each).

Which preset uses which file: see presets/projects/*.json (cast[].voice_file, image). Those paths are
relative to the repository root (the parent of presets/) and prompt_builder.load_preset resolves them.
"""

from __future__ import annotations

import argparse
import filecmp
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
RATE = 16_000
PEAK_DBFS = -1.0


@dataclass(frozen=True)
class Voice:
    """One reference voice: espeak-ng voice+variant, pitch (0-99), words per minute."""

    file: str
    description: str  # what it sounds like (kept in step with the presets' cast voice descriptions)
    espeak: str
    pitch: int
    speed: int
    text: str
    sox_fx: tuple[str, ...] = ()


VOICES = (
    Voice("mia_en.wav", "young woman, bright and warm (en-US)", "en-us+f3", 62, 168,
          "Hi everyone, welcome back! Today I'm taking you to my favourite little coffee spot.",
          ("treble", "2", "3000")),
    Voice("tom_en.wav", "man, deep and steady (en-GB)", "en-gb+m3", 28, 150,
          "Good evening, and thank you for joining me. Tonight, we talk about building something that lasts.",
          ("bass", "4", "200")),
    Voice("narrator_en.wav", "narrator, warm and mellow (en-GB RP)", "en-gb-x-rp+m7", 40, 148,
          "Long ago, by a quiet sea, there lived an old lighthouse keeper. Every night, he lit the lamp.",
          ("lowpass", "3800", "bass", "3", "180")),
    Voice("walt_en.wav", "older man, low and grainy (en-US)", "en-us+m6", 18, 145,
          "I've been coming here for forty years. The coffee was better then, but the company is just as good.",
          ("overdrive", "8", "10", "lowpass", "3400")),
    Voice("sam_en.wav", "young man, bright and upbeat (en-US)", "en-us+m1", 68, 178,
          "Oh, that sounds amazing! Come on, let's grab the table by the window and order something sweet.",
          ("treble", "3", "3500")),
    Voice("lin_zh.wav", "young woman, gentle and bright (Mandarin)", "cmn+f2", 64, 180,
          "大家好，欢迎来到我的频道。我们去散步吧。",
          ("treble", "2", "3000")),
    Voice("wei_zh.wav", "middle-aged man, low and thick (Mandarin)", "cmn+m3", 24, 165,
          "这件事必须认真对待。明天九点准时开会。",
          ("bass", "5", "200")),
    Voice("jun_zh.wav", "young man, clear and steady (Mandarin)", "cmn+m1", 50, 175,
          "我明白。先把问题弄清楚，再做决定。",
          ()),
)


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"make_assets: {tool} is not installed (apt-get install espeak-ng sox)")
    return path


def make_voice(v: Voice, out: Path) -> Path:
    """Synthesise, colour, trim, normalise and write one voice; returns its path."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, resampled = Path(tmp) / "raw.wav", Path(tmp) / "16k.wav"
        subprocess.run([_need("espeak-ng"), "-v", v.espeak, "-p", str(v.pitch),
                        "-s", str(v.speed), "-g", "1", "-w", str(raw), v.text], check=True)
        subprocess.run([_need("sox"), "-D", "-R", str(raw), "-r", str(RATE), "-c", "1", "-b", "32", "-e",
                        "floating-point", str(resampled), "gain", "-6", *v.sox_fx, "rate", "-v", str(RATE)], check=True)
        audio, rate = sf.read(str(resampled), dtype="float64")
    assert rate == RATE, rate
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    audio = audio[max(loud[0] - 80, 0): loud[-1] + 80]
    pad = np.zeros(int(0.15 * RATE))
    audio = np.concatenate([pad, audio, pad])
    audio *= 10 ** (PEAK_DBFS / 20) / np.abs(audio).max()
    path = out / "voices" / v.file
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, RATE, subtype="PCM_16", format="WAV")
    seconds = len(audio) / RATE
    if not 4.0 <= seconds <= 8.0:
        raise SystemExit(f"make_assets: {v.file} is {seconds:.2f} s; adjust its text or speed to land in 4-8 s")
    return path


# ---- images ---------------------------------------------------------------------------------------


def _vgrad(size: tuple[int, int], stops: list[tuple[float, tuple[int, int, int]]]) -> Image.Image:
    """A vertical gradient through colour stops (position 0..1, RGB)."""
    w, h = size
    y = np.linspace(0.0, 1.0, h)
    pos = np.array([p for p, _ in stops])
    cols = np.array([c for _, c in stops], dtype=np.float64)
    rgb = np.stack([np.interp(y, pos, cols[:, k]) for k in range(3)], axis=1)
    arr = np.repeat(rgb[:, None, :], w, axis=1)
    return Image.fromarray(np.round(arr).astype(np.uint8))


def _person(d: ImageDraw.ImageDraw, cx: int, base: int, scale: float, body: tuple, skin: tuple, hair: tuple,
            facing: int, hair_style: str = "short") -> None:
    """A seated, stylised figure seen from the chest up: torso, neck, head, hair, arm on the table."""
    s = scale
    d.rounded_rectangle([cx - 95 * s, base - 210 * s, cx + 95 * s, base + 10 * s], radius=int(55 * s), fill=body)
    d.rectangle([cx - 18 * s, base - 250 * s, cx + 18 * s, base - 200 * s], fill=skin)
    hx = cx + facing * 8 * s
    d.ellipse([hx - 58 * s, base - 370 * s, hx + 58 * s, base - 225 * s], fill=skin)
    if hair_style == "white":
        d.chord([hx - 62 * s, base - 380 * s, hx + 62 * s, base - 270 * s], 180, 360, fill=hair)
        d.ellipse([hx - 66 * s, base - 320 * s, hx - 46 * s, base - 270 * s], fill=hair)
        d.ellipse([hx + 46 * s, base - 320 * s, hx + 66 * s, base - 270 * s], fill=hair)
    else:
        d.chord([hx - 60 * s, base - 385 * s, hx + 60 * s, base - 285 * s], 170, 370, fill=hair)
    ex = hx + facing * 22 * s
    d.ellipse([ex - 5 * s, base - 312 * s, ex + 5 * s, base - 302 * s], fill=(40, 30, 28))
    d.arc([ex - 14 * s, base - 280 * s, ex + 10 * s, base - 262 * s], 20, 160, fill=(120, 60, 55), width=max(2, int(3 * s)))
    x0, x1 = sorted((cx + facing * 40 * s, cx + facing * 150 * s))
    d.rounded_rectangle([x0 - 25 * s, base - 120 * s, x1 + 25 * s, base - 70 * s], radius=int(22 * s), fill=body)
    hand = cx + facing * 160 * s
    d.ellipse([hand - 24 * s, base - 122 * s, hand + 24 * s, base - 74 * s], fill=skin)


def cafe(size: tuple[int, int] = (1280, 704)) -> Image.Image:
    """A stylised cafe terrace: warm wall, window with street light, two people at a small table."""
    w, h = size
    im = _vgrad(size, [(0.0, (236, 214, 178)), (0.62, (214, 186, 146)), (0.63, (150, 112, 80)), (1.0, (118, 86, 60))])
    d = ImageDraw.Draw(im)
    # window with daylight and a green awning band
    d.rectangle([380, 60, 900, 380], fill=(120, 96, 70))
    d.rectangle([396, 76, 884, 364], fill=(188, 214, 226))
    d.rectangle([396, 250, 884, 364], fill=(152, 176, 150))
    d.rectangle([634, 76, 646, 364], fill=(120, 96, 70))
    for i in range(9):
        d.rectangle([60 + i * 130, 0, 125 + i * 130, 40], fill=(64, 112, 84) if i % 2 else (232, 226, 210))
    # plant and pendant lamps
    d.rectangle([1120, 300, 1190, 440], fill=(150, 90, 60))
    for k, (ox, oy) in enumerate([(-60, -40), (0, -90), (55, -50), (-30, -120), (35, -140)]):
        d.ellipse([1155 + ox - 48, 300 + oy - 48, 1155 + ox + 48, 300 + oy + 48], fill=(70 + 8 * k, 128, 78))
    for lx in (250, 1030):
        d.line([lx, 40, lx, 150], fill=(60, 50, 40), width=3)
        d.polygon([(lx - 45, 195), (lx + 45, 195), (lx + 22, 150), (lx - 22, 150)], fill=(40, 70, 60))
        d.ellipse([lx - 14, 188, lx + 14, 210], fill=(255, 236, 170))
    # two people facing each other
    _person(d, 400, 560, 1.0, (190, 190, 196), (232, 196, 170), (236, 236, 236), +1, "white")
    _person(d, 880, 560, 1.0, (40, 56, 96), (214, 170, 140), (58, 42, 32), -1)
    d.rectangle([790, 450, 970, 468], fill=(236, 236, 236))  # striped top peeking out of the jacket
    d.rectangle([790, 480, 970, 494], fill=(236, 236, 236))
    # the table and two cups
    d.ellipse([430, 540, 850, 610], fill=(240, 236, 228))
    d.rectangle([630, 575, 650, 704], fill=(70, 60, 56))
    for cx in (560, 720):
        d.rounded_rectangle([cx - 26, 520, cx + 26, 566], radius=8, fill=(250, 250, 246))
        d.arc([cx + 18, 528, cx + 42, 556], 270, 90, fill=(250, 250, 246), width=6)
        d.ellipse([cx - 40, 560, cx + 40, 578], fill=(226, 222, 212))
    return im.filter(ImageFilter.SMOOTH)


def sunset(size: tuple[int, int] = (960, 960)) -> Image.Image:
    """A landscape at sunset: graded sky, low sun, layered hills, the sea with a glittering path."""
    w, h = size
    im = _vgrad(size, [(0.0, (44, 40, 96)), (0.35, (170, 84, 120)), (0.55, (246, 152, 84)),
                       (0.6, (250, 196, 120)), (0.61, (60, 70, 110)), (1.0, (20, 28, 56))])
    d = ImageDraw.Draw(im)
    sun_y = int(0.55 * h)
    for r, col in ((150, (252, 178, 96)), (110, (252, 200, 120)), (78, (255, 226, 160))):
        d.ellipse([w // 2 - r, sun_y - r, w // 2 + r, sun_y + r], fill=col)
    d.rectangle([0, int(0.6 * h), w, h], fill=(52, 62, 104))  # sea covers the lower half of the sun
    for k in range(14):
        y = int(0.61 * h) + k * 22
        half = 24 + k * 14
        d.rectangle([w // 2 - half, y, w // 2 + half, y + 5], fill=(250, 200, 130))
    for depth, (col, amp, base) in enumerate([((86, 60, 98), 40, 0.58), ((58, 42, 76), 60, 0.62)]):
        pts = [(0, h * 0.75)]
        for x in range(0, w + 1, 16):
            y = base * h - amp * (0.6 + 0.4 * math.sin(x / 90 + depth)) * (1 if x < w * 0.35 else 0.15)
            pts.append((x, min(y, base * h)))
        pts.append((w, h * 0.75))
        d.polygon([(x, y) for x, y in pts if x < w * 0.45] + [(w * 0.45, h * 0.62), (0, h * 0.62)], fill=col)
    for bx, by in ((620, 220), (660, 250), (590, 260)):
        d.line([bx - 14, by, bx, by + 6, bx + 14, by], fill=(40, 30, 60), width=3)
    return im.filter(ImageFilter.SMOOTH)


def portrait(size: tuple[int, int] = (704, 1280)) -> Image.Image:
    """A portrait silhouette for a vertical vlog: a young woman with a ponytail against a bright window."""
    w, h = size
    im = _vgrad(size, [(0.0, (250, 232, 206)), (0.5, (244, 206, 176)), (1.0, (196, 150, 132))])
    d = ImageDraw.Draw(im)
    d.rectangle([60, 120, 644, 760], fill=(255, 246, 228))
    d.rectangle([346, 120, 358, 760], fill=(222, 200, 176))
    d.rectangle([60, 436, 644, 446], fill=(222, 200, 176))
    sil = (58, 48, 60)
    cx = w // 2
    d.ellipse([cx - 150, 430, cx + 150, 800], fill=sil)  # head
    d.ellipse([cx + 100, 470, cx + 220, 560], fill=sil)  # ponytail base
    d.polygon([(cx + 170, 500), (cx + 250, 640), (cx + 210, 820), (cx + 150, 600)], fill=sil)
    d.rectangle([cx - 60, 760, cx + 60, 900], fill=sil)  # neck
    d.rounded_rectangle([cx - 300, 860, cx + 300, 1400], radius=180, fill=(236, 236, 240))  # white hoodie
    d.polygon([(cx - 60, 870), (cx + 60, 870), (cx, 960)], fill=sil)
    d.line([cx - 40, 900, cx - 50, 1060], fill=(200, 200, 208), width=6)  # hoodie strings
    d.line([cx + 40, 900, cx + 50, 1060], fill=(200, 200, 208), width=6)
    d.ellipse([cx - 150, 430, cx + 150, 800], outline=(255, 220, 170), width=4)  # rim light
    return im.filter(ImageFilter.SMOOTH)


IMAGES = {"cafe_two_people.png": cafe, "sunset_sea.png": sunset, "portrait_silhouette.png": portrait}


def make_image(name: str, out: Path) -> Path:
    path = out / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    IMAGES[name]().save(path, format="PNG", optimize=True)
    return path


def build(out: Path) -> list[Path]:
    return [make_voice(v, out) for v in VOICES] + [make_image(n, out) for n in IMAGES]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ASSETS, help="assets folder to write (default: <repo>/assets)")
    ap.add_argument("--check", action="store_true", help="rebuild in a temp folder and compare with --out")
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = build(Path(tmp))
            bad = [p.relative_to(tmp) for p in fresh if not filecmp.cmp(p, args.out / p.relative_to(tmp), shallow=False)]
        for p in bad:
            print(f"differs: {p}")
        return 1 if bad else 0
    for p in build(args.out):
        extra = ""
        if p.suffix == ".wav":
            extra = f", {sf.info(str(p)).duration:.2f} s"
        else:
            with Image.open(p) as im:
                extra = f", {im.width}x{im.height}"
        print(f"{p.relative_to(args.out.parent) if args.out.parent in p.parents else p}: {p.stat().st_size // 1024} KB{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
