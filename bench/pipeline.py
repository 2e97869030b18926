"""Where a NAVA render spends its time, and what batching the guidance branches costs and buys (issue 4).

Two questions decide where optimisation effort goes:

1. Is a render dominated by DiT forwards, or by everything around them (text encoding, VAE decoding,
   the MP4 mux)? Measured with forward pre/post hooks on `pipe.transformer` (wall time summed inside
   its forwards) against `render_to_files`'s own encode/denoise/decode/write timings; the MP4 mux is
   re-timed on its own with the same frames and audio.
2. Does `pipe.batch_branches = True` (branches sharing an attention mask in one forward) pay for its
   extra memory? Measured per configuration in a fresh subprocess: median wall time per denoising step
   and peak RSS (`ru_maxrss`) over a baseline subprocess that loads the pipeline and encodes the same
   request but never denoises.

Both run on the tiny weight set and on a mid-size backbone written in the same release layout (the
tiny set with `NAVA.safetensors` + `config.json` replaced), so the real loader path is exercised.
Not a test: no asserts; CPU timings are noisy, compare ratios taken in the same run.

    python bench/pipeline.py [--quick] [--weights TINY_SET_FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the stdlib module torch imports: keep the folder off sys.path
_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

PROMPT = (
    "A bright kitchen at noon. A man on the left says <S>Good morning, the coffee is ready.<E> "
    "A woman on the right answers <S>Thanks, I needed that.<E> Quiet room tone, no music."
)
# Mid-size backbone: release head size (128), ~6x the tiny model's width, still CPU-tractable.
MID_BACKBONE = dict(dim=1024, num_heads=8, num_double_layers=2, num_single_layers=4, ffn_dim=4096)
CHILD_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


@dataclass(frozen=True)
class Scenario:
    """One benchmarked render: which weight set, and the request's size, length and steps."""

    name: str
    weights: str
    width: int
    height: int
    seconds: float
    steps: int
    seed: int = 11


def make_request(s: Scenario):
    """The benchmark's request for a scenario (default guidance: cond, negative, no-align branches)."""
    from nava_core.request import RenderRequest

    return RenderRequest(prompt=PROMPT, width=s.width, height=s.height, seconds=s.seconds, steps=s.steps, seed=s.seed)


# ---- weight sets ---------------------------------------------------------------------------------


def write_mid_weight_set(tiny: Path, dest: Path, seed: int = 0) -> Path:
    """Copy the tiny set and swap in a bigger backbone, so loading goes through `from_pretrained` as usual."""
    from nava_core.config import NAVAConfig
    from nava_core.weights.checkpoint import save_backbone_checkpoint
    from nava_core.weights.layouts import TINY_MARKER
    from nava_core.weights.tiny import init_golden_weights

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(tiny, dest, ignore=shutil.ignore_patterns("NAVA*.safetensors", "config.json", TINY_MARKER))
    config = NAVAConfig(**MID_BACKBONE)
    save_backbone_checkpoint(init_golden_weights(config, seed), dest / "NAVA.safetensors")
    (dest / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    return dest


def prepare_weights(work: Path, tiny_arg: str | None) -> tuple[Path, Path]:
    """The tiny set (built here unless given) and the mid-size set derived from it, both under `work`."""
    from nava_core.weights.tiny import build_tiny_weight_set

    tiny = Path(tiny_arg) if tiny_arg else build_tiny_weight_set(work / "tiny", seed=0)
    return tiny, write_mid_weight_set(tiny, work / "mid")


# ---- measuring -----------------------------------------------------------------------------------


class ForwardClock:
    """Sums the wall time spent inside a module's forwards, via forward pre/post hooks."""

    def __init__(self, module: Any) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._start = 0.0
        self._handles = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, module: Any, args: Any) -> None:
        self._start = time.perf_counter()

    def _post(self, module: Any, args: Any, output: Any) -> None:
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def __enter__(self) -> "ForwardClock":
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


class StepLog:
    """A progress callback that records when each denoising step ends (per-step wall times)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def __call__(self, event: Any) -> None:
        if event.phase == "denoising":
            self.marks.append(time.perf_counter())

    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


class CapturingPipe:
    """Calls the pipeline for `render_to_files` and keeps the result, so the mux can be re-timed alone."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.result: Any = None

    def __call__(self, request: Any, **kw: Any) -> Any:
        self.result = self.pipe(request, **kw)
        return self.result


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(field: str) -> float | None:
    """`VmRSS` (resident now) or `VmHWM` (peak since start or last reset) from /proc, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Return freed heap to the OS, then reset the kernel's peak-RSS mark; False where Linux refuses.

    Without the trim, pages freed by loading/encoding stay resident and hide what denoising reuses.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


def load_pipe(weights: str):
    """A CPU pipeline through the real loader, on one torch thread (2-core machines thrash otherwise)."""
    import torch

    from nava_core.pipeline import NAVAPipeline

    torch.set_num_threads(1)
    return NAVAPipeline.from_pretrained(weights, device="cpu")


def time_mux(result: Any, out_dir: Path, request_json: str) -> float:
    """Wall time of `write_mp4` alone (H.264 + AAC encode and mux) on a render's frames and audio."""
    from nava_core.export import write_mp4

    t0 = time.perf_counter()
    write_mp4(out_dir / "mux-only.mp4", result.frames, result.audio, result.sample_rate, request_json)
    return time.perf_counter() - t0


def profile_render(s: Scenario, out_dir: Path) -> dict:
    """One cold `render_to_files` (the process's first, as a user's first) with DiT forwards timed by hooks."""
    from nava_core.render import render_to_files

    pipe = load_pipe(s.weights)
    request = make_request(s)
    capture = CapturingPipe(pipe)
    with ForwardClock(pipe.transformer) as clock:
        outs = render_to_files(capture, request, out_dir / "render")
    t = outs.timings
    total = t["total_s"] + t["write_s"]
    return {
        "encode_s": t["encode_s"], "denoise_s": t["denoise_s"], "decode_s": t["decode_s"], "write_s": t["write_s"],
        "total_s": total, "dit_s": clock.seconds, "forwards": clock.calls,
        "mux_s": time_mux(capture.result, out_dir, request.to_json()),
        "frames": int(capture.result.frames.shape[0]),
    }


def branch_worker(s: Scenario, mode: str) -> dict:
    """Subprocess body: load, encode, then (unless baseline) denoise with sequential or batched branches.

    The peak is read from VmHWM after resetting it just before denoising (exact for this phase); where
    the reset is refused, `compare_branches` falls back to ru_maxrss over a baseline subprocess.
    """
    pipe = load_pipe(s.weights)
    request = make_request(s)
    cond = pipe.encode_conditions(request)
    if mode == "baseline":
        return {"peak_rss_mb": rss_mb()}
    pipe.batch_branches = mode == "batched"
    reset = reset_peak_rss()
    before = proc_status_mb("VmRSS")
    log = StepLog()
    with ForwardClock(pipe.transformer) as clock:
        t0 = time.perf_counter()
        pipe.denoise(request, cond, progress=log)
        wall = time.perf_counter() - t0
    steps = log.step_times()
    return {
        "step_s": statistics.median(steps[1:] or steps),  # step 1 pays one-off costs (lazy init, allocator growth)
        "steps": len(steps), "denoise_s": wall, "dit_s": clock.seconds, "forwards": clock.calls,
        "peak_rss_mb": rss_mb(), "hwm_reset": reset, "rss_before_mb": before, "hwm_mb": proc_status_mb("VmHWM"),
    }


def run_worker(s: Scenario, mode: str) -> dict:
    """Run `branch_worker` in a fresh interpreter so its memory marks are this configuration's alone."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--scenario", json.dumps(asdict(s))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **CHILD_ENV})
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_branches(s: Scenario) -> dict[str, dict]:
    """Sequential and batched runs of one scenario, each in its own subprocess; `added_mb` is what
    denoising adds to the resident memory of a loaded, encoded pipeline."""
    runs = {mode: run_worker(s, mode) for mode in ("sequential", "batched")}
    if all(r["hwm_reset"] and r["hwm_mb"] is not None for r in runs.values()):
        for r in runs.values():
            r["added_mb"], r["method"] = r["hwm_mb"] - r["rss_before_mb"], "VmHWM reset before denoise"
    else:
        base = run_worker(s, "baseline")["peak_rss_mb"]
        for r in runs.values():
            r["added_mb"], r["method"] = r["peak_rss_mb"] - base, "ru_maxrss over a load+encode subprocess"
    return runs


# ---- reporting -----------------------------------------------------------------------------------


def machine_info() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: {cpu}; {os.cpu_count()} cores ({usable} usable), torch threads 1; "
            f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}); "
            f"python {platform.python_version()}")


def describe(s: Scenario, backbone: str) -> str:
    """The scenario in one line, with its token counts and the guidance branches each step runs."""
    from nava_core.guidance import batch_groups, plan_branches

    req = make_request(s)
    branches = plan_branches(req.guidance, has_video=True, has_audio=True, has_speakers=False)
    groups = " + ".join("[" + ", ".join(b.value for b in g) + "]" for g in batch_groups(branches))
    h, w = req.resolution.latent_hw
    video_tokens = req.latent_frames * (h // 2) * (w // 2)
    return (f"[{s.name}] backbone {backbone}\n  request {s.width}x{s.height}, {s.seconds:g} s ({req.latent_frames} "
            f"latent frames: {video_tokens} video + {req.audio_tokens} audio tokens), {s.steps} steps, precision "
            f"'{req.precision}'; branches per step: {len(branches)} sequential, batched as {groups}")


def report_render(r: dict) -> list[str]:
    other = r["total_s"] - r["dit_s"]
    rows = [
        ("encode (text, negative, conditions)", r["encode_s"]),
        (f"denoise: DiT forwards ({r['forwards']})", r["dit_s"]),
        ("denoise: rest (schedulers, CFG combine, noise)", r["denoise_s"] - r["dit_s"]),
        ("decode (video VAE + audio VAE)", r["decode_s"]),
        ("write (mp4 + wav + srt + sidecar)", r["write_s"]),
        (f"  of which mp4 mux alone, re-timed ({r['frames']} frames)", r["mux_s"]),
    ]
    lines = [f"  {'phase':52s} {'seconds':>9s} {'share':>7s}"]
    lines += [f"  {name:52s} {sec:9.3f} {sec / r['total_s']:7.1%}" for name, sec in rows]
    lines.append(f"  {'total render (render_to_files)':52s} {r['total_s']:9.3f} {1:7.1%}")
    lines.append(f"  DiT share of render: {r['dit_s'] / r['total_s']:.2f}   "
                 f"everything else / DiT: {other / r['dit_s']:.2f}   "
                 f"DiT share of denoise: {r['dit_s'] / r['denoise_s']:.2f}")
    return lines


def report_branches(b: dict[str, dict]) -> list[str]:
    seq, bat = b["sequential"], b["batched"]
    lines = [f"  {'branches':11s} {'forwards':>8s} {'s/step':>8s} {'DiT s/fwd':>9s} {'peak RSS MB':>11s} "
             f"{'added by denoise MB':>19s}"]
    for mode, r in (("sequential", seq), ("batched", bat)):
        lines.append(f"  {mode:11s} {r['forwards']:8d} {r['step_s']:8.3f} {r['dit_s'] / r['forwards']:9.3f} "
                     f"{r['peak_rss_mb']:11.0f} {r['added_mb']:19.0f}")
    mem = f"{bat['added_mb'] / seq['added_mb']:.2f}x" if seq["added_mb"] >= 1 else "n/a (sequential adds < 1 MB)"
    lines.append(f"  batched/sequential time per step: {bat['step_s'] / seq['step_s']:.2f}, "
                 f"peak mem added by denoise: {mem} ({bat['added_mb'] - seq['added_mb']:+.0f} MB; {seq['method']}), "
                 f"process peak RSS: {bat['peak_rss_mb'] / seq['peak_rss_mb']:.2f}x")
    return lines


METHOD = """\
method:
  render split   one cold render_to_files per config (the process's first render, as a user's first);
                 DiT = wall time summed between forward pre/post hooks on pipe.transformer (default
                 batch_branches=True); encode/denoise/decode/write from render_to_files' timings; the
                 mp4 mux (write_mp4) re-timed alone on the same frames and audio.
  branches       fresh subprocess per mode (1 torch thread): load the pipeline, encode the request,
                 denoise once; s/step = median per-step wall time (progress events), step 1 excluded
                 (one-off costs). Memory: freed heap returned to the OS (malloc_trim), the kernel's
                 peak-RSS mark reset (/proc/self/clear_refs = 5) just before denoising; "added by
                 denoise" = VmHWM after - VmRSS before, i.e. the denoising loop's own peak (activations,
                 bf16 weight copies under autocast, allocator slack). If the reset is refused it falls
                 back to ru_maxrss minus that of a subprocess that only loads and encodes.
                 "peak RSS" is the whole process's ru_maxrss (weights and loading included)."""


# ---- main ----------------------------------------------------------------------------------------


def scenarios(tiny: Path, mid: Path, quick: bool) -> list[tuple[Scenario, str]]:
    """Tiny: preview size, 1 s, 4 steps. Mid: 2x the preview size, 1 s, 4 steps. --quick halves steps."""
    from nava_core.config import TINY_PREVIEW_SIZES, NAVAConfig

    size = TINY_PREVIEW_SIZES["landscape"]
    steps = 2 if quick else 4
    t = NAVAConfig.tiny()
    tiny_desc = f"dim {t.dim}, {t.num_heads} heads, {t.num_double_layers}+{t.num_single_layers} layers, ffn {t.ffn_dim}"
    m = MID_BACKBONE
    mid_desc = (f"dim {m['dim']}, {m['num_heads']} heads, {m['num_double_layers']}+{m['num_single_layers']} layers, "
                f"ffn {m['ffn_dim']}")
    return [
        (Scenario("tiny", str(tiny), size.width, size.height, 1.0, steps), tiny_desc),
        (Scenario("mid", str(mid), 2 * size.width, 2 * size.height, 1.0, steps), mid_desc),
    ]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="half the denoising steps")
    p.add_argument("--weights", help="an existing tiny weight-set folder (default: build one in a temp dir)")
    p.add_argument("--worker", choices=["baseline", "sequential", "batched"], help=argparse.SUPPRESS)
    p.add_argument("--scenario", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(branch_worker(Scenario(**json.loads(args.scenario)), args.worker)))
        return
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    print(machine_info())
    with tempfile.TemporaryDirectory(prefix="nava-bench-") as tmp:
        work = Path(tmp)
        tiny, mid = prepare_weights(work, args.weights)
        for s, backbone in scenarios(tiny, mid, args.quick):
            print()
            print(describe(s, backbone))
            print("  -- time in DiT forwards vs everything else --")
            print("\n".join(report_render(profile_render(s, work / f"out-{s.name}"))))
            print("  -- sequential vs batched guidance branches (subprocess each) --")
            print("\n".join(report_branches(compare_branches(s))))
    print()
    print(METHOD)
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
