"""Live preview while denoising: previews arrive through the progress callback and never change the result."""

from __future__ import annotations

import numpy as np
import torch

from nava_core.preview import Preview
from nava_core.progress import ProgressEvent
from nava_core.request import RenderRequest

PROMPT = "A bright kitchen at noon. A man on the left says <S>Good morning.<E> Quiet room tone."


def _collect(pipe, request, preview_every):
    events: list[ProgressEvent] = []
    cond = pipe.encode_conditions(request)
    video, audio, _ = pipe.denoise(request, cond, events.append, None, preview_every)
    return events, video, audio


def test_previews_every_k_steps_and_same_latents(tiny_pipe):
    req = RenderRequest(prompt=PROMPT, width=160, height=96, seconds=1.0, steps=7, seed=3)
    off, v_off, a_off = _collect(tiny_pipe, req, 0)
    on, v_on, a_on = _collect(tiny_pipe, req, 3)
    assert all(e.preview is None for e in off)
    steps = [e.step for e in on if e.preview is not None]
    assert steps == [3, 6, 7]  # every 3rd step and the last one
    assert torch.equal(v_off, v_on) and torch.equal(a_off, a_on)
    p: Preview = on[-1].preview
    t = req.latent_frames
    h, w = req.resolution.latent_hw
    assert p.frames is not None and p.frames.dtype == np.uint8
    assert p.frames.shape == (min(t, 8), h, w, 3)
    assert p.envelope.dtype == np.float32 and p.envelope.size == req.audio_tokens
    assert float(p.envelope.max()) == 1.0 and float(p.envelope.min()) >= 0.0
    img = p.image()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[0] > p.frames.shape[1]  # strip plus waveform panel


def test_audio_only_preview_has_no_frames(tiny_pipe):
    req = RenderRequest(prompt="Rain on a tin roof.", mode="audio", seconds=1.0, steps=2, seed=1)
    events, _, _ = _collect(tiny_pipe, req, 1)
    previews = [e.preview for e in events if e.preview is not None]
    assert len(previews) == 2 and all(p.frames is None for p in previews)
    assert previews[-1].image().shape[1] == 640
