"""What the live preview costs: a 50-step render with previews every k steps against the same render
without them, in one process, alternating so machine noise hits both sides alike.

Target (issue 14): preview overhead <= 5% of a 50-step render. On the tiny weight set a denoising step
is a few milliseconds, so this is the pessimistic case: with the real 6.3B backbone a step costs
seconds while a preview (a 48->3 projection plus the small audio VAE decoder) grows far less.
Not a test: prints the best of each side, the on/off ratio, and the time spent inside preview making
(immune to the machine noise that dominates the wall-clock ratio on a shared CPU).

    python bench/preview.py [--steps 50] [--every 5] [--repeats 3] [--seconds 2] [--weights tiny]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the stdlib module torch imports: keep the folder off sys.path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="tiny")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--every", type=int, default=None, help="steps between previews (default: the studio's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--size", default="160x96", help="WIDTHxHEIGHT")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from nava_core.pipeline import NAVAPipeline
    from nava_core.preview import DEFAULT_PREVIEW_EVERY
    from nava_core.request import RenderRequest

    torch.set_num_threads(1)
    every = args.every or DEFAULT_PREVIEW_EVERY
    w, h = (int(x) for x in args.size.lower().split("x"))
    pipe = NAVAPipeline.from_pretrained(args.weights, device="cpu")
    req = RenderRequest(prompt="A man in a kitchen says <S>Good morning, the coffee is ready.<E> Room tone.",
                        width=w, height=h, seconds=args.seconds, steps=args.steps, seed=5)
    shown = [0]

    def count(ev) -> None:
        shown[0] += ev.preview is not None

    inside = [0.0]  # wall time spent making previews (timed around the pipeline's own preview hook)
    make = pipe._preview

    def timed_preview(*a, **kw):
        t0 = time.perf_counter()
        try:
            return make(*a, **kw)
        finally:
            inside[0] += time.perf_counter() - t0

    pipe._preview = timed_preview
    pipe(req.replace(steps=2), preview_every=1)  # warm up, and fit the preview's RGB map once, as the studio does
    inside[0] = 0.0
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        for name, k in (("off", 0), ("on", every)):
            t0 = time.perf_counter()
            pipe(req, progress=count, preview_every=k)
            times[name].append(time.perf_counter() - t0)
    off, on = min(times["off"]), min(times["on"])  # the least-disturbed run of each: CPU noise only adds
    print(f"weights={args.weights} size={w}x{h} seconds={args.seconds} steps={args.steps} "
          f"preview every {every} steps ({shown[0] // args.repeats} previews per render)")
    print(f"render, preview off: best {off:.3f} s  {[round(t, 3) for t in times['off']]}")
    print(f"render, preview on:  best {on:.3f} s  {[round(t, 3) for t in times['on']]}")
    per_render = inside[0] / args.repeats
    print(f"preview overhead ratio on/off (wall) = {on / off:.3f} ({(on / off - 1) * 100:+.1f}%; target <= +5%)")
    print(f"time inside preview making: {per_render:.3f} s per render = {per_render / off * 100:.2f}% of the "
          f"render without previews (the noise-free part of the ratio)")


if __name__ == "__main__":
    main()
