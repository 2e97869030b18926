"""The one seam between the studio and the engine: every call into nava_core goes through here.

Nothing else in `app/` imports engine internals or touches tensors. The engine lands in parallel with
the studio, so each entry point imports its engine module lazily and turns an absent module into an
`EngineUnavailable` message instead of a crash: the studio always starts, and the Model tab says what
is missing.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nava_core import profiles
from nava_core.config import TINY_PREVIEW_SIZES, nearest_bucket
from nava_core.config import valid_gpu_counts as _gpu_counts
from nava_core.progress import CancelToken, ProgressEvent
from nava_core.request import RenderRequest

log = logging.getLogger(__name__)

# The one profile table (nava_core.profiles, torch-free: the page is served before any torch import).
# "auto" picks from the detected GPU; the first studio's names are still accepted (`--memory-profile low`).
MEMORY_PROFILES: tuple[str, ...] = profiles.CHOICES
PROFILE_ALIASES: tuple[str, ...] = tuple(profiles.ALIASES)
canonical_profile = profiles.canonical_profile  # 'low' -> 'fp8'; unknown names refused with the valid list
PRECISIONS: tuple[str, ...] = ("nava", "fp32")
RELEASE_REPO = "ernie-research/NAVA"


class EngineUnavailable(RuntimeError):
    """An engine module this action needs is not installed in this build."""


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise EngineUnavailable(
            f"This build has no {name} yet ({e}); the studio runs, but this action needs the engine. "
            "Update NAVA Studio (git pull) and restart."
        ) from e


def has_module(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


# ---- weights -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightStatus:
    """What the Model tab shows about one weights folder."""

    folder: str
    complete: bool
    rows: list[list[str]] = field(default_factory=list)  # component, status, path, size
    missing: list[str] = field(default_factory=list)
    summary: str = ""
    is_tiny: bool = False
    missing_components: tuple[str, ...] = ()


def weight_status(folder: str | Path) -> WeightStatus:
    """Inspect a weights folder (present / missing files) without loading anything."""
    folder = Path(folder).expanduser()
    try:
        sets = _module("nava_core.weights.layouts")
    except EngineUnavailable as e:
        return WeightStatus(str(folder), False, [], ["(weight inspection is not available)"], str(e))
    try:
        report = sets.inspect_weights(folder)
    except Exception as e:  # noqa: BLE001 - an unreadable folder is reported, not raised
        return WeightStatus(str(folder), False, [], [f"cannot inspect {folder}: {e}"], f"cannot inspect {folder}: {e}")
    missing = [f"{m.spec.description} ({m.spec.path})" for m in report.missing]
    return WeightStatus(str(folder), bool(report.complete), report.to_rows(), missing, report.summary(),
                        bool(getattr(report, "is_tiny", False)), tuple(m.spec.component for m in report.missing))


def download_size_text() -> str:
    """'about 40 GB (about 46 GB with the fp8 backbone)', from the release layout's approximate sizes."""
    try:
        sets = _module("nava_core.weights.layouts")
    except EngineUnavailable:
        return "tens of GB"
    files = sets.RELEASE_LAYOUT.files
    default = sum(f.approx_bytes for f in files)  # download_weights' default: bf16/fp32 backbone, no fp8 file
    backbone = sets.RELEASE_LAYOUT.file_for("backbone").approx_bytes
    fp8 = backbone / 4  # the fp8 file stores ~1 byte per parameter where the master file stores 4
    return f"about {default / 1e9:.0f} GB (about {(default + fp8) / 1e9:.0f} GB with the optional fp8 backbone)"


def download_speaker_encoder(progress: Callable[[str, float], None] | None = None) -> Path:
    """Fetch the ReDimNet checkpoint into the torch.hub cache, where every weights folder finds it."""
    download = _module("nava_core.weights.download")
    layouts = _module("nava_core.weights.layouts")
    return download.download_speaker_encoder(layouts.torch_hub_checkpoint_path(), progress)


def hub_snapshot_folder() -> Path | None:
    """The release's snapshot in the local Hugging Face cache (a Space's `preload_from_hub`), if any."""
    try:
        snap = _module("nava_core.weights.download").hub_snapshot()
    except Exception as e:  # noqa: BLE001 - no snapshot is the common case
        log.debug("no Hub snapshot: %s", e)
        return None
    return Path(snap) if snap else None


def download_weights(folder: str | Path, progress: Callable[[str, float], None] | None = None) -> WeightStatus:
    """Download the release weights into `folder` (resumable; huggingface_hub underneath).

    `progress(message, fraction)`; raises the engine's HubUnreachableError with a message that says
    what to do when the Hub cannot be reached.
    """
    _module("nava_core.weights.download").download_weights(Path(folder).expanduser(), progress=progress)
    return weight_status(folder)


@dataclass(frozen=True)
class WeightChoice:
    """Which weights the studio renders with, and why (shown in the banner and the Model tab)."""

    kind: str  # "release" | "tiny"
    folder: str  # "tiny" or a path
    reason: str
    suggested: str = ""  # the folder the Model tab should offer (e.g. a Hub snapshot lacking one file)
    needs_speaker_encoder: bool = False  # `suggested` lacks only the ReDimNet checkpoint

    @property
    def is_tiny(self) -> bool:
        return self.kind == "tiny"


def choose_weights(arg: str | None, default_folder: Path,
                   hub_lookup: Callable[[], Path | None] = hub_snapshot_folder) -> WeightChoice:
    """`--weights tiny` -> tiny; a complete folder -> release; anything missing -> tiny with the reason.

    Without `--weights`: the user's folder if complete, else the release's Hub snapshot (a Space's
    preload) if complete; a snapshot that lacks only the ReDimNet checkpoint is remembered so the
    Model tab can offer to fetch it.
    """
    if arg == "tiny":
        return WeightChoice("tiny", "tiny", "started with --weights tiny")
    folder = Path(arg).expanduser() if arg else default_folder
    status = weight_status(folder)
    if status.complete:
        return WeightChoice("release", str(folder), f"release weights in {folder}")
    what = f"missing: {', '.join(status.missing[:4])}" if status.missing else "the folder is empty or absent"
    reason = f"no complete NAVA weights in {folder} ({what})"
    if arg:
        return WeightChoice("tiny", "tiny", reason)
    snap = hub_lookup()
    if snap is None:
        return WeightChoice("tiny", "tiny", reason)
    snap_status = weight_status(snap)
    if snap_status.complete:
        return WeightChoice("release", str(snap), f"release weights from the Hugging Face cache ({snap})")
    if snap_status.missing_components == ("speaker_encoder",):
        return WeightChoice("tiny", "tiny", f"the Hub snapshot at {snap} lacks only the ReDimNet speaker encoder "
                            "(not part of the Hub repo): press *Download speaker encoder* on the Model tab",
                            suggested=str(snap), needs_speaker_encoder=True)
    return WeightChoice("tiny", "tiny", f"{reason}; the Hub snapshot at {snap} is incomplete too", suggested=str(snap))


def tiny_banner(choice: WeightChoice) -> str:
    """The banner every page shows while renders come from random weights."""
    if not choice.is_tiny:
        return ""
    return (
        "**Preview engine: outputs are from random (tiny) weights, not NAVA.** They only show that the "
        "studio works end to end. Renders use small preview frame sizes "
        f"({', '.join(r.label for r in TINY_PREVIEW_SIZES.values())}) so they take seconds on a CPU. "
        f"Why: {choice.reason}. To get the real model, open the **Model** tab and press *Download weights*, "
        f"or start with `python app.py --weights /path/to/NAVA` (weights: huggingface.co/{RELEASE_REPO})."
    )


# ---- hardware ------------------------------------------------------------------------------------


def detect_gpus(use_engine: bool = False) -> list[str]:
    """GPU names and memory as text, from nvidia-smi (cheap: no torch import, so startup stays fast);
    with `use_engine` the engine's memory module is asked first (imports torch: seconds)."""
    if use_engine:
        try:
            return [str(g) for g in importlib.import_module("nava_core.estimate").detect_gpus()]
        except ImportError:
            pass
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def valid_gpu_counts(available: int | None = None) -> list[int]:
    """GPU counts a render may use: divisors of the head count up to the GPUs present (nvidia-smi, no torch)."""
    return _gpu_counts(len(detect_gpus()) if available is None else available)


def memory_estimate(request: RenderRequest, profile: str | None = None, gpus: int | None = None) -> str:
    """Peak VRAM, s/step and total time from `nava_core.estimate`, labelled as an estimate; '' when the
    request cannot be estimated (e.g. a GPU count that does not divide the heads)."""
    from nava_core.estimate import duration_text, estimate

    try:
        est = estimate(request, profile=profile, gpus=gpus)
    except ValueError as e:  # an estimate is advisory: the render itself reports what is wrong
        log.debug("no estimate: %s", e)
        return ""
    total_text = f"~{duration_text(est.total_seconds)} of denoising in total"
    return (f"**Estimate** (computed, not measured): peak VRAM ~{est.peak_vram_bytes / 1e9:.0f} GB per GPU, "
            f"~{est.seconds_per_step:.2g} s/step, {total_text} "
            f"({est.profile} profile, {est.gpus}x {est.gpu_name}).")


# ---- voices --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceInfo:
    duration_s: float
    sample_rate: int
    warnings: tuple[str, ...] = ()


class VoiceError(ValueError):
    """A voice file that cannot be used; the message says why and what to do."""


def probe_voice(path: str | Path) -> VoiceInfo:
    """Decode a voice upload (any format) the way the engine will, to catch bad files at upload time."""
    try:
        audio_io = importlib.import_module("nava_core.components.audio_io")
    except ImportError:
        audio_io = None
    if audio_io is not None:
        try:
            loaded = audio_io.load_audio(str(path), sample_rate=16000, mono=True, max_seconds=30.0)
        except Exception as e:  # noqa: BLE001 - AudioInputError and decoder errors alike
            raise VoiceError(f"{Path(path).name} cannot be used as a voice: {e}") from e
        return VoiceInfo(float(loaded.duration_s), int(loaded.sample_rate), tuple(getattr(loaded, "warnings", ()) or ()))
    from app.media import decode_audio  # fallback until the engine's audio_io lands

    try:
        samples, sr = decode_audio(path)
    except Exception as e:  # noqa: BLE001
        raise VoiceError(f"{Path(path).name} cannot be used as a voice: it is not a readable audio file ({e})") from e
    duration = samples.shape[-1] / sr if sr else 0.0
    if duration < 1.0:
        raise VoiceError(f"{Path(path).name} cannot be used as a voice: it is {duration:.2f} s long; use 3-10 s of speech")
    if float(abs(samples).max(initial=0.0)) < 1e-4:
        raise VoiceError(f"{Path(path).name} cannot be used as a voice: it is silent")
    warnings = ("longer than 30 s: only the first 30 s are used",) if duration > 30 else ()
    return VoiceInfo(duration, sr, warnings)


# ---- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderFiles:
    mp4: str | None
    wav: str | None
    srt: str | None
    request_json: str
    timings: dict[str, float]


def adapt_for_engine(request: RenderRequest, choice: WeightChoice) -> RenderRequest:
    """With the tiny engine, render at the preview size of the same aspect family (seconds on a CPU)."""
    if not choice.is_tiny or request.mode == "audio":
        return request
    if any((r.width, r.height) == (request.width, request.height) for r in TINY_PREVIEW_SIZES.values()):
        return request
    bucket = nearest_bucket(request.width, request.height)
    size = TINY_PREVIEW_SIZES.get(bucket.name, TINY_PREVIEW_SIZES["landscape"])
    return request.replace(width=size.width, height=size.height)


class Engine:
    """A lazily loaded NAVAPipeline plus `render_to_files`; one load shared by every render."""

    def __init__(self, choice: WeightChoice, memory_profile: str = "auto", precision: str | None = None,
                 gpus: int = 1, gpu_lock: threading.RLock | None = None) -> None:
        self.choice = choice
        canonical_profile(memory_profile)  # an unknown name is refused here, with the valid ones
        self.memory_profile = memory_profile
        self.precision = precision
        self.gpus = gpus
        self._pipe: Any = None
        self._lock = threading.Lock()
        # held for a whole render; shared with the Batch tab through StudioService.gpu_lock
        self.gpu_lock = gpu_lock if gpu_lock is not None else threading.RLock()
        # On a ZeroGPU Space the GPU exists only inside spaces.GPU calls; elsewhere this is the identity.
        from app.zerogpu import gpu_duration, wrap_for_zerogpu
        self.render = wrap_for_zerogpu(self.render, gpu_duration)

    @property
    def label(self) -> str:
        return "tiny (random weights)" if self.choice.is_tiny else f"release: {self.choice.folder}"

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    def available(self) -> bool:
        return has_module("nava_core.pipeline") and has_module("nava_core.render")

    def pipeline(self, progress: Callable[[ProgressEvent], None] | None = None) -> Any:
        with self._lock:
            if self._pipe is None:
                pipeline = _module("nava_core.pipeline")
                if progress:
                    progress(ProgressEvent("loading", message=self.label))
                t0 = time.perf_counter()
                kwargs: dict[str, Any] = {"memory_profile": self.memory_profile, "progress": progress}
                if self.precision:
                    kwargs["precision"] = self.precision
                from app.zerogpu import on_zerogpu

                if self.gpus > 1:  # a Ulysses worker group: callable like the pipeline, one job at a time
                    workers = _module("nava_core.workers")
                    group = workers.WorkerGroup(workers.GroupConfig(
                        weights=str(self.choice.folder), world_size=self.gpus, precision=self.precision or "nava",
                        memory_profile=canonical_profile(self.memory_profile)))
                    group.start(wait=True)
                    self._pipe = group
                else:
                    if on_zerogpu():  # load on the CPU; the wrapped render moves the weights to the GPU
                        kwargs["device"] = "cpu"
                    self._pipe = pipeline.NAVAPipeline.from_pretrained(self.choice.folder, **kwargs)
                log.info("engine loaded (%s) in %.1f s", self.label, time.perf_counter() - t0)
            return self._pipe

    def unload(self) -> None:
        with self._lock:
            if self._pipe is not None and hasattr(self._pipe, "close"):
                self._pipe.close()  # a worker group's processes
            self._pipe = None

    def render(self, request: RenderRequest, out_dir: Path, progress: Callable[[ProgressEvent], None] | None = None,
               cancel: CancelToken | None = None) -> RenderFiles:
        """Render one request into `out_dir` (a fresh folder); raises RenderCancelled on cancel.

        Holds `gpu_lock` for the whole render, so nothing else uses the GPU meanwhile.
        """
        with self.gpu_lock:
            return self._render_locked(request, out_dir, progress, cancel)

    def _render_locked(self, request: RenderRequest, out_dir: Path, progress: Callable[[ProgressEvent], None] | None,
                       cancel: CancelToken | None) -> RenderFiles:
        render = _module("nava_core.render")
        t0 = time.perf_counter()
        pipe = self.pipeline(progress)
        _onto_gpu(pipe)
        t_load = time.perf_counter() - t0
        if cancel is not None:
            cancel.raise_if_cancelled()
        outs = render.render_to_files(pipe, request, out_dir, progress=progress, cancel=cancel)
        sidecar = getattr(outs, "sidecar", None)
        req_path = Path(sidecar) if sidecar else Path(out_dir) / "request.json"
        if not req_path.exists():
            req_path.write_text(request.to_json(), encoding="utf-8")
        timings = {"load_s": round(t_load, 3), "render_s": round(time.perf_counter() - t0 - t_load, 3)}
        extra = getattr(outs, "timings", None)
        if isinstance(extra, dict):
            timings.update({k: float(v) for k, v in extra.items() if isinstance(v, (int, float))})
        return RenderFiles(
            mp4=_opt_path(getattr(outs, "mp4", None)), wav=_opt_path(getattr(outs, "wav", None)),
            srt=_opt_path(getattr(outs, "srt", None)), request_json=str(req_path), timings=timings,
        )


def _onto_gpu(pipe: Any) -> None:
    """On a Space the weights are loaded on the CPU at start; inside the (ZeroGPU) render call the GPU
    exists, so move them there. A no-op without CUDA, when already there, or before
    `NAVAPipeline.to` exists."""
    if not hasattr(pipe, "to"):
        return
    import torch  # only reached inside a render, long after the page is served

    if not torch.cuda.is_available():
        return
    device = getattr(pipe, "device", None)
    if device is not None and str(device).startswith("cuda"):
        return
    log.info("moving the pipeline to cuda")
    pipe.to("cuda")


def _opt_path(p: Any) -> str | None:
    return str(p) if p else None
