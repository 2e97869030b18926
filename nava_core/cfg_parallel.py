"""CFG parallelism: the guidance branches of a step run on different GPU groups at the same time.

Why: a default NAVA step runs 3-4 backbone forwards (cond, negative, no-align, no-timbre) that share
nothing but their inputs. Ulysses alone splits each forward over all N GPUs, which costs four
all-to-alls per attention on ever smaller shards; splitting the *branches* across groups first
(as xDiT does) needs one exchange of predictions per step instead. With W ranks and CFG degree C,
the ranks form C groups of U = W / C consecutive ranks; each group runs its share of the branches
with Ulysses degree U inside the group, then every rank receives every branch's prediction from the
rank with the same Ulysses index in the owning group (one broadcast per branch), so all ranks hold
the same predictions and keep identical sampler states.

Branch i of the step's plan goes to group i mod C. A group may own no branch (C > branches): it
just receives. The exchange carries float32 predictions, which every rank already holds in full
after the Ulysses gather, so the result equals the single-process render up to the batching of
branches (the same tolerance as batched vs sequential branches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from nava_core.guidance import Branch, BranchForward, Pred, run_branches


@dataclass(frozen=True)
class ParallelLayout:
    """How W ranks split into C branch groups of U Ulysses ranks each."""

    world_size: int
    cfg_degree: int = 1

    def __post_init__(self) -> None:
        if self.cfg_degree < 1 or self.world_size % self.cfg_degree:
            raise ValueError(f"CFG degree {self.cfg_degree} must divide the {self.world_size} ranks")

    @property
    def ulysses_degree(self) -> int:
        return self.world_size // self.cfg_degree

    def cfg_index(self, rank: int) -> int:
        return rank // self.ulysses_degree

    def ulysses_index(self, rank: int) -> int:
        return rank % self.ulysses_degree

    def ulysses_ranks(self, cfg_index: int) -> list[int]:
        u = self.ulysses_degree
        return list(range(cfg_index * u, (cfg_index + 1) * u))

    def cfg_ranks(self, ulysses_index: int) -> list[int]:
        return [c * self.ulysses_degree + ulysses_index for c in range(self.cfg_degree)]


def assign_branches(branches: Sequence[Branch], degree: int) -> list[list[Branch]]:
    """Branch i -> group i mod degree (plan order kept inside a group)."""
    groups: list[list[Branch]] = [[] for _ in range(degree)]
    for i, b in enumerate(branches):
        groups[i % degree].append(b)
    return groups


@dataclass
class CfgParallel:
    """This rank's branch runner: runs its group's branches and exchanges predictions with the others."""

    layout: ParallelLayout
    rank: int
    group: Any = None  # the process group of this rank's CFG peers (same Ulysses index)

    @property
    def index(self) -> int:
        return self.layout.cfg_index(self.rank)

    def __call__(self, branches: Sequence[Branch], forward: BranchForward, batched: bool, like: Pred) -> dict[Branch, Pred]:
        """Same contract as guidance.run_branches; `like` gives the (video, audio) prediction shapes."""
        owned = assign_branches(branches, self.layout.cfg_degree)
        mine = run_branches(owned[self.index], forward, batched=batched) if owned[self.index] else {}
        peers = self.layout.cfg_ranks(self.layout.ulysses_index(self.rank))
        out: dict[Branch, Pred] = {}
        for owner, owner_branches in enumerate(owned):
            for b in owner_branches:
                pred = []
                for m, ref in enumerate(like):
                    if ref is None:
                        pred.append(None)
                        continue
                    if owner == self.index:
                        t = mine[b][m].to(torch.float32).contiguous()
                    else:
                        t = torch.empty(ref.shape, dtype=torch.float32, device=ref.device)
                    dist.broadcast(t, src=peers[owner], group=self.group)
                    pred.append(t)
                out[b] = (pred[0], pred[1])
        return {b: out[b] for b in branches}


def setup_groups(world_size: int, rank: int, cfg_degree: int) -> tuple[Any, CfgParallel | None]:
    """Create the process groups of a (CFG x Ulysses) layout; every rank must call it in the same order.

    Returns (UlyssesContext or None when U == 1, CfgParallel or None when C == 1).
    """
    from nava_core.ulysses import UlyssesContext

    layout = ParallelLayout(world_size, cfg_degree)
    if cfg_degree == 1:
        return UlyssesContext(world_size, rank), None
    uly_groups = [dist.new_group(layout.ulysses_ranks(c)) for c in range(layout.cfg_degree)]
    cfg_groups = [dist.new_group(layout.cfg_ranks(j)) for j in range(layout.ulysses_degree)]
    ctx = None
    if layout.ulysses_degree > 1:
        ctx = UlyssesContext(layout.ulysses_degree, layout.ulysses_index(rank), uly_groups[layout.cfg_index(rank)])
    return ctx, CfgParallel(layout, rank, cfg_groups[layout.ulysses_index(rank)])


__all__ = ["ParallelLayout", "CfgParallel", "assign_branches", "setup_groups"]
