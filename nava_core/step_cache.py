"""Sampler-side reuse for the opt-in speed-ups of nava_core.speedups (step caching, sparse aux branches).

One `StepReuse` lives for one render. Every step the pipeline asks it for the guided (video, audio)
velocities; it either runs the branches (all of them, or without the auxiliary ones on off-steps) and
combines them, or returns the last computed guided velocities. Decisions depend only on the latents,
which every rank of a parallel render holds identically, so all ranks take the same decisions.
With the "exact" speed-up it runs every branch every step: the exact path, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from nava_core.guidance import Branch, Pred
from nava_core.speedups import Speedup

AUX_BRANCHES = (Branch.NOALIGN, Branch.NOTIMBRE)


def _rel_l1(new: torch.Tensor | None, old: torch.Tensor | None) -> float:
    if new is None or old is None:
        return 0.0
    return float((new - old).abs().mean() / old.abs().mean().clamp(min=1e-12))


@dataclass
class StepReuse:
    """Per-render state of a speed-up; `stats` says what it saved."""

    speedup: Speedup
    total_steps: int
    step: int = -1
    _prev: tuple[torch.Tensor | None, torch.Tensor | None] | None = None
    _acc: list[float] = field(default_factory=lambda: [0.0, 0.0])
    _guided: tuple[torch.Tensor | None, torch.Tensor | None] | None = None
    _aux: dict[Branch, Pred] = field(default_factory=dict)
    computed_steps: int = 0
    reused_steps: int = 0
    branch_forwards: int = 0
    branch_forwards_skipped: int = 0

    def predict(
        self,
        branches: Sequence[Branch],
        run: Callable[[Sequence[Branch]], dict[Branch, Pred]],
        video: torch.Tensor | None,
        audio: torch.Tensor | None,
        combine: Callable[[dict[Branch, Pred]], tuple[torch.Tensor | None, torch.Tensor | None]],
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Guided velocities for this step: computed with `run` + `combine`, or reused."""
        self.step += 1
        sp = self.speedup
        if sp.caches_steps and self._prev is not None:
            self._acc[0] += _rel_l1(video, self._prev[0])
            self._acc[1] += _rel_l1(audio, self._prev[1])
        self._prev = (None if video is None else video.clone(), None if audio is None else audio.clone())
        forced = self.step < sp.warmup or self.step >= self.total_steps - sp.tail
        if (sp.caches_steps and not forced and self._guided is not None
                and (video is None or self._acc[0] < sp.threshold_video)
                and (audio is None or self._acc[1] < sp.threshold_audio)):
            self.reused_steps += 1
            self.branch_forwards_skipped += len(branches)
            return self._guided
        self._acc = [0.0, 0.0]
        wanted = list(branches)
        if sp.aux_every > 1 and self.step % sp.aux_every and all(b in self._aux for b in branches if b in AUX_BRANCHES):
            wanted = [b for b in branches if b not in AUX_BRANCHES]
        preds = dict(run(wanted))
        for b in branches:
            if b in AUX_BRANCHES:
                if b in preds:
                    self._aux[b] = preds[b]
                else:
                    preds[b] = self._aux[b]
        self.branch_forwards += len(wanted)
        self.branch_forwards_skipped += len(branches) - len(wanted)
        self.computed_steps += 1
        self._guided = combine({b: preds[b] for b in branches})
        return self._guided

    def stats(self) -> dict[str, float]:
        total = self.branch_forwards + self.branch_forwards_skipped
        return {"speedup_steps_reused": float(self.reused_steps),
                "speedup_branch_forwards_skipped": float(self.branch_forwards_skipped),
                "speedup_forward_saving": self.branch_forwards_skipped / total if total else 0.0}


__all__ = ["StepReuse", "AUX_BRANCHES"]
