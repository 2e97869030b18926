"""The backbone's attention calls, in one place.

Every attention of the model goes through `attention()` (diffusers' `dispatch_attention_fn`, so the
backend is SDPA by default, flash-attn when installed and selected, and diffusers context
parallelism can hook in through `parallel_config`). `joint_self_attention()` is the one function
that sees the whole [video; audio] sequence: a Ulysses pass replaces/wraps it (all-to-all on the
concatenated q/k/v) and leaves the per-token code around it untouched.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

_FLASH_AVAILABLE = importlib.util.find_spec("flash_attn") is not None


def _backend_for(query: torch.Tensor, masked: bool) -> str | None:
    """flash-attn (varlen when keys are masked) on CUDA half precision when installed; else default."""
    if _FLASH_AVAILABLE and query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        return "flash_varlen" if masked else "flash"
    return None


def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    parallel_config: Any = None,
) -> torch.Tensor:
    """Scaled dot-product attention on [B, L, heads, head_dim] tensors.

    key_mask [B, Lk] (bool, True = real token) hides padded keys; queries are never masked (padded
    query rows are computed and discarded by the caller). q/k/v share v's dtype, like the release.
    """
    if hasattr(parallel_config, "shard"):  # nava_core.ulysses.UlyssesContext: all-to-all around this call
        return parallel_config.attention(query, key, value, key_mask)
    query = query.to(value.dtype)
    key = key.to(value.dtype)
    return dispatch_attention_fn(
        query,
        key,
        value,
        attn_mask=key_mask,
        backend=_backend_for(query, key_mask is not None),
        parallel_config=parallel_config,
    )


def _joint_mask(masks: list[torch.Tensor | None], lengths: list[int], like: torch.Tensor) -> torch.Tensor | None:
    if all(m is None for m in masks):
        return None
    full = [
        m if m is not None else torch.ones(like.shape[0], n, dtype=torch.bool, device=like.device)
        for m, n in zip(masks, lengths)
    ]
    return torch.cat(full, dim=1)


def joint_self_attention(
    queries: list[torch.Tensor],
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    key_masks: list[torch.Tensor | None],
    block_diagonal: bool = False,
    parallel_config: Any = None,
) -> list[torch.Tensor]:
    """Self-attention over the concatenation of the given streams (video first, then audio).

    Normal pass: ONE attention over [video; audio], keys masked to each stream's real length.
    No-align pass (`block_diagonal`): the block-diagonal mask video->video, audio->audio, realised
    as one attention per stream (never materialising an L x L mask).
    Returns one output per stream, same shapes as the queries.
    """
    if hasattr(parallel_config, "joint_attention"):  # nava_core.ulysses: one all-to-all over the joint sequence
        return parallel_config.joint_attention(queries, keys, values, block_diagonal)
    if block_diagonal or len(queries) == 1:
        return [
            attention(q, k, v, m, parallel_config)
            for q, k, v, m in zip(queries, keys, values, key_masks)
        ]
    lengths = [q.shape[1] for q in queries]
    out = attention(
        torch.cat(queries, dim=1),
        torch.cat(keys, dim=1),
        torch.cat(values, dim=1),
        _joint_mask(key_masks, lengths, queries[0]),
        parallel_config,
    )
    return list(out.split(lengths, dim=1))
