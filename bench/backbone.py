"""Forward time and peak memory of WanAVModel vs diffusers' WanTransformer3DModel on CPU.

Same width, depth, head size and token count; each measurement runs in its own subprocess so peak
RSS is per model. Prints the NAVA/diffusers time ratio (target <= 1.0, issue 18). Not a test: no asserts.

    python bench/backbone.py [--dim 1024 --layers 6 --frames 4 --height 64 --width 64 --reps 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(kind: str, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    heads = args.dim // 128
    g = torch.Generator().manual_seed(0)
    video = torch.randn(48, args.frames, args.height, args.width, generator=g)
    context = torch.randn(args.text, 4096, generator=g)
    audio = torch.randn(args.audio, 128, generator=g) if args.audio else None
    if kind == "diffusers":
        from diffusers import WanTransformer3DModel

        model = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=128, in_channels=48,
            out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=args.ffn, num_layers=args.layers,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
        ).eval()
        padded = torch.cat([context, context.new_zeros(512 - args.text, 4096)])[None]

        def run():
            return model(video[None], torch.tensor([700]), padded, return_dict=False)[0]
    else:
        from nava_core.config import NAVAConfig
        from nava_core.model import WanAVModel

        nd = args.layers // 3
        cfg = NAVAConfig(dim=args.dim, ffn_dim=args.ffn, num_heads=heads, num_double_layers=nd,
                         num_single_layers=args.layers - nd, precision="fp32")
        model = WanAVModel(cfg).eval()
        use_audio = kind == "nava_av"

        def run():
            return model([video], [audio] if use_audio else None, torch.tensor([700]), [context])
    base = _rss_mb()
    times = []
    with torch.no_grad():
        for i in range(args.reps + 1):
            start = time.perf_counter()
            run()
            if i:  # first call is warm-up
                times.append(time.perf_counter() - start)
    return {"time_s": statistics.median(times), "peak_rss_mb": _rss_mb(), "forward_extra_mb": _rss_mb() - base,
            "params": sum(p.numel() for p in model.parameters())}


def _measure(kind: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, *argv], check=True, capture_output=True,
                         text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=4096)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--height", type=int, default=64, help="latent height (tokens = frames*h/2*w/2)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--text", type=int, default=64)
    p.add_argument("--audio", type=int, default=128, help="audio tokens for the extra joint-AV line")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args, _ = p.parse_known_args()
    # bench/ holds other scripts (e.g. queue.py) that would shadow stdlib modules torch imports
    here = Path(__file__).resolve().parent
    sys.path[:] = [q for q in sys.path if Path(q or ".").resolve() != here]
    if args.worker:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(_worker(args.worker, args)))
        return
    argv = [a for a in sys.argv[1:]]
    tokens = args.frames * (args.height // 2) * (args.width // 2)
    print(f"config: dim {args.dim}, ffn {args.ffn}, {args.layers} layers, {args.dim // 128} heads x 128, "
          f"{tokens} video tokens, {args.text} text tokens (padded to 512), {args.threads} thread(s)")
    ref = _measure("diffusers", argv)
    nava = _measure("nava", argv)
    for name, r in (("diffusers WanTransformer3DModel", ref), ("NAVA WanAVModel (video only)", nava)):
        print(f"{name:34s} {r['time_s']:8.3f} s/forward  peak RSS {r['peak_rss_mb']:8.0f} MB  "
              f"(+{r['forward_extra_mb']:.0f} MB during forwards)  params {r['params'] / 1e6:.1f} M")
    print(f"time ratio NAVA / diffusers (same tokens): {nava['time_s'] / ref['time_s']:.3f}  (target <= 1.0)")
    print(f"forward memory ratio NAVA / diffusers: "
          f"{nava['forward_extra_mb'] / max(ref['forward_extra_mb'], 1.0):.3f}")
    if args.audio:
        av = _measure("nava_av", argv)
        print(f"NAVA joint video+audio ({tokens}+{args.audio} tokens): {av['time_s']:.3f} s/forward, "
              f"peak RSS {av['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
