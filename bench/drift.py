"""Drift of every opt-in speed-up (nava_core.speedups) against the exact path, on the same seeds.

For each seed it renders the exact path once, then each speed-up, and records the relative L2
distance of the final video and audio latents, the fraction of backbone branch-forwards saved and
the denoising time ratio. Results are printed as a table and, with --write, stored in
nava_core/data/speedup_drift.json (which the studio shows next to the choice). Not a test.

Numbers depend on the weights: on the tiny random-weight set (the default, CPU) they show the
mechanism and the forward savings, not the visual effect on the released model; run with
--weights /path/to/NAVA on a GPU for release numbers.

    python bench/drift.py [--weights tiny] [--steps 30] [--seeds 1 2] [--write]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402


def _rel(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None:
        return 0.0
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))


def measure(weights: str, steps: int, seeds: list[int], names: list[str], device: str | None,
            prompt: str, size: tuple[int, int], seconds: float) -> dict[str, dict]:
    from nava_core.pipeline import NAVAPipeline
    from nava_core.request import RenderRequest

    pipe = NAVAPipeline.from_pretrained(weights, device=device)
    out: dict[str, dict] = {}
    rows: dict[str, list[dict]] = {n: [] for n in names}
    for seed in seeds:
        req = RenderRequest(prompt=prompt, width=size[0], height=size[1], seconds=seconds, steps=steps, seed=seed)
        cond = pipe.encode_conditions(req)
        t0 = time.perf_counter()
        v0, a0, n0 = pipe.denoise(req, cond)
        base_s = time.perf_counter() - t0
        for name in names:
            r = req.replace(speedup=name)
            t0 = time.perf_counter()
            v, a, n = pipe.denoise(r, cond)
            dt = time.perf_counter() - t0
            stats = pipe.last_step_reuse.stats()
            rows[name].append({"video_rel_l2": _rel(v, v0), "audio_rel_l2": _rel(a, a0),
                               "forward_saving": stats["speedup_forward_saving"],
                               "steps_reused": stats["speedup_steps_reused"], "time_ratio": dt / base_s})
    for name, rs in rows.items():
        out[name] = {k: max(r[k] for r in rs) if "rel" in k else sum(r[k] for r in rs) / len(rs) for k in rs[0]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="tiny")
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--size", default="160x96")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--prompt", default="a woman in a red coat says <S>we are late<E> on a rainy street")
    p.add_argument("--write", action="store_true", help="store the numbers for the studio")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from nava_core.speedups import DRIFT_FILE, SPEEDUP_NAMES

    names = [n for n in SPEEDUP_NAMES if n != "exact"]
    w, h = (int(x) for x in args.size.split("x"))
    res = measure(args.weights, args.steps, args.seeds, names, args.device, args.prompt, (w, h), args.seconds)
    where = (f"{'tiny random weights' if args.weights == 'tiny' else args.weights}, {args.steps} steps, "
             f"{args.size}, seeds {' '.join(map(str, args.seeds))}, {datetime.date.today().isoformat()}")
    print(f"drift vs exact ({where}); rel L2 = worst over seeds")
    print(f"{'speed-up':20s} {'video rel L2':>12s} {'audio rel L2':>12s} {'fwd saved':>9s} {'steps reused':>12s} {'time ratio':>10s}")
    for name, r in res.items():
        print(f"{name:20s} {r['video_rel_l2']:12.4f} {r['audio_rel_l2']:12.4f} {r['forward_saving']:9.1%} "
              f"{r['steps_reused']:12.1f} {r['time_ratio']:10.2f}")
        r["where"] = where
    if args.write:
        DRIFT_FILE.write_text(json.dumps({"speedups": res}, indent=1) + "\n", encoding="utf-8")
        print(f"written: {DRIFT_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
