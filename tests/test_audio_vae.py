"""LTX-2.3 audio VAE + BWE vocoder: release file loading, packing, normalisation, decode/encode sizes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nava_core.components.audio_vae import (
    AudioVAE,
    AudioVAEError,
    configs_from_metadata,
    pack_latents,
    resample_48k_to_16k,
    unpack_latents,
    write_tiny_audio_vae,
)
from nava_core.config import audio_samples_for_tokens


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_audio_vae(tmp_path_factory.mktemp("avae"), seed=0)


@pytest.fixture(scope="module")
def avae(tiny_path):
    return AudioVAE.from_release(tiny_path)


def test_tiny_file_uses_release_layout_and_loads_strictly(tiny_path, avae):
    assert tiny_path.name == "ltx-2.3-22b-dev_audio_vae.safetensors"
    with safe_open(str(tiny_path), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert "audio_vae.per_channel_statistics.mean-of-means" in keys
    assert any(k.startswith("audio_vae.decoder.") for k in keys)
    assert any(".ups." in k and k.startswith("vocoder.vocoder.") for k in keys)
    assert any("conv_pre" in k for k in keys) and not any("conv_in" in k for k in keys if k.startswith("vocoder."))
    cfg = json.loads(meta["config"])
    assert "bwe" in cfg["vocoder"] and "ddconfig" in cfg["audio_vae"]["model"]["params"]
    assert avae.vocoder.config.output_sampling_rate == 48000


def test_release_metadata_maps_to_release_sized_models():
    from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE

    dd = {"double_z": True, "mel_bins": 64, "z_channels": 8, "resolution": 256, "in_channels": 2, "out_ch": 2,
          "ch": 128, "ch_mult": [1, 2, 4], "num_res_blocks": 2, "dropout": 0.0, "mid_block_add_attention": False,
          "norm_type": "pixel", "causality_axis": "height"}
    common = {"resblock": "AMP1", "resblock_kernel_sizes": [3, 7, 11], "stereo": True, "activation": "snakebeta",
              "resblock_dilation_sizes": [[1, 3, 5]] * 3, "use_tanh_at_final": False, "use_bias_at_final": False}
    voc = {**common, "upsample_initial_channel": 1536, "upsample_rates": [5, 2, 2, 2, 2, 2],
           "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4]}
    bwe = {**common, "upsample_initial_channel": 512, "upsample_rates": [6, 5, 2, 2, 2],
           "upsample_kernel_sizes": [12, 11, 4, 4, 4], "input_sampling_rate": 16000,
           "output_sampling_rate": 48000, "hop_length": 80, "n_fft": 512, "win_size": 512, "num_mels": 64}
    meta = {"config": json.dumps({"audio_vae": {"model": {"params": {"ddconfig": dd, "sampling_rate": 16000}}},
                                  "vocoder": {"vocoder": voc, "bwe": bwe}})}
    cfgs = configs_from_metadata(meta)
    defaults = LTX2VocoderWithBWE().config  # diffusers' defaults are the LTX-2.3 vocoder
    for k, v in cfgs.vocoder.items():
        assert defaults[k] == v or list(defaults[k]) == list(v), k
    assert cfgs.audio_vae["base_channels"] == 128 and cfgs.audio_vae["latent_channels"] == 8
    with pytest.raises(AudioVAEError, match="lacks the LTX audio config"):
        configs_from_metadata({"format": "pt"}, "x.safetensors")


def test_bad_files_fail_naming_file_and_problem(tiny_path, tmp_path):
    bad = tmp_path / "ltx-2.3-22b-dev_audio_vae.safetensors"
    bad.write_bytes(tiny_path.read_bytes()[:4096])
    with pytest.raises(AudioVAEError, match="audio_vae.safetensors: cannot read"):
        AudioVAE.from_release(bad)
    sd = load_file(str(tiny_path))
    with safe_open(str(tiny_path), framework="pt") as f:
        meta = f.metadata()
    save_file(sd, str(bad))
    with pytest.raises(AudioVAEError, match="audio_vae.safetensors: safetensors metadata lacks"):
        AudioVAE.from_release(bad)
    missing = dict(sd)
    missing.pop("audio_vae.decoder.conv_out.conv.weight")
    save_file(missing, str(bad), metadata=meta)
    with pytest.raises(AudioVAEError, match=r"audio VAE keys do not match the metadata config: 1 missing keys: decoder.conv_out"):
        AudioVAE.from_release(bad)
    extra = {**sd, "text_encoder.w": torch.zeros(1)}
    save_file(extra, str(bad), metadata=meta)
    with pytest.raises(AudioVAEError, match="unexpected keys.*text_encoder.w"):
        AudioVAE.from_release(bad)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_decode_lengths_and_channels(avae, rate):
    L = 20
    z = torch.randn(L, 128, generator=torch.Generator().manual_seed(0))
    wave = avae.decode(z, sample_rate=rate)
    assert wave.shape == (2, audio_samples_for_tokens(L, rate))
    assert wave.shape[1] == 160 * (4 * L - 3) * rate // 16000
    assert torch.isfinite(wave).all() and wave.abs().max() > 0
    assert avae.decode_mel(z).shape == (2, 4 * L - 3, 64)


def test_packing_and_normalisation_are_exact_inverses(avae):
    z = torch.randn(8, 7, 16)
    packed = pack_latents(z)
    assert packed[3, 2 * 16 + 5] == z[2, 3, 5]  # feature = c*16 + f
    assert torch.equal(unpack_latents(packed), z)
    x = torch.randn(7, 128)
    torch.testing.assert_close(avae.normalize(avae.denormalize(x)), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(avae.denormalize(avae.normalize(x)), x, atol=1e-5, rtol=1e-5)
    stats_mean = avae.vae.latents_mean
    assert torch.allclose(avae.denormalize(torch.zeros(1, 128))[0], stats_mean)


def test_encode_stereo_clip(avae):
    t = torch.arange(16000) / 16000
    clip = torch.stack([0.3 * torch.sin(2 * math.pi * 440 * t), 0.2 * torch.sin(2 * math.pi * 660 * t)])
    lat = avae.encode(clip, 16000)
    assert lat.shape == (25, 128) and torch.isfinite(lat).all()
    clip48 = clip.repeat_interleave(3, dim=1)
    assert avae.encode(clip48, 48000).shape == (25, 128)


def test_resample_48k_to_16k_keeps_the_band_and_rejects_aliases():
    t = torch.arange(48000) / 48000
    low = torch.sin(2 * math.pi * 1000 * t)[None]
    high = torch.sin(2 * math.pi * 12000 * t)[None]
    assert resample_48k_to_16k(low).shape == (1, 16000)
    assert resample_48k_to_16k(low)[:, 200:-200].abs().max() > 0.95
    assert resample_48k_to_16k(high)[:, 200:-200].abs().max() < 0.01
