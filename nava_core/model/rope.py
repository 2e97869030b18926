"""Rotary position angles for the joint [video; audio] sequence, as real (cos, sin) tables.

Video uses Wan's 3D split of the head's rotation pairs (t / h / w = 22 / 21 / 21 for head_dim 128) at
integer positions. Audio token n sits at t = s*n (s = temporal_rope_scaling_factor, 0.24 = 6 latent
frames/s over 25 audio tokens/s) and h = w = 0, so only its temporal band rotates.

Why real tables and not the release's complex128 product: the arithmetic is the same
((a + ib)(c + is) = (ac - bs) + i(as + bc)), but complex tensors stop torch.compile/Inductor from
fusing RoPE with the norms around it, and float64 doubles the memory traffic of the two largest
elementwise ops of a block. Angles are always computed in float64; `apply_rope` computes in the
table's dtype: float64 tables reproduce the release's complex math (the fp32 policy, and the golden
check), float32 tables are what the "nava" (bf16) policy uses, whose output is rounded to bf16 anyway.
The difference float32 vs float64 after that rounding is measured in tests/test_rope.py.
"""

from __future__ import annotations

import torch

THETA = 10000.0


def rope_bands(head_dim: int) -> tuple[int, int, int]:
    """Number of rotation pairs per axis (t, h, w): Wan's split, t takes the remainder."""
    pairs = head_dim // 2
    hw = pairs // 3
    return pairs - 2 * hw, hw, hw


def _inverse_frequencies(pairs: int, device: torch.device, theta: float = THETA) -> torch.Tensor:
    dim = 2 * pairs
    return 1.0 / torch.pow(theta, torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)


def _table(angles: torch.Tensor) -> torch.Tensor:
    """[..., pairs] angles -> [..., pairs, 2] (cos, sin) float64."""
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def video_rope(grid: tuple[int, int, int], head_dim: int, device: torch.device) -> torch.Tensor:
    """Rotations [F*H*W, head_dim/2, 2] (cos, sin) for a (F, H, W) token grid in row-major (f, h, w) order."""
    f, h, w = grid
    bt, bh, bw = rope_bands(head_dim)
    parts = []
    for n, size, pairs in ((0, f, bt), (1, h, bh), (2, w, bw)):
        pos = torch.arange(size, device=device, dtype=torch.float64)
        ang = torch.outer(pos, _inverse_frequencies(pairs, device))
        shape = [1, 1, 1, pairs]
        shape[n] = size
        parts.append(ang.view(shape).expand(f, h, w, pairs))
    angles = torch.cat(parts, dim=-1).reshape(f * h * w, head_dim // 2)
    return _table(angles)


def audio_rope(length: int, head_dim: int, scale: float, device: torch.device) -> torch.Tensor:
    """Rotations [L, head_dim/2, 2]: temporal band at positions scale*n, other pairs identity (1, 0)."""
    bt, _, _ = rope_bands(head_dim)
    pos = torch.arange(length, device=device, dtype=torch.float64)
    ang_t = torch.outer(pos, scale * _inverse_frequencies(bt, device))
    angles = torch.cat([ang_t, ang_t.new_zeros(length, head_dim // 2 - bt)], dim=1)
    return _table(angles)


def identity_rotations(batch: int, length: int, pairs: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[batch, length, 1, pairs, 2] rotations by angle 0 (what padded tokens get)."""
    out = torch.zeros(batch, length, 1, pairs, 2, dtype=dtype, device=device)
    out[..., 0] = 1
    return out


def pad_rotations(rotations: list[torch.Tensor], length: int) -> torch.Tensor:
    """Stack per-sample rotations into [B, length, 1, pairs, 2] float64; padded rows are identity."""
    pairs = rotations[0].shape[-2]
    out = identity_rotations(len(rotations), length, pairs, torch.float64, rotations[0].device)
    for i, r in enumerate(rotations):
        out[i, : r.shape[0], 0] = r
    return out


def pad_identity(rotations: torch.Tensor, pad: int) -> torch.Tensor:
    """Append `pad` identity rows to [B, L, 1, pairs, 2] rotations (sequence-parallel padding)."""
    if not pad:
        return rotations
    b, _, _, pairs, _ = rotations.shape
    return torch.cat([rotations, identity_rotations(b, pad, pairs, rotations.dtype, rotations.device)], dim=1)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, heads, head_dim] by rotations [B, L, 1, head_dim/2, 2], in the table's dtype.

    Returns the table's dtype (the caller casts to its policy's dtype).
    """
    b, l, n, d = x.shape
    pairs = x.to(rotations.dtype).reshape(b, l, n, d // 2, 2)
    re, im = pairs.unbind(-1)
    cos, sin = rotations.unbind(-1)
    return torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1).flatten(3)
