"""Image-to-video buckets as the release CLI picks them (NAVA_SPEC.md 5): 7 aspects x 2 orientations at 960."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from nava_core.config import BUCKETS, TINY_PREVIEW_SIZES, Resolution, nearest_bucket, token_counts
from nava_core.estimate import estimate
from nava_core.cli import requests_from_file
from nava_core.request import RenderRequest
from nava_core.validation import check_request_dict

# (image width, height) -> expected bucket (width x height); one image per aspect and orientation.
CASES = {
    (1000, 1000): (960, 960),
    (1250, 1000): (1056, 864), (1000, 1250): (864, 1056),  # 5:4 / 4:5
    (1200, 900): (1088, 832), (900, 1200): (832, 1088),  # 4:3 / 3:4
    (1500, 1000): (1184, 736), (1000, 1500): (736, 1184),  # 3:2 / 2:3
    (1920, 1080): (1280, 704), (1080, 1920): (704, 1280),  # 16:9 / 9:16
    (2000, 1000): (1344, 672), (1000, 2000): (672, 1344),  # 2:1 / 1:2
    (2500, 1000): (1536, 608), (1000, 2500): (608, 1536),  # 5:2 / 2:5
    (3000, 1000): (1536, 608), (1000, 4000): (608, 1536),  # beyond the narrowest: still 5:2
}


def test_the_release_buckets():
    sizes = {(b.width, b.height) for b in BUCKETS}
    assert len(BUCKETS) == len(sizes) == 13  # 7 aspects x 2 orientations, the square once
    for short, long in [(960, 960), (864, 1056), (832, 1088), (736, 1184), (704, 1280), (672, 1344), (608, 1536)]:
        assert (short, long) in sizes and (long, short) in sizes
    assert (BUCKETS[0].width, BUCKETS[0].height) == (1280, 704)  # the default text-to-video size


@pytest.mark.parametrize("image,bucket", list(CASES.items()))
def test_bucket_for_each_aspect_and_orientation(image, bucket):
    b = nearest_bucket(*image)
    assert (b.width, b.height) == bucket
    assert (b.width >= b.height) == (image[0] >= image[1])


@pytest.mark.parametrize("lo,hi,mid", [(1, 4 / 5, 0.9), (4 / 5, 3 / 4, 0.775), (3 / 4, 2 / 3, 17 / 24),
                                       (2 / 3, 9 / 16, 59 / 96), (9 / 16, 1 / 2, 17 / 32), (1 / 2, 2 / 5, 0.45)])
def test_thresholds_are_the_midpoints(lo, hi, mid):
    w = 100_000
    above = nearest_bucket(w, round(w * (mid + 0.002)))
    below = nearest_bucket(w, round(w * (mid - 0.002)))
    assert above == nearest_bucket(w, round(w * lo)) and below == nearest_bucket(w, round(w * hi))
    assert above != below


def test_tiny_preview_sizes_follow_the_same_aspects():
    assert set(TINY_PREVIEW_SIZES) == {b.name for b in BUCKETS}
    for name, tiny in TINY_PREVIEW_SIZES.items():
        assert nearest_bucket(tiny.width, tiny.height).name == name
        assert tiny.tokens_per_latent_frame <= 30  # CPU-fast


def test_frames_tokens_and_estimates_handle_every_bucket():
    for b in BUCKETS:
        tc = token_counts(b, 37)
        h, w = b.latent_hw
        assert tc.video_tokens == (h // 2) * (w // 2) * 37 and tc.audio_tokens == 152
        req = RenderRequest(prompt="A cat. No music.", width=b.width, height=b.height)
        assert Resolution.parse(b.label) == b
        est = estimate(req, profile="resident", gpus=1)
        assert est.peak_vram_bytes > 0 and est.total_seconds > 0


def _image(path, w, h):
    Image.new("RGB", (w, h), (40, 90, 160)).save(path)
    return path


def test_release_jsonl_without_size_takes_the_bucket_from_the_image(tmp_path):
    _image(tmp_path / "tall.png", 900, 1200)
    _image(tmp_path / "wide.png", 2000, 1000)
    rows = [{"prompt": "A tall shot. No music.", "image_path": "tall.png"},
            {"prompt": "A wide shot. No music.", "image_path": "wide.png"},
            {"prompt": "Text only. No music."}]
    f = tmp_path / "prompts.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    reqs = requests_from_file(f, {})
    assert [(r.width, r.height) for r in reqs] == [(832, 1088), (1344, 672), (1280, 704)]
    # An explicit size wins, as --width/--height do in the release CLI.
    reqs = requests_from_file(f, {"width": 960, "height": 960})
    assert [(r.width, r.height) for r in reqs] == [(960, 960)] * 3


def test_request_file_without_size_takes_the_bucket_from_the_image(tmp_path):
    img = _image(tmp_path / "square.png", 640, 600)
    d = {"prompt": "A portrait. No music.", "mode": "image_audio_video", "image": str(img)}
    assert (check_request_dict(d).width, check_request_dict(d).height) == (960, 960)
    d.update(width=1280, height=704)
    assert (check_request_dict(d).width, check_request_dict(d).height) == (1280, 704)


def test_i2av_renders_at_a_tiny_preview_of_the_images_bucket(tiny_pipe, tmp_path):
    import numpy as np

    img = _image(tmp_path / "tall.png", 300, 400)  # 3:4 portrait
    bucket = nearest_bucket(300, 400)
    size = TINY_PREVIEW_SIZES[bucket.name]
    assert (bucket.width, bucket.height, size.width, size.height) == (832, 1088, 96, 128)
    req = RenderRequest(prompt="A cat looks up. No music.", mode="image_audio_video", image=str(img),
                        width=size.width, height=size.height, seconds=0.5, steps=1)
    cond = tiny_pipe.encode_conditions(req)
    video, audio, _ = tiny_pipe.denoise(req, cond)
    frames, _wave = tiny_pipe.decode(req, video, audio, lambda e: None)
    assert frames.shape[1:] == (128, 96, 3) and frames.dtype == np.uint8
