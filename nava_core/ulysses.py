"""Ulysses sequence parallelism for the NAVA backbone: the math of splitting one forward over N ranks.

The release splits one render over 8 GPUs with Ulysses: every rank holds 1/N of the tokens, and around
each self-attention an all-to-all trades the sequence split for a head split.

- `UlyssesContext` shards the video and audio streams of a forward (each padded to a multiple of N,
  padded keys masked, trimmed again after the last block), runs each joint [video; audio] attention
  as scatter-heads/gather-sequence all-to-all -> attention -> reverse all-to-all, and all-gathers the
  streams before the output heads. Everything else in a block is per token and runs on the shard.
  After the gather every rank holds the same full sequence, so the sampler state stays identical
  on all ranks without further communication.
  Diffusers' context parallelism (`_cp_plan` + `ContextParallelConfig`) was the first choice, but its
  plan splits fixed tensor arguments at module boundaries, while NAVA's blocks take two streams of
  different lengths plus per-stream RoPE tables, key masks and time indices, and the gathered joint
  sequence is rank-interleaved ([v0; a0; v1; a1; ...]) so the key mask must be gathered the same way;
  the few lines below are exact and cover both streams and the no-align (block-diagonal) pass.
- `SyncedCancel` broadcasts rank 0's cancel flag at every step check, so all ranks stop at the same step.

Who runs the ranks: `nava_core.workers.WorkerGroup` (persistent local processes behind the studio and
`nava-render --gpus N`) or torchrun (`python -m nava_core.torchrun`, multi-node). N must divide the
attention heads: `nava_core.config.valid_gpu_counts`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from nava_core.config import valid_gpu_counts
from nava_core.progress import CancelToken, RenderCancelled

logger = logging.getLogger(__name__)

VIDEO, AUDIO = 0, 1


# ---- Ulysses ---------------------------------------------------------------------------------------


@dataclass
class ShardInfo:
    """Original (unpadded) length of each stream, to trim after the gather."""

    lengths: list[int | None]


@dataclass
class UlyssesContext:
    """Sequence parallel state of one rank; set on a WanAVModel with `enable_ulysses`."""

    world_size: int
    rank: int
    group: Any = None  # torch.distributed process group (None: the default group)

    # -- streams

    def _pad(self, length: int) -> int:
        return (-length) % self.world_size

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1] // self.world_size
        return x[:, self.rank * n:(self.rank + 1) * n].contiguous()

    def shard(self, streams: list, states: list) -> tuple[list, list, ShardInfo]:
        """Pad each stream (and its per-token state) to a multiple of N and keep this rank's slice."""
        from nava_core.model.blocks import StreamState

        out_streams: list = [None, None]
        out_states: list = [None, None]
        lengths: list[int | None] = [None, None]
        for i, (x, st) in enumerate(zip(streams, states)):
            if x is None:
                continue
            b, length = x.shape[0], x.shape[1]
            pad = self._pad(length)
            lengths[i] = length
            mask = st.key_mask if st.key_mask is not None else torch.ones(b, length, dtype=torch.bool, device=x.device)
            rotations = st.rotations
            time_index = st.time_index
            if pad:
                x = torch.cat([x, x.new_zeros(b, pad, x.shape[2])], dim=1)
                mask = torch.cat([mask, mask.new_zeros(b, pad)], dim=1)
                rotations = torch.cat([rotations, rotations.new_ones(b, pad, *rotations.shape[2:])], dim=1)
                if time_index is not None:
                    time_index = torch.cat([time_index, time_index.new_zeros(b, pad)], dim=1)
            out_streams[i] = self._local(x)
            out_states[i] = StreamState(
                rotations=self._local(rotations),
                key_mask=self._local(mask),
                time_index=self._local(time_index) if time_index is not None else None,
                e0=st.e0,
            )
        return out_streams, out_states, ShardInfo(lengths)

    def gather(self, streams: list, info: ShardInfo) -> list:
        """All-gather the shards of each stream and trim the padding."""
        out: list = [None, None]
        for i, x in enumerate(streams):
            if x is None:
                continue
            parts = [torch.empty_like(x) for _ in range(self.world_size)]
            self._all_gather(parts, x)
            out[i] = torch.cat(parts, dim=1)[:, : info.lengths[i]]
        return out

    # -- communication (gloo cannot move bf16 everywhere: carried as fp32, exactly)

    def _wire(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16) and dist.get_backend(self.group) == "gloo":
            return x.float()
        return x

    def _all_gather(self, parts: list[torch.Tensor], x: torch.Tensor) -> None:
        wire = self._wire(x)
        if wire is x:
            dist.all_gather(parts, x.contiguous(), group=self.group)
            return
        tmp = [torch.empty_like(wire) for _ in parts]
        dist.all_gather(tmp, wire.contiguous(), group=self.group)
        for p, t in zip(parts, tmp):
            p.copy_(t.to(p.dtype))

    def _all_to_all(self, x: torch.Tensor) -> torch.Tensor:
        wire = self._wire(x).contiguous()
        out = torch.empty_like(wire)
        dist.all_to_all_single(out, wire, group=self.group)
        return out.to(x.dtype)

    # -- attention

    def attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  key_mask: torch.Tensor | None) -> torch.Tensor:
        """Ulysses attention on local [B, L_local, H, d] tensors; the key mask is local too.

        Scatter heads / gather sequence, attend over the whole (rank-interleaved) sequence with the
        gathered mask, then the reverse all-to-all. Exact: attention does not depend on key order as
        long as the mask follows the keys.
        """
        from nava_core.model.attention import attention as plain_attention

        n = self.world_size
        b, length, heads, d = query.shape
        if heads % n:
            raise ValueError(f"{heads} attention heads cannot be split over {n} ranks")

        def to_heads(x: torch.Tensor) -> torch.Tensor:  # [B,Ll,H,d] -> [B, N*Ll, H/N, d]
            x = x.reshape(b, length, n, heads // n, x.shape[-1]).permute(2, 0, 1, 3, 4)
            y = self._all_to_all(x)  # [src rank, B, Ll, H/N, d]
            return y.permute(1, 0, 2, 3, 4).reshape(b, n * length, heads // n, x.shape[-1])

        mask = key_mask if key_mask is not None else torch.ones(b, length, dtype=torch.bool, device=query.device)
        masks = [torch.empty(b, length, dtype=torch.uint8, device=query.device) for _ in range(n)]
        dist.all_gather(masks, mask.to(torch.uint8).contiguous(), group=self.group)
        full_mask = torch.cat(masks, dim=1).bool()
        out = plain_attention(to_heads(query), to_heads(key), to_heads(value),
                              None if bool(full_mask.all()) else full_mask)
        dv = out.shape[-1]
        out = out.reshape(b, n, length, heads // n, dv).permute(1, 0, 2, 3, 4)
        back = self._all_to_all(out)  # [head group, B, Ll, H/N, d]
        return back.permute(1, 2, 0, 3, 4).reshape(b, length, heads, dv)


def enable_ulysses(model: torch.nn.Module, ctx: UlyssesContext | None) -> None:
    """Run `model` (a WanAVModel) sequence-parallel with `ctx` (None: back to single-process)."""
    heads = model.config.num_heads
    if ctx is not None and heads % ctx.world_size:
        raise ValueError(f"Ulysses degree {ctx.world_size} must divide the {heads} attention heads; "
                         f"use one of {valid_gpu_counts(num_heads=heads)}")
    model.sequence_parallel = ctx if ctx is not None and ctx.world_size > 1 else None
    for block in [*model.double_blocks, *model.single_blocks]:
        block.self_attn.parallel_config = model.sequence_parallel


# ---- cancellation that every rank sees at the same step ----------------------------------------------


class SyncedCancel(CancelToken):
    """Rank 0 reads the studio's cancel flag; each check broadcasts it so all ranks stop together."""

    def __init__(self, flag: Any, device: torch.device, group: Any = None) -> None:
        super().__init__()
        self.flag = flag  # multiprocessing Event (rank 0) or None
        self.device = device
        self.group = group

    def raise_if_cancelled(self) -> None:
        wanted = 1 if (dist.get_rank() == 0 and self.flag is not None and self.flag.is_set()) else 0
        t = torch.tensor([wanted], dtype=torch.int32, device=self.device)
        dist.broadcast(t, src=0, group=self.group)
        if int(t.item()):
            self.cancel()
            raise RenderCancelled("render cancelled")



# ---- one rank's pipeline ------------------------------------------------------------------------


def load_parallel_pipeline(weights: str, device: torch.device, precision: str, memory_profile: str,
                           ctx: UlyssesContext) -> Any:
    """One rank's pipeline: weights loaded once, profile applied, backbone made sequence-parallel."""
    from nava_core import memory
    from nava_core.pipeline import NAVAPipeline

    pipe = NAVAPipeline.from_pretrained(weights, device=device, precision=precision)
    memory.apply_profile(pipe, memory_profile)
    enable_ulysses(pipe.transformer, ctx)
    return pipe
