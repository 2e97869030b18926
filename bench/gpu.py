"""GPU speed and memory of the release-size backbone per memory profile (issue 10). Needs CUDA.

For the 6.3B backbone with random weights at 1280x704 and 37 latent frames (32,560 video + 152 audio
tokens, the release's 720p/6 s setting) it records, per profile:
  - seconds per denoising step (the forwards a default request runs: COND, NEG, NOALIGN; one forward
    per branch), and seconds per forward;
  - peak GPU memory of the backbone (torch.cuda.max_memory_allocated) with the profile's weights;
  - forward MFU: FLOPs of one forward (nava_core.estimate.forward_flops: linear layers + joint self
    attention + text cross attention) / measured forward time / the GPU's dense bf16 peak.
Profiles: resident (fp32 weights, bf16 autocast = the release's "nava" policy), fp8 (block matrices
float8_e4m3fn, bf16 compute), group_offload (diffusers block-level group offload with CUDA streams).
t5_offload changes only where the text encoder lives, so for the backbone it equals resident.
The numbers are what `nava_core.estimate.estimate` should be checked against; it prints JSON lines.

    python bench/gpu.py [--profiles resident fp8 group_offload] [--repeats 3] [--frames 37]

On a machine without CUDA it exits with status 2 and says so (not a test).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402


def _model(profile: str, device: torch.device):
    from nava_core.config import NAVAConfig
    from nava_core.fp8 import quantize_blocks
    from nava_core.model import WanAVModel

    cfg = NAVAConfig.release("nava")
    with torch.device("meta"):
        model = WanAVModel(cfg)
    offload = profile == "group_offload"
    model = model.to_empty(device="cpu" if offload or profile == "fp8" else device)
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "modulation" in name:
                p.normal_(0.0, 0.02, generator=g)
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, (1.0 / p.shape[-1]) ** 0.5, generator=g)
    model.eval().requires_grad_(False)
    if profile == "fp8":
        quantize_blocks(model, torch.bfloat16)
        model.to(device)
    if offload:
        from diffusers.hooks import apply_group_offloading

        apply_group_offloading(model, onload_device=device, offload_device=torch.device("cpu"),
                               offload_type="block_level", num_blocks_per_group=1, use_stream=True,
                               record_stream=True, non_blocking=True, block_modules=["patch_embedding_audio"])
    return model


def run_profile(profile: str, frames: int, repeats: int, device: torch.device) -> dict:
    from nava_core.config import BUCKETS, token_counts
    from nava_core.estimate import bf16_peak_flops, forward_flops

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    model = _model(profile, device)
    res = BUCKETS[0]  # 1280x704
    h, w = res.latent_hw
    tc = token_counts(res, frames)
    g = torch.Generator(device=device).manual_seed(0)
    video = [torch.randn(48, frames, h, w, device=device, generator=g)]
    audio = [torch.randn(tc.audio_tokens, 128, device=device, generator=g)]
    ctx = [torch.randn(200, 4096, device=device, generator=g)]
    t = torch.tensor([900], device=device)
    branches = [False, False, True]  # COND, NEG (plain joint attention), NOALIGN (block-diagonal)

    def step() -> None:
        for masking in branches:
            model(video, audio, t, ctx, masking_modality=masking)

    with torch.no_grad():
        step()  # warm-up (kernels, allocator, offload streams)
        torch.cuda.synchronize(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
    s_step = sorted(times)[len(times) // 2]
    s_fwd = s_step / len(branches)
    name = torch.cuda.get_device_name(device)
    peak = bf16_peak_flops(name)
    flops = forward_flops(model.config, tc.video_tokens, tc.audio_tokens)
    out = {
        "profile": profile, "gpu": name, "width": res.width, "height": res.height, "latent_frames": frames,
        "tokens": tc.total, "forwards_per_step": len(branches), "s_per_step": round(s_step, 4),
        "s_per_forward": round(s_fwd, 4), "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        "forward_tflops": round(flops / 1e12, 1),
        "mfu": round(flops / s_fwd / peak, 4) if peak else None,
        "bf16_peak_tflops": peak / 1e12 if peak else None,
    }
    del model
    torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profiles", nargs="+", default=["resident", "fp8", "group_offload"])
    p.add_argument("--frames", type=int, default=37)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device found. This benchmark measures GPU speed and memory of the "
              "release-size backbone; run it on an H100/H200-class GPU machine.", file=sys.stderr)
        return 2
    device = torch.device("cuda", torch.cuda.current_device())
    for profile in args.profiles:
        try:
            print(json.dumps(run_profile(profile, args.frames, args.repeats, device)), flush=True)
        except torch.cuda.OutOfMemoryError as e:
            print(json.dumps({"profile": profile, "error": f"out of memory: {e}"}), flush=True)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
