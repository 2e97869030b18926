"""The one seam between the studio and the engine: every call into nava_core goes through here.

Nothing else in `app/` imports engine internals or touches tensors. Heavy engine modules (torch,
diffusers) are imported inside the calls that need them, so the page is served before any of them.
"""

from __future__ import annotations

import logging
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
    from nava_core.weights.layouts import inspect_weights

    folder = Path(folder).expanduser()
    try:
        report = inspect_weights(folder)
    except Exception as e:  # noqa: BLE001 - an unreadable folder is reported, not raised
        return WeightStatus(str(folder), False, [], [f"cannot inspect {folder}: {e}"], f"cannot inspect {folder}: {e}")
    missing = [f"{m.spec.description} ({m.spec.path})" for m in report.missing]
    return WeightStatus(str(folder), bool(report.complete), report.to_rows(), missing, report.summary(),
                        bool(getattr(report, "is_tiny", False)), tuple(m.spec.component for m in report.missing))


def download_size_text() -> str:
    """'about 40 GB (about 46 GB with the fp8 backbone)', from the release layout's approximate sizes."""
    from nava_core.weights.layouts import RELEASE_LAYOUT

    default = sum(f.approx_bytes for f in RELEASE_LAYOUT.files)  # download default: no fp8 file
    backbone = RELEASE_LAYOUT.file_for("backbone").approx_bytes
    fp8 = backbone / 4  # the fp8 file stores ~1 byte per parameter where the master file stores 4
    return f"about {default / 1e9:.0f} GB (about {(default + fp8) / 1e9:.0f} GB with the optional fp8 backbone)"


def download_speaker_encoder(progress: Callable[[str, float], None] | None = None) -> Path:
    """Fetch the ReDimNet checkpoint into the torch.hub cache, where every weights folder finds it."""
    from nava_core.weights.download import download_speaker_encoder
    from nava_core.weights.layouts import torch_hub_checkpoint_path

    return download_speaker_encoder(torch_hub_checkpoint_path(), progress)


def hub_snapshot_folder() -> Path | None:
    """The release's snapshot in the local Hugging Face cache (a Space's `preload_from_hub`), if any."""
    from nava_core.weights.download import hub_snapshot

    return hub_snapshot()


def download_weights(folder: str | Path, progress: Callable[[str, float], None] | None = None) -> WeightStatus:
    """Download the release weights into `folder` (resumable; huggingface_hub underneath).

    `progress(message, fraction)`; raises the engine's HubUnreachableError with a message that says
    what to do when the Hub cannot be reached.
    """
    from nava_core.weights.download import download_weights as fetch

    fetch(Path(folder).expanduser(), progress=progress)
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


def detect_gpus() -> list[str]:
    """GPU names and memory as text (`nava_core.estimate.detect_gpus`: nvidia-smi, no torch import)."""
    from nava_core.estimate import detect_gpus as gpus

    return [str(g) for g in gpus()]


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
    from nava_core.components.audio_io import load_audio

    try:
        loaded = load_audio(str(path), sample_rate=16000, mono=True, max_seconds=30.0)
    except Exception as e:  # noqa: BLE001 - AudioInputError and decoder errors alike
        raise VoiceError(f"{Path(path).name} cannot be used as a voice: {e}") from e
    return VoiceInfo(float(loaded.duration_s), int(loaded.sample_rate), tuple(loaded.warnings))


def voice_preview_wav(src: str | Path, dst: str | Path) -> Path:
    """A 16-bit WAV copy of any upload at its own rate, so every browser can play the voice back: the
    first 30 s (what the engine uses), decoded by the engine's one audio decoder (`audio_io`)."""
    import numpy as np
    import soundfile as sf

    from nava_core.components.audio_io import load_audio, probe_audio

    audio = load_audio(src, sample_rate=probe_audio(src).sample_rate, mono=False, max_seconds=30.0)
    dst = Path(dst)
    sf.write(str(dst), np.clip(audio.samples.T, -1, 1), audio.sample_rate, subtype="PCM_16")
    return dst



# ---- rendering -----------------------------------------------------------------------------------


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
        # live preview every k denoising steps (nava_core.preview); 0 = off. A studio-wide switch: the
        # Studio tab's "Live preview" box and `--no-live-preview` set it.
        from nava_core.preview import DEFAULT_PREVIEW_EVERY

        self.preview_every = DEFAULT_PREVIEW_EVERY
        self._pipe: Any = None
        self._lock = threading.Lock()
        # held for a whole render; shared with the Batch tab through StudioService.gpu_lock
        self.gpu_lock = gpu_lock if gpu_lock is not None else threading.RLock()
        # called with gpu_lock held, before each render (e.g. a local rewrite LM leaving the GPU)
        self.before_render: list[Callable[[], None]] = []
        # On a ZeroGPU Space the GPU exists only inside spaces.GPU calls; elsewhere this is the identity.
        from app.zerogpu import gpu_duration, wrap_for_zerogpu
        self.render = wrap_for_zerogpu(self.render, gpu_duration)

    @property
    def label(self) -> str:
        return "tiny (random weights)" if self.choice.is_tiny else f"release: {self.choice.folder}"

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    def pipeline(self, progress: Callable[[ProgressEvent], None] | None = None) -> Any:
        with self._lock:
            if self._pipe is None:
                if progress:
                    progress(ProgressEvent("loading", message=self.label))
                t0 = time.perf_counter()
                kwargs: dict[str, Any] = {"memory_profile": self.memory_profile, "progress": progress}
                if self.precision:
                    kwargs["precision"] = self.precision
                from app.zerogpu import on_zerogpu

                if self.gpus > 1:  # a Ulysses worker group: callable like the pipeline, one job at a time
                    from nava_core.workers import GroupConfig, WorkerGroup

                    group = WorkerGroup(GroupConfig(
                        weights=str(self.choice.folder), world_size=self.gpus, precision=self.precision or "nava",
                        memory_profile=canonical_profile(self.memory_profile)))
                    group.start(wait=True)
                    self._pipe = group
                else:
                    if on_zerogpu():  # load on the CPU; the wrapped render moves the weights to the GPU
                        kwargs["device"] = "cpu"
                    from nava_core.pipeline import NAVAPipeline

                    self._pipe = NAVAPipeline.from_pretrained(self.choice.folder, **kwargs)
                log.info("engine loaded (%s) in %.1f s", self.label, time.perf_counter() - t0)
            return self._pipe

    def unload(self) -> None:
        with self._lock:
            if self._pipe is not None and hasattr(self._pipe, "close"):
                self._pipe.close()  # a worker group's processes
            self._pipe = None

    def finalize(self, request: RenderRequest) -> RenderRequest:
        """The request exactly as this engine will render it, decided once before it is stored: the
        preview size on tiny weights, the memory profile resolved to the one that will run (and the VAE
        tiling it implies), the GPU count. The sidecar, the MP4 metadata and History carry this request.
        """
        request = adapt_for_engine(request, self.choice)
        state = getattr(self._pipe, "memory_state", None)
        if state is not None:
            profile = state.profile.name
        else:
            import torch  # resolving 'auto' asks torch for the GPU's memory (called at submit, not startup)

            from app.zerogpu import on_zerogpu
            from nava_core.memory import profile_for_device

            device = "cuda" if torch.cuda.is_available() and not on_zerogpu() else "cpu"
            profile = profile_for_device(self.memory_profile, device)
        tiled = request.tiled_vae or profiles.MEMORY_PROFILES[profile].vae_tiling
        return request.replace(memory_profile=profile, gpus=self.gpus, tiled_vae=tiled)

    def render(self, request: RenderRequest, out_dir: Path, progress: Callable[[ProgressEvent], None] | None = None,
               cancel: CancelToken | None = None) -> Any:
        """Render one (finalised) request into `out_dir`; returns its `RenderOutputs` with a thumbnail.

        Every job of the studio renders through here: it holds `gpu_lock` for the whole render (the
        one place the lock is taken) and is the function the ZeroGPU wrapper decorates. Raises
        RenderCancelled on cancel.
        """
        from nava_core.render import render_to_files

        from app.media import audio_picture, video_thumbnail

        with self.gpu_lock:
            for hook in self.before_render:
                hook()
            t0 = time.perf_counter()
            pipe = self.pipeline(progress)
            _onto_gpu(pipe)
            t_load = time.perf_counter() - t0
            if cancel is not None:
                cancel.raise_if_cancelled()
            preview = self.preview_every if self.gpus == 1 else 0  # a worker group sends no previews
            outs = render_to_files(pipe, request, out_dir, progress=progress, cancel=cancel, preview_every=preview)
        thumb = (video_thumbnail(outs.mp4, Path(out_dir) / "thumbnail.png") if outs.mp4
                 else audio_picture(outs.wav, Path(out_dir) / "waveform.png"))
        timings = {**outs.timings, "load_s": round(t_load, 3)}
        return outs.replace(thumbnail=Path(thumb) if thumb else None, timings=timings)


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


def guidance_stream_form(*args: Any, **kwargs: Any) -> str:
    """Which of the release's two combine forms a stream uses (`nava_core.guidance.stream_form`), for the
    builder's note; through here so the studio reaches the engine by one door."""
    from nava_core.guidance import stream_form

    return stream_form(*args, **kwargs)


def read_embedded_request(path: str | Path) -> str | None:
    """The request JSON a studio-made MP4/WAV/FLAC (or its sidecar) carries (`nava_core.export.read_request`),
    for 'Drop a clip made here'; through here so the studio reaches the engine by one door."""
    from nava_core.export import read_request

    return read_request(path)
