"""Work is never lost: the builder state is saved as it changes, in the browser and in the data folder.

The browser copy (a `gr.BrowserState`, localStorage) brings a reloaded tab back exactly, including the
jobs it was following; the data-folder copy (`<home>/autosave/project.json`) brings the project back
in another browser or after the browser's storage was cleared. Voices and the first-frame image are
files in the data folder already (uploads and loaded presets are copied there), so the state's paths
stay valid; a path that has gone is dropped on restore with a note, never kept dangling.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

AUTOSAVE_VERSION = 1
MAX_AUTOSAVE_BYTES = 4 * 1024 * 1024  # a builder state is a few KB; anything huge is not ours


def autosave_path(home: Path) -> Path:
    return Path(home) / "autosave" / "project.json"


def envelope(state: dict[str, Any], preset: str = "") -> dict[str, Any]:
    """What is stored: the builder state, the preset it came from, and when."""
    return {"version": AUTOSAVE_VERSION, "saved_at": time.time(), "preset": preset, "state": state}


def save(home: Path, record: dict[str, Any]) -> None:
    """Atomic write (temp file + rename): a crash mid-write leaves the previous save intact."""
    path = autosave_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def load(home: Path) -> dict[str, Any] | None:
    """The data folder's last save, or None (absent, unreadable or not an autosave: logged, not raised)."""
    path = autosave_path(home)
    try:
        if not path.is_file() or path.stat().st_size > MAX_AUTOSAVE_BYTES:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        log.warning("ignoring the autosave at %s: %s", path, e)
        return None
    return record if valid(record) else None


def valid(record: Any) -> bool:
    return (isinstance(record, dict) and record.get("version") == AUTOSAVE_VERSION
            and isinstance(record.get("state"), dict) and isinstance(record["state"].get("project"), dict))


def newest(*records: Any) -> dict[str, Any] | None:
    """The most recent valid record of several (browser copy, data-folder copy)."""
    good = [r for r in records if valid(r)]
    return max(good, key=lambda r: float(r.get("saved_at") or 0)) if good else None


def missing_media(state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The state with voice/image paths that no longer exist cleared, and a note per cleared file."""
    notes = []
    project = state.get("project") or {}
    for member in project.get("cast") or []:
        vf = member.get("voice_file") or ""
        if vf and not Path(vf).is_file():
            notes.append(f"the voice of {member.get('name') or member.get('id')} ({Path(vf).name}) is gone")
            member["voice_file"] = ""
    image = project.get("image") or ""
    if image and not Path(image).is_file():
        notes.append(f"the first-frame image {Path(image).name} is gone")
        project["image"] = ""
    return state, notes
