"""The memory profiles: the one table of where the weights live and in what dtype, torch-free.

Why profiles and not flags: the release needs 80 GB per GPU in bf16; creators have 16-24 GB cards.
Each profile is one coherent choice the studio can show, pick from the detected GPU, and explain:

- `resident`      everything on the GPU (>= 80 GB).
- `t5_offload`    the umT5 encoder lives on the CPU and visits the GPU only to encode (~48 GB at 720p).
- `fp8`           backbone block matrices stored as float8_e4m3fn, computed in bf16; T5 offload; VAE
                  tiling (~18 GB).
- `group_offload` backbone blocks streamed from CPU memory one group at a time (diffusers group
                  offloading, CUDA streams when present); T5 offload; VAE tiling (small cards).

The table lives here, apart from `nava_core.memory` (which applies a profile to a loaded pipeline and
imports torch), so request validation, the CLI and the studio refuse an unknown name, with the list
of valid ones, before any heavy import.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

GB = 1e9


class MemoryProfileError(ValueError):
    """A profile that cannot be applied here (unknown name, missing CUDA/bitsandbytes, conflicting state)."""


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
PROFILE_NAMES: tuple[str, ...] = tuple(MEMORY_PROFILES)
# Aliases the studio's first UI used ("high/balanced/low").
ALIASES: Mapping[str, str] = MappingProxyType({"high": "resident", "balanced": "t5_offload", "low": "fp8"})
# What a person may ask for: "auto" (chosen from the GPU) or a profile name; aliases are accepted too.
CHOICES: tuple[str, ...] = ("auto", *PROFILE_NAMES)


def canonical_profile(name: str | None) -> str:
    """'auto' or a profile name for `name` (aliases mapped, case and spaces ignored); unknown names are
    refused with the list of valid ones, never silently replaced."""
    key = (name or "auto").strip().lower()
    key = ALIASES.get(key, key)
    if key not in CHOICES:
        raise MemoryProfileError(
            f"unknown memory profile {name!r}; choose one of {', '.join(CHOICES)} "
            f"(or the older names {', '.join(f'{a} = {c}' for a, c in ALIASES.items())})")
    return key


def resolve_profile_name(name: str, gpu_bytes: int | None = None) -> str:
    """'auto' -> choose_profile(gpu_bytes); aliases -> canonical names; unknown names refused."""
    key = canonical_profile(name)
    return choose_profile(gpu_bytes) if key == "auto" else key


def choose_profile(gpu_bytes: int | None) -> str:
    """The fastest profile whose footprint fits a GPU of `gpu_bytes` (None: no GPU -> 'resident' on CPU)."""
    if gpu_bytes is None:
        return "resident"
    for profile in MEMORY_PROFILES.values():  # ordered fastest first
        if gpu_bytes >= profile.min_gpu_bytes:
            return profile.name
    return "group_offload"


__all__ = ["MEMORY_PROFILES", "MemoryProfile", "MemoryProfileError", "PROFILE_NAMES", "ALIASES", "CHOICES",
           "canonical_profile", "resolve_profile_name", "choose_profile"]
