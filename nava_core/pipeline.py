"""NAVAPipeline: a render request in, frames and a stereo waveform out, sampled as the release samples.

The order of work mirrors the release (NAVA_SPEC.md section 5) so the released weights behave as they
did for their authors: one seed draws the video noise `[T*h*w, 48]` then the audio noise `[L, 128]`;
each step runs the conditional forward plus the guidance branches that are switched on, combines them
in the release's "c + g*(c - x)" form and advances two flow-UniPC schedulers (video, audio). For
image-to-video the clean first-frame latent is written into latent frame 0 before every forward.

Where the release wastes work the pipeline does not: branches whose scale is 0 or whose condition is
absent are never computed, the negative prompt is encoded once, and branches with the same attention
mask can run as one batched forward.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline

from nava_core.config import NAVAConfig
from nava_core.guidance import Branch, BranchForward, BranchInputs, Pred, combine, plan_branches, run_branches
from nava_core.progress import CancelToken, ProgressCallback, ProgressEvent, StepTimer, null_progress
from nava_core.request import RenderRequest, count_spans, voices_for_spans
from nava_core.scheduler import make_scheduler
from nava_core.speedups import get_speedup
from nava_core.step_cache import StepReuse

logger = logging.getLogger(__name__)

_NEGATIVE_PROMPTS = Path(__file__).parent / "data" / "negative_prompts.json"


def release_negative_prompts() -> dict[str, str]:
    """The release's negative prompts: `video_negative_prompt` (ends with the audio negatives) and `audio_negative_prompt`."""
    data = json.loads(_NEGATIVE_PROMPTS.read_text(encoding="utf-8"))
    return {"video": data["video_negative_prompt"], "audio": data["audio_negative_prompt"]}


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class Conditions:
    """Everything a request conditions the sampler on, computed once before the loop."""

    context: torch.Tensor  # [Lt, 4096] real tokens of the prompt
    negative_context: torch.Tensor  # [Ln, 4096]
    speaker_positions: list[int]
    speaker_embeddings: torch.Tensor | None  # [n, 192]; None when no voice was given
    first_frame: torch.Tensor | None  # [48, 1, h, w] normalised latent for image-to-video
    warnings: list[str] = field(default_factory=list)

    @property
    def has_speakers(self) -> bool:
        return self.speaker_embeddings is not None


@dataclass
class RenderResult:
    frames: np.ndarray | None  # uint8 [F, H, W, 3]; None in audio mode
    audio: np.ndarray  # float32 [2, N] in [-1, 1]
    sample_rate: int
    video_latents: torch.Tensor | None
    audio_latents: torch.Tensor
    timings: dict[str, float]
    forwards: int
    warnings: list[str]
    request: RenderRequest | None = None  # the request as rendered (after the memory profile's changes)


def finalize_audio(wave: np.ndarray) -> np.ndarray:
    """The release's last audio step: clamp to +-0.99, then peak-normalise to 0.95 (silence stays 0)."""
    w = np.clip(np.asarray(wave, dtype=np.float32), -0.99, 0.99)
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    if peak > 0:
        w = w * np.float32(0.95 / peak)
    return w.astype(np.float32, copy=False)



class NAVAPipeline(DiffusionPipeline):
    """Loads a weight set once and renders any number of requests with it.

    Two pipelines can coexist (no module-level state); `batch_branches` chooses between one batched
    forward per step for branches sharing an attention mask (faster, more memory) and one forward per
    branch (less memory). Both give the same result.
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae->audio_vae"

    def __init__(
        self,
        transformer: torch.nn.Module,
        text_encoder: Any,
        vae: Any,
        audio_vae: Any,
        speaker_encoder: Any,
    ) -> None:
        super().__init__()
        self.register_modules(
            transformer=transformer,
            text_encoder=text_encoder,
            vae=vae,
            audio_vae=audio_vae,
            speaker_encoder=speaker_encoder,
        )
        self.batch_branches = True
        self.weights_path: Path | None = None
        self.is_tiny = False
        self._speaker_cache: dict[tuple[str, float, int], torch.Tensor] = {}
        self._negative_cache: dict[str, torch.Tensor] = {}
        self.speed: Any = None  # nava_core.speed.SpeedState once loaded by from_pretrained
        self.branch_runner: Any = None  # nava_core.cfg_parallel.CfgParallel on a CFG-parallel rank
        self.last_step_reuse: Any = None  # the last render's nava_core.step_cache.StepReuse (its savings)
        self._preview_maker: Any = None  # nava_core.preview.PreviewMaker, made on the first preview

    # ---- loading -----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        path: str | os.PathLike = "tiny",
        device: str | torch.device | None = None,
        precision: Literal["nava", "fp32"] = "nava",
        progress: ProgressCallback | None = None,
        memory_profile: str = "auto",
        attention: str = "auto",
        compile: bool | None = None,
        **_: Any,
    ) -> "NAVAPipeline":
        """Load a weight-set folder (release or diffusers layout), or `"tiny"` (built on first use).

        `memory_profile` ("auto", "resident", "t5_offload", "fp8", "group_offload") decides where the
        weights live (nava_core.memory); it changes memory use and speed, never the result. So do
        `attention` ("auto", "sdpa", "cudnn", "flash3", "flash") and `compile` (None: on for CUDA when
        a warm-up passes), see nava_core.speed; what was chosen is in `pipe.speed`.
        """
        from nava_core import memory, speed

        from nava_core.components.audio_vae import AudioVAE
        from nava_core.components.speaker_encoder import SpeakerEncoder
        from nava_core.components.text_encoder import TextEncoder
        from nava_core.components.video_vae import VideoVAE
        from nava_core.weights.layouts import inspect_weights
        from nava_core.weights.tiny import build_tiny_weight_set

        progress = progress or null_progress
        device = torch.device(device) if device is not None else default_device()
        if str(path) == "tiny":
            progress(ProgressEvent("loading", message="building the tiny random-weight set"))
            path = build_tiny_weight_set()
        report = inspect_weights(path)
        if not report.complete:
            raise FileNotFoundError(report.summary())
        progress(ProgressEvent("loading", 0, 5, message="backbone"))
        config = _backbone_config(report.root, report.path("backbone"), precision)
        profile = memory.profile_for_device(memory_profile, device)
        transformer = memory.load_backbone_for_profile(report.path("backbone"), config, device, profile)
        transformer.eval().requires_grad_(False)
        speed_options = speed.SpeedOptions(attention=attention, compile=compile)
        speed.prepare_storage(transformer, speed_options, device)  # before offload hooks: bf16 groups stream
        progress(ProgressEvent("loading", 1, 5, message="text encoder"))
        text_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        if report.layout == "release":
            text_encoder = TextEncoder.from_release(
                report.path("text_encoder"), report.path("tokenizer"), device=device, dtype=text_dtype
            )
        else:
            text_encoder = TextEncoder.from_pretrained(report.root, device=device, dtype=text_dtype)
        progress(ProgressEvent("loading", 2, 5, message="video VAE"))
        if report.layout == "release":
            vae = VideoVAE.from_release(report.path("video_vae"), device=device)
        else:
            vae = VideoVAE.from_pretrained(report.path("video_vae"), device=device)
        progress(ProgressEvent("loading", 3, 5, message="audio VAE"))
        audio_vae = AudioVAE.from_release(report.path("audio_vae"), device=device)
        progress(ProgressEvent("loading", 4, 5, message="speaker encoder"))
        speaker_encoder = SpeakerEncoder.from_checkpoint(report.path("speaker_encoder"), device=device)
        pipe = cls(transformer, text_encoder, vae, audio_vae, speaker_encoder)
        pipe.weights_path = report.root
        pipe.is_tiny = report.is_tiny
        memory.apply_profile(pipe, profile, device=device)
        pipe.speed = speed.apply_speed(transformer, speed_options, device)
        progress(ProgressEvent("loading", 5, 5, message="ready"))
        return pipe

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        """Where computation happens, whichever profile decided where the weights are stored."""
        from nava_core.memory import execution_device

        return execution_device(self)

    def to(self, device: str | torch.device) -> "NAVAPipeline":  # type: ignore[override]
        """Move every component to `device` (e.g. into a ZeroGPU call after loading on the CPU).

        Only for the resident profile: offload hooks and fp8 storage decide placement themselves.
        """
        from nava_core.memory import apply_profile

        device = torch.device(device)
        state = getattr(self, "memory_state", None)
        if state is not None and state.profile.name != "resident":
            raise RuntimeError(f"cannot move a pipeline running the '{state.profile.name}' profile; reload it")
        self.transformer.to(device)
        self.text_encoder.model.to(device)
        for comp in (self.vae, self.speaker_encoder):
            comp.model.to(device)
            comp.device = device
        self.audio_vae.vae.to(device)
        self.audio_vae.vocoder.to(device)
        self.audio_vae.device = device
        self._negative_cache.clear()
        self.memory_state = None
        apply_profile(self, "resident", device=device)
        if self.speed is not None:  # the kernel probed at load time was for the old device: probe again
            from dataclasses import replace

            choice = self.transformer.set_attention_backend("auto", device)
            self.speed = replace(self.speed, attention=choice.name, attention_reason=choice.reason)
        return self

    # ---- conditioning ------------------------------------------------------------------------

    def encode_conditions(self, request: RenderRequest) -> Conditions:
        """Text, negative prompt, speaker embeddings bound to spans in order, first-frame latent."""
        enc = self.text_encoder.encode([request.prompt], truncate=request.truncate_prompt)
        context = enc.context[0]
        positions = list(enc.speaker_positions[0])
        negative = self._negative_context(request)
        warnings: list[str] = []
        if enc.truncated and enc.truncated[0] is not None:
            warnings.append(enc.truncated[0].truncation_warning())
            logger.warning(warnings[-1])
        spans = count_spans(request.prompt)
        wavs = voices_for_spans(request.speaker_wavs, spans)
        extra = len(request.speaker_wavs) - spans
        if wavs and extra > 0 and len(request.speaker_wavs) > 1:
            warnings.append(f"{extra} reference voice(s) beyond the prompt's {spans} span(s) are not used")
        if len(positions) < len(wavs):  # spans cut off by a truncated prompt take their voices with them
            wavs = wavs[: len(positions)]
        embeddings: torch.Tensor | None = None
        if any(wavs):
            rows = [self._speaker_embedding(w) if w else torch.zeros(192) for w in wavs]
            rows += [torch.zeros(192)] * (len(positions) - len(rows))  # a literal marker in the text: null voice
            embeddings = torch.stack(rows).to(self.device, torch.float32)
        first = None
        if request.mode == "image_audio_video":
            from PIL import Image

            with Image.open(request.image) as im:
                first = self.vae.encode_image(im.convert("RGB"), request.resolution, request.precision).to(self.device, torch.float32)
        return Conditions(context, negative, positions, embeddings, first, warnings)

    def _negative_context(self, request: RenderRequest) -> torch.Tensor:
        if request.negative_prompt is not None:
            text = request.negative_prompt
        else:
            negs = release_negative_prompts()
            text = negs["audio"] if request.mode == "audio" else negs["video"]
        if text not in self._negative_cache:
            self._negative_cache[text] = self.text_encoder.encode([text]).context[0]
        return self._negative_cache[text]

    def _speaker_embedding(self, path: str) -> torch.Tensor:
        p = Path(path)
        st = p.stat()
        key = (str(p.resolve()), st.st_mtime, st.st_size)
        if key not in self._speaker_cache:
            self._speaker_cache[key] = self.speaker_encoder.embed_file(p).detach().float().cpu()
        return self._speaker_cache[key]

    # ---- noise -------------------------------------------------------------------------------

    def prepare_noise(self, request: RenderRequest) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Video noise `[48, T, h, w]` (drawn token-major `[T*h*w, 48]`) then audio noise `[L, 128]`.

        With `audio_seed=None` both come from one generator, in that order, as the release draws them.
        """
        device = self.device
        gen = torch.Generator(device=device).manual_seed(request.seed)
        video = None
        if request.has_video:
            h, w = request.resolution.latent_hw
            t = request.latent_frames
            flat = torch.randn((t * h * w, 48), generator=gen, device=device, dtype=torch.float32)
            video = flat.view(t, h, w, 48).permute(3, 0, 1, 2).contiguous()
        if request.audio_seed is not None:
            gen = torch.Generator(device=device).manual_seed(request.audio_seed)
        audio = torch.randn((request.audio_tokens, 128), generator=gen, device=device, dtype=torch.float32)
        return video, audio

    # ---- sampling ----------------------------------------------------------------------------

    def _branch_forward(
        self,
        cond: Conditions,
        video: torch.Tensor | None,
        audio: torch.Tensor,
        t: torch.Tensor,
        first_frame_is_clean: bool,
        counter: list[int],
    ) -> BranchForward:
        """The model call `guidance.run_branches` makes: one forward for a group of branches."""

        def forward(group: Sequence[BranchInputs]) -> list[Pred]:
            n = len(group)
            contexts = [cond.negative_context if b.context == "negative" else cond.context for b in group]
            inject = [b.speakers and cond.has_speakers for b in group]
            speaker_embeddings = speaker_positions = None
            if any(inject):
                empty = torch.zeros(0, 192, device=self.device)
                speaker_embeddings = [cond.speaker_embeddings if i else empty for i in inject]
                speaker_positions = [cond.speaker_positions if i else [] for i in inject]
            counter[0] += 1
            vids, auds = self.transformer(
                video=[video] * n if video is not None else None,
                audio=[audio] * n,
                t=t.expand(n),
                context=contexts,
                speaker_embeddings=speaker_embeddings,
                speaker_positions=speaker_positions,
                masking_modality=group[0].masking_modality,
                first_frame_is_clean=first_frame_is_clean,
            )
            return [
                (vids[i].float() if vids is not None else None, auds[i].float() if auds is not None else None)
                for i in range(n)
            ]

        return forward

    @torch.no_grad()
    def denoise(
        self,
        request: RenderRequest,
        cond: Conditions,
        progress: ProgressCallback = null_progress,
        cancel: CancelToken | None = None,
        preview_every: int = 0,
    ) -> tuple[torch.Tensor | None, torch.Tensor, int]:
        """The sampling loop; returns final video latents, audio latents and the number of forwards.

        With `preview_every=k > 0` every k-th step's event (and the last step's) carries a `Preview` of the
        current clean estimate; previews never change the result.
        """
        if self.transformer.precision != request.precision:
            self.transformer.set_precision(request.precision)
        video, audio = self.prepare_noise(request)
        scales = request.guidance
        branches = plan_branches(scales, has_video=video is not None, has_audio=True, has_speakers=cond.has_speakers)
        sched_v = make_scheduler(request.steps, request.shift) if video is not None else None
        sched_a = make_scheduler(request.steps, request.shift)
        timesteps = sched_a.timesteps
        timer = StepTimer(len(timesteps))
        counter = [0]
        clean = cond.first_frame is not None
        reuse = StepReuse(get_speedup(getattr(request, "speedup", "exact")), len(timesteps))
        self.last_step_reuse = reuse
        progress(ProgressEvent("denoising", 0, len(timesteps)))
        for i, t in enumerate(timesteps):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if clean and video is not None:
                video[:, :1] = cond.first_frame
            tt = t.reshape(1).to(self.device)
            forward = self._branch_forward(cond, video, audio, tt, clean, counter)

            def run(subset: Sequence[Branch], forward: BranchForward = forward, like: Pred = (video, audio)):
                if self.branch_runner is not None:  # CFG-parallel: branch groups on other ranks
                    return self.branch_runner(subset, forward, self.batch_branches, like)
                return run_branches(subset, forward, batched=self.batch_branches)

            # exact unless the request opts into a speed-up (nava_core.speedups)
            v_pred, a_pred = reuse.predict(branches, run, video, audio, lambda p: combine(p, scales))
            shown = None
            if preview_every > 0 and ((i + 1) % preview_every == 0 or i + 1 == len(timesteps)):
                shown = self._preview(request, i, len(timesteps), sched_a.sigmas[i], video, v_pred, audio, a_pred)
            if video is not None:
                video = sched_v.step(v_pred, t, video, return_dict=False)[0]
            audio = sched_a.step(a_pred, t, audio, return_dict=False)[0]
            progress(ProgressEvent("denoising", i + 1, len(timesteps), eta_s=timer.tick(), preview=shown))
        return video, audio, counter[0]

    def _preview(self, request: RenderRequest, i: int, total: int, sigma: torch.Tensor, video: torch.Tensor | None,
                 v_pred: torch.Tensor | None, audio: torch.Tensor, a_pred: torch.Tensor) -> Any:
        """The clean estimate x0 = x - sigma * v of both streams as a cheap `Preview`; None if it fails
        (a preview is a convenience and must never stop a render)."""
        from nava_core.preview import PreviewMaker

        try:
            if self._preview_maker is None:
                self._preview_maker = PreviewMaker()
            s = float(sigma)
            v0 = video - s * v_pred if video is not None and v_pred is not None else None
            return self._preview_maker.make(self, i + 1, total, request.output_seconds, v0, audio - s * a_pred)
        except Exception as e:  # noqa: BLE001
            logger.warning("live preview failed at step %d: %s", i + 1, e)
            return None

    # ---- decoding ----------------------------------------------------------------------------

    @torch.no_grad()
    def decode(
        self, request: RenderRequest, video: torch.Tensor | None, audio: torch.Tensor, progress: ProgressCallback
    ) -> tuple[np.ndarray | None, np.ndarray]:
        from nava_core.components.video_vae import to_uint8_frames

        frames = None
        if video is not None:
            progress(ProgressEvent("decoding_video"))
            decoded = self.vae.decode(video, tiled=request.tiled_vae, precision=request.precision)
            frames = to_uint8_frames(decoded)
        progress(ProgressEvent("decoding_audio"))
        wave = self.audio_vae.decode(audio, sample_rate=request.audio_sample_rate)
        wave_np = finalize_audio(wave.detach().float().cpu().numpy())
        return frames, wave_np

    # ---- entry point -------------------------------------------------------------------------

    def __call__(  # type: ignore[override]
        self,
        request: RenderRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        preview_every: int = 0,
    ) -> RenderResult:
        """Render one request; `preview_every=k` adds a live preview to every k-th denoising event."""
        from nava_core.memory import prepare_render

        progress = progress or null_progress
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if cancel is not None:
            cancel.raise_if_cancelled()
        request = prepare_render(self, request)
        progress(ProgressEvent("encoding"))
        cond = self.encode_conditions(request)
        timings["encode_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        video, audio, forwards = self.denoise(request, cond, progress, cancel, preview_every)
        timings["denoise_s"] = time.perf_counter() - t1
        if self.last_step_reuse is not None and not self.last_step_reuse.speedup.exact:
            timings.update(self.last_step_reuse.stats())
        if cancel is not None:
            cancel.raise_if_cancelled()
        t2 = time.perf_counter()
        frames, wave = self.decode(request, video, audio, progress)
        timings["decode_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        return RenderResult(frames, wave, request.audio_sample_rate, video, audio, timings, forwards, cond.warnings,
                            request)


def _backbone_config(root: Path, checkpoint: Path, precision: str) -> NAVAConfig:
    """The backbone's config: the weight set's `config.json` in our field names when present, else the
    release config with widths and depths read from the checkpoint's tensor shapes (header only)."""
    cfg = root / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and "dim" in data and "num_heads" in data:
            return NAVAConfig.from_dict({**data, "precision": precision})
    shapes = _checkpoint_shapes(checkpoint)
    if not shapes:
        return NAVAConfig.release(precision)  # type: ignore[arg-type]
    dim = shapes["patch_embedding.weight"][0]
    doubles = {k.split(".")[1] for k in shapes if k.startswith("double_blocks.")}
    singles = {k.split(".")[1] for k in shapes if k.startswith("single_blocks.")}
    ffn_key = "single_blocks.0.ffn.0.weight" if singles else "double_blocks.0.ffn.0.weight"
    return NAVAConfig(
        dim=dim,
        ffn_dim=shapes[ffn_key][0],
        num_heads=dim // 128,
        num_double_layers=len(doubles),
        num_single_layers=len(singles),
        precision=precision,  # type: ignore[arg-type]
    )


def _checkpoint_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header (keys without the `backbone.` prefix); {} for other files."""
    from nava_core.weights.layouts import tensor_specs

    return {k.removeprefix("backbone."): shape for k, (_, shape) in tensor_specs(path).items()}
