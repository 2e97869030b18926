"""The pipeline combines guidance per stream as the release does (NAVA_SPEC.md 5), on the tiny weights.

One sampling step of the real pipeline is compared with a hand-written step built from separate
backbone forwards: audio-only without a voice is classic CFG u + g_a*(c-u) (nava_seedtts.yaml), and
audio+video with alignment off is classic in both streams.
"""

from __future__ import annotations

import torch

from nava_core.config import GuidanceScales
from nava_core.request import RenderRequest
from nava_core.scheduler import make_scheduler

PROMPT = "A calm narrator says <S>The tide is coming in.<E> Soft waves, no music."


def _one_step_by_hand(pipe, req, cond, form):
    video, audio = pipe.prepare_noise(req)
    sched_v, sched_a = make_scheduler(req.steps, req.shift), make_scheduler(req.steps, req.shift)
    t = sched_a.timesteps[0]
    tt = t.reshape(1)

    def fwd(context):
        v, a = pipe.transformer(video=None if video is None else [video], audio=[audio], t=tt, context=[context])
        return (None if v is None else v[0].float()), a[0].float()

    c, u = fwd(cond.context), fwd(cond.negative_context)
    g = req.guidance
    a_pred = form(c[1], u[1], g.audio)
    out_a = sched_a.step(a_pred, t, audio, return_dict=False)[0]
    out_v = None
    if video is not None:
        out_v = sched_v.step(form(c[0], u[0], g.video), t, video, return_dict=False)[0]
    return out_v, out_a


def _classic(c, u, g):
    return u + g * (c - u)


def test_audio_only_without_voice_is_classic_cfg(tiny_pipe):
    req = RenderRequest(prompt=PROMPT, mode="audio", seconds=1.0, steps=1, seed=3, precision="fp32",
                        guidance=GuidanceScales.audio_only())
    cond = tiny_pipe.encode_conditions(req)
    _, audio, forwards = tiny_pipe.denoise(req, cond)
    _, want = _one_step_by_hand(tiny_pipe, req, cond, _classic)
    assert forwards == 1  # c and u batched
    torch.testing.assert_close(audio, want, rtol=1e-5, atol=1e-5)
    # ...and not the anchored form the project used before (c + g*(c-u)): that differs visibly.
    _, anchored = _one_step_by_hand(tiny_pipe, req, cond, lambda c, u, g: c + g * (c - u))
    assert (anchored - want).abs().max() > 1e-3


def test_audio_video_alignment_off_is_classic_in_both_streams(tiny_pipe):
    req = RenderRequest(prompt=PROMPT, width=64, height=64, seconds=0.5, steps=1, seed=4, precision="fp32",
                        guidance=GuidanceScales(video_align=0, audio_align=0))
    cond = tiny_pipe.encode_conditions(req)
    video, audio, _ = tiny_pipe.denoise(req, cond)
    want_v, want_a = _one_step_by_hand(tiny_pipe, req, cond, _classic)
    torch.testing.assert_close(video, want_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(audio, want_a, rtol=1e-5, atol=1e-5)


def test_studio_wording_follows_the_form_in_use():
    from types import SimpleNamespace

    from app import builder as B

    st = B.default_state()
    no_voice, voice = SimpleNamespace(voices=[None, None]), SimpleNamespace(voices=["a.wav", None])
    note = B.guidance_form_note(st, no_voice)
    assert "**video**: cond + 3·(cond − neg)" in note and "like classic CFG 4" in note
    st["settings"]["guidance"] = {**st["settings"]["guidance"], "video_align": 0.0, "audio_align": 0.0}
    note = B.guidance_form_note(st, no_voice)
    assert "**video**: neg + 3·(cond − neg) (classic CFG 3" in note and "**audio**: neg + 2·(cond − neg)" in note
    assert "**audio**: cond + 2·(cond − neg)" in B.guidance_form_note(st, voice)  # timbre term: anchored
    st["project"]["mode"] = "audio"
    st["settings"]["guidance"] = dataclasses_asdict(GuidanceScales.audio_only())
    assert B.guidance_form_note(st, no_voice) == ("How these scales combine now, as the release: "
                                                  "**audio**: neg + 2·(cond − neg) (classic CFG 2; no sync or timbre term).")
    assert "**audio**: cond + 2·(cond − neg)" in B.guidance_form_note(st, voice)


def dataclasses_asdict(x):
    import dataclasses

    return dataclasses.asdict(x)
