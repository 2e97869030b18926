"""Frame/token arithmetic and the render request contract."""

from __future__ import annotations

import json
import math

import pytest

from nava_core.config import (
    BUCKETS,
    GuidanceScales,
    NAVAConfig,
    Resolution,
    audio_samples_for_tokens,
    audio_tokens_for_frames,
    audio_tokens_for_latent_frames,
    audio_tokens_for_seconds,
    latent_frames_for_seconds,
    nearest_bucket,
    pixel_frames,
    seconds_for_latent_frames,
    snap_seconds,
    token_counts,
)
from nava_core.request import RenderRequest, RequestError


def test_release_and_tiny_configs():
    rel = NAVAConfig.release()
    assert (rel.dim, rel.num_heads, rel.head_dim, rel.num_layers) == (3072, 24, 128, 30)
    assert rel.audio_hidden_dim == 8192
    tiny = NAVAConfig.tiny()
    assert tiny.head_dim == 128 and tiny.audio_hidden_dim == 768
    assert NAVAConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="precision"):
        NAVAConfig(precision="fp16")  # type: ignore[arg-type]


def test_release_clip_arithmetic():
    # 6 s at 1280x704: 37 latent frames, 145 video frames, 152 audio tokens, 32,560 + 152 tokens.
    assert latent_frames_for_seconds(6) == 37
    assert pixel_frames(37) == 145
    assert audio_tokens_for_frames(145) == 152
    assert audio_tokens_for_latent_frames(37) == 152
    assert math.isclose(seconds_for_latent_frames(37), 145 / 24)
    tc = token_counts(BUCKETS[0], 37)
    assert (tc.video_tokens, tc.audio_tokens, tc.total) == (32560, 152, 32712)
    assert audio_samples_for_tokens(152) == 160 * (4 * 152 - 3)
    assert audio_samples_for_tokens(152, 48000) == 3 * 160 * (4 * 152 - 3)
    assert audio_tokens_for_seconds(6.0) == 150


def test_snapping_and_buckets():
    assert snap_seconds(6.0) == pytest.approx(145 / 24)
    assert latent_frames_for_seconds(1 / 6) == 2
    with pytest.raises(ValueError):
        latent_frames_for_seconds(float("nan"))
    assert nearest_bucket(1920, 1080).label == "1280x704"
    assert nearest_bucket(1080, 1920).label == "704x1280"
    assert nearest_bucket(1000, 1010).label == "960x960"
    assert Resolution.parse("704x1280").name == "portrait"
    with pytest.raises(ValueError, match="multiples of 32"):
        Resolution(1280, 720)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        Resolution.parse("big")


def test_guidance_scales_validation():
    assert GuidanceScales() == GuidanceScales(3, 2, 3, 2, 3)
    assert GuidanceScales.audio_only().video_align == 0
    for bad in (float("nan"), -1, float("inf"), 21):
        with pytest.raises(ValueError):
            GuidanceScales(video=bad)


def test_request_round_trip_and_derived():
    r = RenderRequest(prompt="a <S>hi<E>", speaker_wavs=["a.wav", None], seed=7)
    again = RenderRequest.from_json(r.to_json())
    assert again == r
    assert r.effective_audio_seed == 7
    assert r.replace(audio_seed=9).effective_audio_seed == 9
    a = RenderRequest(prompt="rain", mode="audio", seconds=8.0)
    assert a.audio_tokens == 200 and not a.has_video
    assert json.loads(a.to_json())["mode"] == "audio"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "x", "seed": 2**32}, "seed"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "steps": 0}, "steps"),
        ({"prompt": "x", "width": 1280, "height": 720}, "multiples of 32"),
        ({"prompt": "x", "gpus": 5}, "divide the 24"),
        ({"prompt": "x", "mode": "image_audio_video"}, "first-frame image"),
        ({"prompt": "x", "seconds": float("inf")}, "duration"),
        ({"prompt": "x", "guidance": {"video": float("nan")}}, "guidance"),
        ({"prompt": "x", "guidance": {"vidoe": 1}}, "unknown guidance"),
        ({"prompt": "x", "colour": "red"}, "unknown field"),
        ({"prompt": "x", "version": 99}, "version"),
    ],
)
def test_request_refusals(fields, message):
    with pytest.raises(RequestError, match=message):
        RenderRequest.from_dict(fields)


def test_request_from_bad_json():
    with pytest.raises(RequestError, match="not valid JSON"):
        RenderRequest.from_json("{")
    with pytest.raises(RequestError, match="JSON object"):
        RenderRequest.from_json("[1, 2]")
