"""Shipped presets: whole projects (presets/projects/*.json) and partial presets that merge into a
project (presets/partials/<kind>/*.json: camera moves, sound mixes, scene styles).

Partials only touch their own section, so a user can put a "slow push-in" camera on any project
without losing the dialogue or the cast.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .schema import AudioDesign, Camera, Project, Scene, SchemaError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
PARTIAL_KINDS = {"camera": ("camera", Camera), "sound": ("audio", AudioDesign), "style": ("scene", Scene)}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Partial:
    """A section preset: `kind` is 'camera' | 'sound' | 'style'; `values` are that section's fields."""

    kind: str
    name: str
    title: str = ""
    values: dict[str, str] = field(default_factory=dict)


def _root(root: Path | str | None) -> Path:
    return Path(root) if root is not None else PRESETS_DIR


def _safe_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"bad preset name {name!r}: use lowercase letters, digits, '_' or '-'")
    return name


def list_presets(root: Path | str | None = None) -> list[str]:
    """Names of the whole-project presets, sorted."""
    folder = _root(root) / "projects"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_preset(name: str, root: Path | str | None = None) -> Project:
    """Load a whole-project preset by name (validated like any project)."""
    path = _root(root) / "projects" / f"{_safe_name(name)}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no preset named {name!r} in {path.parent}")
    return resolve_media(Project.from_json(path.read_text(encoding="utf-8")), _root(root).parent)


def resolve_media(project: Project, base: Path | str) -> Project:
    """The project with relative voice/image paths made usable from the current working directory.

    Presets name their media relative to their home (`assets/voices/mia_en.wav` is relative to the
    parent of presets/: the repository root, or site-packages for an installed wheel, where the
    `assets` folder ships beside `presets`). A relative path that exists under `base` becomes
    absolute, so the studio, `nava-render batch` and renders find it from any working directory;
    when the working directory *is* `base` the path already resolves and is left as written
    (portable requests and stable goldens). Absolute paths and paths not found under `base` are
    left alone.
    """
    base = Path(base).resolve()
    try:
        here = Path.cwd().resolve() == base
    except OSError:  # the working directory was deleted
        here = False
    if here:
        return project

    def fix(p: str) -> str:
        if not p or Path(p).is_absolute() or not (base / p).is_file():
            return p
        return str(base / p)

    for member in project.cast:
        member.voice_file = fix(member.voice_file)
    project.image = fix(project.image)
    return project


def save_preset(project: Project, name: str, root: Path | str | None = None) -> Path:
    """Write a project preset as JSON (voices stay as paths; use save_bundle to carry the files)."""
    folder = _root(root) / "projects"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_safe_name(name)}.json"
    path.write_text(project.to_json() + "\n", encoding="utf-8")
    return path


def partial_from_dict(data: dict[str, Any]) -> Partial:
    """Validate a partial: known kind, only that section's string fields."""
    kind = data.get("kind")
    if kind not in PARTIAL_KINDS:
        raise SchemaError(f"partial kind must be one of {sorted(PARTIAL_KINDS)}, got {kind!r}")
    allowed = {f.name for f in fields(PARTIAL_KINDS[kind][1])}
    values = data.get("values") or {}
    if not isinstance(values, dict):
        raise SchemaError("partial values must be an object")
    bad = set(values) - allowed
    if bad:
        raise SchemaError(f"{kind} partial has unknown field(s) {sorted(bad)}; allowed: {sorted(allowed)}")
    if not all(isinstance(v, str) for v in values.values()):
        raise SchemaError("partial values must be strings")
    return Partial(kind=kind, name=str(data.get("name", "")), title=str(data.get("title", "")), values=dict(values))


def list_partials(kind: str, root: Path | str | None = None) -> list[Partial]:
    """All partial presets of a kind ('camera' | 'sound' | 'style'), sorted by name."""
    if kind not in PARTIAL_KINDS:
        raise ValueError(f"kind must be one of {sorted(PARTIAL_KINDS)}")
    folder = _root(root) / "partials" / kind
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.setdefault("name", path.stem)
        out.append(partial_from_dict(data))
    return out


def load_partial(kind: str, name: str, root: Path | str | None = None) -> Partial:
    """One partial preset by kind and name."""
    for partial in list_partials(kind, root):
        if partial.name == name:
            return partial
    raise FileNotFoundError(f"no {kind} partial named {name!r}")


def apply_partial(project: Project, partial: Partial | dict[str, Any]) -> Project:
    """A new project with the partial's fields written over its section; other sections untouched."""
    if isinstance(partial, dict):
        partial = partial_from_dict(partial)
    attr, _cls = PARTIAL_KINDS[partial.kind]
    new = project.copy()
    setattr(new, attr, replace(getattr(new, attr), **partial.values))
    return new
