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
from .backends import AttentionChoice
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

    rotations: torch.Tensor  # [B, L, 1, head_dim/2, 2] (cos, sin), float32 ("nava") or float64 ("fp32")
    key_mask: torch.Tensor | None  # [B, L] bool, None when no padding
    time_index: torch.Tensor | None  # [B, L] index into the K timestep rows, None when K == 1
    e0: torch.Tensor  # [B, K, 6, D] timestep projection
    # image-to-video: the first `clean_tokens` tokens of every sample take row 1 (t = 0), the rest row 0.
    # When set, modulation runs on the two slices with broadcast rows instead of gathering [B, L, D]
    # tables; None with a time_index (samples with different first-frame sizes) falls back to the gather.
    clean_tokens: int | None = None


def _per_token(chunk: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """[B, K, D] -> [B, L, D] (gather by time index) or [B, 1, D] (broadcast) when K == 1."""
    if index is None:
        return chunk
    return torch.gather(chunk, 1, index.unsqueeze(-1).expand(-1, -1, chunk.shape[-1]))


class TokenModulation:
    """A stream's six modulation rows [B, K, 6, D] applied per token.

    K == 1: every token shares row 0 (broadcast). Image-to-video (K == 2): tokens before `split` use
    row 1 and the rest row 0; the ops run on the two slices with [B, 1, D] rows, which is elementwise
    the same arithmetic as gathering six [B, L, D] tables, without materialising them.
    """

    def __init__(self, table: torch.Tensor, state: StreamState) -> None:
        self.table = table
        self.split = state.clean_tokens if state.time_index is not None else None
        self.index = state.time_index if self.split is None else None

    def _row(self, j: int, k: int) -> torch.Tensor:
        return self.table[:, k:k + 1, j]

    def _apply(self, fn, x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        """fn(x, *tensors, rows...) per token; tensors share x's sequence dim."""
        if self.split is None:
            if self.index is None:
                return fn(x, *tensors, lambda j: self.table[:, :, j])
            return fn(x, *tensors, lambda j: _per_token(self.table[:, :, j], self.index))
        n = self.split
        if n <= 0:
            return fn(x, *tensors, lambda j: self._row(j, 0))
        if n >= x.shape[1]:
            return fn(x, *tensors, lambda j: self._row(j, 1))
        head = fn(x[:, :n], *(t[:, :n] for t in tensors), lambda j: self._row(j, 1))
        tail = fn(x[:, n:], *(t[:, n:] for t in tensors), lambda j: self._row(j, 0))
        return torch.cat([head, tail], dim=1)

    def modulate(self, x: torch.Tensor, shift: int, scale: int) -> torch.Tensor:
        """x * (1 + row[scale]) + row[shift]."""
        return self._apply(lambda v, r: v * (1 + r(scale)) + r(shift), x)

    def gated(self, x: torch.Tensor, y: torch.Tensor, gate: int) -> torch.Tensor:
        """x + y * row[gate]."""
        return self._apply(lambda v, w, r: v + w * r(gate), x, y)


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
        self.attention_backend: AttentionChoice | None = None  # set by WanAVModel.set_attention_backend

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
        outs = joint_self_attention(qs, ks, vs, masks, block_diagonal, self.parallel_config,
                                    self.attention_backend)
        result: list[torch.Tensor | None] = [None, None]
        for i, y in zip(present, outs):
            result[i] = self.layer("o", i)(y.flatten(2))
        return result


class CrossAttention(_Projections):
    """Attention from each stream to the (padded, unmasked) text context.

    The text keys/values depend only on the context, never on the step: `text_kv` computes them once
    and the model keeps them for a render (see `WanAVModel` and `TextKVCache`).
    """

    def text_kv(self, context: torch.Tensor, streams: list[bool]) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """(k, v) [B, Lt, heads, head_dim] per present stream; single-weight blocks share one pair."""
        result: list[tuple[torch.Tensor, torch.Tensor] | None] = [None, None]
        shared = None
        for i, present in enumerate(streams):
            if not present:
                continue
            if self.dual or shared is None:
                k = self.heads(self.layer("norm_k", i)(self.layer("k", i)(context)))
                v = self.heads(self.layer("v", i)(context))
                shared = (k, v)
            result[i] = shared
        return result

    def forward(
        self, streams: list[torch.Tensor | None], text_kv: list[tuple[torch.Tensor, torch.Tensor] | None]
    ) -> list[torch.Tensor | None]:
        result: list[torch.Tensor | None] = [None, None]
        for i, x in enumerate(streams):
            if x is None:
                continue
            k, v = text_kv[i]
            q = self.heads(self.layer("norm_q", i)(self.layer("q", i)(x)))
            result[i] = self.layer("o", i)(attention(q, k, v, None, self.parallel_config,
                                                      self.attention_backend).flatten(2))
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

    def _modulation(self, stream: int, st: StreamState) -> TokenModulation:
        mod = self.modulation_audio if (self.dual and stream == AUDIO) else self.modulation
        return TokenModulation(mod(st.e0), st)  # table [B, K, 6, D]

    def text_kv(self, context: torch.Tensor, streams: list[bool]) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Cross-attention keys/values of the text context for this block (constant during a render)."""
        return self.cross_attn.text_kv(context, streams)

    def forward(
        self,
        streams: list[torch.Tensor | None],
        states: list[StreamState | None],
        text: list[tuple[torch.Tensor, torch.Tensor] | None] | torch.Tensor,
        block_diagonal: bool = False,
    ) -> list[torch.Tensor | None]:
        """`text`: the cross-attention (k, v) per stream (from `text_kv`, cached by the model), or the
        embedded context itself (computed here: offload hooks that move this block's weights only
        wrap `forward`)."""
        text_kv = self.text_kv(text, [x is not None for x in streams]) if torch.is_tensor(text) else text
        mods = [self._modulation(i, st) if x is not None else None for i, (x, st) in enumerate(zip(streams, states))]
        normed = [None if x is None else m.modulate(to_low(self.norm1(x)), 0, 1) for x, m in zip(streams, mods)]
        attn = self.self_attn(normed, states, block_diagonal)
        streams = [None if x is None else m.gated(x, y, 2) for x, y, m in zip(streams, attn, mods)]
        cross = self.cross_attn([None if x is None else self.norm3(x) for x in streams], text_kv)
        out: list[torch.Tensor | None] = []
        for x, c, m in zip(streams, cross, mods):
            if x is None:
                out.append(None)
                continue
            x = x + c
            y = self.ffn(m.modulate(to_low(self.norm2(x)), 3, 4))
            out.append(m.gated(x, y, 5))
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
