"""End-to-end rendering on the tiny weight set loaded from disk (same code path as the real weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nava_core.config import GuidanceScales, pixel_frames
from nava_core.export import probe, read_request
from nava_core.guidance import plan_branches
from nava_core.progress import CancelToken, RenderCancelled
from nava_core.render import render_to_files
from nava_core.request import RenderRequest, RequestError

PROMPT = (
    "A bright kitchen at noon. A man on the left says <S>Good morning, the coffee is ready.<E> "
    "A woman on the right answers <S>Thanks, I needed that.<E> Quiet room tone, no music."
)


def _req(**kw) -> RenderRequest:
    base = dict(prompt=PROMPT, width=160, height=96, seconds=0.5, steps=3, seed=11)
    base.update(kw)
    return RenderRequest(**base)


class _ForwardCounter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls += 1
        self.batch_sizes.append(int(kwargs["t"].shape[0]))

    def close(self) -> None:
        self.handle.remove()


@pytest.mark.parametrize(
    "scales, voices_given",
    [
        (GuidanceScales(), False),  # c, u, m
        (GuidanceScales(timbre=0.0), True),  # timbre off: c, u, m
        (GuidanceScales(video=0, audio=0), False),  # c, m
        (GuidanceScales(video_align=0, audio_align=0, timbre=0), True),  # c, u
    ],
)
def test_forwards_per_step_counted_by_hook(tiny_pipe, voices, scales, voices_given):
    req = _req(guidance=scales, speaker_wavs=[str(v) for v in voices] if voices_given else [])
    plan = plan_branches(scales, has_video=True, has_audio=True, has_speakers=voices_given)
    counter = _ForwardCounter(tiny_pipe.transformer)
    tiny_pipe.batch_branches = False
    try:
        cond = tiny_pipe.encode_conditions(req)
        tiny_pipe.denoise(req, cond)
    finally:
        tiny_pipe.batch_branches = True
        counter.close()
    assert counter.calls == req.steps * len(plan)
    assert all(b == 1 for b in counter.batch_sizes)


def test_timbre_branch_runs_only_with_voices(tiny_pipe, voices):
    req = _req(speaker_wavs=[str(v) for v in voices])
    counter = _ForwardCounter(tiny_pipe.transformer)
    tiny_pipe.batch_branches = False
    try:
        tiny_pipe.denoise(req, tiny_pipe.encode_conditions(req))
    finally:
        tiny_pipe.batch_branches = True
        counter.close()
    assert counter.calls == req.steps * 4  # c, u, m, t


def test_batched_and_sequential_branches_agree(tiny_pipe, voices):
    req = _req(speaker_wavs=[str(v) for v in voices], precision="fp32")
    cond = tiny_pipe.encode_conditions(req)
    counter = _ForwardCounter(tiny_pipe.transformer)
    try:
        v1, a1, n1 = tiny_pipe.denoise(req, cond)
        tiny_pipe.batch_branches = False
        v2, a2, n2 = tiny_pipe.denoise(req, cond)
    finally:
        tiny_pipe.batch_branches = True
        counter.close()
    assert (n1, n2) == (2 * req.steps, 4 * req.steps)  # [c, u, t] + [m] vs one each
    torch.testing.assert_close(v1, v2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a1, a2, atol=1e-4, rtol=1e-4)


def test_same_request_same_latents_and_seeds_matter(tiny_pipe):
    req = _req()
    cond = tiny_pipe.encode_conditions(req)
    v1, a1, _ = tiny_pipe.denoise(req, cond)
    v2, a2, _ = tiny_pipe.denoise(req, cond)
    assert torch.equal(v1, v2) and torch.equal(a1, a2)
    nv1, na1 = tiny_pipe.prepare_noise(req)
    nv3, na3 = tiny_pipe.prepare_noise(req.replace(audio_seed=12))
    assert torch.equal(nv1, nv3) and not torch.equal(na1, na3)
    v4, _, _ = tiny_pipe.denoise(req.replace(seed=12), cond)
    assert not torch.equal(v1, v4)


def test_shared_seed_draws_video_then_audio(tiny_pipe):
    req = _req()
    video, audio = tiny_pipe.prepare_noise(req)
    g = torch.Generator().manual_seed(req.seed)
    h, w = req.resolution.latent_hw
    flat = torch.randn((req.latent_frames * h * w, 48), generator=g)
    assert torch.equal(video[:, 0, 0, 0], flat[0]) and torch.equal(video[:, 0, 0, 1], flat[1])
    assert torch.equal(audio, torch.randn((req.audio_tokens, 128), generator=g))


def test_t2av_and_i2av_with_two_voices_render_mp4(tiny_pipe, voices, tmp_path):
    from PIL import Image

    img = tmp_path / "first.png"
    Image.fromarray((np.random.default_rng(0).random((300, 500, 3)) * 255).astype("uint8")).save(img)
    wavs = [str(v) for v in voices]
    for req in (_req(speaker_wavs=wavs), _req(mode="image_audio_video", image=str(img), speaker_wavs=wavs)):
        outs = render_to_files(tiny_pipe, req, tmp_path / req.mode)
        info = probe(outs.mp4)
        frames = pixel_frames(req.latent_frames)
        assert info.video_codec == "h264" and info.audio_codec == "aac" and info.channels == 2
        assert info.frames == frames and (info.width, info.height) == (160, 96)
        assert abs(info.duration_s - frames / 24) <= 1 / 24 + 1e-6
        assert RenderRequest.from_json(read_request(outs.mp4)) == req
        assert json.loads(outs.sidecar.read_text())["mode"] == req.mode
        assert outs.srt is not None and "Good morning" in outs.srt.read_text()
        wav_info = probe(outs.wav)
        assert wav_info.channels == 2 and wav_info.sample_rate == 16000


def test_image_to_video_first_frame_is_imposed_before_every_forward(tiny_pipe, tmp_path):
    from PIL import Image

    img = tmp_path / "first.png"
    Image.new("RGB", (320, 200), (200, 40, 40)).save(img)
    req = _req(mode="image_audio_video", image=str(img))
    cond = tiny_pipe.encode_conditions(req)
    seen: list[torch.Tensor] = []
    handle = tiny_pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["video"][0][:, :1].clone()), with_kwargs=True
    )
    try:
        tiny_pipe.denoise(req, cond)
    finally:
        handle.remove()
    assert len(seen) >= req.steps
    for s in seen:
        assert torch.equal(s, cond.first_frame)


def test_cancel_at_step_k_leaves_no_file_and_pipeline_ready(tiny_pipe, tmp_path):
    token = CancelToken()
    steps_seen: list[int] = []

    def progress(ev):
        if ev.phase == "denoising":
            steps_seen.append(ev.step)
            if ev.step == 2:
                token.cancel()

    with pytest.raises(RenderCancelled):
        render_to_files(tiny_pipe, _req(steps=5), tmp_path, progress=progress, cancel=token)
    assert max(steps_seen) == 2
    assert list(tmp_path.iterdir()) == []
    outs = render_to_files(tiny_pipe, _req(steps=2), tmp_path)
    assert outs.mp4.is_file()


def test_too_few_voices_is_refused_with_a_clear_message(tiny_pipe, voices):
    """2..spans-1 voices crash the release; refused here (more voices than spans: the first ones are used)."""
    prompt = PROMPT + " The man laughs <S>Ha!<E>"
    with pytest.raises(RequestError, match="3 <S>...<E> spans but 2 reference voices"):
        tiny_pipe.encode_conditions(_req(prompt=prompt, speaker_wavs=[str(v) for v in voices]))


def test_audio_mode_renders_wav_of_requested_length(tiny_pipe, voices, tmp_path):
    req = RenderRequest(prompt=PROMPT, mode="audio", seconds=2.0, steps=2, guidance=GuidanceScales.audio_only(),
                        speaker_wavs=[str(v) for v in voices])
    counter = _ForwardCounter(tiny_pipe.transformer)
    tiny_pipe.batch_branches = False
    try:
        outs = render_to_files(tiny_pipe, req, tmp_path)
    finally:
        tiny_pipe.batch_branches = True
        counter.close()
    assert counter.calls == req.steps * 3  # c, u, t: no alignment branch without video
    assert outs.mp4 is None and outs.flac is not None
    info = probe(outs.wav)
    assert info.channels == 2
    assert abs(info.duration_s - 2.0) <= 0.04 + 1e-6
    assert RenderRequest.from_json(read_request(outs.flac)) == req


def test_weight_report_for_empty_and_tiny(tmp_path, tiny_weights):
    from nava_core.weights.layouts import inspect_weights

    empty = inspect_weights(tmp_path)
    assert not empty.complete and len(empty.missing) == 6
    text = empty.summary()
    for needle in ("NAVA.safetensors", "Wan2.2_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth",
                   "ltx-2.3-22b-dev_audio_vae.safetensors", "M-vb2+vox2+cnc-ft_mix.pt", "GB", "MB"):
        assert needle in text
    tiny = inspect_weights(tiny_weights)
    assert tiny.complete and tiny.is_tiny and not tiny.backbone_fp8


def test_to_moves_every_component_and_keeps_rendering(tiny_weights):
    from nava_core.pipeline import NAVAPipeline

    pipe = NAVAPipeline.from_pretrained(tiny_weights, device="cpu")
    assert pipe.memory_state.profile.name == "resident"
    ref = pipe.denoise(_req(steps=2), pipe.encode_conditions(_req(steps=2)))
    pipe.to("cpu")
    assert pipe.device == torch.device("cpu") and pipe.audio_vae.device == torch.device("cpu")
    again = pipe.denoise(_req(steps=2), pipe.encode_conditions(_req(steps=2)))
    assert torch.equal(ref[1], again[1])


def test_audio_mode_at_48khz_writes_the_vocoder_rate(tiny_pipe, tmp_path):
    req = RenderRequest(prompt="Thunder far away, then heavy rain.", mode="audio", seconds=1.0, steps=1,
                        audio_sample_rate=48000)
    outs = render_to_files(tiny_pipe, req, tmp_path)
    for path in (outs.wav, outs.flac):
        info = probe(path)
        assert info.sample_rate == 48000 and info.channels == 2
        assert abs(info.duration_s - 1.0) <= 0.04 + 1e-6
    assert json.loads(outs.sidecar.read_text())["audio_sample_rate"] == 48000


def test_srt_of_an_overlong_dialogue_ends_with_the_video(tiny_pipe, tmp_path):
    """The SRT written next to a render carries no cue past the clip actually rendered."""
    import re

    req = _req(steps=1, seconds=1.0)  # two lines that need ~4 s in a 1 s clip
    outs = render_to_files(tiny_pipe, req, tmp_path)
    ends = [m for m in re.findall(r"--> (\d\d):(\d\d):(\d\d),(\d\d\d)", outs.srt.read_text())]
    assert ends
    last = max(int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in ends)
    assert last <= probe(outs.mp4).duration_s + 1e-3
