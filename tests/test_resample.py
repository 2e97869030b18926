"""The plain-torch resampler reproduces torchaudio's default resampler (fixtures/resample/, torchaudio 2.9.1)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nava_core.components.resample import resample

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "resample" / "torchaudio_default.safetensors"
CASES = ["stereo_48000_to_16000", "mono_44100_to_16000", "mono_24000_to_16000", "mono_22050_to_16000",
         "mono_8000_to_16000"]


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    path = FIXTURE if FIXTURE.is_file() else Path("/work/shared/fixtures/resample/torchaudio_default.safetensors")
    return load_file(str(path))


@pytest.mark.parametrize("case", CASES)
def test_matches_torchaudio_default(reference, case):
    rate = int(case.split("_")[1])
    x, want = reference[f"{case}/in"], reference[f"{case}/out"]
    got = resample(x, rate, 16000)
    assert got.shape == want.shape and got.dtype == torch.float32
    err = (got - want).abs().max().item()
    assert err < 1e-5, f"{case}: max abs error {err:.2e}"
    assert "torchaudio" not in sys.modules


def test_length_rule_and_identity():
    x = torch.randn(3, 1001)
    assert resample(x, 16000, 16000) is x
    assert resample(x, 48000, 16000).shape == (3, 334)  # ceil(1001/3)
    assert resample(x[0], 22050, 16000).shape == (727,)  # ceil(1001*320/441)
    with pytest.raises(ValueError, match="floating"):
        resample(torch.zeros(10, dtype=torch.int16), 48000, 16000)


def test_low_tone_passes_and_alias_band_is_removed():
    t = torch.arange(48000 * 2, dtype=torch.float64) / 48000
    tone = torch.sin(2 * np.pi * 1000 * t).float()
    alias = torch.sin(2 * np.pi * 12000 * t).float()  # above 8 kHz: must not fold back
    out_tone, out_alias = resample(tone, 48000, 16000), resample(alias, 48000, 16000)
    mid = slice(2000, -2000)
    assert abs(out_tone[mid].pow(2).mean().sqrt().item() - 2**-0.5) < 1e-3
    assert out_alias[mid].abs().max().item() < 5e-3  # > 45 dB down


def test_release_output_path_uses_it(tiny_pipe):
    """The 16 kHz output is the 48 kHz vocoder output through this resampler (the release's order)."""
    latents = torch.randn(12, 128, generator=torch.Generator().manual_seed(0))
    w48 = tiny_pipe.audio_vae.decode(latents, sample_rate=48000)
    w16 = tiny_pipe.audio_vae.decode(latents, sample_rate=16000)
    assert w16.shape == (2, 160 * (4 * 12 - 3))
    torch.testing.assert_close(w16, resample(w48, 48000, 16000), rtol=0, atol=0)


def test_voice_references_are_resampled_then_mixed_to_mono(tmp_path):
    import soundfile as sf

    from nava_core.components.audio_io import load_audio

    rng = np.random.default_rng(1)
    stereo = (0.3 * rng.standard_normal((2, 44100 * 2))).astype(np.float32)
    path = tmp_path / "ref.wav"
    sf.write(str(path), stereo.T, 44100, subtype="FLOAT")
    got = load_audio(path, sample_rate=16000, mono=True).samples
    want = resample(torch.from_numpy(stereo), 44100, 16000).mean(0).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-7
