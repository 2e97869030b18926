"""Memory profiles (where the weights live and in what dtype) and the estimates shown before a render.

Why profiles and not flags: the release needs 80 GB per GPU in bf16; creators have 16-24 GB cards.
Each profile is one coherent choice the studio can show, pick from the detected GPU, and explain:

- `resident`      everything on the GPU (>= 80 GB).
- `t5_offload`    the umT5 encoder lives on the CPU and visits the GPU only to encode (~48 GB at 720p).
- `fp8`           backbone block matrices stored as float8_e4m3fn, computed in bf16; T5 offload; VAE
                  tiling (~18 GB).
- `group_offload` backbone blocks streamed from CPU memory one group at a time (diffusers group
                  offloading, CUDA streams when present); T5 offload; VAE tiling (small cards).

Offload never changes a result, only where weights are: every hook onloads to the pipeline's own
device (so on a CPU-only machine the hooks are attached and exercised, with CPU as both ends).
The mechanisms are diffusers' `apply_group_offloading` and accelerate's `cpu_offload_with_hook`; fp8 is
the weight-only wrapper in `nava_core.fp8`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import torch

from nava_core.config import MEMORY_PROFILE_ALIASES, MEMORY_PROFILE_NAMES, NAVAConfig, token_counts
from nava_core.guidance import plan_branches
from nava_core.request import RenderRequest

logger = logging.getLogger(__name__)

GB = 1e9
GIB = 1024**3


class MemoryProfileError(ValueError):
    """A profile that cannot be applied here (unknown name, missing CUDA/bitsandbytes, conflicting state)."""


# ---- profiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryProfile:
    """Where each component lives during a render and how the backbone is stored.

    `min_gpu_bytes` is the smallest card the profile is chosen for automatically. `reference_*` are the
    release's measurements for the equivalent setting (NAVA_SPEC.md 8: 8xH100, 704x1280, 37 latent
    frames, per GPU), used to calibrate `estimate`; None where the release published none.
    """

    name: str
    description: str
    min_gpu_bytes: int
    fp8_backbone: bool = False
    offload_text_encoder: bool = False
    group_offload_backbone: bool = False
    vae_tiling: bool = False
    reference_peak_bytes: float | None = None
    reference_s_per_step: float | None = None


MEMORY_PROFILES: Mapping[str, MemoryProfile] = MappingProxyType({
    "resident": MemoryProfile(
        "resident", "everything resident on the GPU (fastest; 80 GB cards)", int(76 * GB),
        reference_peak_bytes=80 * GB, reference_s_per_step=1.0),
    "t5_offload": MemoryProfile(
        "t5_offload", "text encoder kept on the CPU, on the GPU only while encoding (~48 GB at 720p)", int(50 * GB),
        offload_text_encoder=True, reference_peak_bytes=48 * GB, reference_s_per_step=1.0),
    "fp8": MemoryProfile(
        "fp8", "fp8 backbone storage (bf16 compute) + text-encoder offload + tiled VAE decode (~18 GB)",
        int(20 * GB), fp8_backbone=True, offload_text_encoder=True, vae_tiling=True,
        reference_peak_bytes=18 * GB, reference_s_per_step=1.1),
    "group_offload": MemoryProfile(
        "group_offload", "backbone blocks streamed from CPU memory + text-encoder offload + tiled VAE "
        "(small cards; ~3.5x slower)", 0, offload_text_encoder=True, group_offload_backbone=True,
        vae_tiling=True, reference_s_per_step=3.5),
})
PROFILE_NAMES: tuple[str, ...] = MEMORY_PROFILE_NAMES
if tuple(MEMORY_PROFILES) != PROFILE_NAMES:
    raise RuntimeError("nava_core.config.MEMORY_PROFILE_NAMES and the memory profile registry disagree")
# Aliases the studio's first UI used ("high/balanced/low").
ALIASES: Mapping[str, str] = MappingProxyType(MEMORY_PROFILE_ALIASES)


def resolve_profile_name(name: str, gpu_bytes: int | None = None) -> str:
    """'auto' -> choose_profile(gpu_bytes); aliases -> canonical names; unknown names refused."""
    key = (name or "auto").strip().lower()
    if key == "auto":
        return choose_profile(gpu_bytes)
    key = ALIASES.get(key, key)
    if key not in MEMORY_PROFILES:
        raise MemoryProfileError(
            f"unknown memory profile {name!r}; choose one of auto, {', '.join(PROFILE_NAMES)}")
    return key


def choose_profile(gpu_bytes: int | None) -> str:
    """The fastest profile whose footprint fits a GPU of `gpu_bytes` (None: no GPU -> 'resident' on CPU)."""
    if gpu_bytes is None:
        return "resident"
    for profile in MEMORY_PROFILES.values():  # ordered fastest first
        if gpu_bytes >= profile.min_gpu_bytes:
            return profile.name
    return "group_offload"


# ---- GPUs ----------------------------------------------------------------------------------------

# Dense bf16 tensor-core peaks (FLOP/s) by name fragment, most specific first; used for estimates and MFU.
BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4e12), ("H100 PCIe", 756.0e12), ("H100", 989.4e12), ("H800", 989.4e12), ("GH200", 989.4e12),
    ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362.1e12), ("L40", 181e12),
    ("RTX 6000 Ada", 364.2e12), ("A6000", 154.8e12), ("4090", 165.2e12), ("4080", 97.5e12),
    ("3090", 71e12), ("L4", 121e12), ("A10", 125e12), ("5090", 209.5e12),
)
REFERENCE_PEAK_FLOPS = 989.4e12  # H100 SXM, the release's measurement machine


def bf16_peak_flops(name: str) -> float | None:
    for fragment, peak in BF16_PEAK_FLOPS:
        if fragment.lower() in name.lower():
            return peak
    return None


@dataclass(frozen=True)
class GPUInfo:
    index: int
    name: str
    total_bytes: int
    bf16_peak_flops: float | None

    def __str__(self) -> str:
        return f"cuda:{self.index} {self.name}, {self.total_bytes / GIB:.1f} GiB"


def detect_gpus() -> list[GPUInfo]:
    """CUDA GPUs visible to this process (empty on a CPU-only machine)."""
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(GPUInfo(i, props.name, int(props.total_memory), bf16_peak_flops(props.name)))
    return out


# ---- applying a profile to a pipeline ------------------------------------------------------------


@dataclass(frozen=True)
class AppliedProfile:
    """What `apply_profile` did to a pipeline (kept on `pipe.memory_state`)."""

    profile: MemoryProfile
    execution_device: torch.device
    text_encoder_bits: int | None = None


class OffloadedTextEncoder:
    """The text encoder with accelerate's cpu_offload_with_hook: onloaded on its first forward, sent
    back to the CPU as soon as `encode` returns (so it never shares the GPU with the denoising loop)."""

    def __init__(self, inner: Any, execution_device: torch.device) -> None:
        from accelerate import cpu_offload_with_hook

        self.inner = inner
        self.execution_device = execution_device
        inner.model, self.hook = cpu_offload_with_hook(inner.model, execution_device=execution_device)

    def encode(self, prompts: list[str]):
        try:
            return self.inner.encode(prompts)
        finally:
            self.hook.offload()

    def __getattr__(self, name: str) -> Any:  # tokenize, prepare_prompt, max_length, ... unchanged
        if name == "inner":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def _unwrap_text_encoder(te: Any) -> Any:
    return te.inner if isinstance(te, OffloadedTextEncoder) else te


def quantize_text_encoder(text_encoder: Any, bits: int, device: torch.device) -> None:
    """bitsandbytes 8-bit (LLM.int8) or 4-bit (nf4) Linear layers for the umT5 encoder, in place.

    CUDA only: bitsandbytes has no CPU kernels in this project's builds, so the message says what to do.
    """
    if bits not in (4, 8):
        raise MemoryProfileError(f"text encoder quantisation is 8 or 4 bits, got {bits}")
    if device.type != "cuda" or not torch.cuda.is_available():
        raise MemoryProfileError(
            f"{bits}-bit text encoder needs a CUDA GPU (bitsandbytes); this pipeline runs on {device}. "
            "Use the 't5_offload' or 'fp8' profile instead, which keep the encoder on the CPU.")
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise MemoryProfileError(
            f"{bits}-bit text encoder needs bitsandbytes: pip install bitsandbytes (CUDA builds only)") from e
    model = _unwrap_text_encoder(text_encoder).model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            if bits == 8:
                q = bnb.nn.Linear8bitLt(child.in_features, child.out_features, child.bias is not None,
                                        has_fp16_weights=False, threshold=6.0)
                q.weight = bnb.nn.Int8Params(child.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
            else:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, child.bias is not None,
                                      compute_dtype=torch.bfloat16, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4")
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, q.to(device))  # bitsandbytes quantises on the move to CUDA
    model.to(device)


def profile_for_device(name: str, device: str | torch.device) -> str:
    """Resolve 'auto'/aliases for a compute device (CUDA: by its memory; CPU: 'resident')."""
    device = torch.device(device)
    gpu_bytes = None
    if device.type == "cuda":
        gpu_bytes = torch.cuda.get_device_properties(device.index or 0).total_memory
    return resolve_profile_name(name, gpu_bytes)


def load_backbone_for_profile(path: Any, config: NAVAConfig, device: str | torch.device, name: str) -> torch.nn.Module:
    """Load the backbone where profile `name` wants it, so loading never needs the full-precision
    model on a small GPU: fp8 -> block matrices straight to fp8 on `device`; group_offload -> on the CPU
    (`apply_profile(pipe, name, device=device)` then streams blocks to `device`); else fp32 on `device`."""
    from nava_core.weights.checkpoint import load_backbone

    resolved = profile_for_device(name, device)
    profile = MEMORY_PROFILES[resolved]
    if profile.fp8_backbone:
        from nava_core.weights.checkpoint import load_backbone_fp8

        return load_backbone_fp8(path, config, device)
    return load_backbone(path, config=config, device="cpu" if profile.group_offload_backbone else device)


def execution_device(pipe: Any) -> torch.device:
    """The device the pipeline computes on, whatever the profile moved weights to (use for noise/latents)."""
    state: AppliedProfile | None = getattr(pipe, "memory_state", None)
    if state is not None:
        return state.execution_device
    return next(pipe.transformer.parameters()).device


def apply_profile(pipe: Any, name: str = "auto", text_encoder_bits: int | None = None,
                  device: str | torch.device | None = None) -> AppliedProfile:
    """Put the pipeline's weights where profile `name` wants them; returns (and records) what was done.

    Call it once after loading (NAVAPipeline.from_pretrained does, with the request/CLI's profile).
    `device` is where computation happens (default: where the backbone is); pass it when the backbone
    was loaded on the CPU for `group_offload`. Re-applying the same profile is a no-op; changing an
    applied non-resident profile needs a reload (hooks and fp8 storage are not undone), which is
    refused with that message.
    """
    device = torch.device(device) if device is not None else execution_device(pipe)
    resolved = profile_for_device(name, device)
    profile = MEMORY_PROFILES[resolved]
    current: AppliedProfile | None = getattr(pipe, "memory_state", None)
    if current is not None:
        if current.profile.name == resolved and current.text_encoder_bits == text_encoder_bits:
            return current
        if current.profile.name != "resident" or current.text_encoder_bits:
            raise MemoryProfileError(
                f"this pipeline already runs the '{current.profile.name}' profile; reload the weights to "
                f"switch to '{resolved}'")
    if text_encoder_bits is not None:
        quantize_text_encoder(pipe.text_encoder, text_encoder_bits, device)
    if profile.fp8_backbone:
        from nava_core.fp8 import is_fp8, quantize_blocks

        if not is_fp8(pipe.transformer):
            quantize_blocks(pipe.transformer, torch.bfloat16 if device.type == "cuda" else torch.float32)
    if profile.offload_text_encoder and text_encoder_bits is None \
            and not isinstance(pipe.text_encoder, OffloadedTextEncoder):
        pipe.text_encoder = OffloadedTextEncoder(pipe.text_encoder, device)
    if profile.group_offload_backbone:
        from diffusers.hooks import apply_group_offloading

        use_stream = device.type == "cuda"
        apply_group_offloading(
            pipe.transformer, onload_device=device, offload_device=torch.device("cpu"),
            offload_type="block_level", num_blocks_per_group=1, use_stream=use_stream,
            record_stream=use_stream, non_blocking=use_stream,
            # the audio patch embedding is an nn.Sequential subclass that cannot be sliced: one group
            block_modules=["patch_embedding_audio"])
    state = AppliedProfile(profile, device, text_encoder_bits)
    pipe.memory_state = state
    logger.info("memory profile '%s' applied (%s) on %s", resolved, profile.description, device)
    return state


def prepare_render(pipe: Any, request: RenderRequest) -> RenderRequest:
    """What the pipeline calls before rendering `request`: applies the request's profile when the
    pipeline has none yet (or it is the same), and returns the request with the profile's VAE tiling.

    A request whose profile differs from the loaded one renders with the loaded one (logged): weights
    are not reloaded per request.
    """
    state: AppliedProfile | None = getattr(pipe, "memory_state", None)
    wanted = request.memory_profile or "auto"
    if state is None:
        state = apply_profile(pipe, wanted)
    elif wanted != "auto" and resolve_profile_name(wanted) != state.profile.name:
        logger.warning("request asks for memory profile '%s'; the loaded pipeline runs '%s'",
                       wanted, state.profile.name)
    if state.profile.vae_tiling and not request.tiled_vae:
        return request.replace(tiled_vae=True)
    return request


# ---- estimates -----------------------------------------------------------------------------------

# Reference run of NAVA_SPEC.md 8: 8xH100, 704x1280, 37 latent frames; the release runs all four
# guidance forwards every step (it has no branch skipping), batched.
REFERENCE_GPUS = 8
REFERENCE_LATENT_FRAMES = 37
REFERENCE_FORWARDS = 4
REFERENCE_VIDEO_TOKENS = 32_560
REFERENCE_AUDIO_TOKENS = 152
# Component sizes of the release files (bytes) as the pipeline keeps them (T5 bf16, VAEs fp32).
TEXT_ENCODER_BYTES = 11.36 * GB
VIDEO_VAE_BYTES = 2.82 * GB
SMALL_COMPONENT_BYTES = 0.40 * GB  # audio VAE + vocoder + speaker encoder
CUDA_CONTEXT_BYTES = 0.8 * GB
VAE_DECODE_BYTES_PER_PIXEL = 30_000  # decoder working set per frame pixel (one causal chunk)
VAE_TILE_PIXELS = (22 * 16) * (40 * 16)  # tiled decode works on 22x40-latent tiles


@dataclass(frozen=True)
class Estimate:
    """Peak GPU memory and time of a render, per GPU. Computed, never measured (see `estimate`)."""

    peak_vram_bytes: int
    seconds_per_step: float
    total_seconds: float
    forwards_per_step: int
    profile: str = ""
    gpus: int = 1
    gpu_name: str = ""
    label: str = "estimate"

    def describe(self) -> str:
        return (f"{self.label}: ~{self.peak_vram_bytes / GB:.0f} GB per GPU, ~{self.seconds_per_step:.1f} s/step, "
                f"~{self.total_seconds / 60:.1f} min ({self.forwards_per_step} forwards/step, profile "
                f"{self.profile}, {self.gpus}x {self.gpu_name})")


@dataclass(frozen=True)
class _ParamCounts:
    block_linear: int  # weight matrices of double/single blocks (what fp8 stores)
    block_other: int
    other: int
    block_max: int  # largest single block (group offload keeps ~2 resident)

    @property
    def total(self) -> int:
        return self.block_linear + self.block_other + self.other


def param_counts(config: NAVAConfig) -> _ParamCounts:
    """Backbone parameters by kind, from the config alone (checked against the model in the tests)."""
    d, f, h = config.dim, config.ffn_dim, config.audio_hidden_dim
    lin = d * d + d
    attn = 4 * lin + 2 * d  # q,k,v,o + norm_q, norm_k
    ffn = d * f + f + f * d + d
    single = 2 * attn + 2 * d + ffn + 6 * d  # self, cross, norm3, ffn, modulation
    double = 4 * attn + 2 * d + ffn + 12 * d  # video + audio copies of the attentions and modulation
    single_lin, double_lin = 8 * d * d + 2 * d * f, 16 * d * d + 2 * d * f
    patch_out = math.prod(config.patch_size) * config.vid_out_dim
    other = (
        config.vid_in_dim * math.prod(config.patch_size) * d + d  # patch_embedding
        + 7 * config.audio_in_dim * d + d + 3 * 7 * d * h  # audio patch embedding (conv + SwiGLU convs)
        + 2 * config.speaker_dim + config.speaker_dim * d + d + d * d + d + 2 * d + d  # speaker MLP
        + config.text_dim * d + d + d * d + d  # text_embedding
        + config.freq_dim * d + d + d * d + d  # time_embedding
        + d * 6 * d + 6 * d  # time_projection
        + 2 * d + d * patch_out + patch_out + 2 * d + d * config.audio_out_dim + config.audio_out_dim  # heads
    )
    nd, ns = config.num_double_layers, config.num_single_layers
    block_linear = nd * double_lin + ns * single_lin
    block_all = nd * double + ns * single
    return _ParamCounts(block_linear, block_all - block_linear, other, double if nd else single)


def forward_flops(config: NAVAConfig, video_tokens: int, audio_tokens: int) -> float:
    """FLOPs of one backbone forward (one sample): linear layers + attention (joint self + text cross)."""
    d, f, lt = config.dim, config.ffn_dim, config.text_len
    n = video_tokens + audio_tokens
    per_token_per_block = 2 * (4 * d * d + 2 * d * d + 2 * d * f)  # self q,k,v,o; cross q,o; FFN
    text_kv_per_block = 2 * lt * 2 * d * d  # cross-attention k,v of the 512 text rows (per stream set)
    layers = config.num_layers
    linear = layers * (n * per_token_per_block + text_kv_per_block) + config.num_double_layers * text_kv_per_block
    attention = layers * (4 * n * n * d + 4 * n * lt * d)
    patch_size = math.prod(config.patch_size)
    embed = 2 * lt * (config.text_dim * d + d * d) \
        + 2 * video_tokens * config.vid_in_dim * patch_size * d \
        + 2 * audio_tokens * 7 * (config.audio_in_dim * d + 3 * d * config.audio_hidden_dim)
    return float(linear + attention + embed)


def _reference_flops_per_gpu_step(config: NAVAConfig) -> float:
    return REFERENCE_FORWARDS * forward_flops(config, REFERENCE_VIDEO_TOKENS, REFERENCE_AUDIO_TOKENS) / REFERENCE_GPUS


def _raw_peak_bytes(profile: MemoryProfile, config: NAVAConfig, video_tokens: int, audio_tokens: int,
                    batch: int, gpus: int, pixels: int, has_video: bool) -> float:
    """Physical model: weights by dtype and place + activations per token + VAE decode working set."""
    pc = param_counts(config)
    if profile.group_offload_backbone:
        backbone = 4 * (pc.other + 2 * pc.block_max)  # non-block weights + current and prefetched block
    elif profile.fp8_backbone:
        backbone = 1 * pc.block_linear + 4 * (pc.block_other + pc.other)
    else:
        backbone = 4 * pc.total
    resident = backbone + VIDEO_VAE_BYTES + SMALL_COMPONENT_BYTES + CUDA_CONTEXT_BYTES
    text = 0.0 if profile.offload_text_encoder else TEXT_ENCODER_BYTES
    encode_phase = resident + TEXT_ENCODER_BYTES
    tokens_per_gpu = math.ceil((video_tokens + audio_tokens) / gpus)
    act_per_token = 2 * (10 * config.dim + config.ffn_dim)  # bf16 residual, norms, q/k/v, attn, FFN hidden
    denoise_phase = resident + text + act_per_token * tokens_per_gpu * batch
    decode_pixels = min(pixels, VAE_TILE_PIXELS) if profile.vae_tiling else pixels
    decode_phase = resident + text + (VAE_DECODE_BYTES_PER_PIXEL * decode_pixels if has_video else 0)
    return max(encode_phase, denoise_phase, decode_phase)


def _reference_raw_peak(profile: MemoryProfile, config: NAVAConfig) -> float:
    return _raw_peak_bytes(profile, config, REFERENCE_VIDEO_TOKENS, REFERENCE_AUDIO_TOKENS, REFERENCE_FORWARDS,
                           REFERENCE_GPUS, 1280 * 704, True)


def estimate(
    request: RenderRequest,
    profile: str | None = None,
    gpus: int | None = None,
    config: NAVAConfig | None = None,
    gpu: GPUInfo | None = None,
) -> Estimate:
    """Peak VRAM per GPU and time for `request` under `profile` on `gpus` GPUs (label "estimate").

    Nothing here is measured: no GPU was reachable where this was written. The shape comes from the
    config (FLOPs per forward from the token counts: linear layers plus joint self-attention and text
    cross-attention; bytes per profile: weights by dtype and place, activations per token, VAE decode
    working set), and the constants are calibrated so that the release's own run (NAVA_SPEC.md 8:
    8xH100, 704x1280, 37 latent frames, 4 forwards/step) reproduces its published numbers: bf16 80 GB
    1.0 s/step, T5 offload 48 GB 1.0 s/step, fp8 ~18 GB ~1.1 s/step, group offload 3.5 s/step. Only
    the guidance branches the request switches on are counted (`plan_branches`). `gpu` defaults to the
    first detected GPU, else an H100 (the calibration machine); profile None/'auto' follows that GPU.
    """
    config = config or NAVAConfig.release()
    if gpu is None:
        found = detect_gpus()
        gpu = found[0] if found else None
    name = resolve_profile_name(profile or request.memory_profile or "auto",
                                gpu.total_bytes if gpu is not None else int(80 * GB))
    prof = MEMORY_PROFILES[name]
    n_gpus = int(gpus if gpus is not None else request.gpus)
    if n_gpus < 1 or config.num_heads % n_gpus:
        raise ValueError(f"{n_gpus} GPUs do not divide the {config.num_heads} attention heads")
    tc = token_counts(request.resolution, request.latent_frames, request.has_video) if request.has_video \
        else None
    video_tokens = tc.video_tokens if tc is not None else 0
    audio_tokens = request.audio_tokens
    has_speakers = any(bool(w) for w in request.speaker_wavs)
    branches = plan_branches(request.guidance, request.has_video, True, has_speakers)
    forwards = len(branches)

    # time: achieved FLOP rate of the reference run, scaled by the GPU's peak and the profile's slowdown
    ref = MEMORY_PROFILES["resident"]
    achieved_fraction = _reference_flops_per_gpu_step(config) / ref.reference_s_per_step / REFERENCE_PEAK_FLOPS
    peak = (gpu.bf16_peak_flops if gpu is not None and gpu.bf16_peak_flops else REFERENCE_PEAK_FLOPS)
    slowdown = (prof.reference_s_per_step or ref.reference_s_per_step) / ref.reference_s_per_step
    flops = forwards * forward_flops(config, video_tokens, audio_tokens) / n_gpus
    s_per_step = flops / (peak * achieved_fraction) * slowdown

    # memory: physical model anchored to the published peak of the equivalent setting
    pixels = request.width * request.height if request.has_video else 0
    raw = _raw_peak_bytes(prof, config, video_tokens, audio_tokens, forwards, n_gpus, pixels, request.has_video)
    anchor = prof if prof.reference_peak_bytes else MEMORY_PROFILES["t5_offload"]
    scale = anchor.reference_peak_bytes / _reference_raw_peak(anchor, config)
    peak_bytes = int(raw * scale)
    gpu_name = gpu.name if gpu is not None else "H100 (assumed; no GPU detected)"
    return Estimate(peak_bytes, s_per_step, s_per_step * request.steps, forwards, name, n_gpus, gpu_name,
                    label="estimate (calibrated to the release's published H100 numbers, not measured here)")


def fits(est: Estimate, gpu: GPUInfo, margin: float = 0.95) -> bool:
    """Whether an estimate fits a GPU with a safety margin (the studio warns when it does not)."""
    return est.peak_vram_bytes <= gpu.total_bytes * margin


__all__ = [
    "MEMORY_PROFILES", "MemoryProfile", "MemoryProfileError", "GPUInfo", "Estimate", "AppliedProfile",
    "choose_profile", "resolve_profile_name", "detect_gpus", "apply_profile", "prepare_render",
    "execution_device", "estimate", "profile_for_device", "load_backbone_for_profile", "forward_flops", "fits", "quantize_text_encoder", "OffloadedTextEncoder",
]
