"""Engine-level speed settings: attention kernel, bf16 block storage, per-block torch.compile.

All three are exact (they change speed and memory, not results; tests/test_backbone_speed.py) and are
decided once per engine, after the weights are loaded, from the device:

- attention: "auto" probes the kernels this GPU can really run (nava_core.model.backends); an explicit
  name (`--attention`) is checked and refused with the reason when it cannot run.
- bf16 storage of the block matrices: on under precision "nava" on CUDA (the release casts them to bf16
  on every call anyway); never for fp8 storage or the fp32 policy. Applied *before* group offload so
  the streamed groups are bf16 (half the host-to-device traffic).
- compile: None = on for CUDA when a warm-up forward through the compiled blocks passes (else logged
  and left off), off on the CPU; True/False force it.

The resolved settings are recorded on the pipeline (`pipe.speed`) and logged, so a render, the bench
and a bug report can say what ran.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeedOptions:
    """What the caller asked for (CLI flags / engine options)."""

    attention: str = "auto"
    compile: bool | None = None  # None: auto (CUDA + warm-up passes)
    bf16_storage: bool | None = None  # None: auto (CUDA + "nava" + not fp8)


@dataclass(frozen=True)
class SpeedState:
    """What the engine runs with (recorded on the pipeline)."""

    attention: str
    attention_reason: str
    compiled: bool
    bf16_storage: bool
    compile_note: str = ""

    def describe(self) -> str:
        return (f"attention {self.attention} ({self.attention_reason}); compile {'on' if self.compiled else 'off'}"
                f"{' (' + self.compile_note + ')' if self.compile_note else ''}; "
                f"block storage {'bf16' if self.bf16_storage else 'as loaded'}")


def wants_bf16_storage(options: SpeedOptions, model: torch.nn.Module, device: torch.device) -> bool:
    from nava_core.fp8 import is_fp8

    if options.bf16_storage is not None:
        return bool(options.bf16_storage) and model.precision == "nava" and not is_fp8(model)
    return device.type == "cuda" and model.precision == "nava" and not is_fp8(model)


def prepare_storage(model: torch.nn.Module, options: SpeedOptions, device: torch.device) -> bool:
    """bf16 block storage when wanted; call before group offload hooks are attached."""
    if wants_bf16_storage(options, model, device) and not model.blocks_stored_low:
        model.store_blocks_low()
    return model.blocks_stored_low


def _warm_up(model: torch.nn.Module, device: torch.device) -> None:
    """One small forward of each kind (joint and no-align) through the compiled blocks."""
    c = model.config
    g = torch.Generator(device=device).manual_seed(0)
    video = [torch.randn(c.vid_in_dim, 2, 4, 4, device=device, generator=g)]
    audio = [torch.randn(5, c.audio_in_dim, device=device, generator=g)]
    ctx = [torch.randn(4, c.text_dim, device=device, generator=g)]
    with torch.no_grad():
        for masking in (False, True):
            model(video, audio, torch.tensor([500], device=device), ctx, masking_modality=masking)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _uncompile(model: torch.nn.Module) -> None:
    for block in [*model.double_blocks, *model.single_blocks]:
        block._compiled_call_impl = None
    model.blocks_compiled = False


def apply_speed(model: torch.nn.Module, options: SpeedOptions, device: torch.device | str) -> SpeedState:
    """Choose the attention kernel, store blocks in bf16 and compile, as `options` and `device` say."""
    device = torch.device(device)
    choice = model.set_attention_backend(options.attention, device)
    low = prepare_storage(model, options, device)
    compiled, note = False, ""
    want_compile = options.compile if options.compile is not None else device.type == "cuda"
    if want_compile:
        try:
            model.compile_blocks()
            _warm_up(model, device)
            compiled = True
        except Exception as e:  # noqa: BLE001 - a compiler failure must not stop the engine: run eager
            _uncompile(model)
            note = f"warm-up failed, running eager: {type(e).__name__}: {str(e)[:200]}"
            if options.compile:
                raise RuntimeError(f"torch.compile was requested but its warm-up failed: {e}") from e
            logger.warning("torch.compile %s", note)
    elif options.compile is None:
        note = "auto: off on CPU"
    state = SpeedState(choice.name, choice.reason, compiled, low, note)
    logger.info("engine speed settings: %s", state.describe())
    return state


__all__ = ["SpeedOptions", "SpeedState", "apply_speed", "prepare_storage", "wants_bf16_storage"]
