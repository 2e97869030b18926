"""Video decoding as the release (NAVA_SPEC.md 5-6): bf16 VAE under precision "nava", truncating uint8
frames, and Wan's own tiled decode (per-tile clamp, linear blend over the overlap)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nava_core.components.video_vae import (
    TILE_LATENTS,
    TILE_STRIDE_LATENTS,
    VideoVAE,
    blend_mask,
    tile_spans,
    to_uint8_frames,
    write_tiny_video_vae,
)


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return VideoVAE.from_release(write_tiny_video_vae(tmp_path_factory.mktemp("vae"), seed=0), device="cpu")


def _latents(t, h, w, seed=0):
    return torch.randn(48, t, h, w, generator=torch.Generator().manual_seed(seed))


def test_nava_precision_runs_the_vae_in_bf16(vae):
    dtypes = []
    conv = vae.model.decoder.conv_in
    handle = conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    try:
        z = _latents(2, 3, 4)
        nava = vae.decode(z, precision="nava")
        fp32 = vae.decode(z, precision="fp32")
    finally:
        handle.remove()
    assert dtypes[0] == torch.bfloat16 and dtypes[-1] == torch.float32
    err = (nava - fp32).abs().max().item()
    assert 0 < err < 0.1
    assert vae.model.dtype == torch.float32  # weights stay fp32; only the compute is bf16 (autocast)
    frame = torch.rand(1, 3, 64, 96) * 2 - 1
    enc_nava, enc_fp32 = vae.encode_video(frame, "nava"), vae.encode_video(frame, "fp32")
    assert 0 < (enc_nava - enc_fp32).abs().max().item() < 0.25


def test_frames_are_truncated_not_rounded():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 2.0, -3.0]).view(1, 1, 1, 7).expand(1, 3, 1, 7)
    got = to_uint8_frames(x)[0, 0, :, 0]
    # ((x+1)/2*255) truncated: -0.5 -> 63.75 -> 63, 0 -> 127.5 -> 127, 0.999 -> 254.87 -> 254 (rounding: 64, 128, 255)
    assert got.tolist() == [0, 63, 127, 254, 255, 255, 0]


def test_wan_tile_layout_at_720p():
    spans = tile_spans(44, 80)  # 704x1280: latents 44x80, tiles 22x40 every 14x26
    assert TILE_LATENTS == (22, 40) and TILE_STRIDE_LATENTS == (14, 26)
    assert sorted({(a, b) for a, b, _, _ in spans}) == [(0, 22), (14, 36), (28, 44)]
    assert sorted({(c, d) for _, _, c, d in spans}) == [(0, 40), (26, 66), (52, 80)]
    assert tile_spans(22, 40) == [(0, 22, 0, 40)]


def test_blend_mask_ramps_linearly_on_inner_edges_only():
    m = blend_mask(6, 8, (True, False, False, True), (3, 2))[0, 0, 0]
    assert torch.allclose(m[:, 7], torch.tensor([1, 1, 1, 1, 2 / 3, 1 / 3]))  # bottom edge ramps down
    assert torch.allclose(m[0], torch.tensor([0.5, 1, 1, 1, 1, 1, 1, 1]))  # left edge ramps up
    assert m[5, 0] == pytest.approx(1 / 3)  # corner: the smaller of the two ramps


def test_tiled_equals_untiled_when_one_tile_covers_the_frame(vae):
    z = _latents(2, 4, 6, seed=1)
    for precision in ("fp32", "nava"):
        assert torch.equal(vae.decode(z, tiled=True, precision=precision), vae.decode(z, precision=precision))


def test_tiles_without_overlap_are_each_tile_decoded_alone(vae):
    z = _latents(1, 4, 6, seed=2)
    tiled = vae.decode(z, tiled=True, tile=(2, 3), stride=(2, 3))
    for h0, h1, w0, w1 in tile_spans(4, 6, (2, 3), (2, 3)):
        alone = vae.decode(z[:, :, h0:h1, w0:w1])
        assert torch.equal(tiled[:, :, h0 * 16:h1 * 16, w0 * 16:w1 * 16], alone)


def test_overlapping_tiles_blend_continuously(vae):
    z = _latents(1, 6, 10, seed=3)
    tile, stride = (4, 6), (2, 4)
    tiled = vae.decode(z, tiled=True, tile=tile, stride=stride)
    full = vae.decode(z)
    assert tiled.shape == full.shape
    spans = tile_spans(6, 10, tile, stride)
    assert spans == [(0, 4, 0, 6), (0, 4, 4, 10), (2, 6, 0, 6), (2, 6, 4, 10)]
    # The top-left corner is covered by one tile only: exactly that tile's decode.
    alone = vae.decode(z[:, :, 0:4, 0:6])
    assert torch.equal(tiled[:, :, :32, :64], alone[:, :, :32, :64])
    # Hard stitching (each tile up to the middle of the overlap) has seams; the blend does not.
    tl, tr = alone, vae.decode(z[:, :, 0:4, 4:10])
    cut = 80  # middle of the column overlap (pixels 64..96)
    hard_jump = (tl[:, :, :32, cut - 1] - tr[:, :, :32, cut - 64]).abs().mean().item()
    blend_jump = (tiled[:, :, :32, cut - 1] - tiled[:, :, :32, cut]).abs().mean().item()
    inner_jump = (full[:, :, :32, cut - 1] - full[:, :, :32, cut]).abs().mean().item()
    assert blend_jump < hard_jump and blend_jump < 2 * inner_jump, (blend_jump, hard_jump, inner_jump)
    assert (tiled - full).abs().max().item() < 1.0


def test_overlap_is_a_linear_cross_fade_between_neighbouring_tiles(vae):
    z = _latents(1, 6, 10, seed=3)
    tiled = vae.decode(z, tiled=True, tile=(4, 6), stride=(2, 4))
    a, b = vae.decode(z[:, :, 0:4, 0:6]), vae.decode(z[:, :, 0:4, 4:10])
    rows = slice(0, 32)  # rows covered by the top tiles only
    for col in (64, 72, 80, 95):
        wa, wb = (96 - col) / 32, (col - 64 + 1) / 32  # A ramps down over its last 32 px, B ramps up
        want = (wa * a[:, :, rows, col] + wb * b[:, :, rows, col - 64]) / (wa + wb)
        torch.testing.assert_close(tiled[:, :, rows, col], want, rtol=1e-5, atol=1e-6)
    # Where A stops, B alone: the fade ends exactly on B's values, so there is no step.
    assert torch.equal(tiled[:, :, rows, 96], b[:, :, rows, 32])
    assert torch.equal(tiled[:, :, rows, 63], a[:, :, rows, 63])
