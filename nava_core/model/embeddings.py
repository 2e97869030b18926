"""Input embeddings: timesteps, audio tokens, speaker vectors (release module names)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPEAKER_ZERO_EPS = 1e-6  # squared norm at or below which a speaker vector means "no speaker"


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] timesteps -> [N, dim] float64: cos half then sin half, base 10000 (Wan's layout)."""
    half = dim // 2
    pos = t.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, device=t.device, dtype=torch.float64) / half)
    angles = torch.outer(pos, freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ChannelLastConv1d(nn.Conv1d):
    """Conv1d over [B, L, C] tensors (the audio stream is token-major)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class SwiGLUConv(nn.Module):
    """w2(silu(w1 x) * w3 x) with k7 channel-last convolutions and no bias."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.w1 = ChannelLastConv1d(dim, hidden_dim, kernel_size, padding=pad, bias=False)
        self.w2 = ChannelLastConv1d(hidden_dim, dim, kernel_size, padding=pad, bias=False)
        self.w3 = ChannelLastConv1d(dim, hidden_dim, kernel_size, padding=pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class AudioPatchEmbedding(nn.Sequential):
    """[1, L, audio_in] -> [1, L, dim]; neighbouring tokens mix (k7), so it runs per sample, unpadded."""

    def __init__(self, in_dim: int, dim: int, hidden_dim: int) -> None:
        super().__init__(
            ChannelLastConv1d(in_dim, dim, kernel_size=7, padding=3),
            nn.SiLU(),
            SwiGLUConv(dim, hidden_dim),
        )


class SpeakerEmbedding(nn.Module):
    """192-d speaker vector -> one context row; an all-zero vector maps to the learned `null_token`."""

    def __init__(self, speaker_dim: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(speaker_dim), nn.Linear(speaker_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.out_norm = nn.LayerNorm(dim)
        self.null_token = nn.Parameter(torch.zeros(1, dim))

    def forward(self, speaker: torch.Tensor) -> torch.Tensor:
        """[N, speaker_dim] -> [N, dim]."""
        is_null = speaker.float().pow(2).sum(dim=-1, keepdim=True) <= SPEAKER_ZERO_EPS
        emb = self.out_norm(self.net(speaker))
        null = self.null_token.expand_as(emb)
        dtype = torch.promote_types(emb.dtype, null.dtype)
        return torch.where(is_null, null.to(dtype), emb.to(dtype))
