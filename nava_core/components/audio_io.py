"""Reading voice-reference audio for the speaker encoder.

People drop whatever they have on the voice slot: phone m4a, mp3, ogg/opus, flac, wav. NAVA's
speaker path wants 16 kHz mono, first 30 s (channels averaged, as the release does). This module
decodes with PyAV (no system binaries; soundfile is a fast path for wav/flac/ogg), resamples with
the release's filter (torchaudio's default windowed sinc, `resample.py`) and then down-mixes (the
release's order), and refuses inputs that would give a meaningless voice embedding,
each with a message that names the file, says what is wrong and what to do.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MIN_SECONDS = 1.0
SILENCE_DBFS = -60.0
_SOUNDFILE_SUFFIXES = {".wav", ".flac"}


class AudioInputError(ValueError):
    """A reference audio file cannot be used; the message names the file, the problem and the fix."""


@dataclass
class LoadedAudio:
    """Decoded audio. ``samples`` is float32 ``[N]`` (mono) or ``[C, N]``; ``duration_s`` is the
    duration of the source file (the samples may be shorter: cut to ``max_seconds``)."""

    samples: np.ndarray
    sample_rate: int
    duration_s: float
    channels_in: int
    warnings: list[str] = field(default_factory=list)

    @property
    def used_seconds(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


@dataclass
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int
    codec: str


_NOT_AUDIO = {"png": "a PNG image", "jpeg": "a JPEG image", "gif": "a GIF image", "pdf": "a PDF document",
              "zip": "a ZIP archive", "webp": "a WebP image"}


def _sniff(path: Path) -> str | None:
    """Describe non-audio content from its first bytes (`nava_core.validation.sniff`), or None if it
    may be audio."""
    from nava_core.validation import sniff

    with path.open("rb") as fh:
        head = fh.read(512)
    kind = sniff(head)
    if kind in _NOT_AUDIO:
        return _NOT_AUDIO[kind]
    if kind is not None or _looks_audio(head):
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "a text file"
    return None


def _looks_audio(head: bytes) -> bool:
    """An audio signature: the kinds `sniff` knows, plus AIFF, CAF and AMR, which PyAV also decodes."""
    from nava_core.validation import AUDIO_KINDS, sniff

    return sniff(head) in AUDIO_KINDS or head.startswith((b"RIFF", b"FORM", b"caff", b"#!AMR"))


def _not_audio(path: Path, what: str) -> AudioInputError:
    return AudioInputError(f"{path.name}: this is {what}, not audio. Choose a voice recording "
                           f"(wav, mp3, m4a, ogg, flac or opus) of one person speaking.")


def _unreadable(path: Path, detail: str) -> AudioInputError:
    return AudioInputError(f"{path.name}: the audio could not be decoded ({detail}); the file may be "
                           f"truncated or corrupt. Re-export or re-download it and try again.")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioInputError(f"{path}: file not found. Check the path or upload the file again.")
    if path.is_dir():
        raise AudioInputError(f"{path}: is a folder, not an audio file. Choose a single audio file.")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{path.name}: the file is empty (0 bytes). Upload the recording again.")
    what = _sniff(path)
    if what is not None:
        raise _not_audio(path, what)


def _decode_soundfile(path: Path, max_frames_at) -> tuple[np.ndarray, int, float, int] | None:
    """Fast path for wav/flac; None when soundfile cannot read it (PyAV then tries)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        frames = min(info.frames, max_frames_at(info.samplerate))
        data, sr = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - any failure hands over to PyAV
        logger.debug("soundfile could not read %s: %s", path, exc)
        return None
    return data.T.copy(), int(sr), info.frames / info.samplerate, info.channels


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _open(path: Path):
    """Open with PyAV; a file with an audio signature that fails is unreadable, anything else is
    not a recognised audio format."""
    import av

    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        if _looks_audio(path.open("rb").read(16)):
            raise _unreadable(path, _reason(exc)) from exc
        raise AudioInputError(f"{path.name}: not a recognised audio format ({_reason(exc)}). Choose a voice "
                              f"recording in wav, mp3, m4a, ogg, flac or opus.") from exc


def _decode_pyav(path: Path, max_seconds: float) -> tuple[np.ndarray, int, float, int, list[str]]:
    import av

    warnings: list[str] = []
    container = _open(path)
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["nothing"]
            raise _not_audio(path, f"a file with {', '.join(kinds)} streams and no audio stream")
        stream = streams[0]
        channels = stream.codec_context.channels or 1
        rate = stream.codec_context.sample_rate or stream.rate
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            declared = container.duration / 1_000_000
        limit = int(math.ceil((max_seconds + 0.5) * rate)) if rate else None
        chunks: list[np.ndarray] = []
        got = 0
        try:
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                rate = frame.sample_rate
                arr = _planar(arr, frame.format.is_planar, len(frame.layout.channels))
                chunks.append(arr)
                got += arr.shape[1]
                if limit is not None and got >= limit:
                    break
        except av.error.FFmpegError as exc:
            if not chunks:
                raise _unreadable(path, _reason(exc)) from exc
            warnings.append(f"{path.name}: decoding stopped early ({exc}); the file may be truncated. "
                            f"Used the first {got / rate:.1f} s.")
        if not chunks:
            raise _unreadable(path, "no audio frames could be decoded")
        samples = np.concatenate(chunks, axis=1)
        decoded_s = samples.shape[1] / rate
        if limit is not None and got >= limit:
            duration = declared if declared is not None else decoded_s
        else:
            duration = decoded_s
            if declared is not None and decoded_s < 0.9 * declared - 0.1:
                warnings.append(f"{path.name}: the header says {declared:.1f} s but only {decoded_s:.1f} s "
                                f"could be decoded; the file may be truncated.")
        return samples, int(rate), duration, channels, warnings


def _planar(arr: np.ndarray, planar: bool, channels: int) -> np.ndarray:
    """PyAV frame array -> float32 ``[C, n]`` in [-1, 1]."""
    if not planar:
        arr = arr.reshape(-1, channels).T
    if arr.dtype.kind == "i":
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
    elif arr.dtype.kind == "u":
        info = np.iinfo(arr.dtype)
        arr = (arr.astype(np.float32) - (info.max + 1) / 2) / ((info.max + 1) / 2)
    return arr.astype(np.float32, copy=False)


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """The release's resampler (torchaudio's default windowed sinc), per channel."""
    if sr_in == sr_out:
        return x
    import torch

    from nava_core.components.resample import resample

    return resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), sr_in, sr_out).numpy()


def load_audio(path: str | Path, sample_rate: int = 16000, mono: bool = True,
               max_seconds: float = 30.0) -> LoadedAudio:
    """Decode ``path`` to float32 at ``sample_rate`` (channels averaged when ``mono``), first
    ``max_seconds`` only. Raises :class:`AudioInputError` for empty, non-audio, unreadable,
    shorter than 1 s or silent files; a longer file is cut and says so in ``warnings``."""
    path = Path(path)
    _check_file(path)
    warnings: list[str] = []
    decoded = None
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        decoded = _decode_soundfile(path, lambda sr: int(math.ceil((max_seconds + 0.5) * sr)))
    if decoded is not None:
        samples, sr, duration, channels = decoded
    else:
        samples, sr, duration, channels, warnings = _decode_pyav(path, max_seconds)
    if samples.shape[1] == 0:
        raise _unreadable(path, "it contains no audio samples")
    if duration < MIN_SECONDS:
        raise AudioInputError(f"{path.name}: the recording is only {duration:.2f} s long; a voice reference "
                              f"needs at least {MIN_SECONDS:.0f} s (5-15 s of clear speech works best).")
    samples = _resample(samples, sr, sample_rate)  # resample first, then mix down, as the release
    if mono:
        samples = samples.mean(axis=0)
    keep = int(round(max_seconds * sample_rate))
    if samples.shape[-1] > keep:
        samples = samples[..., :keep]
    if duration > max_seconds:
        warnings.append(f"{path.name}: the recording is {duration:.1f} s long; only the first "
                        f"{max_seconds:.0f} s are used for the voice.")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    dbfs = 20 * math.log10(rms) if rms > 0 else -math.inf
    if dbfs < SILENCE_DBFS:
        level = "digital silence" if rms == 0 else f"{dbfs:.0f} dBFS"
        raise AudioInputError(f"{path.name}: the recording is silent ({level}, below {SILENCE_DBFS:.0f} dBFS). "
                              f"Check the microphone or choose a file where the voice is audible.")
    for w in warnings:
        logger.warning(w)
    return LoadedAudio(np.ascontiguousarray(samples, dtype=np.float32), sample_rate, float(duration),
                       int(channels), warnings)


def probe_audio(path: str | Path) -> AudioInfo:
    """Duration, sample rate, channels and codec of an audio file, for the UI (no full decode)."""
    import av

    path = Path(path)
    _check_file(path)
    container = _open(path)
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise _not_audio(path, "a file without an audio stream")
        s = streams[0]
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = float("nan")
        return AudioInfo(duration, int(s.codec_context.sample_rate or 0), int(s.codec_context.channels or 0),
                         s.codec_context.name)
