"""Applying a memory profile (`nava_core.profiles`) to a loaded pipeline: where each weight lives.

Offload never changes a result, only where weights are: every hook onloads to the pipeline's own
device (so on a CPU-only machine the hooks are attached and exercised, with CPU as both ends).
The mechanisms are diffusers' `apply_group_offloading` and accelerate's `cpu_offload_with_hook`; fp8 is
the weight-only wrapper in `nava_core.fp8`. Estimates of memory and time are `nava_core.estimate`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from nava_core.config import NAVAConfig
from nava_core.profiles import MEMORY_PROFILES, MemoryProfile, MemoryProfileError, resolve_profile_name
from nava_core.request import RenderRequest

logger = logging.getLogger(__name__)

# ---- applying a profile to a pipeline ------------------------------------------------------------


@dataclass(frozen=True)
class AppliedProfile:
    """What `apply_profile` did to a pipeline (kept on `pipe.memory_state`)."""

    profile: MemoryProfile
    execution_device: torch.device


class OffloadedTextEncoder:
    """The text encoder with accelerate's cpu_offload_with_hook: onloaded on its first forward, sent
    back to the CPU as soon as `encode` returns (so it never shares the GPU with the denoising loop)."""

    def __init__(self, inner: Any, execution_device: torch.device) -> None:
        from accelerate import cpu_offload_with_hook

        self.inner = inner
        self.execution_device = execution_device
        inner.model, self.hook = cpu_offload_with_hook(inner.model, execution_device=execution_device)

    def encode(self, prompts: list[str], truncate: bool = False):
        try:
            return self.inner.encode(prompts, truncate=truncate)
        finally:
            self.hook.offload()

    def __getattr__(self, name: str) -> Any:  # tokenize, prepare_prompt, max_length, ... unchanged
        if name == "inner":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


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


def apply_profile(pipe: Any, name: str = "auto", device: str | torch.device | None = None) -> AppliedProfile:
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
        if current.profile.name == resolved:
            return current
        if current.profile.name != "resident":
            raise MemoryProfileError(
                f"this pipeline already runs the '{current.profile.name}' profile; reload the weights to "
                f"switch to '{resolved}'")
    if profile.fp8_backbone:
        from nava_core.fp8 import is_fp8, quantize_blocks

        if not is_fp8(pipe.transformer):
            quantize_blocks(pipe.transformer, torch.bfloat16 if device.type == "cuda" else torch.float32)
    if profile.offload_text_encoder and not isinstance(pipe.text_encoder, OffloadedTextEncoder):
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
    state = AppliedProfile(profile, device)
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


__all__ = ["AppliedProfile", "OffloadedTextEncoder", "apply_profile", "prepare_render", "execution_device",
           "profile_for_device", "load_backbone_for_profile"]
