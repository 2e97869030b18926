"""load_audio / probe_audio on files written in the test with PyAV and soundfile."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from nava_core.components.audio_io import AudioInputError, load_audio, probe_audio

# suffix -> (encoder, sample format, sample rate)
CODECS = {
    ".wav": ("pcm_s16le", "s16", 44100),
    ".mp3": ("libmp3lame", "fltp", 44100),
    ".m4a": ("aac", "fltp", 44100),
    ".ogg": ("libopus", "flt", 48000),
    ".flac": ("flac", "s16", 44100),
    ".opus": ("libopus", "flt", 48000),
}


def encode(path: Path, x: np.ndarray, sr: int) -> Path:
    """Write ``x`` ([C, N] float in [-1, 1]) with PyAV, codec chosen by suffix."""
    codec, fmt, _ = CODECS[path.suffix]
    layout = "mono" if x.shape[0] == 1 else "stereo"
    if fmt == "s16":
        arr = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    else:
        arr = x.astype(np.float32)
    if not fmt.endswith("p"):
        arr = arr.T.reshape(1, -1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def tone(sr: int, seconds: float, channels: int = 2, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([amp * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)])


@pytest.mark.parametrize("suffix", list(CODECS))
def test_decodes_common_formats_to_16k_mono(tmp_path: Path, suffix: str) -> None:
    sr = CODECS[suffix][2]
    path = encode(tmp_path / f"voice{suffix}", tone(sr, 3.0), sr)
    audio = load_audio(path)
    assert audio.sample_rate == 16000
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.channels_in == 2
    assert abs(audio.used_seconds - 3.0) < 0.1 and abs(audio.duration_s - 3.0) < 0.1
    assert audio.warnings == []
    # mean of a 220 Hz and a 330 Hz tone at 0.3: RMS = 0.3 / 2 ~ 0.15 (survives lossy coding)
    rms = float(np.sqrt(np.mean(audio.samples[1600:-1600] ** 2)))
    assert 0.12 < rms < 0.18
    spectrum = np.abs(np.fft.rfft(audio.samples[:16000]))
    assert abs(np.argmax(spectrum) - 220) <= 2 or abs(np.argmax(spectrum) - 330) <= 2
    info = probe_audio(path)
    assert info.channels == 2 and info.sample_rate == sr and abs(info.duration_s - 3.0) < 0.1


def test_mono_false_keeps_channels(tmp_path: Path) -> None:
    path = tmp_path / "st.wav"
    sf.write(path, tone(22050, 2.0).T, 22050)
    audio = load_audio(path, mono=False)
    assert audio.samples.shape == (2, 32000)


def test_warns_and_cuts_above_30_seconds(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, tone(16000, 33.0, channels=1).T, 16000)
    audio = load_audio(path)
    assert audio.samples.shape == (30 * 16000,)
    assert audio.duration_s == pytest.approx(33.0)
    assert len(audio.warnings) == 1 and "33.0 s" in audio.warnings[0] and "first 30 s" in audio.warnings[0]


def test_long_mp3_is_cut_without_full_decode(tmp_path: Path) -> None:
    path = encode(tmp_path / "long.mp3", tone(44100, 40.0, channels=1), 44100)
    audio = load_audio(path)
    assert audio.samples.shape == (30 * 16000,)
    assert audio.duration_s == pytest.approx(40.0, abs=0.1)
    assert "first 30 s" in audio.warnings[0]


def _refused(path: Path) -> str:
    with pytest.raises(AudioInputError) as err:
        load_audio(path)
    assert path.name in str(err.value)
    return str(err.value)


def test_refuses_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert "empty" in _refused(path)


def test_refuses_silence_and_near_silence(tmp_path: Path) -> None:
    sf.write(tmp_path / "zero.wav", np.zeros(32000), 16000)
    assert "silent" in _refused(tmp_path / "zero.wav")
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "hiss.wav", 1e-4 * rng.standard_normal(32000), 16000)  # ~ -80 dBFS
    assert "silent" in _refused(tmp_path / "hiss.wav")


def test_refuses_shorter_than_one_second(tmp_path: Path) -> None:
    sf.write(tmp_path / "short.wav", tone(16000, 0.6, channels=1).T, 16000)
    message = _refused(tmp_path / "short.wav")
    assert "0.60 s" in message and "at least 1 s" in message
    encode(tmp_path / "short.m4a", tone(44100, 0.5), 44100)
    assert "at least 1 s" in _refused(tmp_path / "short.m4a")


def test_refuses_truncated_and_unreadable(tmp_path: Path) -> None:
    good = encode(tmp_path / "good.m4a", tone(44100, 3.0), 44100).read_bytes()
    (tmp_path / "cut.m4a").write_bytes(good[: len(good) // 2])  # index (moov) lost
    assert "truncated or corrupt" in _refused(tmp_path / "cut.m4a")
    sf.write(tmp_path / "ok.wav", tone(16000, 2.0, channels=1).T, 16000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "ok.wav").read_bytes()[:30])  # header cut
    assert "could not be decoded" in _refused(tmp_path / "cut.wav")


def test_refuses_things_that_are_not_audio(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("INT. KITCHEN - NIGHT\nShe says hello.\n" * 20)
    assert "text file, not audio" in _refused(tmp_path / "notes.txt")
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    (tmp_path / "photo.png").write_bytes(png)
    assert "PNG image, not audio" in _refused(tmp_path / "photo.png")
    (tmp_path / "renamed.mp3").write_bytes(png)  # the name does not fool it
    assert "PNG image" in _refused(tmp_path / "renamed.mp3")
    (tmp_path / "noise.bin").write_bytes(b"\x00\x07" + np.random.default_rng(1).bytes(4096))
    assert "not a recognised audio format" in _refused(tmp_path / "noise.bin")


def test_refuses_video_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(24):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 10, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert "no audio stream" in _refused(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioInputError, match="not found"):
        probe_audio(tmp_path / "nope.wav")
