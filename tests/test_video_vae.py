"""Wan2.2 video VAE: release .pth loading, key map, decode/encode shapes, tiling, first-frame encode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nava_core.components.video_vae import (
    VideoVAE,
    VideoVAEError,
    WanVAEConfig,
    convert_release_state_dict,
    release_key_to_diffusers,
    to_uint8_frames,
    write_tiny_video_vae,
)
from nava_core.config import TINY_PREVIEW_SIZES


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_video_vae(tmp_path_factory.mktemp("vvae") / "Wan2.2_VAE.pth", seed=0)


@pytest.fixture(scope="module")
def vae(tiny_path):
    return VideoVAE.from_release(tiny_path, tiny=True)


def test_tiny_file_has_release_keys_and_loads_strictly(tiny_path, vae):
    from diffusers import AutoencoderKLWan

    sd = torch.load(tiny_path, weights_only=True)
    assert len(sd) == 196
    assert "encoder.downsamples.1.downsamples.2.time_conv.weight" in sd
    assert "decoder.upsamples.0.upsamples.3.resample.1.weight" in sd
    converted = convert_release_state_dict(sd)
    cfg = WanVAEConfig(base_dim=8, decoder_base_dim=8)
    with torch.device("meta"):
        ref = AutoencoderKLWan(**cfg.diffusers_kwargs())
    assert set(converted) == set(ref.state_dict())
    assert (vae.model.config.base_dim, vae.model.config.decoder_base_dim, vae.model.config.z_dim) == (8, 8, 48)


def test_key_map_matches_spec_examples_and_release_size():
    from diffusers import AutoencoderKLWan

    assert release_key_to_diffusers("conv1.weight") == "quant_conv.weight"
    assert release_key_to_diffusers("conv2.bias") == "post_quant_conv.bias"
    assert release_key_to_diffusers("decoder.head.0.gamma") == "decoder.norm_out.gamma"
    assert release_key_to_diffusers("encoder.middle.2.residual.6.weight") == "encoder.mid_block.resnets.1.conv2.weight"
    assert release_key_to_diffusers("decoder.middle.1.to_qkv.bias") == "decoder.mid_block.attentions.0.to_qkv.bias"
    assert (release_key_to_diffusers("encoder.downsamples.2.downsamples.0.shortcut.weight")
            == "encoder.down_blocks.2.resnets.0.conv_shortcut.weight")
    assert (release_key_to_diffusers("decoder.upsamples.1.upsamples.3.time_conv.bias")
            == "decoder.up_blocks.1.upsampler.time_conv.bias")
    with torch.device("meta"):
        real = AutoencoderKLWan(**WanVAEConfig().diffusers_kwargs())
    assert sum(p.numel() for p in real.parameters()) == 704_688_668  # NAVA_SPEC.md 1
    with pytest.raises(KeyError):
        release_key_to_diffusers("blocks.0.weight")


def test_truncated_and_wrong_files_fail_with_file_name(tiny_path, tmp_path):
    bad = tmp_path / "Wan2.2_VAE.pth"
    bad.write_bytes(tiny_path.read_bytes()[:5000])
    with pytest.raises(VideoVAEError, match="Wan2.2_VAE.pth.*cannot read"):
        VideoVAE.from_release(bad)
    sd = torch.load(tiny_path, weights_only=True)
    sd.pop("decoder.head.2.bias")
    torch.save(sd, bad)
    with pytest.raises(VideoVAEError, match="Wan2.2_VAE.pth: expected 196 keys"):
        VideoVAE.from_release(bad)
    sd["decoder.head.9.bias"] = torch.zeros(12)
    torch.save(sd, bad)
    with pytest.raises(VideoVAEError, match=r"Wan2.2_VAE.pth: not a Wan2.2 VAE file.*head\.9"):
        VideoVAE.from_release(bad)
    with pytest.raises(VideoVAEError, match="file not found"):
        VideoVAE.from_release(tmp_path / "missing.pth")


def test_decode_gives_4t_minus_3_frames_in_range(vae):
    z = torch.randn(48, 3, 6, 10, generator=torch.Generator().manual_seed(1))
    video = vae.decode(z)
    assert video.shape == (9, 3, 96, 160)
    assert video.min() >= -1 and video.max() <= 1 and video.std() > 1e-3
    frames = to_uint8_frames(video)
    assert frames.shape == (9, 96, 160, 3) and frames.dtype == np.uint8


def test_normalisation_round_trip(vae):
    z = torch.randn(48, 2, 3, 4)
    torch.testing.assert_close(vae.normalize(vae.denormalize(z)), z, atol=1e-5, rtol=1e-5)
    # DiT space zero is the VAE's channel mean.
    assert torch.allclose(vae.denormalize(torch.zeros(48, 1, 1, 1)).flatten(), vae.mean.flatten())


def test_encode_image_and_round_trip_shapes(vae):
    res = TINY_PREVIEW_SIZES["landscape"]
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
    lat = vae.encode_image(img, res)
    assert lat.shape == (48, 1, 6, 10) and torch.isfinite(lat).all()
    assert vae.decode(lat).shape == (1, 3, 96, 160)
    clip = torch.rand(5, 3, 96, 160) * 2 - 1
    lat5 = vae.encode_video(clip)
    assert lat5.shape == (48, 2, 6, 10)
    assert vae.decode(lat5).shape == (5, 3, 96, 160)


def test_tiled_decode_agrees_with_untiled(vae):
    # 30x50 latents exceed the 22x40 tile, so tiling runs 2x2 tiles with blending.
    z = torch.randn(48, 1, 30, 50, generator=torch.Generator().manual_seed(2))
    full = vae.decode(z)
    tiled = vae.decode(z, tiled=True)
    assert full.shape == tiled.shape == (1, 3, 480, 800)
    assert not torch.equal(full, tiled)
    psnr = 10 * torch.log10(4.0 / ((full - tiled) ** 2).mean())
    assert psnr >= 35, psnr
