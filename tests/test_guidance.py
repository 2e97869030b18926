"""Guidance plan, branch inputs, combine arithmetic and batched-vs-sequential branch execution."""

from __future__ import annotations

import itertools

import pytest
import torch

from nava_core.config import GuidanceScales
from nava_core.guidance import (
    Branch,
    batch_groups,
    branch_inputs,
    combine,
    guided_prediction,
    plan_branches,
    run_branches,
    stream_form,
    stack_branches,
    unstack_branches,
)

C, N, M, A = Branch.COND, Branch.NEG, Branch.NOALIGN, Branch.NOTIMBRE
DEFAULT = GuidanceScales()

# Expected plan with the release defaults, for every (has_video, has_audio, has_speakers).
DEFAULT_PLANS = {
    (True, True, True): [C, N, M, A],
    (True, True, False): [C, N, M],
    (True, False, True): [C, N],  # speakers without audio: no timbre branch
    (True, False, False): [C, N],
    (False, True, True): [C, N, A],  # audio-only: no alignment branch
    (False, True, False): [C, N],
}


@pytest.mark.parametrize("flags,expected", list(DEFAULT_PLANS.items()))
def test_plan_with_release_defaults(flags, expected):
    assert plan_branches(DEFAULT, *flags) == expected


def test_plan_requires_a_modality():
    with pytest.raises(ValueError):
        plan_branches(DEFAULT, False, False, True)


def test_audio_only_release_settings():
    s = GuidanceScales.audio_only()
    assert plan_branches(s, False, True, True) == [C, N, A]
    assert plan_branches(s, False, True, False) == [C, N]


@pytest.mark.parametrize(
    "kwargs,flags,expected",
    [
        # NEG needs a non-zero scale of a present modality.
        (dict(video=0, audio=0), (True, True, True), [C, M, A]),
        (dict(video=0), (True, False, False), [C]),
        (dict(audio=0), (True, False, False), [C, N]),
        (dict(video=0), (True, True, False), [C, N, M]),
        (dict(audio=0), (False, True, False), [C]),
        (dict(video=0), (False, True, False), [C, N]),
        # NOALIGN needs both modalities and one alignment scale.
        (dict(video_align=0, audio_align=0), (True, True, False), [C, N]),
        (dict(video_align=0), (True, True, False), [C, N, M]),
        (dict(audio_align=0), (True, True, False), [C, N, M]),
        # NOTIMBRE needs audio, speakers and timbre.
        (dict(timbre=0), (True, True, True), [C, N, M]),
        (dict(timbre=0), (False, True, True), [C, N]),
        # Everything off: a single conditional forward.
        (dict(video=0, audio=0, video_align=0, audio_align=0, timbre=0), (True, True, True), [C]),
    ],
)
def test_scale_zero_drops_branch(kwargs, flags, expected):
    assert plan_branches(GuidanceScales(**kwargs), *flags) == expected


@pytest.mark.parametrize("flags", [f for f in itertools.product([True, False], repeat=3) if f[0] or f[1]])
@pytest.mark.parametrize("zero", list(itertools.product([0.0, 1.5], repeat=5)))
def test_plan_invariants_every_combination(flags, zero):
    """Across all 32 on/off scale patterns: COND first, no duplicates, and every planned branch has a
    non-zero scale of a present modality that uses it (and every such branch is planned)."""
    has_v, has_a, has_s = flags
    s = GuidanceScales(*zero)
    plan = plan_branches(s, has_v, has_a, has_s)
    assert plan[0] is C and len(set(plan)) == len(plan)
    needed = {C}
    uses = {
        N: [(has_v, s.video), (has_a, s.audio)],
        M: [(has_v and has_a, s.video_align), (has_v and has_a, s.audio_align)],
        A: [(has_a and has_s, s.timbre)],
    }
    for b, conds in uses.items():
        if any(present and g > 0 for present, g in conds):
            needed.add(b)
    assert set(plan) == needed


def test_branch_inputs():
    assert branch_inputs(C) == branch_inputs(C)
    c, n, m, t = (branch_inputs(b) for b in (C, N, M, A))
    assert (c.context, c.speakers, c.masking_modality) == ("positive", True, False)
    assert (n.context, n.speakers, n.masking_modality) == ("negative", False, False)
    assert (m.context, m.speakers, m.masking_modality) == ("positive", False, True)
    assert (t.context, t.speakers, t.masking_modality) == ("positive", False, False)


def _preds(video=True, audio=True, branches=(C, N, M, A)):
    vals = {C: 1.0, N: 0.5, M: 0.25, A: 0.75}
    out = {}
    for b in branches:
        v = torch.full((2, 3), vals[b]) if video else None
        a = torch.full((4,), vals[b] * 2) if audio else None
        out[b] = (v, a)
    return out


def test_combine_all_branches_default_scales():
    v, a = combine(_preds(), DEFAULT)
    # video: 1 + 3*(1-.5) + 3*(1-.25) = 4.75
    torch.testing.assert_close(v, torch.full((2, 3), 4.75))
    # audio (values doubled): 2 + 2*(2-1) + 2*(2-.5) + 3*(2-1.5) = 8.5
    torch.testing.assert_close(a, torch.full((4,), 8.5))


# Values of _preds: video c=1, u=.5, m=.25, t=.75; audio (doubled) c=2, u=1, m=.5, t=1.5.
@pytest.mark.parametrize(
    "branches,video,audio",
    [
        ((C,), 1.0, 2.0),  # nothing to guide with: c
        ((C, N), 0.5 + 3 * 0.5, 1 + 2 * 1.0),  # no extra term in either stream: classic u + g*(c-u)
        ((C, N, M), 1 + 3 * 0.5 + 3 * 0.75, 2 + 2 * 1.0 + 2 * 1.5),  # alignment: anchored at c
        ((C, N, A), 0.5 + 3 * 0.5, 2 + 2 * 1.0 + 3 * 0.5),  # timbre only: video classic, audio anchored
        ((C, M, A), 1 + 3 * 0.75, 2 + 2 * 1.5 + 3 * 0.5),
        ((C, N, M, A), 4.75, 8.5),
    ],
)
def test_combine_each_branch_set(branches, video, audio):
    v, a = combine(_preds(branches=branches), DEFAULT)
    torch.testing.assert_close(v, torch.full((2, 3), video))
    torch.testing.assert_close(a, torch.full((4,), audio))


def test_combine_scale_zero_skips_term():
    s = GuidanceScales(video=0, audio=2, video_align=3, audio_align=0, timbre=0)
    v, a = combine(_preds(), s)
    torch.testing.assert_close(v, torch.full((2, 3), 1 + 3 * 0.75))  # anchored, text term off
    torch.testing.assert_close(a, torch.full((4,), 1 + 2 * 1.0))  # no extra term: classic


def _run_mode(scales, has_video, has_speakers):
    """Plan and combine with random per-branch predictions; returns (preds, video, audio)."""
    g = torch.Generator().manual_seed(0)
    plan = plan_branches(scales, has_video, True, has_speakers)
    preds = {b: (torch.randn(5, generator=g) if has_video else None, torch.randn(3, generator=g)) for b in plan}
    return (preds, *combine(preds, scales))


def test_forms_audio_video_release_defaults():
    """nava.yaml (alignment on): both streams anchored, with and without a voice."""
    for voices in (False, True):
        p, v, a = _run_mode(DEFAULT, True, voices)
        c, u, m = p[C], p[N], p[M]
        torch.testing.assert_close(v, c[0] + 3 * (c[0] - u[0]) + 3 * (c[0] - m[0]))
        want = c[1] + 2 * (c[1] - u[1]) + 2 * (c[1] - m[1])
        if voices:
            want = want + 3 * (c[1] - p[A][1])
        torch.testing.assert_close(a, want)


def test_forms_audio_video_alignment_off():
    """Alignment off: video classic; audio classic without a voice, anchored with one (timbre)."""
    s = GuidanceScales(video_align=0, audio_align=0)
    p, v, a = _run_mode(s, True, False)
    c, u = p[C], p[N]
    torch.testing.assert_close(v, u[0] + 3 * (c[0] - u[0]))
    torch.testing.assert_close(a, u[1] + 2 * (c[1] - u[1]))
    p, v, a = _run_mode(s, True, True)
    c, u, t = p[C], p[N], p[A]
    torch.testing.assert_close(v, u[0] + 3 * (c[0] - u[0]))
    torch.testing.assert_close(a, c[1] + 2 * (c[1] - u[1]) + 3 * (c[1] - t[1]))


def test_forms_audio_only_seedtts_defaults():
    """nava_seedtts.yaml: alignment off, g_a 2, g_t 3. No voice: classic; a voice: anchored + timbre."""
    s = GuidanceScales.audio_only()
    assert (s.audio, s.timbre, s.video_align, s.audio_align) == (2.0, 3.0, 0.0, 0.0)
    p, v, a = _run_mode(s, False, False)
    assert v is None
    torch.testing.assert_close(a, p[N][1] + 2 * (p[C][1] - p[N][1]))
    p, v, a = _run_mode(s, False, True)
    c, u, t = p[C][1], p[N][1], p[A][1]
    torch.testing.assert_close(a, c + 2 * (c - u) + 3 * (c - t))
    # An audio-only render never has an alignment term, whatever its scale says.
    p, v, a = _run_mode(GuidanceScales(audio_align=5.0, timbre=0), False, False)
    torch.testing.assert_close(a, p[N][1] + 2 * (p[C][1] - p[N][1]))


def test_stream_form_names_the_form_in_use():
    assert stream_form(DEFAULT, "video", True, True, False) == "anchored"
    assert stream_form(DEFAULT, "audio", True, True, False) == "anchored"
    assert stream_form(GuidanceScales.audio_only(), "audio", False, True, False) == "classic"
    assert stream_form(GuidanceScales.audio_only(), "audio", False, True, True) == "anchored"
    off = GuidanceScales(video_align=0, audio_align=0)
    assert stream_form(off, "video", True, True, True) == "classic"
    assert stream_form(off, "audio", True, True, True) == "anchored"
    assert stream_form(off.__class__(video_align=0, audio_align=0, timbre=0), "audio", True, True, True) == "classic"


def test_combine_video_only_and_audio_only():
    v, a = combine(_preds(audio=False, branches=(C, N)), DEFAULT)
    assert a is None and torch.allclose(v, torch.full((2, 3), 0.5 + 3 * 0.5))
    v, a = combine(_preds(video=False, branches=(C, N, A)), GuidanceScales.audio_only())
    assert v is None and torch.allclose(a, torch.full((4,), 2 + 2 * 1.0 + 3 * 0.5))


def test_combine_errors():
    with pytest.raises(ValueError, match="COND"):
        combine(_preds(branches=(N,)), DEFAULT)
    preds = _preds(branches=(C, N))
    preds[N] = (None, preds[N][1])
    with pytest.raises(ValueError, match="video"):
        combine(preds, DEFAULT)
    preds = _preds(branches=(C, N))
    preds[N] = (torch.zeros(3, 3), preds[N][1])
    with pytest.raises(ValueError, match="shape"):
        combine(preds, DEFAULT)


# --- batched vs sequential ------------------------------------------------------------------------


class _ToyModel(torch.nn.Module):
    """A small real network whose output depends on every branch input, batched over dim 0."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w_v = torch.nn.Parameter(torch.randn(6, 6, generator=g))
        self.w_a = torch.nn.Parameter(torch.randn(4, 4, generator=g))
        self.ctx = {"positive": torch.randn(6, generator=g), "negative": torch.randn(6, generator=g)}
        self.spk = torch.randn(4, generator=g)

    def forward(self, video, audio, ctx, spk, masking):
        v = torch.tanh(video @ self.w_v + ctx)
        a = torch.tanh(audio @ self.w_a + spk + ctx[..., :4])
        if masking:  # cross-modal coupling removed, as masking_modality does in the real model
            return v, a
        return v + a.mean(-1, keepdim=True), a + v.mean(-1, keepdim=True)


def _make_forward(model, video, audio, calls):
    def forward(inputs):
        calls.append([i.branch for i in inputs])
        masking = {i.masking_modality for i in inputs}
        assert len(masking) == 1, "a batch mixes masking_modality values"
        n = len(inputs)
        ctx = torch.stack([model.ctx[i.context] for i in inputs])
        spk = torch.stack([model.spk if i.speakers else torch.zeros(4) for i in inputs])
        vb = stack_branches([video] * n)
        ab = stack_branches([audio] * n)
        v, a = model(vb, ab, ctx, spk, masking.pop())
        return unstack_branches(v, a, n)

    return forward


def test_batched_and_sequential_give_the_same_result():
    torch.manual_seed(0)
    model = _ToyModel()
    video, audio = torch.randn(6), torch.randn(4)
    plan = plan_branches(DEFAULT, True, True, True)
    calls_b, calls_s = [], []
    pb = run_branches(plan, _make_forward(model, video, audio, calls_b), batched=True)
    ps = run_branches(plan, _make_forward(model, video, audio, calls_s), batched=False)
    assert calls_b == [[C, N, A], [M]]  # masking_modality splits the batch
    assert calls_s == [[C], [N], [M], [A]]
    for b in plan:
        for x, y in zip(pb[b], ps[b]):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)
    # The branches really differ, so the test would notice a mix-up.
    assert not torch.allclose(pb[C][0], pb[N][0]) and not torch.allclose(pb[C][1], pb[A][1])
    gv_b, ga_b = combine(pb, DEFAULT)
    gv_s, ga_s = guided_prediction(DEFAULT, True, True, True, _make_forward(model, video, audio, []), batched=False)
    torch.testing.assert_close(gv_b, gv_s, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ga_b, ga_s, rtol=1e-6, atol=1e-6)


def test_batch_groups_and_helpers():
    assert batch_groups([C, N]) == [[C, N]]
    assert batch_groups([C, M, N]) == [[C, N], [M]]
    assert stack_branches([None, None]) is None
    with pytest.raises(ValueError):
        stack_branches([torch.zeros(2), None])
    with pytest.raises(ValueError):
        unstack_branches(torch.zeros(3, 2), None, 2)
    with pytest.raises(ValueError, match="predictions"):
        run_branches([C, N], lambda inputs: [(None, torch.zeros(1))], batched=True)
