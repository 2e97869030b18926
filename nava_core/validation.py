"""Input hardening: every file, number and text a user or the API hands us passes through here.

Why: a studio exposed as a Space receives every kind of bad file. A refusal must say what was
refused, why, and how to fix it, and must happen before anything is written or queued. Files are
judged by their content (magic bytes, then a real decode), never by their extension.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from nava_core.config import nearest_bucket
from nava_core.request import MAX_SEED, RenderRequest, RequestError
from nava_core.schema import MAX_REQUEST_CHARS, SchemaError, parse_json_text, validate_request

MB = 1024 * 1024

AUDIO_KINDS = {  # kind -> (PyAV demuxer, description)
    "wav": ("wav", "WAV"),
    "mp3": ("mp3", "MP3"),
    "ogg": ("ogg", "Ogg"),
    "flac": ("flac", "FLAC"),
    "m4a": ("mov", "M4A/MP4"),
    "webm": ("matroska", "WebM/Matroska"),
    "aac": ("aac", "AAC (ADTS)"),
}
IMAGE_KINDS = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}


class InputError(ValueError):
    """A refused input. `what` names it, `why` says what is wrong, `fix` what to do instead."""

    def __init__(self, what: str, why: str, fix: str = "") -> None:
        self.what, self.why, self.fix = what, why, fix
        msg = f"{what}: {why}"
        if fix:
            msg += f". {fix[0].upper()}{fix[1:]}"
        super().__init__(msg)


# ---- content sniffing ----------------------------------------------------------------------


def sniff(head: bytes) -> str | None:
    """The file kind from its first bytes (audio, image or archive kinds), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        layer = (head[1] >> 1) & 0b11
        return "aac" if layer == 0 and (head[1] & 0xF6) == 0xF0 else ("mp3" if layer else None)
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"%PDF":
        return "pdf"
    return None


_KIND_NAMES = {**{k: v[1] for k, v in AUDIO_KINDS.items()}, **IMAGE_KINDS, "zip": "ZIP archive", "gif": "GIF",
               "pdf": "PDF"}


def _describe_unknown(head: bytes) -> str:
    kind = sniff(head)
    if kind is not None:
        return f"it is a {_KIND_NAMES.get(kind, kind)} file"
    try:
        head.decode("utf-8")
        return "it looks like plain text"
    except UnicodeDecodeError:
        return "its content matches no supported format"


def _open_checked(path: str | os.PathLike[str], what: str, max_bytes: int) -> tuple[Path, int, bytes]:
    p = Path(path)
    if not p.exists():
        raise InputError(what, f"the file {p} does not exist", "upload it again or correct the path")
    if p.is_symlink() or not p.is_file():
        raise InputError(what, f"{p} is not a regular file", "upload the file itself, not a folder or link")
    size = p.stat().st_size
    if size == 0:
        raise InputError(what, f"the file {p.name} is empty (0 bytes)", "upload it again; the upload may have failed")
    if size > max_bytes:
        raise InputError(what, f"the file {p.name} is {_size(size)}, over the {_size(max_bytes)} limit",
                         "trim or compress it first")
    with open(p, "rb") as f:
        head = f.read(64)
    return p, size, head


# ---- audio ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioCheck:
    """An accepted audio file. `kind` follows the content; `warnings` e.g. a misleading extension."""

    path: Path
    kind: str
    duration_s: float
    sample_rate: int
    channels: int
    warnings: tuple[str, ...] = ()


def _check_wav_structure(p: Path, size: int, what: str) -> None:
    """PyAV happily decodes a cut-off WAV; the RIFF chunk sizes tell us it was cut off."""
    with open(p, "rb") as f:
        riff_size = struct.unpack("<I", f.read(12)[4:8])[0]
        pos, found_fmt = 12, False
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"fmt ":
                found_fmt = True
            if cid == b"data":
                if not found_fmt:
                    raise InputError(what, "the WAV file has no format header before its data", "re-export it")
                if pos + 8 + clen > size:
                    raise InputError(
                        what,
                        f"the WAV file is truncated: its header promises {clen} bytes of audio but only "
                        f"{size - pos - 8} are present",
                        "upload the complete file (the upload or export was cut off)",
                    )
                return
            pos += 8 + clen + (clen & 1)
    if riff_size + 8 > size:
        raise InputError(what, "the WAV file is truncated (no complete audio data chunk)", "upload the complete file")
    raise InputError(what, "the WAV file has no audio data chunk", "re-export it as a standard WAV")


VOICE_MAX_SECONDS = 300.0  # longest voice file accepted, judged by its header before any decode
VOICE_USED_SECONDS = 30.0  # the part of a voice the speaker encoder (and the preview) reads


def declared_audio_seconds(container: Any, stream: Any) -> float | None:
    """The duration an audio file's header declares (stream, else container), without decoding it."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1e6
    return None


def check_audio_file(
    path: str | os.PathLike[str],
    max_bytes: int = 50 * MB,
    max_seconds: float = 600.0,
    what: str = "audio file",
    decode_seconds: float = VOICE_USED_SECONDS + 0.5,
) -> AudioCheck:
    """Accept an audio upload only if its content is a supported format that really decodes.

    The length is judged from the header first (a 272 KB FLAC can declare 3 hours), and at most
    `decode_seconds` are decoded to prove the file is readable, so no file costs more than that.
    """
    p, size, head = _open_checked(path, what, max_bytes)
    kind = sniff(head)
    if kind not in AUDIO_KINDS:
        raise InputError(what, f"{p.name} is not an audio file: {_describe_unknown(head)}",
                         "upload WAV, MP3, FLAC, Ogg, M4A or WebM audio")
    if kind == "wav":
        _check_wav_structure(p, size, what)
    import av  # lazy: keeps `import nava_core.validation` light

    demuxer, desc = AUDIO_KINDS[kind]
    declared = None
    try:
        with av.open(str(p), format=demuxer) as container:
            streams = container.streams.audio
            if not streams:
                raise InputError(what, f"{p.name} ({desc}) has no audio stream", "upload a file that contains sound")
            stream = streams[0]
            declared = declared_audio_seconds(container, stream)
            if declared is not None and declared > max_seconds + 1:
                raise InputError(what, f"{p.name} declares {declared:,.0f} s of audio, longer than the "
                                 f"{max_seconds:.0f} s limit", f"trim it to a short clip (only the first "
                                 f"{VOICE_USED_SECONDS:.0f} s of a voice are used)")
            samples, rate, channels = 0, stream.rate or 0, stream.channels or 0
            limit = min(max_seconds, decode_seconds)
            for frame in container.decode(stream):
                samples += frame.samples
                rate = frame.sample_rate or rate
                if rate and samples / rate > limit:
                    break
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as e:
        raise InputError(what, f"{p.name} looks like {desc} but cannot be decoded ({e})",
                         "re-export it; the file may be damaged or cut off") from None
    if samples == 0 or not rate:
        raise InputError(what, f"{p.name} ({desc}) decodes to no audio samples",
                         "upload the complete file; it may be damaged or cut off")
    decoded_s = samples / rate
    if decoded_s > max_seconds:
        raise InputError(what, f"{p.name} is longer than the {max_seconds:.0f} s limit", "trim it to a shorter clip")
    duration_s = max(decoded_s, declared) if declared is not None and decoded_s >= limit else decoded_s
    notes = []
    ext = p.suffix.lower().lstrip(".")
    if ext and ext not in (kind, "mp4" if kind == "m4a" else kind, "oga" if kind == "ogg" else kind):
        notes.append(f"{p.name} is named .{ext} but contains {desc}; it is read as {desc}")
    return AudioCheck(p, kind, duration_s, int(rate), int(channels), tuple(notes))


# ---- images ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCheck:
    path: Path
    kind: str
    width: int
    height: int
    mode: str


def check_image_file(
    path: str | os.PathLike[str],
    max_bytes: int = 20 * MB,
    max_pixels: int = 40_000_000,
    what: str = "first-frame image",
) -> ImageCheck:
    """Accept PNG/JPEG/WebP whose header is sane (no decompression bomb) and that fully decodes."""
    p, _size, head = _open_checked(path, what, max_bytes)
    kind = sniff(head)
    if kind not in IMAGE_KINDS:
        raise InputError(what, f"{p.name} is not a PNG, JPEG or WebP image: {_describe_unknown(head)}",
                         "upload a PNG, JPEG or WebP image")
    from PIL import Image

    desc = IMAGE_KINDS[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p, formats=[kind.upper()]) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise InputError(what, f"{p.name} declares an empty {w}x{h} picture", "upload a real image")
                if w * h > max_pixels:
                    raise InputError(what, f"{p.name} declares {w}x{h} = {w * h / 1e6:.0f} megapixels, over the "
                                     f"{max_pixels / 1e6:.0f} MP limit (a decompression bomb or a huge scan)",
                                     "resize it to at most 4096 pixels on its long side")
                im.verify()
            with Image.open(p, formats=[kind.upper()]) as im:
                im.load()  # verify() misses truncated pixel data; a full decode does not
                mode = im.mode
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(what, f"{p.name} declares a picture over the {max_pixels / 1e6:.0f} megapixels limit, too "
                         f"large to decode safely (a decompression bomb?): {e}",
                         "resize it to at most 4096 pixels on its long side") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
        raise InputError(what, f"{p.name} looks like {desc} but cannot be decoded ({e})",
                         "re-export it; the file may be damaged or cut off") from None
    return ImageCheck(p, kind, w, h, mode)


# ---- text and numbers -----------------------------------------------------------------------


def check_text(text: Any, max_chars: int = 20_000, what: str = "prompt", allow_empty: bool = False) -> str:
    """Refuse non-text, NUL and control characters (other than newline and tab), over-long text.

    Windows line endings are normalised to "\\n" (the returned text is what to use).
    """
    if not isinstance(text, str):
        raise InputError(what, f"expected text, got {type(text).__name__}", "send a string")
    if len(text) > max_chars:
        raise InputError(what, f"it is {len(text):,} characters long, over the {max_chars:,} limit",
                         "shorten it (NAVA reads at most 512 tokens anyway)")
    text = text.replace("\r\n", "\n")
    if "\x00" in text:
        raise InputError(what, f"it contains a NUL character at position {text.index(chr(0))}",
                         "remove binary data from the text")
    for i, ch in enumerate(text):
        if ch not in "\n\t" and unicodedata.category(ch) == "Cc":
            raise InputError(what, f"it contains the control character U+{ord(ch):04X} at position {i}",
                             "remove it (only newlines and tabs are allowed)")
        if unicodedata.category(ch) == "Cs":
            raise InputError(what, f"it contains a lone surrogate U+{ord(ch):04X} at position {i} (not valid Unicode)",
                             "remove it or send the text as UTF-8")
    if not allow_empty and not text.strip():
        raise InputError(what, "it is empty", "write something (or load a preset)")
    return text


def _n(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:g}"


def _size(n: float) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n / 1024:.1f} KB" if n >= 1024 else f"{int(n)} bytes"


def check_number(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> float | int:
    """A finite number in [lo, hi] (a whole number when `integer`); bools and strings refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(name, f"expected a number, got {type(value).__name__} {value!r}", f"use a value from {_n(lo)} to {_n(hi)}")
    if not math.isfinite(value):
        raise InputError(name, f"{value!r} is not a finite number", f"use a value from {_n(lo)} to {_n(hi)}")
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise InputError(name, f"{value!r} is not a whole number", f"use a whole number from {_n(lo)} to {_n(hi)}")
            value = int(value)
    if not lo <= value <= hi:
        raise InputError(name, f"{value!r} is out of range", f"use a value from {_n(lo)} to {_n(hi)}")
    return value


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed is a whole number 0..2**32-1 (what the release's generators accept)."""
    return int(check_number(name, value, 0, MAX_SEED, integer=True))


# ---- render requests ------------------------------------------------------------------------


def check_request_dict(
    d: Any,
    base_dir: str | os.PathLike[str] | None = None,
    check_files: bool = True,
    max_prompt_chars: int = 20_000,
    boundary: "PathBoundary | None" = None,
) -> RenderRequest:
    """Turn API/JSON input into a RenderRequest, or refuse it with an InputError.

    Accepts a dict or JSON text. Texts are hardened, the request's own validation runs, and the
    voice/image files it names must exist (relative paths resolve against `base_dir`) and pass the
    file checks.
    """
    what = "render request"
    try:
        if isinstance(d, (str, bytes, bytearray)):
            d = parse_json_text(d, what, MAX_REQUEST_CHARS)
        if isinstance(d, Mapping):
            d = dict(d)
            if "prompt" in d and isinstance(d["prompt"], str):  # refused by name before anything else
                d["prompt"] = check_text(d["prompt"], max_prompt_chars, "prompt")
        req = validate_request(d)
    except InputError:
        raise
    except (SchemaError, RequestError) as e:
        raise InputError(what, str(e)) from None
    except (TypeError, ValueError) as e:  # a type the request's own checks did not foresee
        raise InputError(what, f"malformed field ({e})", "check the field types against a saved request") from None
    if not check_files:
        return req
    size_given = isinstance(d, Mapping) and ("width" in d or "height" in d)
    return check_request_files(req, base_dir, boundary, size_given=size_given)


@dataclass(frozen=True)
class PathBoundary:
    """The folders a server lets a request's voice and image paths point into (the data folder's uploads,
    plus any the operator allows). Paths are judged after resolving `..` and symlinks, and a path outside
    gets one and the same answer whether or not a file is there, so the server is no oracle of its files."""

    roots: tuple[Path, ...]
    start: Path | None = None  # where relative paths start (default: the first root)

    @classmethod
    def of(cls, *roots: str | os.PathLike[str], start: str | os.PathLike[str] | None = None) -> "PathBoundary":
        # each root both as written and resolved, so a root reached through a link still matches
        out: list[Path] = []
        for r in roots:
            for q in (Path(os.path.abspath(r)), Path(os.path.realpath(r))):
                if q not in out:
                    out.append(q)
        return cls(tuple(out), Path(os.path.abspath(start)) if start is not None else None)

    @property
    def base(self) -> Path:
        """Where relative paths start: the first root (the uploads folder) unless told, never the server's
        working folder."""
        return self.start or self.roots[0]

    def resolve(self, path: str, what: str) -> Path:
        """The path (normalised, links not followed: the file checks refuse links) if it and its target lie
        inside a root; else the one refusal that says nothing about the file."""
        p = Path(path)
        lexical = Path(os.path.normpath(p if p.is_absolute() else self.base / p))
        real = Path(os.path.realpath(lexical))
        if not all(any(q == r or r in q.parents for r in self.roots) for q in (lexical, real)):
            raise InputError(what, "this path is not a file uploaded to the studio",
                             "upload the file through the studio's page (uploads are kept in its data folder) and "
                             "use that path; the operator can allow another folder with --allow-path")
        return lexical


def check_request_files(req: RenderRequest, base_dir: str | os.PathLike[str] | None = None,
                        boundary: PathBoundary | None = None, size_given: bool = True) -> RenderRequest:
    """The voice and image files a request names: inside `boundary` (when given), then checked by content
    with the length read from the header. Returns the request with resolved paths; an image-to-video
    request whose input named no frame size (`size_given` False) takes the image's bucket."""
    base = Path(base_dir) if base_dir is not None else None
    changes: dict[str, Any] = {}
    voices = []
    for i, w in enumerate(req.speaker_wavs):
        if not w:
            voices.append(w)
            continue
        what = f"voice reference {i + 1}"
        wp = boundary.resolve(w, what) if boundary is not None else _resolve(w, base)
        check_audio_file(wp, max_seconds=VOICE_MAX_SECONDS, what=f"{what} ({Path(w).name})")
        voices.append(str(wp))
    if tuple(voices) != req.speaker_wavs:
        changes["speaker_wavs"] = tuple(voices)
    if req.image:
        ip = boundary.resolve(req.image, "first-frame image") if boundary is not None else _resolve(req.image, base)
        image = check_image_file(ip)
        if str(ip) != req.image:
            changes["image"] = str(ip)
        if req.mode == "image_audio_video" and not size_given:
            # As the release CLI: without an explicit size the bucket comes from the image (NAVA_SPEC.md 5).
            bucket = nearest_bucket(image.width, image.height)
            changes.update(width=bucket.width, height=bucket.height)
    return req.replace(**changes) if changes else req


def _resolve(path: str, base: Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base is None else base / p


# ---- zip bundles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleCheck:
    path: Path
    members: tuple[str, ...]
    total_uncompressed: int
    notes: tuple[str, ...] = field(default=())


def check_zip_bundle(
    path: str | os.PathLike[str],
    max_members: int = 64,
    max_total_uncompressed: int = 500 * MB,
    max_ratio: float = 100.0,
    max_bytes: int = 200 * MB,
    what: str = "bundle",
) -> BundleCheck:
    """Refuse archives that could escape the extract folder or blow up when extracted.

    Checks member names (no absolute paths, drive letters or `..`), symlinks, encryption, member
    count, declared sizes and compression ratio (a large member compressed more than `max_ratio`
    times is treated as a zip bomb). Extraction code must still stop at the declared sizes, which
    `extract_zip_bundle` does.
    """
    p, _size, head = _open_checked(path, what, max_bytes)
    if sniff(head) != "zip" or not zipfile.is_zipfile(p):
        raise InputError(what, f"{p.name} is not a ZIP archive: {_describe_unknown(head)}",
                         "export the bundle from NAVA Studio again")
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(what, f"{p.name} is a damaged ZIP archive ({e})", "export the bundle again") from None
    if len(infos) > max_members:
        raise InputError(what, f"it has {len(infos)} files, over the limit of {max_members}",
                         "remove unneeded files from the bundle")
    total, names, seen = 0, [], set()
    for info in infos:
        name = info.filename
        norm = name.replace("\\", "/")
        parts = PurePosixPath(norm).parts
        if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or norm.startswith("//"):
            raise InputError(what, f"member {name!r} has an absolute path", "bundles may only hold relative paths")
        if ".." in parts:
            raise InputError(what, f"member {name!r} points outside the bundle (path traversal)",
                             "bundles may only hold relative paths without '..'")
        if "\x00" in name or any(unicodedata.category(c) == "Cc" for c in name):
            raise InputError(what, f"member {name!r} has control characters in its name", "rename it")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise InputError(what, f"member {name!r} is a symbolic link", "bundles may only hold regular files")
        if info.flag_bits & 0x1:
            raise InputError(what, f"member {name!r} is encrypted", "export the bundle without a password")
        key = norm.rstrip("/").lower()
        if key in seen:
            raise InputError(what, f"member {name!r} appears twice", "export the bundle again")
        seen.add(key)
        size = info.file_size
        if size > max_total_uncompressed:
            raise InputError(what, f"member {name!r} expands to {size / MB:.0f} MB, over the "
                             f"{max_total_uncompressed / MB:.0f} MB limit", "remove or shrink it")
        if size > MB and size / max(info.compress_size, 1) > max_ratio:
            raise InputError(what, f"member {name!r} is compressed {size / max(info.compress_size, 1):.0f}:1 "
                             f"(over {max_ratio:.0f}:1), which is how zip bombs look", "export the bundle again")
        total += size
        if total > max_total_uncompressed:
            raise InputError(what, f"its files expand to over {max_total_uncompressed / MB:.0f} MB",
                             "remove large files from the bundle")
        names.append(norm)
    return BundleCheck(p, tuple(names), total)


def extract_zip_bundle(path: str | os.PathLike[str], dest: str | os.PathLike[str], **limits: Any) -> list[Path]:
    """Check, then extract into `dest`, never writing more than each member's declared size."""
    check = check_zip_bundle(path, **limits)
    dest = Path(dest).resolve()
    out: list[Path] = []
    with zipfile.ZipFile(check.path) as zf:
        for info in zf.infolist():
            target = (dest / info.filename.replace("\\", "/")).resolve()
            if dest not in target.parents and target != dest:
                raise InputError("bundle", f"member {info.filename!r} points outside the bundle", "")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > info.file_size:
                        raise InputError("bundle", f"member {info.filename!r} is larger than it declares",
                                         "export the bundle again")
                    dst.write(chunk)
            out.append(target)
    return out


__all__ = [
    "InputError",
    "AudioCheck",
    "ImageCheck",
    "BundleCheck",
    "sniff",
    "check_audio_file",
    "declared_audio_seconds",
    "VOICE_MAX_SECONDS",
    "VOICE_USED_SECONDS",
    "check_image_file",
    "check_text",
    "check_number",
    "check_seed",
    "check_request_dict",
    "check_request_files",
    "PathBoundary",
    "check_zip_bundle",
    "extract_zip_bundle",
]
