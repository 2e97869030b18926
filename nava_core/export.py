"""Writing renders to disk: MP4 (H.264 + AAC stereo), WAV, FLAC, JSON sidecars, and reading them back.

Why PyAV directly: it ships its own ffmpeg libraries (no ffmpeg/ffprobe binary needed), lets us feed
every frame and an audio track padded/trimmed to exactly the video duration (ffmpeg's `-shortest`,
which moviepy relies on, can drop the last frame). Measured on 145 noise frames of 1280x704
(worst case for x264, 2 shared cores, veryfast/crf 18): PyAV 41 s vs moviepy 29 s single-threaded;
with frame threading 47.6 s vs 42.4 s on a busier machine (1.1-1.4x). The gap is x264 encode time in
PyAV's bundled libx264 (RGB->YUV conversion is 0.015 s/frame), not our code
(see tests/test_export.py::test_writer_speed_vs_moviepy, marked slow).

Every write is atomic: the file is written under a hidden temporary name in the destination folder
and moved into place with `os.replace`, so a crash or cancel never leaves a half file under the
final name (and the temporary file is removed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

MP4_COMMENT_KEY = "comment"
VIDEO_CRF = "18"
VIDEO_PRESET = "veryfast"
AUDIO_BITRATE = 192_000


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` found in a media file (None/0 for an absent stream)."""

    video_codec: str | None
    width: int
    height: int
    frames: int
    fps: float | None
    duration_s: float
    audio_codec: str | None
    channels: int
    sample_rate: int
    audio_samples: int = 0  # decoded samples (AAC: whole 1024-sample frames, so up to one frame more)
    audio_duration_s: float = 0.0  # the audio stream's muxed duration (edit list applied)


# --- atomic writes -------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it over `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def sidecar_path(path: str | os.PathLike) -> Path:
    """`<name>.json` next to a media file."""
    return Path(path).with_suffix(".json")


def write_sidecar(path: str | os.PathLike, request_json: str) -> Path:
    """Write the render request as `<name>.json` beside `path` (or at `path` if it ends in .json)."""
    p = Path(path)
    target = p if p.suffix == ".json" else sidecar_path(p)
    with _atomic_target(target) as tmp:
        tmp.write_text(request_json, encoding="utf-8")
    return target


# --- audio helpers -------------------------------------------------------------------------------


def _as_stereo(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = np.stack([a, a])
    if a.ndim != 2 or a.shape[0] not in (1, 2):
        raise ValueError(f"audio must be [2, N] (or [N] mono), got shape {a.shape}")
    if a.shape[0] == 1:
        a = np.concatenate([a, a])
    return np.ascontiguousarray(a)


def fit_audio(audio: np.ndarray, samples: int) -> np.ndarray:
    """Trim or zero-pad [C, N] audio to exactly `samples` samples."""
    if audio.shape[1] >= samples:
        return np.ascontiguousarray(audio[:, :samples])
    pad = np.zeros((audio.shape[0], samples - audio.shape[1]), dtype=audio.dtype)
    return np.concatenate([audio, pad], axis=1)


# --- MP4 -----------------------------------------------------------------------------------------


def _check_frame(frame: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    f = np.asarray(frame)
    if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"frames must be uint8 [H, W, 3], got {f.dtype} {f.shape}")
    if f.shape[0] % 2 or f.shape[1] % 2:
        raise ValueError(f"frame size {f.shape[1]}x{f.shape[0]} must be even for yuv420p")
    if shape is not None and f.shape[:2] != shape:
        raise ValueError(f"frame size changed from {shape} to {f.shape[:2]}")
    return np.ascontiguousarray(f)


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    audio: np.ndarray | None,
    sample_rate: int,
    request_json: str | None,
    fps: int = 24,
) -> Path:
    """Write H.264 (yuv420p) + AAC stereo MP4 with +faststart, atomically; returns the final path.

    Every frame is kept; the audio is trimmed/padded to exactly len(frames)/fps seconds. The request
    goes into the MP4 `comment` tag and a `<name>.json` sidecar. `frames` may be an iterable (e.g.
    streamed from a decoder) as long as every item is uint8 [H, W, 3].
    """
    path = Path(path)
    stereo = None if audio is None else _as_stereo(audio)
    with _atomic_target(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            if request_json is not None:
                container.metadata[MP4_COMMENT_KEY] = request_json
            vstream = None
            astream = None
            shape = None
            count = 0
            for frame in frames:
                f = _check_frame(frame, shape)
                if vstream is None:
                    shape = f.shape[:2]
                    vstream = container.add_stream("libx264", rate=fps)
                    vstream.width, vstream.height = f.shape[1], f.shape[0]
                    vstream.pix_fmt = "yuv420p"
                    vstream.codec_context.time_base = Fraction(1, fps)
                    vstream.options = {"crf": VIDEO_CRF, "preset": VIDEO_PRESET}
                    # Frame threading: ~25% faster on 2 cores than PyAV's single-threaded default.
                    vstream.codec_context.thread_type = "AUTO"
                    vstream.codec_context.thread_count = 0
                    if stereo is not None:
                        astream = container.add_stream("aac", rate=sample_rate, layout="stereo")
                        astream.bit_rate = AUDIO_BITRATE
                vf = av.VideoFrame.from_ndarray(f, format="rgb24")
                vf.pts = count
                vf.time_base = Fraction(1, fps)
                container.mux(vstream.encode(vf))
                count += 1
            if vstream is None:
                raise ValueError("write_mp4 needs at least one frame")
            container.mux(vstream.encode(None))
            if astream is not None:
                samples = round(count * sample_rate / fps)
                _encode_audio(container, astream, fit_audio(stereo, samples), sample_rate)
        finally:
            container.close()
    if request_json is not None:
        write_sidecar(path, request_json)
    logger.info("wrote %s (%d frames, %s)", path, count, "with audio" if stereo is not None else "no audio")
    return path


def _encode_audio(container: av.container.OutputContainer, stream, audio: np.ndarray, sample_rate: int) -> None:
    """Encode planar float stereo in encoder-sized chunks with explicit sample pts."""
    frame_size = stream.codec_context.frame_size or 1024
    tb = Fraction(1, sample_rate)
    for start in range(0, audio.shape[1], frame_size):
        chunk = np.ascontiguousarray(audio[:, start : start + frame_size])
        af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        af.sample_rate = sample_rate
        af.pts = start
        af.time_base = tb
        container.mux(stream.encode(af))
    container.mux(stream.encode(None))


# --- WAV / FLAC ----------------------------------------------------------------------------------


def _write_soundfile(path: Path, audio: np.ndarray, sample_rate: int, request_json: str | None, fmt: str, subtype: str) -> Path:
    stereo = _as_stereo(audio)
    with _atomic_target(path) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=stereo.shape[0], format=fmt, subtype=subtype) as f:
            if request_json is not None and fmt == "FLAC":
                f.comment = request_json
            f.write(stereo.T)
        if request_json is not None and fmt == "WAV":
            _append_wav_comment(tmp, request_json)
    logger.info("wrote %s (%d samples at %d Hz)", path, stereo.shape[1], sample_rate)
    return path


def _append_wav_comment(path: Path, text: str) -> None:
    """Append a LIST/INFO chunk with an ICMT entry and fix the RIFF size.

    libsndfile silently drops INFO strings longer than a few hundred bytes, and a render request is
    several kilobytes, so we write the chunk ourselves (RIFF chunks are word-aligned).
    """
    payload = text.encode("utf-8") + b"\0"
    if len(payload) % 2:
        payload += b"\0"
    icmt = b"ICMT" + struct.pack("<I", len(text.encode("utf-8")) + 1) + payload
    chunk = b"LIST" + struct.pack("<I", 4 + len(icmt)) + b"INFO" + icmt
    with open(path, "r+b") as f:
        if f.read(4) != b"RIFF":
            raise ValueError(f"{path} is not a RIFF WAV file")
        f.seek(0, os.SEEK_END)
        if f.tell() % 2:
            f.write(b"\0")
        f.write(chunk)
        size = f.tell() - 8
        f.seek(4)
        f.write(struct.pack("<I", size))


def _read_wav_comment(path: Path) -> str | None:
    """The ICMT text of a WAV's LIST/INFO chunk, if any."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if kind == b"LIST" and body[:4] == b"INFO":
            sub = 4
            while sub + 8 <= len(body):
                sk, ss = body[sub : sub + 4], struct.unpack("<I", body[sub + 4 : sub + 8])[0]
                if sk == b"ICMT":
                    return body[sub + 8 : sub + 8 + ss].rstrip(b"\0").decode("utf-8", errors="replace") or None
                sub += 8 + ss + (ss % 2)
        pos += 8 + size + (size % 2)
    return None


def write_wav(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int,
    request_json: str | None,
    float32: bool = False,
) -> Path:
    """Stereo WAV (16-bit PCM, or 32-bit float with float32=True) with the request in LIST/INFO ICMT."""
    return _write_soundfile(Path(path), audio, sample_rate, request_json, "WAV", "FLOAT" if float32 else "PCM_16")


def write_flac(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, request_json: str | None) -> Path:
    """Stereo 16-bit FLAC with the request in a Vorbis `COMMENT`."""
    return _write_soundfile(Path(path), audio, sample_rate, request_json, "FLAC", "PCM_16")


# --- reading back --------------------------------------------------------------------------------


def read_request(path: str | os.PathLike) -> str | None:
    """The render request embedded in an MP4/WAV/FLAC, else its `<name>.json` sidecar, else None."""
    p = Path(path)
    if p.suffix == ".json":
        return p.read_text(encoding="utf-8") if p.exists() else None
    text: str | None = None
    if p.exists():
        suffix = p.suffix.lower()
        try:
            if suffix == ".wav":
                text = _read_wav_comment(p)
            elif suffix == ".flac":
                with sf.SoundFile(str(p)) as f:
                    text = f.comment or None
            else:
                with av.open(str(p)) as c:
                    text = c.metadata.get(MP4_COMMENT_KEY) or None
        except (sf.LibsndfileError, av.error.FFmpegError, RuntimeError, ValueError, struct.error) as exc:
            logger.warning("could not read metadata of %s: %s", p, exc)
    if text is None:
        side = sidecar_path(p)
        if side.exists():
            text = side.read_text(encoding="utf-8")
    return text


def probe(path: str | os.PathLike) -> MediaInfo:
    """Codecs, size, decoded frame count, fps, duration, channels and sample rate of a media file."""
    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        frames = sum(1 for _ in c.decode(video=0)) if v is not None else 0
        audio_samples = 0
        if a is not None:
            c.seek(0)
            audio_samples = sum(fr.samples for fr in c.decode(audio=0))
        duration = c.duration / av.time_base if c.duration is not None else 0.0
        return MediaInfo(
            video_codec=v.codec_context.name if v is not None else None,
            width=v.codec_context.width if v is not None else 0,
            height=v.codec_context.height if v is not None else 0,
            frames=frames,
            fps=float(v.average_rate) if v is not None and v.average_rate else None,
            duration_s=float(duration),
            audio_codec=a.codec_context.name if a is not None else None,
            channels=a.codec_context.channels if a is not None else 0,
            sample_rate=a.codec_context.sample_rate if a is not None else 0,
            audio_samples=audio_samples,
            audio_duration_s=float(a.duration * a.time_base) if a is not None and a.duration else 0.0,
        )


__all__ = [
    "MediaInfo",
    "fit_audio",
    "write_mp4",
    "write_wav",
    "write_flac",
    "write_sidecar",
    "sidecar_path",
    "read_request",
    "probe",
]
