"""Joint RoPE: audio token n and video frame f share temporal angles when 0.24*n == f; audio h/w
bands are identity; Wan's 22/21/21 split."""

from __future__ import annotations

import torch

from nava_core.config import NAVAConfig
from nava_core.model.rope import apply_rope, audio_rope, rope_bands, video_rope

CPU = torch.device("cpu")


def test_band_split_of_release_head_dim():
    assert rope_bands(128) == (22, 21, 21)


def test_audio_and_video_temporal_angles_align():
    cfg = NAVAConfig.release()
    s = cfg.temporal_rope_scaling_factor
    head_dim = cfg.head_dim
    video = video_rope((37, 2, 3), head_dim, CPU).view(37, 2, 3, head_dim // 2, 2)
    audio = audio_rope(152, head_dim, s, CPU)  # 37 frames -> 152 audio tokens
    bt = rope_bands(head_dim)[0]
    # 0.24 * n is an integer frame for n = 25k (frames 0, 6, ..., 36)
    for n in range(0, 152, 25):
        f = round(s * n)
        assert abs(s * n - f) < 1e-9
        assert torch.allclose(audio[n, :bt], video[f, 0, 0, :bt], rtol=0, atol=1e-12)
    # off-grid audio tokens sit between frames
    assert not torch.allclose(audio[1, :bt], video[0, 0, 0, :bt])


def test_audio_spatial_bands_are_identity():
    head_dim = 128
    audio = audio_rope(50, head_dim, 0.24, CPU)
    bt = rope_bands(head_dim)[0]
    assert torch.equal(audio[:, bt:, 0], torch.ones_like(audio[:, bt:, 0]))  # cos 0
    assert torch.equal(audio[:, bt:, 1], torch.zeros_like(audio[:, bt:, 1]))  # sin 0
    x = torch.randn(1, 50, 2, head_dim)
    y = apply_rope(x, audio.unsqueeze(0).unsqueeze(2))
    assert torch.allclose(y[..., 2 * bt:].float(), x[..., 2 * bt:], atol=0, rtol=0)
    assert not torch.allclose(y[:, 1:, :, : 2 * bt].float(), x[:, 1:, :, : 2 * bt])


def test_video_axes_use_their_own_bands():
    head_dim = 128
    bt, bh, bw = rope_bands(head_dim)
    rot = video_rope((2, 3, 4), head_dim, CPU).view(2, 3, 4, head_dim // 2, 2)
    # moving along w changes only the w band, along h only the h band, along f only the t band
    assert torch.equal(rot[0, 0, 1, : bt + bh], rot[0, 0, 0, : bt + bh])
    assert torch.equal(rot[0, 1, 0, :bt], rot[0, 0, 0, :bt]) and torch.equal(rot[0, 1, 0, bt + bh:], rot[0, 0, 0, bt + bh:])
    assert torch.equal(rot[1, 0, 0, bt:], rot[0, 0, 0, bt:])
    assert not torch.equal(rot[1, 0, 0, :bt], rot[0, 0, 0, :bt])


def _complex_reference(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """The release's arithmetic: complex128 product of x's pairs with polar(1, angle)."""
    b, l, n, d = x.shape
    rot = torch.view_as_complex(rotations.to(torch.float64).contiguous())
    xc = torch.view_as_complex(x.to(torch.float64).reshape(b, l, n, d // 2, 2))
    return torch.view_as_real(xc * rot).flatten(3)


def test_real_rope_float64_equals_complex_release_math():
    g = torch.Generator().manual_seed(0)
    rot = video_rope((3, 4, 5), 128, CPU).unsqueeze(0).unsqueeze(2)
    x = torch.randn(1, 60, 2, 128, generator=g)
    got = apply_rope(x, rot)
    want = _complex_reference(x, rot)
    assert got.dtype == torch.float64
    assert (got - want).abs().max().item() <= 1e-12


def test_real_rope_float32_under_bf16_is_a_rounding_level_change():
    """The "nava" policy computes RoPE in float32 and rounds to bf16; the release used float64.

    Measured on release-size head layout at 6x22x40 tokens: the two bf16 results differ in a small
    fraction of elements, each by at most one bf16 unit in the last place.
    """
    g = torch.Generator().manual_seed(0)
    rot64 = video_rope((6, 22, 40), 128, CPU).unsqueeze(0).unsqueeze(2)
    x = (torch.randn(1, 6 * 22 * 40, 4, 128, generator=g) * 3).to(torch.bfloat16)
    fast = apply_rope(x, rot64.float()).to(torch.bfloat16).float()
    exact = apply_rope(x, rot64).to(torch.bfloat16).float()
    differ = (fast != exact).float().mean().item()
    ulp = (exact.abs() * 2.0**-7).clamp(min=2.0**-126)  # bf16 spacing: 8 significant bits
    worst_ulps = ((fast - exact).abs() / ulp).max().item()
    print(f"RoPE fp32 vs fp64 after bf16 rounding: {differ:.4%} of elements differ, worst {worst_ulps:.2f} ulp")
    assert differ < 0.01
    assert worst_ulps <= 1.0
