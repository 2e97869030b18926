"""fp8 (e4m3) weight storage for the backbone's block matrices, computed in full/bf16 precision.

The release's `NAVA_fp8.safetensors` stores each block Linear as `weight` (float8_e4m3fn) plus a
`weight_scale` (bf16); the layer computes with `weight * weight_scale`. A plain cast to e4m3 would
flush the many small weights of a 3072-wide layer into e4m3's subnormal range, so quantisation here
scales every output row to e4m3's full range (+-448) and stores the row scale; loading accepts any
scale that broadcasts over the weight (per tensor or per output row), and no scale at all (= 1).

Why a small wrapper and not diffusers' `apply_layerwise_casting`: layerwise casting stores *every*
parameter of a layer (bias included) in the storage dtype, whereas the release's `NAVA_fp8.safetensors`
holds only the 2-D block weight matrices in fp8 and keeps biases, norms, modulation, embeddings and
heads in full precision. `Float8Linear` keeps exactly that key set (same names, same shapes), so an
fp8 checkpoint loads strictly into it and a bf16/fp32 checkpoint converts once with `quantize_blocks`.
The weight is upcast per forward (weight-only quantisation: activations are never fp8), so the result
equals the full-precision model run on the dequantised weights.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
SCALE_DTYPE = torch.bfloat16
SCALE_SUFFIX = "weight_scale"
BLOCK_PREFIXES = ("double_blocks.", "single_blocks.")


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 weight, bf16 per-row scale [out, 1]) with `q * scale ~= w`, rows scaled to +-448."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    scale = scale.to(SCALE_DTYPE)  # stored in bf16: quantise against the stored value, not the exact one
    q = (w / scale.float()).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def dequantize_weight(q: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    w = q.to(dtype)
    return w if scale is None else w * scale.to(dtype)


class Float8Linear(nn.Module):
    """A Linear whose weight lives in fp8 e4m3 and is upcast to `compute_dtype` for each call.

    Keys (`weight`, `bias`) and shapes equal nn.Linear's, so state dicts are interchangeable.
    Under autocast the upcast weight is cast by autocast like any other (bf16 compute).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 compute_dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.compute_dtype = compute_dtype
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8_DTYPE, device=device),
                                   requires_grad=False)
        self.register_buffer(SCALE_SUFFIX, torch.ones(out_features, 1, dtype=SCALE_DTYPE, device=device))
        self.bias = (nn.Parameter(torch.empty(out_features, device=device), requires_grad=False)
                     if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute_dtype: torch.dtype) -> "Float8Linear":
        """Quantise an existing Linear with per-row scales (see `quantize_weight`)."""
        out = cls(linear.in_features, linear.out_features, linear.bias is not None, compute_dtype, device="meta")
        if linear.weight.device.type == "meta":
            out.weight = nn.Parameter(torch.empty_like(linear.weight, dtype=FP8_DTYPE), requires_grad=False)
            out.weight_scale = torch.ones(linear.out_features, 1, dtype=SCALE_DTYPE, device="meta")
        else:
            q, scale = quantize_weight(linear.weight)
            out.weight = nn.Parameter(q, requires_grad=False)
            out.weight_scale = scale
        if linear.bias is not None:
            out.bias = nn.Parameter(linear.bias.detach(), requires_grad=False)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dequantize_weight(self.weight, self.weight_scale, self.compute_dtype)
        b = self.bias
        if not torch.is_autocast_enabled(x.device.type):
            w = w.to(x.dtype)
            b = b.to(x.dtype) if b is not None else None
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, storage=float8_e4m3fn, " \
               f"compute={self.compute_dtype}"


def _block_linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, Linear) for every Linear inside double/single blocks."""
    found = []
    for name, module in model.named_modules():
        if not name.startswith(BLOCK_PREFIXES):
            continue
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                found.append((module, child_name, child))
    return found


def quantize_blocks(model: nn.Module, compute_dtype: torch.dtype | None = None) -> int:
    """Replace every block Linear of a `WanAVModel` by a `Float8Linear` in place; returns the count.

    Only the block matrices change (the key set of `save_backbone_checkpoint(..., fp8=True)`);
    already-quantised layers are left alone, so calling it twice is harmless.
    """
    count = 0
    for parent, attr, linear in _block_linears(model):
        dtype = compute_dtype or (torch.bfloat16 if linear.weight.is_cuda else torch.float32)
        setattr(parent, attr, Float8Linear.from_linear(linear, dtype))
        count += 1
    logger.info("fp8: %d block matrices stored as float8_e4m3fn", count)
    return count


def is_fp8(model: nn.Module) -> bool:
    return any(isinstance(m, Float8Linear) for m in model.modules())


def dequantized_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights with fp8 matrices dequantised to float32 (what the fp8 model computes with),
    in the plain (non-fp8) key set."""
    return dequantize_state_dict(model.state_dict())


def dequantize_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with fp8 weights (and their `weight_scale`) turned back into float32 weights."""
    out = {}
    for k, v in state.items():
        if k.endswith("." + SCALE_SUFFIX):
            continue
        if v.dtype == FP8_DTYPE:
            scale = state.get(k[: -len("weight")] + SCALE_SUFFIX) if k.endswith("weight") else None
            v = dequantize_weight(v, scale)
        out[k] = v
    return out


def has_fp8_tensors(state: dict[str, torch.Tensor]) -> bool:
    return any(v.dtype == FP8_DTYPE for v in state.values())
