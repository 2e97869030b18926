"""Multi-branch guidance of NAVA_SPEC.md 5: which forwards a step needs, what each one feeds the
model, how to run them (batched or one by one) and how their velocities combine.

The release combines each stream in one of two forms (NAVA_SPEC.md 5, "Combine"): anchored at the
conditional, c + g*(c-u) + extra terms, when the stream has an extra guidance term (alignment and/or
timbre), and the classic u + g*(c-u) when it has none (audio-only without a voice, audio+video with
alignment off). A scale of 0 switches its term off, and a branch whose every term is off (or whose
modality is absent) is not run at all: each skipped branch saves a full backbone forward per step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Literal

from nava_core.config import GuidanceScales

if TYPE_CHECKING:  # torch only for the combination step: planning (and estimates) stay torch-free
    from torch import Tensor

logger = logging.getLogger(__name__)

Pred = tuple["Tensor | None", "Tensor | None"]  # (video velocity, audio velocity) of one branch


class Branch(str, Enum):
    """One backbone forward per step. Letters refer to NAVA_SPEC.md 5 (c, u, m, t)."""

    COND = "cond"  # c: caption + speakers
    NEG = "neg"  # u: negative prompt, no speakers
    NOALIGN = "noalign"  # m: caption, masking_modality, no speaker injection
    NOTIMBRE = "notimbre"  # t: caption without speakers


@dataclass(frozen=True)
class BranchInputs:
    """What a branch feeds the model, so the pipeline can build the forward without knowing guidance.

    context: which encoded text ("positive" = caption, "negative" = negative prompt).
    speakers: whether speaker embeddings are injected (at the caption's speaker positions). When
        False, pass no embeddings/positions (the release passes NOALIGN's embeddings without positions,
        which injects nothing: equivalent).
    masking_modality: the model's cross-modal masking flag. It is a per-call flag of the model, so
        branches with different values cannot share one batched forward (see `batch_groups`).
    """

    branch: Branch
    context: Literal["positive", "negative"]
    speakers: bool
    masking_modality: bool


def branch_inputs(branch: Branch) -> BranchInputs:
    """The model inputs of `branch` (NAVA_SPEC.md 5)."""
    if branch is Branch.COND:
        return BranchInputs(branch, "positive", speakers=True, masking_modality=False)
    if branch is Branch.NEG:
        return BranchInputs(branch, "negative", speakers=False, masking_modality=False)
    if branch is Branch.NOALIGN:
        return BranchInputs(branch, "positive", speakers=False, masking_modality=True)
    if branch is Branch.NOTIMBRE:
        return BranchInputs(branch, "positive", speakers=False, masking_modality=False)
    raise ValueError(f"unknown branch {branch!r}")


def plan_branches(scales: GuidanceScales, has_video: bool, has_audio: bool, has_speakers: bool) -> list[Branch]:
    """The forwards one sampling step needs, COND first.

    A branch runs only if some non-zero scale of a present modality uses it. Audio-only renders
    (has_video False) never need NOALIGN: there is no other modality to mask.
    """
    if not (has_video or has_audio):
        raise ValueError("nothing to sample: neither video nor audio is present")
    plan = [Branch.COND]
    if (has_video and scales.video > 0) or (has_audio and scales.audio > 0):
        plan.append(Branch.NEG)
    if has_video and has_audio and (scales.video_align > 0 or scales.audio_align > 0):
        plan.append(Branch.NOALIGN)
    if has_audio and has_speakers and scales.timbre > 0:
        plan.append(Branch.NOTIMBRE)
    return plan


def _term(
    base: Tensor, preds: dict[Branch, Pred], branch: Branch, idx: int, scale: float, what: str
) -> Tensor | None:
    """g*(c - x) for one branch, or None when the term is off (scale 0 or branch not run)."""
    if scale == 0 or branch not in preds:
        return None
    other = preds[branch][idx]
    if other is None:
        raise ValueError(f"branch {branch.value} has no {what} prediction but the {what} scale is {scale}")
    if other.shape != base.shape:
        raise ValueError(f"branch {branch.value} {what} shape {tuple(other.shape)} != cond {tuple(base.shape)}")
    return scale * (base - other)


def stream_form(scales: GuidanceScales, stream: Literal["video", "audio"], has_video: bool, has_audio: bool,
                has_speakers: bool) -> Literal["anchored", "classic"]:
    """Which combine form `stream` uses: "anchored" when it has an active extra guidance term
    (alignment: both modalities present and a non-zero alignment scale; timbre: audio with voices and a
    non-zero timbre scale), else "classic". Shared by `combine` and the UI's wording of the scales."""
    if stream == "video":
        extra = has_video and has_audio and scales.video_align > 0
    else:
        extra = (has_video and scales.audio_align > 0) or (has_speakers and scales.timbre > 0)
    return "anchored" if extra else "classic"


def combine(preds: dict[Branch, Pred], scales: GuidanceScales) -> tuple[Tensor | None, Tensor | None]:
    """Guided (video, audio) velocities, each stream in its form (NAVA_SPEC.md 5).

    anchored (an extra term is active): video c + g_v*(c-u) + g_va*(c-m);
        audio c + g_a*(c-u) [+ g_aa*(c-m)] [+ g_t*(c-t)]
    classic (no extra term): u + g*(c-u).
    Terms whose branch is absent from `preds` or whose scale is 0 are off; a stream whose every term
    is off comes back as c (0 means "branch off", never "use the negative alone"). A modality that
    COND did not predict comes back as None.
    """
    if Branch.COND not in preds:
        raise ValueError("combine needs the COND prediction")
    cond_v, cond_a = preds[Branch.COND]
    out: list[Tensor | None] = []
    for idx, base, text_scale, extras in (
        (0, cond_v, scales.video, ((Branch.NOALIGN, scales.video_align),)),
        (1, cond_a, scales.audio, ((Branch.NOALIGN, scales.audio_align), (Branch.NOTIMBRE, scales.timbre))),
    ):
        if base is None:
            out.append(None)
            continue
        what = "video" if idx == 0 else "audio"
        extra_terms = [t for b, g in extras if (t := _term(base, preds, b, idx, float(g), what)) is not None]
        text_term = _term(base, preds, Branch.NEG, idx, float(text_scale), what)
        if extra_terms:
            result = base if text_term is None else base + text_term
            for term in extra_terms:
                result = result + term
        elif text_term is None:
            result = base
        else:
            uncond = preds[Branch.NEG][idx]
            result = uncond + float(text_scale) * (base - uncond)
        out.append(result)
    return out[0], out[1]


# --- running the branches ------------------------------------------------------------------------

BranchForward = Callable[[Sequence[BranchInputs]], Sequence[Pred]]
"""A closure the pipeline writes: one model call for the given branches (as a batch, in order),
returning one (video, audio) prediction per branch."""


def batch_groups(branches: Sequence[Branch]) -> list[list[Branch]]:
    """Branches that can share one batched forward, in plan order (grouped by masking_modality)."""
    groups: dict[bool, list[Branch]] = {}
    for b in branches:
        groups.setdefault(branch_inputs(b).masking_modality, []).append(b)
    return list(groups.values())


def run_branches(branches: Sequence[Branch], forward: BranchForward, batched: bool = True) -> dict[Branch, Pred]:
    """Run `branches` through `forward`: one call per `batch_groups` group (batched, faster on a GPU
    with memory to spare) or one call per branch (sequential, lowest peak memory). Both give the
    same predictions; `combine` the result."""
    calls = batch_groups(branches) if batched else [[b] for b in branches]
    preds: dict[Branch, Pred] = {}
    for group in calls:
        outs = list(forward([branch_inputs(b) for b in group]))
        if len(outs) != len(group):
            raise ValueError(f"forward returned {len(outs)} predictions for {len(group)} branches")
        preds.update(zip(group, outs))
    return preds


def stack_branches(items: Sequence[Tensor | None]) -> Tensor | None:
    """Stack per-branch tensors of one modality into a batch (None if the modality is absent)."""
    if all(t is None for t in items):
        return None
    if any(t is None for t in items):
        raise ValueError("a modality is present in some branches and absent in others")
    import torch

    return torch.stack(list(items))  # type: ignore[arg-type]


def unstack_branches(video: Tensor | None, audio: Tensor | None, n: int) -> list[Pred]:
    """Split a batched (video, audio) output back into `n` per-branch predictions."""
    for t in (video, audio):
        if t is not None and t.shape[0] != n:
            raise ValueError(f"batched output has {t.shape[0]} rows, expected {n}")
    return [(None if video is None else video[i], None if audio is None else audio[i]) for i in range(n)]


def guided_prediction(
    scales: GuidanceScales,
    has_video: bool,
    has_audio: bool,
    has_speakers: bool,
    forward: BranchForward,
    batched: bool = True,
) -> tuple[Tensor | None, Tensor | None]:
    """Plan, run and combine one step's branches."""
    plan = plan_branches(scales, has_video, has_audio, has_speakers)
    return combine(run_branches(plan, forward, batched=batched), scales)


__all__ = [
    "Branch",
    "BranchInputs",
    "BranchForward",
    "Pred",
    "branch_inputs",
    "plan_branches",
    "stream_form",
    "combine",
    "batch_groups",
    "run_branches",
    "stack_branches",
    "unstack_branches",
    "guided_prediction",
]
