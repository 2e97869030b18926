"""Cross-attention text keys/values kept for the life of the context tensors they came from.

Why: the text context of a render never changes between steps, yet every step recomputed the text
embedding MLP and, in every block, the k/v projections (+ RMSNorm) of 512 text rows per branch.
The cache is keyed by the *identity* of the caller's context tensors (weak references + their
version counters) plus the speaker rows injected into them, so a hit is only possible while the very
same, unmodified tensors are passed again (the pipeline passes `Conditions.context` every step);
new or modified tensors miss, dead ones are dropped. Inference only: with autograd on it is bypassed.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

KV = list[tuple[torch.Tensor, torch.Tensor] | None]


def _tensor_key(t: torch.Tensor) -> tuple:
    if t.numel() == 0:  # empty speaker tables are re-created every call; their content is their shape
        return ("empty", tuple(t.shape), t.dtype)
    return ("tensor", id(t), t._version, tuple(t.shape), t.dtype, t.device)


@dataclass
class _Entry:
    refs: list[weakref.ref]
    ctx: torch.Tensor
    kv: dict[tuple[int, tuple[bool, bool]], KV] = field(default_factory=dict)

    def alive(self) -> bool:
        return all(r() is not None for r in self.refs)


class TextKVCache:
    """Bounded map: (context tensors, speakers, policy) -> embedded context + per-block text (k, v)."""

    def __init__(self, max_entries: int = 8) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(context: list[torch.Tensor], speaker_embeddings: Any, speaker_positions: Any, policy: Any) -> tuple:
        spk = None
        if speaker_embeddings is not None:
            spk = (tuple(_tensor_key(e) for e in speaker_embeddings),
                   tuple(tuple(int(p) for p in pos) for pos in speaker_positions or []))
        return (tuple(_tensor_key(c) for c in context), spk, policy)

    def lookup(self, key: tuple) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or not entry.alive():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def store(self, key: tuple, tensors: list[torch.Tensor], ctx: torch.Tensor) -> _Entry:
        for k in [k for k, e in self._entries.items() if not e.alive()]:
            del self._entries[k]
        while len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
        entry = _Entry([weakref.ref(t) for t in tensors if t.numel()], ctx)
        self._entries[key] = entry
        return entry

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
