"""The one estimator of a render's cost: FLOPs per forward, peak VRAM per GPU and wall time; and the
one GPU list (`detect_gpus`).

Everything that shows or plans with a duration asks here: the studio's estimate line, the ZeroGPU
duration request, the Batch tab and `nava-render batch` ETAs. Torch-free (GPUs are listed by
nvidia-smi), so estimates answer before any heavy import.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
from dataclasses import dataclass

from nava_core.config import NAVAConfig, pixel_frames, token_counts
from nava_core.guidance import plan_branches
from nava_core.profiles import MEMORY_PROFILES, MemoryProfile, resolve_profile_name
from nava_core.request import RenderRequest

logger = logging.getLogger(__name__)

GB = 1e9
GIB = 1024**3


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
    """NVIDIA GPUs this process may use, from `nvidia-smi` (no torch import: the studio lists them before
    any heavy import), filtered by CUDA_VISIBLE_DEVICES like CUDA itself; empty without a GPU."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        logger.debug("nvidia-smi failed: %s", e)
        return []
    found = {}
    for line in out.splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit() and parts[2].isdigit():
            found[parts[0]] = (parts[1], int(parts[2]) * 1024**2)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    order = list(found) if visible is None else [v.strip() for v in visible.split(",") if v.strip() in found]
    return [GPUInfo(i, found[k][0], found[k][1], bf16_peak_flops(found[k][0])) for i, k in enumerate(order)]


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
# A forward can never be faster than reading its weights once and launching its kernels: with few tokens
# (audio-only clips) the FLOP count alone would promise ~0.01 s/step, which no GPU delivers.
REFERENCE_HBM_BYTES_PER_S = 3.35e12  # H100 SXM HBM3
KERNEL_OVERHEAD_S_PER_BLOCK = 2e-4  # ~25 eager kernel launches per transformer block at ~8 us each


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
        return (f"{self.label}: ~{self.peak_vram_bytes / GB:.0f} GB per GPU, ~{self.seconds_per_step:.2g} s/step, "
                f"~{duration_text(self.total_seconds)} ({self.forwards_per_step} forwards/step, profile "
                f"{self.profile}, {self.gpus}x {self.gpu_name})")


def duration_text(seconds: float) -> str:
    """'1.6 s', '48 s', '3.8 min', '2.1 h': two significant figures, never '0.0 s'."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"


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


def _forward_floor_s(config: NAVAConfig, profile: MemoryProfile) -> float:
    """Lower bound of one forward's time: stream the stored backbone weights once from GPU memory, plus
    kernel launch overhead per block (every GPU of a sequence-parallel group holds all weights)."""
    pc = param_counts(config)
    stored = (pc.block_linear + 4 * (pc.block_other + pc.other)) if profile.fp8_backbone else 4 * pc.total
    return stored / REFERENCE_HBM_BYTES_PER_S + config.num_layers * KERNEL_OVERHEAD_S_PER_BLOCK


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
    forwards = forwards_per_step(request)

    # time: achieved FLOP rate of the reference run, scaled by the GPU's peak and the profile's slowdown
    ref = MEMORY_PROFILES["resident"]
    achieved_fraction = _reference_flops_per_gpu_step(config) / ref.reference_s_per_step / REFERENCE_PEAK_FLOPS
    peak = (gpu.bf16_peak_flops if gpu is not None and gpu.bf16_peak_flops else REFERENCE_PEAK_FLOPS)
    slowdown = (prof.reference_s_per_step or ref.reference_s_per_step) / ref.reference_s_per_step
    flops = forwards * forward_flops(config, video_tokens, audio_tokens) / n_gpus
    s_per_step = flops / (peak * achieved_fraction) * slowdown
    s_per_step = max(s_per_step, forwards * _forward_floor_s(config, prof) * slowdown)

    # memory: physical model anchored to the published peak of the equivalent setting
    pixels = request.width * request.height if request.has_video else 0
    raw = _raw_peak_bytes(prof, config, video_tokens, audio_tokens, forwards, n_gpus, pixels, request.has_video)
    anchor = prof if prof.reference_peak_bytes else MEMORY_PROFILES["t5_offload"]
    scale = anchor.reference_peak_bytes / _reference_raw_peak(anchor, config)
    peak_bytes = int(raw * scale)
    gpu_name = gpu.name if gpu is not None else "H100 (assumed; no GPU detected)"
    return Estimate(peak_bytes, s_per_step, s_per_step * request.steps, forwards, name, n_gpus, gpu_name,
                    label="estimate (calibrated to the release's published H100 numbers, not measured here)")


# The tiny random-weight engine on a CPU (2-core machine, one thread): measured rates, used for ETAs of
# preview renders, where the GPU model above means nothing.
TINY_CPU_S_PER_FORWARD = 0.13
TINY_CPU_DECODE_S_PER_MEGAPIXEL_FRAME = 2.0 / (160 * 96 * 13 / 1e6)
TINY_CPU_WRITE_S = 0.3


def forwards_per_step(request: RenderRequest) -> int:
    """Backbone forwards one step of `request` runs (only the guidance branches it switches on)."""
    has_speakers = any(bool(w) for w in request.speaker_wavs)
    return len(plan_branches(request.guidance, request.has_video, True, has_speakers))


def tiny_cpu_seconds(request: RenderRequest) -> float:
    """Wall time of `request` on the tiny engine on a CPU: forwards, VAE decode per pixel, writing."""
    t = request.steps * forwards_per_step(request) * TINY_CPU_S_PER_FORWARD + TINY_CPU_WRITE_S
    if request.has_video:
        megapixel_frames = request.width * request.height * pixel_frames(request.latent_frames) / 1e6
        t += megapixel_frames * TINY_CPU_DECODE_S_PER_MEGAPIXEL_FRAME
    return t


def render_seconds(request: RenderRequest, tiny: bool = False, gpus: int | None = None) -> float:
    """Expected wall time of one render: the tiny CPU rates for the tiny engine, else `estimate`."""
    if tiny:
        return tiny_cpu_seconds(request)
    return estimate(request, gpus=gpus).total_seconds


__all__ = ["GPUInfo", "Estimate", "detect_gpus", "bf16_peak_flops", "param_counts", "forward_flops", "estimate",
           "forwards_per_step", "tiny_cpu_seconds", "render_seconds"]
