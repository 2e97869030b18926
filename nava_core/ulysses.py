"""Ulysses sequence parallelism for the NAVA backbone: the math of splitting one forward over N ranks.

The release splits one render over 8 GPUs with Ulysses: every rank holds 1/N of the tokens, and around
each self-attention an all-to-all trades the sequence split for a head split.

- `UlyssesContext` shards the joint [video; audio] sequence of a forward: the two streams are
  concatenated, padded at the END to a multiple of N and cut into N equal chunks (`JointLayout`), so
  a rank may hold video, audio or both, and the gathered key mask is always a prefix (flash-attn's
  varlen path keeps `key[:mask.sum()]`; padding each stream separately put padded keys inside the
  sequence at degrees 3, 6, 12, 24 at 720p). Each joint self-attention is one scatter-heads /
  gather-sequence all-to-all -> attention (the no-align pass: video->video and audio->audio over the
  two contiguous ranges) -> reverse all-to-all; the key mask comes from the layout, built once per
  render without communication. Cross-attention to the (replicated) text runs locally. The streams
  are all-gathered before the output heads, so every rank ends with the same full sequence and the
  sampler state stays identical on all ranks without further communication.
  Diffusers' context parallelism (`_cp_plan` + `ContextParallelConfig`) was the first choice, but its
  plan splits fixed tensor arguments at module boundaries, while NAVA's blocks take two streams of
  different lengths plus per-stream RoPE tables, key masks and time indices.
- `SyncedCancel` broadcasts rank 0's cancel flag at every step check, so all ranks stop at the same step.

Who runs the ranks: `nava_core.workers.WorkerGroup` (persistent local processes behind the studio and
`nava-render --gpus N`) or torchrun (`python -m nava_core.torchrun`, multi-node). N must divide the
attention heads: `nava_core.config.valid_gpu_counts`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from nava_core.config import valid_gpu_counts
from nava_core.progress import CancelToken, RenderCancelled

logger = logging.getLogger(__name__)

VIDEO, AUDIO = 0, 1


# ---- Ulysses ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JointLayout:
    """How one forward's joint [video; audio] sequence is split over N ranks.

    The streams are concatenated, padded AT THE END to a multiple of N and cut into N equal chunks,
    so the gathered sequence is the joint sequence in order with all padding last: every key mask is
    a prefix (what `flash_varlen`, which keeps `key[:mask.sum()]`, needs). Padding each stream
    separately would leave padded keys inside the sequence (degrees 3, 6, 12, 24 at 720p).
    A rank may hold only video, only audio, or both; the padding counts as padded tokens of the last
    stream (audio, or video in a video-only forward).
    """

    video: int  # video tokens (0 when the forward has no video)
    audio: int  # audio tokens (0 when the forward has no audio)
    world_size: int

    @property
    def total(self) -> int:
        return self.video + self.audio

    @property
    def pad(self) -> int:
        return (-self.total) % self.world_size

    @property
    def chunk(self) -> int:
        return (self.total + self.pad) // self.world_size

    def rank_range(self, rank: int) -> tuple[int, int]:
        return rank * self.chunk, (rank + 1) * self.chunk

    def local_slices(self, rank: int) -> tuple[slice, slice]:
        """This rank's token ranges in the video stream and in the end-padded audio stream."""
        s, e = self.rank_range(rank)
        if not self.audio:  # video-only: the padding extends the video stream
            return slice(s, e), slice(0, 0)
        v = slice(min(s, self.video), min(e, self.video))
        a = slice(max(s, self.video) - self.video, max(e, self.video) - self.video)
        return v, a

    def key_mask(self, video_mask: torch.Tensor | None, audio_mask: torch.Tensor | None,
                 batch: int, device: torch.device) -> torch.Tensor:
        """The gathered [B, N*chunk] key mask: the streams' own masks in order, then False padding."""
        parts = []
        for n, m in ((self.video, video_mask), (self.audio, audio_mask)):
            if n:
                parts.append(m if m is not None else torch.ones(batch, n, dtype=torch.bool, device=device))
        parts.append(torch.zeros(batch, self.pad, dtype=torch.bool, device=device))
        return torch.cat(parts, dim=1)


@dataclass
class ShardInfo:
    """The layout of the forward being run, to gather and split the streams after the blocks."""

    layout: JointLayout
    present: list[bool]


@dataclass
class UlyssesContext:
    """Sequence parallel state of one rank; set on a WanAVModel with `enable_ulysses`."""

    world_size: int
    rank: int
    group: Any = None  # torch.distributed process group (None: the default group)
    # The joint key mask, built from the layout (no communication) once per distinct layout and
    # kept: a render repeats the same layout at every step, so it is built once per render.
    _masks: dict = field(default_factory=dict, repr=False)
    _current: tuple | None = field(default=None, repr=False)

    # -- streams

    def shard(self, streams: list, states: list) -> tuple[list, list, ShardInfo]:
        """Keep this rank's chunk of the end-padded joint sequence, split back into its two streams."""
        from nava_core.model.blocks import StreamState

        present = [x is not None for x in streams]
        lengths = [x.shape[1] if x is not None else 0 for x in streams]
        batch = next(x.shape[0] for x in streams if x is not None)
        device = next(x.device for x in streams if x is not None)
        layout = JointLayout(lengths[VIDEO], lengths[AUDIO], self.world_size)
        masks = [st.key_mask if st is not None else None for st in states]
        key = (layout, batch, str(device), *(None if m is None else tuple(m.sum(1).tolist()) for m in masks))
        if key not in self._masks:
            self._masks.clear()  # one layout per render: keep only the current one
            full = layout.key_mask(masks[VIDEO], masks[AUDIO], batch, device)
            self._masks[key] = (full, None if bool(full.all()) else full)
        self._current = self._masks[key] + (layout,)
        slices = layout.local_slices(self.rank)
        out_streams: list = [None, None]
        out_states: list = [None, None]
        for i, (x, st) in enumerate(zip(streams, states)):
            if x is None:
                continue
            mask = st.key_mask if st.key_mask is not None else torch.ones(batch, x.shape[1], dtype=torch.bool, device=device)
            rotations, time_index = st.rotations, st.time_index
            if layout.pad and (i == AUDIO or not present[AUDIO]):
                pad = layout.pad
                x = torch.cat([x, x.new_zeros(batch, pad, x.shape[2])], dim=1)
                mask = torch.cat([mask, mask.new_zeros(batch, pad)], dim=1)
                rotations = torch.cat([rotations, rotations.new_ones(batch, pad, *rotations.shape[2:])], dim=1)
                if time_index is not None:
                    time_index = torch.cat([time_index, time_index.new_zeros(batch, pad)], dim=1)
            sl = slices[i]
            out_streams[i] = x[:, sl].contiguous()
            out_states[i] = StreamState(
                rotations=rotations[:, sl].contiguous(),
                key_mask=mask[:, sl].contiguous(),
                time_index=time_index[:, sl].contiguous() if time_index is not None else None,
                e0=st.e0,
            )
        return out_streams, out_states, ShardInfo(layout, present)

    def gather(self, streams: list, info: ShardInfo) -> list:
        """All-gather the joint chunks (equal on every rank) and split the full streams back out."""
        local = torch.cat([x for x in streams if x is not None], dim=1)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        self._all_gather(parts, local)
        joint = torch.cat(parts, dim=1)
        lay = info.layout
        out: list = [None, None]
        if info.present[VIDEO]:
            out[VIDEO] = joint[:, : lay.video]
        if info.present[AUDIO]:
            out[AUDIO] = joint[:, lay.video : lay.total]
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

    def _to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, Ll, H, d] local tokens, all heads -> [B, N*Ll, H/N, d] all tokens (rank order), H/N heads."""
        n = self.world_size
        b, length, heads, d = x.shape
        x = x.reshape(b, length, n, heads // n, d).permute(2, 0, 1, 3, 4)
        y = self._all_to_all(x)  # [src rank, B, Ll, H/N, d]
        return y.permute(1, 0, 2, 3, 4).reshape(b, n * length, heads // n, d)

    def _to_tokens(self, out: torch.Tensor, length: int, heads: int) -> torch.Tensor:
        """The reverse all-to-all: [B, N*Ll, H/N, d] -> [B, Ll, H, d]."""
        n = self.world_size
        b, dv = out.shape[0], out.shape[-1]
        out = out.reshape(b, n, length, heads // n, dv).permute(1, 0, 2, 3, 4)
        back = self._all_to_all(out)  # [head group, B, Ll, H/N, d]
        return back.permute(1, 2, 0, 3, 4).reshape(b, length, heads, dv)

    # -- attention

    def joint_attention(self, queries: list[torch.Tensor], keys: list[torch.Tensor], values: list[torch.Tensor],
                        block_diagonal: bool) -> list[torch.Tensor]:
        """The joint self-attention of this rank's streams (video first), Ulysses-style.

        One all-to-all of the concatenated local q/k/v gives every rank the whole joint sequence in
        order (padding last) for H/N heads; it attends with the prefix key mask of `shard` (or, for the
        no-align pass, video->video and audio->audio over the two contiguous stream ranges), then the
        reverse all-to-all. Exact: the same keys and masks as one process.
        """
        from nava_core.model.attention import attention as plain_attention

        if self._current is None:
            raise RuntimeError("joint_attention called before shard()")
        _full, mask, layout = self._current
        lengths = [q.shape[1] for q in queries]
        local = sum(lengths)
        heads = queries[0].shape[2]
        if heads % self.world_size:
            raise ValueError(f"{heads} attention heads cannot be split over {self.world_size} ranks")
        q = self._to_heads(torch.cat(queries, dim=1))
        k = self._to_heads(torch.cat(keys, dim=1))
        v = self._to_heads(torch.cat(values, dim=1))
        if block_diagonal and layout.video and layout.audio:
            cut = layout.video
            out = torch.cat([
                plain_attention(q[:, :cut], k[:, :cut], v[:, :cut], _prefix_or_none(_full[:, :cut])),
                plain_attention(q[:, cut:], k[:, cut:], v[:, cut:], _prefix_or_none(_full[:, cut:])),
            ], dim=1)
        else:
            out = plain_attention(q, k, v, mask)
        return list(self._to_tokens(out, local, heads).split(lengths, dim=1))

    def attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  key_mask: torch.Tensor | None) -> torch.Tensor:
        """Attention of local queries to keys every rank holds in full (the text cross-attention):
        nothing to exchange, the local computation is exact."""
        from nava_core.model.attention import attention as plain_attention

        if key.shape[1] != value.shape[1]:
            raise ValueError("keys and values differ in length")
        return plain_attention(query, key, value, key_mask)


def _prefix_or_none(mask: torch.Tensor) -> torch.Tensor | None:
    return None if bool(mask.all()) else mask


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
