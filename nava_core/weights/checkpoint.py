"""Backbone checkpoints: the release file format (full precision and fp8), the Wan2.2-TI2V-5B key map.

A release checkpoint is a safetensors file (or a torch `{"state_dict": ...}` file) whose keys carry a
`backbone.` prefix; after stripping it the keys are exactly `WanAVModel`'s (NAVA_SPEC.md section 3).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nava_core.config import NAVAConfig
from nava_core.statedict import expected_shapes, require_state_dict
from nava_core.fp8 import (
    FP8_DTYPE,
    SCALE_DTYPE,
    SCALE_SUFFIX,
    Float8Linear,
    dequantize_state_dict,
    has_fp8_tensors,
    quantize_blocks,
    quantize_weight,
)

logger = logging.getLogger(__name__)

PREFIX = "backbone."
# Parts of NAVA that have no Wan2.2 counterpart (trained from scratch by the release).
NEW_IN_NAVA = ("patch_embedding_audio.", "speaker_embedding.", "head_audio.")


class CheckpointError(ValueError):
    """A checkpoint file that does not hold a NAVA backbone for the requested config."""


def load_backbone_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a release backbone file and return its tensors with the `backbone.` prefix stripped.

    Accepts `.safetensors` and torch files (loaded with `weights_only=True`, never unpickling code)
    holding either a bare state dict or `{"state_dict": ...}`. When some keys carry the prefix, only
    those are kept (other top-level modules of a training checkpoint are not the backbone).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"backbone checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        raw = load_file(str(path))
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises several types for non-torch or unsafe files
            raise CheckpointError(f"{path} is not a loadable torch weights file: {exc}") from exc
        raw = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise CheckpointError(f"{path} holds no state dict of tensors")
    if any(k.startswith(PREFIX) for k in raw):
        return {k[len(PREFIX):]: v for k, v in raw.items() if k.startswith(PREFIX)}
    return dict(raw)


def check_state_dict(state_dict: dict[str, torch.Tensor], model: torch.nn.Module, source: str) -> None:
    """Raise CheckpointError naming `source` and the missing/unexpected/mis-shaped keys, if any."""
    require_state_dict(state_dict, expected_shapes(model), f"{source} is not a NAVA backbone for this config",
                       CheckpointError)


def load_backbone(
    path: str | Path,
    config: NAVAConfig,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
):
    """Build `WanAVModel(config)` without allocating random weights and load `path` strictly."""
    from nava_core.model import WanAVModel

    state = load_backbone_state_dict(path)
    if has_fp8_tensors(state):  # an fp8 file (e.g. NAVA_fp8.safetensors) under a full-precision profile
        state = dequantize_state_dict(state)
    with torch.device("meta"):
        model = WanAVModel(config)
    check_state_dict(state, model, str(path))
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _fp8_eligible(key: str, tensor: torch.Tensor) -> bool:
    """Block matrices only: embeddings, norms, modulation and heads stay in full precision."""
    return key.startswith(("double_blocks.", "single_blocks.")) and key.endswith(".weight") and tensor.ndim == 2


def save_backbone_checkpoint(state_dict: dict[str, torch.Tensor], path: str | Path, fp8: bool = False) -> Path:
    """Write the release format: safetensors, `backbone.`-prefixed keys; with `fp8`, block matrices as
    float8_e4m3fn plus a bf16 `weight_scale` per layer, as the release's `NAVA_fp8.safetensors`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        if fp8 and _fp8_eligible(k, v):
            v, scale = quantize_weight(v)
            out[PREFIX + k[: -len("weight")] + SCALE_SUFFIX] = scale.contiguous()
        out[PREFIX + k] = v
    save_file(out, str(path), metadata={"format": "pt", "model": "nava_backbone"})
    return path


_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_DUAL = re.compile(r"^(self_attn|cross_attn)\.(q|k|v|o|norm_q|norm_k)\.(.+)$")


def wan22_to_nava(state_dict: dict[str, torch.Tensor], config: NAVAConfig) -> dict[str, torch.Tensor]:
    """Map a Wan2.2-TI2V-5B transformer state dict (official `blocks.N` layout) to NAVA keys.

    blocks 0..num_double-1 become double blocks whose audio projections/modulation are copies of the
    video ones; the rest become single blocks; `blocks.i.modulation` -> `...modulation.modulation`.
    The result lacks only the NEW_IN_NAVA parts (audio embedding, audio head, speaker MLP).
    """
    nd = config.num_double_layers
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = _BLOCK.match(key)
        if m is None:
            out[key] = value
            continue
        i, rest = int(m.group(1)), m.group(2)
        if i >= config.num_layers:
            raise CheckpointError(f"Wan2.2 key {key} is beyond the config's {config.num_layers} blocks")
        if rest == "modulation":
            rest = "modulation.modulation"
        if i >= nd:
            out[f"single_blocks.{i - nd}.{rest}"] = value
            continue
        prefix = f"double_blocks.{i}."
        out[prefix + rest] = value
        if rest == "modulation.modulation":
            out[prefix + "modulation_audio.modulation"] = value.clone()
        elif (d := _DUAL.match(rest)) is not None:
            out[prefix + f"{d.group(1)}.{d.group(2)}_audio.{d.group(3)}"] = value.clone()
    return out


def nava_to_wan22(state_dict: dict[str, torch.Tensor], config: NAVAConfig) -> dict[str, torch.Tensor]:
    """Inverse of `wan22_to_nava` for the video path (drops audio copies and NAVA-only parts)."""
    nd = config.num_double_layers
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(NEW_IN_NAVA) or "_audio." in key:
            continue
        m = re.match(r"^(double|single)_blocks\.(\d+)\.(.+)$", key)
        if m is None:
            out[key] = value
            continue
        i = int(m.group(2)) + (nd if m.group(1) == "single" else 0)
        rest = "modulation" if m.group(3) == "modulation.modulation" else m.group(3)
        out[f"blocks.{i}.{rest}"] = value
    return out


def load_backbone_fp8(path: str | Path, config: NAVAConfig, device: str | torch.device = "cpu",
                      compute_dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Load a backbone file straight into fp8 block storage, never holding full-precision blocks on `device`.

    Works for `NAVA_fp8.safetensors` (fp8 tensors are assigned as they are) and for bf16/fp32
    checkpoints (block matrices are converted once, on the CPU, before moving). Non-block tensors stay
    float32, as in the release's fp8 file.
    """
    from nava_core.model import WanAVModel

    device = torch.device(device)
    compute_dtype = compute_dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    state = load_backbone_state_dict(path)
    with torch.device("meta"):
        model = WanAVModel(config)
    check_state_dict(dequantize_state_dict(state) if has_fp8_tensors(state) else state, model, str(path))
    quantize_blocks(model, compute_dtype)
    moved = {}
    for key, module in model.named_modules():
        if isinstance(module, Float8Linear):
            w = state[f"{key}.weight"]
            scale = state.get(f"{key}.{SCALE_SUFFIX}")
            if w.dtype != FP8_DTYPE:  # a bf16/fp32 file: quantise once, here, on the CPU
                w, scale = quantize_weight(w)
            elif scale is None:  # an fp8 file without scales: the weights are the values
                scale = torch.ones(w.shape[0], 1, dtype=SCALE_DTYPE)
            elif scale.numel() not in (1, w.shape[0]):
                raise ValueError(f"{path}: {key}.{SCALE_SUFFIX} has shape {tuple(scale.shape)}, which does not "
                                 f"scale a {tuple(w.shape)} weight per tensor or per output row")
            moved[f"{key}.weight"] = w.to(device)
            moved[f"{key}.{SCALE_SUFFIX}"] = scale.to(SCALE_DTYPE).reshape(-1, 1).expand(w.shape[0], 1).contiguous().to(device)
    for k, v in state.items():
        if k not in moved and not k.endswith("." + SCALE_SUFFIX):
            moved[k] = v.to(torch.float32).to(device)
    model.load_state_dict(moved, strict=True, assign=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def convert_checkpoint_to_fp8(src: str | Path, dst: str | Path) -> Path:
    """Write the release's fp8 layout (`NAVA_fp8.safetensors`) from a bf16/fp32 backbone file, once,
    so later loads read 1 byte per block weight instead of converting at every start."""
    return save_backbone_checkpoint(load_backbone_state_dict(src), dst, fp8=True)
