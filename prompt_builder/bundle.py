"""Project bundles: one `.nava.zip` holding project.json plus the voice files and image it uses.

Presets that point at files on one machine lose their voices elsewhere; a bundle carries them.
Loading treats the archive as untrusted: unknown versions, escaping paths, symlinks, oversized or
bomb-like members and files whose bytes do not match their extension are refused with a clear message.
"""

from __future__ import annotations

import logging
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .schema import Project, SchemaError

log = logging.getLogger(__name__)

BUNDLE_SUFFIX = ".nava.zip"
PROJECT_MEMBER = "project.json"
MAX_MEMBERS = 64
MAX_JSON_BYTES = 2 * 1024 * 1024
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_RATIO = 100.0  # uncompressed / compressed, for members above RATIO_FLOOR
RATIO_FLOOR = 1024 * 1024
AUDIO_EXT = {".wav", ".mp3", ".ogg", ".opus", ".flac", ".m4a"}
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp"}
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


class BundleError(ValueError):
    """The bundle cannot be written or is refused on load; the message says why."""


def sniff_ok(name: str, head: bytes) -> bool:
    """True when the first bytes match what the file extension claims."""
    ext = PurePosixPath(name.lower()).suffix
    if ext == ".wav":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if ext == ".webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    if ext == ".mp3":
        return head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    if ext in (".ogg", ".opus"):
        return head[:4] == b"OggS"
    if ext == ".flac":
        return head[:4] == b"fLaC"
    if ext == ".m4a":
        return head[4:8] == b"ftyp"
    if ext == ".png":
        return head[:8] == b"\x89PNG\r\n\x1a\n"
    if ext in (".jpg", ".jpeg"):
        return head[:3] == b"\xff\xd8\xff"
    return False


def _media_paths(project: Project) -> list[str]:
    paths = [m.voice_file for m in project.cast if m.voice_file]
    if project.image:
        paths.append(project.image)
    return list(dict.fromkeys(paths))


def save_bundle(project: Project, path: str | Path, base_dir: str | Path | None = None) -> Path:
    """Write `path` (.nava.zip); relative media paths resolve against `base_dir` (default: cwd)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out = Path(path)
    bundled = project.copy()
    members: dict[str, Path] = {}
    renamed: dict[str, str] = {}
    for i, media in enumerate(_media_paths(project)):
        src = Path(media) if Path(media).is_absolute() else base / media
        if not src.is_file():
            raise BundleError(f"media file not found: {media} (looked at {src})")
        ext = src.suffix.lower()
        folder = "image" if media == project.image else "voices"
        allowed = IMAGE_EXT if folder == "image" else AUDIO_EXT
        if ext not in allowed:
            raise BundleError(f"{media}: extension {ext or '(none)'} not allowed for {folder}; use {sorted(allowed)}")
        with src.open("rb") as fh:
            if not sniff_ok(src.name, fh.read(16)):
                raise BundleError(f"{media}: contents do not look like a {ext} file")
        member = f"{folder}/{i:02d}_{src.name}"
        members[member] = src
        renamed[media] = member
    for member_obj in bundled.cast:
        if member_obj.voice_file:
            member_obj.voice_file = renamed[member_obj.voice_file]
    if bundled.image:
        bundled.image = renamed[bundled.image]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(PROJECT_MEMBER, date_time=_FIXED_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, bundled.to_json())
        for member, src in members.items():
            info = zipfile.ZipInfo(member, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_STORED  # media is already compressed or small
            zf.writestr(info, src.read_bytes())
    log.info("wrote bundle %s with %d media file(s)", out, len(members))
    return out


def _check_name(name: str) -> None:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"refused: member {name!r} has an absolute or Windows path")
    parts = PurePosixPath(name).parts
    if any(p in ("..", "") for p in parts) or not parts:
        raise BundleError(f"refused: member {name!r} escapes the bundle ('..')")


def _check_info(info: zipfile.ZipInfo) -> None:
    _check_name(info.filename)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise BundleError(f"refused: member {info.filename!r} is a symbolic link")
    limit = MAX_JSON_BYTES if info.filename == PROJECT_MEMBER else MAX_MEMBER_BYTES
    if info.file_size > limit:
        raise BundleError(f"refused: member {info.filename!r} is {info.file_size} bytes (limit {limit})")
    if info.file_size > RATIO_FLOOR and info.file_size / max(info.compress_size, 1) > MAX_RATIO:
        raise BundleError(f"refused: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                          f"(limit {MAX_RATIO:g}x): looks like a zip bomb")


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """Read a member but never more than `limit` bytes, whatever its header claims."""
    chunks, total = [], 0
    with zf.open(info) as fh:
        while chunk := fh.read(1 << 16):
            total += len(chunk)
            if total > limit:
                raise BundleError(f"refused: member {info.filename!r} is larger than its header says")
            chunks.append(chunk)
    return b"".join(chunks)


def load_bundle(path: str | Path, extract_dir: str | Path) -> Project:
    """Validate and extract a bundle; returned media paths point into `extract_dir`."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"not a readable bundle: {exc}") from exc
    dest = Path(extract_dir).resolve()
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            raise BundleError(f"refused: {len(infos)} members (limit {MAX_MEMBERS})")
        total = 0
        for info in zf.infolist():
            _check_info(info)
            total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise BundleError(f"refused: bundle expands to {total} bytes (limit {MAX_TOTAL_BYTES})")
        names = {i.filename: i for i in infos}
        if PROJECT_MEMBER not in names:
            raise BundleError("refused: bundle has no project.json")
        raw = _read_capped(zf, names[PROJECT_MEMBER], MAX_JSON_BYTES)
        try:
            project = Project.from_json(raw.decode("utf-8"))
        except (SchemaError, UnicodeDecodeError) as exc:
            raise BundleError(f"refused: project.json: {exc}") from exc
        data: dict[str, bytes] = {}
        for name, info in names.items():
            if name == PROJECT_MEMBER:
                continue
            folder, ext = PurePosixPath(name).parts[0], PurePosixPath(name).suffix.lower()
            allowed = AUDIO_EXT if folder == "voices" else IMAGE_EXT if folder == "image" else set()
            if ext not in allowed:
                raise BundleError(f"refused: unexpected member {name!r} (only voices/*.{{wav,mp3,ogg,flac,m4a}} "
                                  "and image/*.{png,jpg,webp} are allowed)")
            blob = _read_capped(zf, info, MAX_MEMBER_BYTES)
            if not sniff_ok(name, blob[:16]):
                raise BundleError(f"refused: {name!r} is not a real {ext} file (its bytes say otherwise)")
            data[name] = blob
    for ref in _media_paths(project):
        if ref not in data:
            _check_name(ref)
            raise BundleError(f"refused: project.json refers to {ref!r}, which is not in the bundle")
    for name, blob in data.items():
        target = (dest / name).resolve()
        if dest not in target.parents:
            raise BundleError(f"refused: {name!r} would land outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    for member in project.cast:
        if member.voice_file:
            member.voice_file = str(dest / member.voice_file)
    if project.image:
        project.image = str(dest / project.image)
    log.info("loaded bundle %s into %s", path, dest)
    return project
