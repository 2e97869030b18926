"""The two numeric policies of the backbone.

The release ran under bf16 autocast with fp32 weights and, on top of autocast, cast the outputs of its
norms, modulation adds and RoPE to bf16, which also makes the residual stream bf16. "nava" reproduces
that: the forward runs under autocast and every place the release wrote `.bfloat16()` calls
`to_low(x)`. "fp32" is the same graph with those casts turned into no-ops (autocast off), which is
what the exactness tests compare against.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from nava_core.config import Precision

LOW_DTYPE = torch.bfloat16


def precision_context(precision: Precision, device: torch.device) -> ContextManager:
    """Autocast for "nava" (bf16 compute, as the release), nothing for "fp32"."""
    if precision == "nava":
        return torch.autocast(device_type=device.type, dtype=LOW_DTYPE)
    return contextlib.nullcontext()


def low_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype the release's explicit `.bfloat16()` casts target under the active policy.

    None means "no cast" (fp32 policy): the policy is read from the autocast state so that modules
    need no precision flag of their own.
    """
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


def to_low(x: torch.Tensor) -> torch.Tensor:
    """Apply one of the release's explicit bf16 casts (identity under the fp32 policy)."""
    dtype = low_dtype(x.device)
    return x if dtype is None else x.to(dtype)
