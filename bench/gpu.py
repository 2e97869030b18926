"""GPU speed of the NAVA backbone, per memory profile and attention kernel, in one time-boxed run.

Random weights at release size (no download): the 6.3B backbone at 1280x704, 37 latent frames
(32,560 video + 152 audio tokens, the release's 720p/6 s setting). Phases, in this order, each
started only while the time budget (--budget-s, default 400 s: the run ends inside 8 minutes on
one H100/H200) has room for it; whatever ran is always printed as one summary table (and --json):

  1. per memory profile (resident, fp8, fp8_compute, group_offload) and, for resident, per attention
     kernel that imports and runs here (nava_core.model.backends): s/forward (one sample), s/step with
     the pipeline's real branch grouping (default guidance: [cond, neg] batched + [no-align]), peak
     VRAM (torch.cuda.max_memory_allocated) and forward MFU (nava_core.estimate.forward_flops / time /
     the GPU's dense bf16 peak; nava_core.estimate);
  2. diffusers' WanTransformer3DModel of the same width, depth, heads and video tokens, same dtype and
     attention: the NAVA / diffusers time ratio of one forward;
  3. kernel-time split of one resident forward (torch.profiler): matmul / attention / RoPE /
     other elementwise / copies;
  4. torch.compile of the blocks on vs off (resident, s/forward; compile time reported);
  5. VAE decode time (Wan2.2 VAE, random weights, fp32 as the pipeline runs it; tiled and untiled).

Every forward runs the engine's own settings (nava_core.speed: bf16 block storage under "nava", the
probed attention kernel, cached text K/V across the branches of a step). On a machine without CUDA it
runs the same phases on the CPU; `--config tiny` (with a small grid) is the CI smoke test
(tests/test_bench_gpu.py). Not a test itself: it asserts nothing and prints what it measured.

    python bench/gpu.py [--budget-s 420] [--profiles resident fp8 ...] [--attention auto sdpa cudnn ...]
    python bench/gpu.py --config tiny --frames 2 --latent-hw 6 10 --budget-s 120   # CPU smoke run
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable  # noqa: E402

import torch  # noqa: E402

logger = logging.getLogger("bench.gpu")

# rough lower bounds (s) of each phase at release size on an H100, used to decide whether to start it
PHASE_COST_S = {"profile": 30.0, "diffusers": 30.0, "profiler": 15.0, "compile": 150.0, "vae": 60.0}


@dataclass
class Budget:
    seconds: float
    start: float = field(default_factory=time.monotonic)
    skipped: list[str] = field(default_factory=list)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def allows(self, phase: str, what: str, scale: float) -> bool:
        need = PHASE_COST_S[phase] * scale
        if self.left() >= need:
            return True
        self.skipped.append(f"{what} (needs ~{need:.0f} s, {max(self.left(), 0):.0f} s left)")
        return False


@dataclass
class Setup:
    config: Any
    device: torch.device
    frames: int
    latent_hw: tuple[int, int]
    audio_tokens: int
    text_tokens: int
    repeats: int
    compile_backend: str

    @property
    def video_tokens(self) -> int:
        pt, ph, pw = self.config.patch_size
        return (self.frames // pt) * (self.latent_hw[0] // ph) * (self.latent_hw[1] // pw)


# ---- helpers -------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _init_random_(model: torch.nn.Module, seed: int = 0) -> None:
    """Release-like scales: weights N(0, 1/fan_in), biases/modulation small, norm weights 1."""
    gens: dict[torch.device, torch.Generator] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = gens.setdefault(p.device, torch.Generator(device=p.device).manual_seed(seed))
            if name.endswith(".bias") or "modulation" in name:
                p.normal_(0.0, 0.02, generator=g)
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, (1.0 / p[0].numel()) ** 0.5, generator=g)


def _nava_model(setup: Setup, profile: str, attention: str) -> torch.nn.Module:
    """The backbone as the engine would hold it under `profile` (precision "nava")."""
    from nava_core.fp8 import quantize_blocks, set_fp8_compute
    from nava_core.model import WanAVModel
    from nava_core.speed import SpeedOptions, prepare_storage

    device = setup.device
    with torch.device("meta"):
        model = WanAVModel(setup.config)
    model = model.to_empty(device=device)
    _init_random_(model)
    model.eval().requires_grad_(False)
    if profile in ("fp8", "fp8_compute"):
        quantize_blocks(model, torch.bfloat16 if device.type == "cuda" else torch.float32)
        if profile == "fp8_compute":
            set_fp8_compute(model, True)
    else:
        prepare_storage(model, SpeedOptions(attention=attention, compile=False), device)
    if profile == "group_offload":
        from diffusers.hooks import apply_group_offloading

        model.to("cpu")
        stream = device.type == "cuda"
        apply_group_offloading(model, onload_device=device, offload_device=torch.device("cpu"),
                               offload_type="block_level", num_blocks_per_group=1, use_stream=stream,
                               record_stream=stream, non_blocking=stream, block_modules=["patch_embedding_audio"])
    model.set_attention_backend(attention, device)
    return model


def _inputs(setup: Setup) -> dict:
    c, device = setup.config, setup.device
    g = torch.Generator(device=device).manual_seed(0)
    h, w = setup.latent_hw
    return {
        "video": torch.randn(c.vid_in_dim, setup.frames, h, w, device=device, generator=g),
        "audio": torch.randn(setup.audio_tokens, c.audio_in_dim, device=device, generator=g),
        "context": torch.randn(setup.text_tokens, c.text_dim, device=device, generator=g),
        "negative": torch.randn(setup.text_tokens, c.text_dim, device=device, generator=g),
    }


def _step_fn(model: torch.nn.Module, inp: dict, device: torch.device) -> tuple[Callable, Callable, int]:
    """(one forward, one step with the pipeline's grouping of the default guidance, forwards per step)."""
    from nava_core.config import GuidanceScales
    from nava_core.guidance import batch_groups, branch_inputs, plan_branches

    t = torch.tensor([900], device=device)
    plan = plan_branches(GuidanceScales(), has_video=True, has_audio=True, has_speakers=False)
    groups = batch_groups(plan)

    def forward() -> None:
        with torch.no_grad():
            model([inp["video"]], [inp["audio"]], t, [inp["context"]])

    def step() -> None:
        with torch.no_grad():
            for group in groups:
                bis = [branch_inputs(b) for b in group]
                n = len(bis)
                ctx = [inp["negative"] if b.context == "negative" else inp["context"] for b in bis]
                model([inp["video"]] * n, [inp["audio"]] * n, t.expand(n), ctx,
                      masking_modality=bis[0].masking_modality)

    return forward, step, len(plan)


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    from nava_core.estimate import bf16_peak_flops

    return bf16_peak_flops(torch.cuda.get_device_name(device))


# ---- phases --------------------------------------------------------------------------------------


def phase_profile(setup: Setup, profile: str, attentions: list[str]) -> list[dict]:
    from nava_core.estimate import forward_flops

    rows = []
    device = setup.device
    _reset_peak(device)
    model = _nava_model(setup, profile, attentions[0])
    inp = _inputs(setup)
    forward, step, n_fwd = _step_fn(model, inp, device)
    flops = forward_flops(setup.config, setup.video_tokens, setup.audio_tokens)
    peak = _peak_flops(device)
    for attention in attentions:
        try:
            choice = model.set_attention_backend(attention, device)
        except ValueError as e:
            rows.append({"phase": "profile", "profile": profile, "attention": attention, "error": str(e)})
            continue
        _reset_peak(device)
        s_fwd = _timed(forward, device, setup.repeats)
        s_step = _timed(step, device, max(1, setup.repeats - 1))
        rows.append({
            "phase": "profile", "profile": profile, "attention": choice.name, "s_per_forward": s_fwd,
            "s_per_step": s_step, "forwards_per_step": n_fwd, "peak_gib": _peak_gib(device),
            "mfu": flops / s_fwd / peak if peak else None, "tflop_per_forward": flops / 1e12,
        })
    del model, forward, step
    _reset_peak(device)
    return rows


def phase_diffusers(setup: Setup, nava_s_forward: float | None, attention: str) -> list[dict]:
    """diffusers WanTransformer3DModel, same width/depth/heads/video tokens, bf16 weights on CUDA."""
    from diffusers import WanTransformer3DModel

    c, device = setup.config, setup.device
    _reset_peak(device)
    with torch.device("meta"):
        model = WanTransformer3DModel(
            patch_size=c.patch_size, num_attention_heads=c.num_heads, attention_head_dim=c.head_dim,
            in_channels=c.vid_in_dim, out_channels=c.vid_out_dim, text_dim=c.text_dim, freq_dim=c.freq_dim,
            ffn_dim=c.ffn_dim, num_layers=c.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            eps=c.eps, rope_max_seq_len=1024)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = model.to_empty(device=device)
    _init_random_(model)
    model = model.to(dtype).eval().requires_grad_(False)
    backend = {"sdpa": "native", "cudnn": "_native_cudnn", "flash3": "_flash_3", "flash": "flash"}.get(attention)
    if backend and backend != "native":
        model.set_attention_backend(backend)
    inp = _inputs(setup)
    ctx = torch.zeros(1, c.text_len, c.text_dim, device=device, dtype=dtype)
    ctx[0, : setup.text_tokens] = inp["context"].to(dtype)
    video = inp["video"][None].to(dtype)
    t = torch.tensor([900], device=device)

    def forward() -> None:
        with torch.no_grad():
            model(video, t, ctx, return_dict=False)

    s = _timed(forward, device, setup.repeats)
    row = {"phase": "diffusers", "model": "diffusers WanTransformer3DModel", "attention": attention,
           "s_per_forward": s, "peak_gib": _peak_gib(device),
           "nava_over_diffusers": nava_s_forward / s if nava_s_forward else None}
    del model
    _reset_peak(device)
    return [row]


_MATMUL = ("mm", "addmm", "bmm", "matmul", "linear", "_scaled_mm", "gemm")
_ATTENTION = ("attention", "flash", "cudnn", "fmha", "sdpa")
_COPIES = ("copy_", "_to_copy", "cat", "contiguous", "clone", "memcpy", "index", "gather", "stack", "empty_strided")


def _category(name: str) -> str:
    n = name.lower().removeprefix("aten::")
    if any(k in n for k in _ATTENTION):
        return "attention"
    if n in _MATMUL or any(k in n for k in ("gemm", "_scaled_mm", "cublas", "cutlass", "nvjet")):
        return "matmul"
    if any(k in n for k in _COPIES):
        return "copies"
    return "elementwise"


def phase_profiler(setup: Setup, attention: str) -> list[dict]:
    """Self device (CPU: self CPU) time of one forward by category; RoPE from its record_function range."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from nava_core.model import blocks

    device = setup.device
    model = _nava_model(setup, "resident", attention)
    inp = _inputs(setup)
    forward, _, _ = _step_fn(model, inp, device)
    forward()
    _sync(device)
    original = blocks.apply_rope

    def traced_rope(x, rotations):
        with record_function("nava::rope"):
            return original(x, rotations)

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    blocks.apply_rope = traced_rope
    try:
        with profile(activities=activities) as prof:
            forward()
            _sync(device)
    finally:
        blocks.apply_rope = original
    split = {"matmul": 0.0, "attention": 0.0, "rope": 0.0, "elementwise": 0.0, "copies": 0.0}
    for ev in prof.events():  # CPU-side ops; on CUDA each carries the time of the kernels it launched
        if ev.name == "nava::rope" or getattr(ev, "device_type", None) not in (None, torch.autograd.DeviceType.CPU):
            continue
        t = (ev.self_device_time_total if cuda else ev.self_cpu_time_total) / 1e6
        if not t:
            continue
        parent, in_rope = ev.cpu_parent, False
        while parent is not None and not in_rope:
            in_rope = parent.name == "nava::rope"
            parent = parent.cpu_parent
        split["rope" if in_rope else _category(ev.name)] += t
    total = sum(split.values()) or 1.0
    del model
    _reset_peak(device)
    return [{"phase": "kernel_split", "attention": attention, "time": "device" if cuda else "cpu",
             **{f"{k}_s": v for k, v in split.items()}, **{f"{k}_pct": 100 * v / total for k, v in split.items()}}]


def phase_compile(setup: Setup, attention: str) -> list[dict]:
    device = setup.device
    model = _nava_model(setup, "resident", attention)
    inp = _inputs(setup)
    forward, _, _ = _step_fn(model, inp, device)
    eager = _timed(forward, device, setup.repeats)
    torch._dynamo.reset()
    model.compile_blocks(backend=setup.compile_backend)
    t0 = time.perf_counter()
    try:
        forward()
        _sync(device)
        compile_s = time.perf_counter() - t0
        compiled = _timed(forward, device, setup.repeats)
        row = {"phase": "compile", "attention": attention, "backend": setup.compile_backend, "eager_s": eager,
               "compiled_s": compiled, "speedup": eager / compiled, "compile_time_s": compile_s}
    except Exception as e:  # noqa: BLE001 - report, do not abort the run
        row = {"phase": "compile", "attention": attention, "eager_s": eager, "error": f"{type(e).__name__}: {e}"[:300]}
    del model
    torch._dynamo.reset()
    _reset_peak(device)
    return [row]


def phase_vae(setup: Setup, tiny: bool) -> list[dict]:
    from diffusers import AutoencoderKLWan

    from nava_core.components.video_vae import VideoVAE, WanVAEConfig

    device = setup.device
    cfg = WanVAEConfig(8, 8, 48) if tiny else WanVAEConfig()
    _reset_peak(device)
    with torch.device(device):
        model = AutoencoderKLWan(**cfg.diffusers_kwargs())
    vae = VideoVAE(model, device=device, dtype=torch.float32)
    h, w = setup.latent_hw
    latents = torch.randn(48, setup.frames, h, w, device=device, generator=torch.Generator(device=device).manual_seed(0))
    rows = []
    for tiled in (False, True):
        try:
            _reset_peak(device)
            t0 = time.perf_counter()
            vae.decode(latents, tiled=tiled)
            _sync(device)
            rows.append({"phase": "vae_decode", "tiled": tiled, "dtype": "fp32", "s": time.perf_counter() - t0,
                         "peak_gib": _peak_gib(device)})
        except torch.cuda.OutOfMemoryError as e:
            rows.append({"phase": "vae_decode", "tiled": tiled, "error": f"out of memory: {str(e)[:120]}"})
    del vae, model
    _reset_peak(device)
    return rows


# ---- table ---------------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary(rows: list[dict], header: str, skipped: list[str]) -> str:
    out = [header, ""]
    prof = [r for r in rows if r["phase"] == "profile"]
    if prof:
        out.append(f"{'profile':14s} {'attention':10s} {'s/forward':>10s} {'s/step':>9s} {'fwd/step':>8s} "
                   f"{'peak GiB':>9s} {'MFU':>6s}")
        for r in prof:
            if "error" in r:
                out.append(f"{r['profile']:14s} {r['attention']:10s} not run: {r['error'][:90]}")
                continue
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
            out.append(f"{r['profile']:14s} {r['attention']:10s} {_fmt(r['s_per_forward']):>10s} "
                       f"{_fmt(r['s_per_step']):>9s} {r['forwards_per_step']:>8d} {_fmt(r['peak_gib'], 1):>9s} {mfu:>6s}")
    for r in rows:
        if r["phase"] == "diffusers":
            out.append(f"diffusers WanTransformer3DModel ({r['attention']}): {_fmt(r['s_per_forward'])} s/forward, "
                       f"peak {_fmt(r['peak_gib'], 1)} GiB; NAVA / diffusers = {_fmt(r['nava_over_diffusers'])}")
        elif r["phase"] == "kernel_split":
            parts = ", ".join(f"{k} {r[k + '_pct']:.0f}%" for k in ("matmul", "attention", "rope", "elementwise", "copies"))
            out.append(f"kernel split of one forward ({r['time']} time, {r['attention']}): {parts}")
        elif r["phase"] == "compile":
            if "error" in r:
                out.append(f"compile: failed ({r['error'][:120]}); eager {_fmt(r['eager_s'])} s/forward")
            else:
                out.append(f"compile ({r['backend']}): eager {_fmt(r['eager_s'])} s/forward, compiled "
                           f"{_fmt(r['compiled_s'])} s/forward (x{_fmt(r['speedup'], 2)}), compile time "
                           f"{_fmt(r['compile_time_s'], 1)} s")
        elif r["phase"] == "vae_decode":
            what = "tiled" if r["tiled"] else "untiled"
            out.append(f"VAE decode ({what}, fp32): " + (f"{_fmt(r['s'], 2)} s, peak {_fmt(r.get('peak_gib'), 1)} GiB"
                                                         if "error" not in r else r["error"]))
        elif r["phase"] == "error":
            out.append(f"phase {r['what']} failed: {r['error'][:200]}")
    if skipped:
        out.append("not started (time budget): " + "; ".join(skipped))
    return "\n".join(out)


# ---- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from nava_core.config import NAVAConfig
    from nava_core.model.backends import auto_order, probe

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=["release", "tiny"], default="release")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--frames", type=int, default=37, help="latent frames (37 = 6 s)")
    p.add_argument("--latent-hw", type=int, nargs=2, default=[44, 80], help="latent grid (44 80 = 704x1280)")
    p.add_argument("--audio-tokens", type=int, default=None, help="default: 4 per latent frame + 4 (152 at 37)")
    p.add_argument("--text-tokens", type=int, default=200)
    p.add_argument("--profiles", nargs="+", default=["resident", "fp8", "fp8_compute", "group_offload"])
    p.add_argument("--attention", nargs="+", default=None,
                   help="kernels to compare on the resident profile (default: every one that runs here)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=400.0)
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--skip", nargs="*", default=[], choices=["diffusers", "profiler", "compile", "vae"])
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    budget = Budget(args.budget_s)
    config = NAVAConfig.release("nava") if args.config == "release" else NAVAConfig.tiny("nava")
    audio = args.audio_tokens if args.audio_tokens is not None else 4 * args.frames + 4
    setup = Setup(config, device, args.frames, tuple(args.latent_hw), audio, args.text_tokens, args.repeats,
                  args.compile_backend)
    scale = 1.0 if args.config == "release" else 0.02
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    attentions = args.attention or [a for a in auto_order(device) if probe(a, device) is None]
    header = (f"bench/gpu.py {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {name}, torch {torch.__version__}; "
              f"{args.config} backbone (dim {config.dim}, {config.num_layers} blocks), {setup.video_tokens} video + "
              f"{audio} audio tokens, {args.text_tokens} text tokens, precision nava; attention kernels here: "
              f"{', '.join(attentions)}")
    rows: list[dict] = []

    def run(what: str, fn: Callable[[], list[dict]]) -> list[dict]:
        try:
            got = fn()
        except torch.cuda.OutOfMemoryError as e:
            got = [{"phase": "error", "what": what, "error": f"out of memory: {e}"}]
        except Exception as e:  # noqa: BLE001 - one failed phase must not lose the table
            logger.exception("phase %s failed", what)
            got = [{"phase": "error", "what": what, "error": f"{type(e).__name__}: {e}"}]
        rows.extend(got)
        _reset_peak(device)
        return got

    try:
        for i, profile in enumerate(args.profiles):
            kernels = attentions if i == 0 else attentions[:1]
            if budget.allows("profile", f"profile {profile}", scale * (1 + 0.5 * (len(kernels) - 1))):
                run(f"profile {profile}", lambda profile=profile, kernels=kernels: phase_profile(setup, profile, kernels))
        best = min((r for r in rows if r["phase"] == "profile" and r.get("s_per_forward")),
                   key=lambda r: r["s_per_forward"], default=None)
        best_attention = best["attention"] if best else attentions[0]
        if "diffusers" not in args.skip and budget.allows("diffusers", "diffusers ratio", scale):
            nava_fwd = next((r["s_per_forward"] for r in rows if r["phase"] == "profile" and r.get("s_per_forward")
                             and r["profile"] == "resident" and r["attention"] == best_attention), None)
            run("diffusers", lambda: phase_diffusers(setup, nava_fwd, best_attention))
        if "profiler" not in args.skip and budget.allows("profiler", "kernel split", scale):
            run("kernel split", lambda: phase_profiler(setup, best_attention))
        if "compile" not in args.skip and budget.allows("compile", "compile on/off", scale):
            run("compile", lambda: phase_compile(setup, best_attention))
        if "vae" not in args.skip and budget.allows("vae", "VAE decode", scale):
            run("vae", lambda: phase_vae(setup, args.config == "tiny"))
    finally:
        elapsed = time.monotonic() - budget.start
        print(summary(rows, header + f"; wall {elapsed:.0f} s of a {args.budget_s:.0f} s budget", budget.skipped),
              flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"header": header, "rows": rows, "skipped": budget.skipped},
                                                  indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
