"""Transformer blocks of the backbone: norms, modulation, attention layers, double and single blocks.

Both block kinds work on a list of streams `[video, audio]` (either may be None) instead of one
concatenated tensor: every op except self-attention is per token, so keeping the streams apart lets
the double block use per-modality weights without slicing, and lets the single block (one weight set)
run the same code. Only `joint_self_attention` concatenates the streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .attention import attention, joint_self_attention
from .precision import low_dtype, to_low
from .rope import apply_rope

VIDEO, AUDIO = 0, 1
_AUDIO_SUFFIX = "_audio"


class RMSNorm(nn.Module):
    """Wan's RMSNorm over the full width (before the head split), in the policy's low dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xl = to_low(x)
        normed = xl * torch.rsqrt(xl.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * to_low(self.weight)


class LayerNorm(nn.LayerNorm):
    """LayerNorm fed the policy's low dtype, output back in the input's dtype (release behaviour)."""

    def __init__(self, dim: int, eps: float, elementwise_affine: bool = False) -> None:
        super().__init__(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(to_low(x)).type_as(x)


class Modulation(nn.Module):
    """Learned per-block offset added to the timestep projection (key `...modulation.modulation`)."""

    def __init__(self, dim: int, num: int = 6) -> None:
        super().__init__()
        self.modulation = nn.Parameter(torch.randn(1, num, dim) / dim**0.5)

    def forward(self, e0: torch.Tensor) -> torch.Tensor:
        """e0 [B, K, num, D] (K distinct timesteps per sample) -> same shape."""
        return to_low(self.modulation) + to_low(e0)


@dataclass
class StreamState:
    """Per-stream side inputs shared by all blocks of one forward (sequence-dim tensors for CP)."""

    rotations: torch.Tensor  # [B, L, 1, head_dim/2] complex128
    key_mask: torch.Tensor | None  # [B, L] bool, None when no padding
    time_index: torch.Tensor | None  # [B, L] index into the K timestep rows, None when K == 1
    e0: torch.Tensor  # [B, K, 6, D] timestep projection


def _per_token(chunk: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """[B, K, D] -> [B, L, D] (gather by time index) or [B, 1, D] (broadcast) when K == 1."""
    if index is None:
        return chunk
    return torch.gather(chunk, 1, index.unsqueeze(-1).expand(-1, -1, chunk.shape[-1]))


class _Projections(nn.Module):
    """q/k/v/o + RMSNorm(q), RMSNorm(k); `dual` adds the `_audio` copy used by the audio stream."""

    def __init__(self, dim: int, num_heads: int, eps: float, dual: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dual = dual
        suffixes = ["", _AUDIO_SUFFIX] if dual else [""]
        for s in suffixes:
            for name in ("q", "k", "v", "o"):
                self.add_module(name + s, nn.Linear(dim, dim))
            self.add_module("norm_q" + s, RMSNorm(dim, eps))
            self.add_module("norm_k" + s, RMSNorm(dim, eps))
        self.parallel_config: Any = None  # set by a context-parallel wrapper

    def layer(self, name: str, stream: int) -> nn.Module:
        return getattr(self, name + (_AUDIO_SUFFIX if self.dual and stream == AUDIO else ""))

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1))


class SelfAttention(_Projections):
    """Self-attention over the joint [video; audio] sequence with per-stream (or shared) weights."""

    def forward(
        self, streams: list[torch.Tensor | None], states: list[StreamState | None], block_diagonal: bool
    ) -> list[torch.Tensor | None]:
        qs, ks, vs, masks, present = [], [], [], [], []
        for i, x in enumerate(streams):
            if x is None:
                continue
            st = states[i]
            out_dtype = low_dtype(x.device) or x.dtype
            q = self.heads(self.layer("norm_q", i)(self.layer("q", i)(x)))
            k = self.heads(self.layer("norm_k", i)(self.layer("k", i)(x)))
            qs.append(apply_rope(q, st.rotations).to(out_dtype))
            ks.append(apply_rope(k, st.rotations).to(out_dtype))
            vs.append(self.heads(self.layer("v", i)(x)))
            masks.append(st.key_mask)
            present.append(i)
        outs = joint_self_attention(qs, ks, vs, masks, block_diagonal, self.parallel_config)
        result: list[torch.Tensor | None] = [None, None]
        for i, y in zip(present, outs):
            result[i] = self.layer("o", i)(y.flatten(2))
        return result


class CrossAttention(_Projections):
    """Attention from each stream to the (padded, unmasked) text context."""

    def forward(self, streams: list[torch.Tensor | None], context: torch.Tensor) -> list[torch.Tensor | None]:
        result: list[torch.Tensor | None] = [None, None]
        shared_kv = None
        for i, x in enumerate(streams):
            if x is None:
                continue
            if self.dual or shared_kv is None:
                k = self.heads(self.layer("norm_k", i)(self.layer("k", i)(context)))
                v = self.heads(self.layer("v", i)(context))
                shared_kv = (k, v)
            k, v = shared_kv
            q = self.heads(self.layer("norm_q", i)(self.layer("q", i)(x)))
            result[i] = self.layer("o", i)(attention(q, k, v, None, self.parallel_config).flatten(2))
        return result


class _AVBlock(nn.Module):
    """Wan2.2 block applied to both streams: modulated self-attn, cross-attn, modulated FFN."""

    dual: bool = False

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, eps)
        self.self_attn = SelfAttention(dim, num_heads, eps, self.dual)
        self.norm3 = LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, num_heads, eps, self.dual)
        self.norm2 = LayerNorm(dim, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = Modulation(dim)
        if self.dual:
            self.modulation_audio = Modulation(dim)

    def _chunks(self, stream: int, st: StreamState) -> list[torch.Tensor]:
        mod = self.modulation_audio if (self.dual and stream == AUDIO) else self.modulation
        table = mod(st.e0)  # [B, K, 6, D]
        return [_per_token(table[:, :, j], st.time_index) for j in range(6)]

    def forward(
        self,
        streams: list[torch.Tensor | None],
        states: list[StreamState | None],
        context: torch.Tensor,
        block_diagonal: bool = False,
    ) -> list[torch.Tensor | None]:
        mods = [self._chunks(i, st) if x is not None else None for i, (x, st) in enumerate(zip(streams, states))]
        normed = [
            None if x is None else to_low(self.norm1(x)) * (1 + m[1]) + m[0] for x, m in zip(streams, mods)
        ]
        attn = self.self_attn(normed, states, block_diagonal)
        streams = [None if x is None else x + y * m[2] for x, y, m in zip(streams, attn, mods)]
        cross = self.cross_attn([None if x is None else self.norm3(x) for x in streams], context)
        out: list[torch.Tensor | None] = []
        for x, c, m in zip(streams, cross, mods):
            if x is None:
                out.append(None)
                continue
            x = x + c
            y = self.ffn(to_low(self.norm2(x)) * (1 + m[4]) + m[3])
            out.append(x + y * m[5])
        return out


class DoubleStreamBlock(_AVBlock):
    """"Alignment" block: per-modality attention projections and modulation, shared norm3 and FFN."""

    dual = True


class SingleStreamBlock(_AVBlock):
    """"Fusion" block: a plain Wan2.2 block over all tokens of both streams."""

    dual = False


class Head(nn.Module):
    """Output head: LayerNorm * (1 + scale) + shift from `modulation + e`, then a Linear."""

    def __init__(self, dim: int, out_dim: int, eps: float) -> None:
        super().__init__()
        self.norm = LayerNorm(dim, eps)
        self.head = nn.Linear(dim, out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor, time_index: torch.Tensor | None) -> torch.Tensor:
        """x [B, L, D]; e [B, K, D] time embedding rows; time_index [B, L] or None."""
        table = to_low(self.modulation).unsqueeze(0) + e.unsqueeze(2)  # [B, K, 2, D]
        shift, scale = (_per_token(table[:, :, j], time_index) for j in range(2))
        return self.head(self.norm(x) * (1 + scale) + shift)
