"""ReDimNet speaker encoder: upstream key layout, strict checkpoint loading, embeddings on real audio."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from nava_core.components.audio_io import AudioInputError, load_audio
from nava_core.components.redimnet import MelFrontEnd, ReDimNet, ReDimNetConfig
from nava_core.components.speaker_encoder import (
    SpeakerCheckpointError,
    SpeakerEncoder,
    write_tiny_speaker_encoder,
)

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
LINE = "The quick brown fox jumps over the lazy dog, and then it runs back home before dark."


def speak(path: Path, voice: str, text: str = LINE) -> Path:
    subprocess.run([ESPEAK, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


def to_mp3(wav: Path, mp3: Path) -> Path:
    x, sr = sf.read(wav, dtype="float32", always_2d=True)
    with av.open(str(mp3), "w") as container:
        stream = container.add_stream("libmp3lame", rate=sr, layout="mono")
        stream.bit_rate = 128_000
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return mp3


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_speaker_encoder(tmp_path_factory.mktemp("spk") / "redimnet_tiny.pt", seed=0)


@pytest.fixture(scope="module")
def encoder(tiny_ckpt: Path) -> SpeakerEncoder:
    return SpeakerEncoder.from_checkpoint(tiny_ckpt)


def test_full_size_M_has_upstream_keys_and_shapes(data_dir: Path, tmp_path: Path) -> None:
    ref = json.loads((data_dir / "redimnet_M_keys.json").read_text())
    model = ReDimNet(ReDimNetConfig())
    mine = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(mine) == sorted(ref["keys"])
    assert mine == ref["keys"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_parameters"]
    # the full-size file in the release format goes through the same loader, 192-d out
    path = tmp_path / "M.pt"
    torch.save({"model_config": ReDimNetConfig().to_dict(), "state_dict": model.state_dict()}, path)
    enc = SpeakerEncoder.from_checkpoint(path)
    emb = enc.embed_waveform(0.1 * np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32))
    assert emb.shape == (192,) and torch.isfinite(emb).all()


def test_mel_front_end_matches_numpy_reference() -> None:
    """Pre-emphasis 0.97 (reflect), periodic Hamming 400 in a centred 512 FFT, hop 160, reflect-padded
    centre frames, power, 72 HTK mel bands 20-7600 Hz, log(x + 1e-6), mean over time removed."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8000).astype(np.float64) * 0.1
    front = MelFrontEnd(n_mels=72, hop_length=160)
    got = front(torch.from_numpy(x).float()[None])[0].numpy()

    y = np.concatenate([[x[0] - 0.97 * x[1]], x[1:] - 0.97 * x[:-1]])
    win = np.zeros(512)
    win[56:456] = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(400) / 400)
    padded = np.pad(y, 256, mode="reflect")
    frames = np.stack([padded[i * 160: i * 160 + 512] for i in range(1 + len(y) // 160)])
    power = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2  # [T, 257]
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(20), mel(7600), 74) / 2595) - 1)
    freqs = np.linspace(0, 8000, 257)
    fb = np.zeros((257, 72))
    for m in range(72):
        lo, mid, hi = edges[m: m + 3]
        fb[:, m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    ref = np.log(power @ fb + 1e-6).T
    ref -= ref.mean(axis=1, keepdims=True)
    assert got.shape == ref.shape == (72, 51)
    assert np.abs(got - ref).max() < 5e-4


def test_tiny_checkpoint_loads_strictly_and_is_deterministic(tiny_ckpt: Path) -> None:
    blob = torch.load(tiny_ckpt, weights_only=True)
    assert set(blob) == {"model_config", "state_dict"}
    a = SpeakerEncoder.from_checkpoint(tiny_ckpt)
    b = SpeakerEncoder.from_checkpoint(write_tiny_speaker_encoder(tiny_ckpt.with_name("again.pt"), seed=0))
    other = SpeakerEncoder.from_checkpoint(write_tiny_speaker_encoder(tiny_ckpt.with_name("s1.pt"), seed=1))
    wav = (0.2 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    assert torch.equal(a.embed_waveform(wav), b.embed_waveform(wav))
    assert not torch.allclose(a.embed_waveform(wav), other.embed_waveform(wav))


def test_wrong_and_truncated_checkpoints_fail_clearly(tiny_ckpt: Path, tmp_path: Path) -> None:
    data = tiny_ckpt.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpeakerCheckpointError, match=r"cut\.pt.*truncated"):
        SpeakerEncoder.from_checkpoint(cut)

    blob = torch.load(tiny_ckpt, weights_only=True)
    del blob["state_dict"]["linear.weight"]
    blob["state_dict"]["extra.bias"] = torch.zeros(3)
    bad = tmp_path / "bad_keys.pt"
    torch.save(blob, bad)
    with pytest.raises(SpeakerCheckpointError, match=r"bad_keys\.pt.*1 missing keys: linear\.weight; 1 unexpected keys: extra\.bias"):
        SpeakerEncoder.from_checkpoint(bad)

    blob = torch.load(tiny_ckpt, weights_only=True)
    blob["model_config"] = dict(blob["model_config"], C=8)  # weights of another width
    wider = tmp_path / "wrong_config.pt"
    torch.save(blob, wider)
    with pytest.raises(SpeakerCheckpointError, match=r"wrong_config\.pt.*wrong shapes"):
        SpeakerEncoder.from_checkpoint(wider)

    plain = tmp_path / "plain_state_dict.pt"
    torch.save(blob["state_dict"], plain)
    with pytest.raises(SpeakerCheckpointError, match=r"plain_state_dict\.pt.*'model_config' and 'state_dict'"):
        SpeakerEncoder.from_checkpoint(plain)

    blob["model_config"] = dict(blob["model_config"], pooling_func="XYZ")
    odd = tmp_path / "odd.pt"
    torch.save(blob, odd)
    with pytest.raises(SpeakerCheckpointError, match=r"odd\.pt.*pooling_func 'XYZ'"):
        SpeakerEncoder.from_checkpoint(odd)

    with pytest.raises(SpeakerCheckpointError, match="not found"):
        SpeakerEncoder.from_checkpoint(tmp_path / "absent.pt")


@needs_espeak
def test_same_file_same_embedding_different_voices_differ(encoder: SpeakerEncoder, tmp_path: Path) -> None:
    us = speak(tmp_path / "us.wav", "en-us")
    f3 = speak(tmp_path / "f3.wav", "en+f3")
    m7 = speak(tmp_path / "m7.wav", "en+m7", "Please call Stella and ask her to bring these things with her.")
    e_us, e_us_again = encoder.embed_file(us), encoder.embed_file(us)
    assert e_us.shape == (192,) and e_us.dtype == torch.float32
    assert torch.equal(e_us, e_us_again)
    assert torch.equal(e_us, encoder.embed_waveform(load_audio(us).samples))
    e_f3, e_m7 = encoder.embed_file(f3), encoder.embed_file(m7)
    for a, b in [(e_us, e_f3), (e_us, e_m7), (e_f3, e_m7)]:
        assert F.cosine_similarity(a, b, dim=0) < 0.999
        assert (a - b).norm() > 1e-3 * a.norm()


@needs_espeak
def test_mp3_and_wav_of_same_clip_agree(encoder: SpeakerEncoder, tmp_path: Path) -> None:
    wav = speak(tmp_path / "clip.wav", "en+f3")  # espeak writes 22.05 kHz mono
    mp3 = to_mp3(wav, tmp_path / "clip.mp3")
    cos = F.cosine_similarity(encoder.embed_file(wav), encoder.embed_file(mp3), dim=0)
    assert cos >= 0.99


def test_embed_file_refuses_unusable_audio(encoder: SpeakerEncoder, tmp_path: Path) -> None:
    sf.write(tmp_path / "quiet.wav", np.zeros(48000), 16000)
    with pytest.raises(AudioInputError, match="silent"):
        encoder.embed_file(tmp_path / "quiet.wav")
    with pytest.raises(ValueError, match="mono"):
        encoder.embed_waveform(np.zeros((2, 16000), np.float32))
