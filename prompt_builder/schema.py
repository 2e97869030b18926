"""Versioned, JSON-serialisable project schema for NAVA prompts.

The project is the single source of truth the studio edits; the prompt text is derived from it
(see compiler.py) so that span order, voices and timing can never drift apart.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

PROJECT_VERSION = 1
LANGUAGES = ("en", "zh")
MODES = ("audio_video", "image_audio_video", "audio")
RATES = ("slow", "normal", "fast")
BEAT_KINDS = ("action", "line")


class SchemaError(ValueError):
    """A project dict that cannot be turned into a Project (bad version, field or value)."""


@dataclass
class Scene:
    """Look of the clip: free phrases the compiler stitches into the opening sentences."""

    style: str = ""
    setting: str = ""
    lighting: str = ""
    palette: str = ""
    mood: str = ""


@dataclass
class Subject:
    """Someone or something on screen; `id` doubles as the speaker id when it talks."""

    id: str
    description: str = ""
    position: str = ""  # "left" | "right" | "center" | "background" | free text


@dataclass
class Delivery:
    """How a line is spoken; `rate` drives timing estimates and lint."""

    emotion: str = ""
    rate: str = "normal"  # one of RATES
    volume: str = ""  # "soft" | "loud" | free text; empty = unspecified


@dataclass
class Beat:
    """One step of the timeline: an action, or a spoken line bound to a speaker.

    `pause` is seconds of silence before the beat; `seconds` is how long an action lasts on the
    timeline (0 = happens alongside speech).
    """

    kind: str = "action"  # one of BEAT_KINDS
    text: str = ""
    speaker: str = ""
    delivery: Delivery = field(default_factory=Delivery)
    pause: float = 0.0
    seconds: float = 0.0


@dataclass
class Camera:
    """Shot language; NAVA follows camera wording directly from the prompt."""

    shot_size: str = ""
    angle: str = ""
    movement: str = ""
    pacing: str = ""
    cuts: str = ""  # "none" -> an explicit "no cuts" phrase; free text otherwise


@dataclass
class AudioDesign:
    """The sound paragraph: NAVA generates ambience, effects and music from these words."""

    ambience: str = ""
    effects: str = ""
    music: str = ""  # empty -> "no background music"
    mix: str = ""
    stereo: str = ""


@dataclass
class CastMember:
    """Speaker id -> display name, voice description and reference voice file (may be empty)."""

    id: str
    name: str = ""
    voice: str = ""
    voice_file: str = ""


@dataclass
class Project:
    """A whole clip description. `raw` holds an imported prompt's text around its spans.

    When `raw` is not None it has one more element than there are line beats; the compiler then
    re-emits that text verbatim and only substitutes span texts, so imports round-trip exactly.
    """

    language: str = "en"
    title: str = ""
    mode: str = "audio_video"
    seconds: float = 6.0
    width: int = 1280
    height: int = 704
    image: str = ""
    scene: Scene = field(default_factory=Scene)
    subjects: list[Subject] = field(default_factory=list)
    timeline: list[Beat] = field(default_factory=list)
    camera: Camera = field(default_factory=Camera)
    audio: AudioDesign = field(default_factory=AudioDesign)
    cast: list[CastMember] = field(default_factory=list)
    raw: list[str] | None = None
    version: int = PROJECT_VERSION

    # ---- lookups -------------------------------------------------------------------------
    def cast_member(self, speaker_id: str) -> CastMember | None:
        """The cast entry for a speaker id, or None."""
        for member in self.cast:
            if member.id == speaker_id:
                return member
        return None

    def subject(self, subject_id: str) -> Subject | None:
        """The subject with this id, or None."""
        for subject in self.subjects:
            if subject.id == subject_id:
                return subject
        return None

    def lines(self) -> list[Beat]:
        """Line beats in span order (the order NAVA binds voices)."""
        return [b for b in self.timeline if b.kind == "line"]

    def copy(self) -> "Project":
        """Deep copy: editing helpers return new projects instead of mutating shared ones."""
        return copy.deepcopy(self)

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-safe)."""
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """Deterministic JSON (sorted keys) so presets and bundles diff cleanly."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Project":
        """Validate and build; refuses unknown versions and unknown fields with a clear message."""
        if not isinstance(data, dict):
            raise SchemaError("project must be a JSON object")
        version = data.get("version", PROJECT_VERSION)
        if version != PROJECT_VERSION:
            raise SchemaError(
                f"unsupported project version {version!r}; this studio reads version {PROJECT_VERSION}"
            )
        kwargs = _kwargs(cls, data, "project", skip={"scene", "subjects", "timeline", "camera",
                                                      "audio", "cast", "raw"})
        kwargs["scene"] = _build(Scene, data.get("scene") or {}, "scene")
        kwargs["camera"] = _build(Camera, data.get("camera") or {}, "camera")
        kwargs["audio"] = _build(AudioDesign, data.get("audio") or {}, "audio")
        kwargs["subjects"] = [_build(Subject, s, f"subjects[{i}]")
                              for i, s in enumerate(_list(data, "subjects"))]
        kwargs["cast"] = [_build(CastMember, c, f"cast[{i}]") for i, c in enumerate(_list(data, "cast"))]
        beats = []
        for i, b in enumerate(_list(data, "timeline")):
            if not isinstance(b, dict):
                raise SchemaError(f"timeline[{i}] must be an object")
            beat_kw = _kwargs(Beat, b, f"timeline[{i}]", skip={"delivery"})
            beat_kw["delivery"] = _build(Delivery, b.get("delivery") or {}, f"timeline[{i}].delivery")
            beats.append(Beat(**beat_kw))
        kwargs["timeline"] = beats
        raw = data.get("raw")
        if raw is not None and (not isinstance(raw, list) or not all(isinstance(s, str) for s in raw)):
            raise SchemaError("raw must be a list of strings or null")
        kwargs["raw"] = list(raw) if raw is not None else None
        project = cls(**kwargs)
        validate_project(project)
        return project

    @classmethod
    def from_json(cls, text: str) -> "Project":
        """Parse JSON text; errors name the field at fault."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"project is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def validate_project(project: Project) -> None:
    """Reject values the compiler cannot honour (unknown language, mode, rate, beat kind)."""
    if project.language not in LANGUAGES:
        raise SchemaError(f"language must be one of {LANGUAGES}, got {project.language!r}")
    if project.mode not in MODES:
        raise SchemaError(f"mode must be one of {MODES}, got {project.mode!r}")
    for i, beat in enumerate(project.timeline):
        if beat.kind not in BEAT_KINDS:
            raise SchemaError(f"timeline[{i}].kind must be one of {BEAT_KINDS}, got {beat.kind!r}")
        if beat.delivery.rate not in RATES:
            raise SchemaError(f"timeline[{i}].delivery.rate must be one of {RATES}")
        if beat.pause < 0 or beat.seconds < 0:
            raise SchemaError(f"timeline[{i}]: pause and seconds must be >= 0")
    if project.seconds <= 0 or project.width <= 0 or project.height <= 0:
        raise SchemaError("seconds, width and height must be positive")
    if project.raw is not None and len(project.raw) < 1:
        raise SchemaError("raw must hold at least one text segment")


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise SchemaError(f"{key} must be a list")
    return value


def _kwargs(cls: type, data: dict[str, Any], where: str, skip: set[str] = frozenset()) -> dict[str, Any]:
    names = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {sorted(unknown)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in skip:
            continue
        expected = names[key].type
        if expected in ("str",) and not isinstance(value, str):
            raise SchemaError(f"{where}.{key} must be a string")
        if expected in ("float",) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise SchemaError(f"{where}.{key} must be a number")
        if expected in ("int",) and (isinstance(value, bool) or not isinstance(value, int)):
            raise SchemaError(f"{where}.{key} must be an integer")
        out[key] = float(value) if expected == "float" else value
    return out


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SchemaError(f"{where} must be an object")
    try:
        return cls(**_kwargs(cls, data, where))
    except TypeError as exc:  # missing required field such as id
        raise SchemaError(f"{where}: {exc}") from exc
