"""Rotary position angles for the joint [video; audio] sequence.

Video uses Wan's 3D split of the head's complex pairs (t / h / w = 22 / 21 / 21 for head_dim 128) at
integer positions. Audio token n sits at t = s*n (s = temporal_rope_scaling_factor, 0.24 = 6 latent
frames/s over 25 audio tokens/s) and h = w = 0, so only its temporal band rotates. Angles are built
and applied in float64 like the release; the rotated output is cast back by the caller's policy.
"""

from __future__ import annotations

import torch

THETA = 10000.0


def rope_bands(head_dim: int) -> tuple[int, int, int]:
    """Number of complex pairs per axis (t, h, w): Wan's split, t takes the remainder."""
    pairs = head_dim // 2
    hw = pairs // 3
    return pairs - 2 * hw, hw, hw


def _inverse_frequencies(pairs: int, device: torch.device, theta: float = THETA) -> torch.Tensor:
    dim = 2 * pairs
    return 1.0 / torch.pow(theta, torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)


def video_rope(grid: tuple[int, int, int], head_dim: int, device: torch.device) -> torch.Tensor:
    """Complex rotations [F*H*W, head_dim/2] for a (F, H, W) token grid in row-major (f, h, w) order."""
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
    return torch.polar(torch.ones_like(angles), angles)


def audio_rope(length: int, head_dim: int, scale: float, device: torch.device) -> torch.Tensor:
    """Complex rotations [L, head_dim/2]: temporal band at positions scale*n, other pairs identity."""
    bt, _, _ = rope_bands(head_dim)
    pos = torch.arange(length, device=device, dtype=torch.float64)
    ang_t = torch.outer(pos, scale * _inverse_frequencies(bt, device))
    angles = torch.cat([ang_t, ang_t.new_zeros(length, head_dim // 2 - bt)], dim=1)
    return torch.polar(torch.ones_like(angles), angles)


def pad_rotations(rotations: list[torch.Tensor], length: int) -> torch.Tensor:
    """Stack per-sample rotations into [B, length, 1, pairs]; padded rows are identity (1+0j)."""
    pairs = rotations[0].shape[-1]
    out = torch.ones(len(rotations), length, pairs, dtype=torch.complex128, device=rotations[0].device)
    for i, r in enumerate(rotations):
        out[i, : r.shape[0]] = r
    return out.unsqueeze(2)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, heads, head_dim] by rotations [B, L, 1, head_dim/2] (float64 math)."""
    b, l, n, d = x.shape
    xc = torch.view_as_complex(x.to(torch.float64).reshape(b, l, n, d // 2, 2))
    return torch.view_as_real(xc * rotations).flatten(3)
