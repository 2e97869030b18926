"""The typed shape of a render request, checked before anything is queued, recorded or decoded.

Why a schema next to `RenderRequest`: the dataclass checks meaning (a bucket-aligned frame size, a
duration the mode supports); this pydantic model in strict mode checks *shape* first, so "160" is not a
width, 160.5 is not a width, `Infinity` is not a number, "yes please" is not a boolean and a string is
not a list of voices. It also bounds everything a client controls (text lengths, number of voices and
spans, project size and nesting, frame size), so no request can make the server do unbounded work.
Every refusal is one line naming the field, what was wrong and what is accepted.

The studio's /render, its page and the CLI (`nava-render`, batch files) all reach it through
`nava_core.validation.check_request_dict`.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nava_core.config import BUCKETS, GuidanceScales, NAVAConfig
from nava_core.profiles import ALIASES as PROFILE_ALIASES
from nava_core.profiles import CHOICES as PROFILE_CHOICES
from nava_core.request import (MAX_SEED, MAX_STEPS, MODES, REQUEST_VERSION, RenderRequest, RequestError,
                                count_spans, voices_for_spans)

MAX_TEXT_CHARS = 20_000  # prompt / negative prompt (NAVA reads at most 512 tokens anyway)
MAX_TITLE_CHARS = 300
MAX_PATH_CHARS = 1024  # a voice or image path
MAX_SPANS = 64  # <S>...<E> spans in one prompt (512 tokens hold far fewer real lines)
MAX_VOICES = MAX_SPANS
MAX_PROJECT_CHARS = 200_000  # the embedded builder project, as compact JSON
MAX_DEPTH = 32  # JSON nesting anywhere in a request or project
MAX_REQUEST_CHARS = 4 * MAX_TEXT_CHARS + MAX_PROJECT_CHARS + 64 * MAX_PATH_CHARS + 20_000
# frame size bounds: within the release buckets (the largest side and the largest pixel count of any bucket)
MAX_FRAME_SIDE = max(max(b.width, b.height) for b in BUCKETS)
MAX_FRAME_PIXELS = max(b.width * b.height for b in BUCKETS)
PROFILES: tuple[str, ...] = (*PROFILE_CHOICES, *PROFILE_ALIASES)


class SchemaError(ValueError):
    """A request refused for its shape; the message is one line: field, what was wrong, what is accepted."""


_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class GuidanceModel(BaseModel):
    model_config = _STRICT
    video: float = Field(GuidanceScales.video, ge=0, le=20)
    audio: float = Field(GuidanceScales.audio, ge=0, le=20)
    video_align: float = Field(GuidanceScales.video_align, ge=0, le=20)
    audio_align: float = Field(GuidanceScales.audio_align, ge=0, le=20)
    timbre: float = Field(GuidanceScales.timbre, ge=0, le=20)


class RequestModel(BaseModel):
    """Field types and bounds of `RenderRequest` (defaults are the dataclass's, filled in by it)."""

    model_config = _STRICT
    prompt: str = Field(max_length=MAX_TEXT_CHARS)
    mode: Literal["audio_video", "image_audio_video", "audio"] = "audio_video"
    negative_prompt: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    speaker_wavs: list[str | None] = Field(default_factory=list, max_length=MAX_VOICES)
    image: str | None = Field(None, max_length=MAX_PATH_CHARS)
    width: int = Field(1280, le=MAX_FRAME_SIDE)
    height: int = Field(704, le=MAX_FRAME_SIDE)
    seconds: float = Field(5.0, gt=0)
    steps: int = Field(50, ge=1, le=MAX_STEPS)
    shift: float = Field(5.0, gt=0, le=20)
    guidance: GuidanceModel | None = None
    seed: int = Field(0, ge=0, le=MAX_SEED)
    audio_seed: int | None = Field(None, ge=0, le=MAX_SEED)
    precision: Literal["nava", "fp32"] = "nava"
    audio_sample_rate: Literal[16000, 48000] = 16000
    tiled_vae: bool = False
    memory_profile: str = Field("auto", max_length=40)  # the name is checked by nava_core.profiles (one list)
    gpus: int = Field(1, ge=1, le=NAVAConfig.num_heads)  # which counts divide the heads: config.valid_gpu_counts
    project: dict[str, Any] | None = None
    title: str = Field("", max_length=MAX_TITLE_CHARS)
    truncate_prompt: bool = False
    version: int = REQUEST_VERSION


# what each field accepts, as the refusal says it
_ACCEPTS: dict[str, str] = {
    "prompt": f"text of at most {MAX_TEXT_CHARS:,} characters",
    "mode": "must be one of " + ", ".join(MODES),
    "negative_prompt": f"text of at most {MAX_TEXT_CHARS:,} characters, or null for the release's",
    "speaker_wavs": f"a list (one entry per <S>...<E> span, at most {MAX_VOICES}) of file paths or empty entries",
    "speaker_wavs[]": f"must be a file path or empty (null or \"\"), at most {MAX_PATH_CHARS} characters",
    "image": f"a file path of at most {MAX_PATH_CHARS} characters, or null",
    "width": f"a whole number of pixels, at most {MAX_FRAME_SIDE} (a release bucket: "
             + ", ".join(b.label for b in BUCKETS) + ")",
    "height": f"a whole number of pixels, at most {MAX_FRAME_SIDE} (a release bucket: "
              + ", ".join(b.label for b in BUCKETS) + ")",
    "seconds": "(the duration) must be a positive number of seconds",
    "steps": f"must be a whole number from 1 to {MAX_STEPS}",
    "shift": "must be a finite number in (0, 20]",
    "guidance": "must be an object of the five scales (video, audio, video_align, audio_align, timbre)",
    "guidance.": "must be a finite number >= 0 and at most 20",
    "seed": f"must be a whole number from 0 to {MAX_SEED}",
    "audio_seed": f"must be a whole number from 0 to {MAX_SEED}, or null (same as seed)",
    "precision": "must be 'nava' or 'fp32'",
    "audio_sample_rate": "must be 16000 or 48000",
    "tiled_vae": "must be true or false",
    "memory_profile": "must be a memory profile name: one of " + ", ".join(PROFILES),
    "gpus": "must divide the 24 attention heads (1, 2, 3, 4, 6, 8, 12, 24)",
    "project": "must be a builder project (a JSON object) or null",
    "title": f"text of at most {MAX_TITLE_CHARS} characters",
    "truncate_prompt": "true or false (over 512 tokens: true cuts the prompt as the release does, false refuses)",
}


def _describe(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"a {len(str(abs(value)))}-digit number"
    text = repr(value)
    if len(text) <= 40:
        return text
    return f"{type(value).__name__} of {len(value):,} items" if hasattr(value, "__len__") else text[:40] + "..."


def _message(err: dict[str, Any]) -> str:
    loc = [str(x) for x in err["loc"]]
    kind = err["type"]
    if kind == "extra_forbidden":
        if loc[0] == "guidance":
            known = ", ".join(GuidanceModel.model_fields)
            return f"unknown guidance scale(s): {loc[-1]}; known: {known}"
        known = ", ".join(sorted(RequestModel.model_fields))
        return f"unknown field(s) in render request: {loc[-1]}; known fields are: {known}"
    if kind == "missing":
        return f"the render request has no '{loc[-1]}'"
    if loc[0] == "speaker_wavs" and len(loc) > 1:
        name, accepts = f"speaker_wavs[{loc[1]}]", _ACCEPTS["speaker_wavs[]"]
    elif loc[0] == "guidance" and len(loc) > 1:
        name, accepts = f"guidance scale '{loc[1]}'", _ACCEPTS["guidance."]
    else:
        name, accepts = loc[0], _ACCEPTS.get(loc[0], "")
    if not accepts.startswith("must"):
        accepts = "must be " + accepts
    why = {"finite_number": "not a finite number", "too_long": "too long", "string_too_long": "too long"}.get(kind)
    value = err.get("input")
    if kind in ("string_too_long", "too_long") and hasattr(value, "__len__"):
        why = f"{len(value):,} long"
    got = why or _describe(value)
    if kind.endswith("_type") and why is None:
        got = f"{type(value).__name__} {_describe(value)}"
    return f"{name} {accepts}; got {got}"


def parse_json_text(text: str | bytes, what: str, max_chars: int, max_depth: int = MAX_DEPTH) -> Any:
    """JSON text -> value, refusing over-long text, syntax errors and nesting deeper than `max_depth`."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError(f"{what} is not UTF-8 text; send JSON text") from None
    if len(text) > max_chars:
        raise SchemaError(f"{what} is {len(text):,} characters long, over the {max_chars:,} limit; send a smaller one")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(f"{what} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                          "fix the JSON syntax") from None
    except RecursionError:
        raise SchemaError(f"{what} is nested too deeply (over {max_depth} levels of [ ] or {{ }})") from None
    check_depth(value, what, max_depth)
    return value


def check_depth(value: Any, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse JSON values nested deeper than `max_depth` (iterative: deep input cannot exhaust the stack)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > max_depth:
                raise SchemaError(f"{what} is nested too deeply (over {max_depth} levels of [ ] or {{ }})")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))


def clean_text(text: str, what: str, max_chars: int, allow_empty: bool = True) -> str:
    """Text as the studio stores it: CRLF -> LF; NUL, control characters (but newline and tab) and lone
    surrogates refused by position, since they break history rows, MP4 metadata and the tokenizer."""
    if not isinstance(text, str):
        raise SchemaError(f"{what}: expected text, got {type(text).__name__}; send a string")
    if len(text) > max_chars:
        raise SchemaError(f"{what}: it is {len(text):,} characters long, over the {max_chars:,} limit; shorten it")
    text = text.replace("\r\n", "\n")
    for i, ch in enumerate(text):
        if ch in "\n\t":
            continue
        cat = unicodedata.category(ch)
        if ch == "\x00":
            raise SchemaError(f"{what}: it contains a NUL character at position {i}; remove binary data from the text")
        if cat == "Cc":
            raise SchemaError(f"{what}: it contains the control character U+{ord(ch):04X} at position {i}; "
                              "remove it (only newlines and tabs are allowed)")
        if cat == "Cs":
            raise SchemaError(f"{what}: it contains a lone surrogate U+{ord(ch):04X} at position {i} (not valid "
                              "Unicode); remove it or send the text as UTF-8")
    if not allow_empty and not text.strip():
        raise SchemaError(f"{what}: it is empty; write something (or load a preset)")
    return text


def clean_tree(value: Any, what: str, max_chars: int) -> None:
    """Every string (keys too) in a JSON value passes `clean_text`."""
    stack = [(value, what)]
    while stack:
        v, where = stack.pop()
        if isinstance(v, str):
            clean_text(v, where, max_chars)
        elif isinstance(v, dict):
            for k, x in v.items():
                clean_text(str(k), f"{where} key", max_chars)
                stack.append((x, f"{where}.{k}"))
        elif isinstance(v, list):
            stack.extend((x, f"{where}[{i}]") for i, x in enumerate(v))


def check_voices_for_spans(voices: list[str | None] | tuple[str | None, ...], n_spans: int) -> None:
    """The span bound, then the release's binding rule as `nava_core.request.voices_for_spans` states it
    (the one copy of it): 2..spans-1 voices are refused before queueing."""
    if n_spans > MAX_SPANS:
        raise SchemaError(f"the prompt has {n_spans} <S>...<E> spans, over the limit of {MAX_SPANS}; "
                          "split the scene into several clips")
    try:
        voices_for_spans(voices, n_spans)
    except RequestError as e:
        raise SchemaError(str(e)) from None


def validate_request(data: Any) -> RenderRequest:
    """A parsed JSON object -> RenderRequest, or SchemaError with one line saying what to fix."""
    if not isinstance(data, dict):
        raise SchemaError(f"a render request must be a JSON object, got {type(data).__name__}; "
                          'send an object such as {"prompt": "..."}')
    check_depth(data, "render request")
    if "version" in data and data["version"] != REQUEST_VERSION:
        raise SchemaError(f"render request version {data['version']!r} is not supported (this studio reads "
                          f"version {REQUEST_VERSION}); re-export the request from a matching NAVA Studio")
    for key, limit in (("prompt", MAX_TEXT_CHARS), ("negative_prompt", MAX_TEXT_CHARS), ("title", MAX_TITLE_CHARS),
                       ("image", MAX_PATH_CHARS)):
        if isinstance(data.get(key), str):
            data = {**data, key: clean_text(data[key], key, limit, allow_empty=key != "prompt")}
        elif key == "prompt" and key in data:
            clean_text(data[key], key, limit)  # says "expected text, got int"
    if isinstance(data.get("speaker_wavs"), list):
        for i, w in enumerate(data["speaker_wavs"][:MAX_VOICES + 1]):
            if isinstance(w, str):
                clean_text(w, f"speaker_wavs[{i}]", MAX_PATH_CHARS)
    try:
        model = RequestModel.model_validate(data)
    except ValidationError as e:
        raise SchemaError(_message(e.errors(include_url=False)[0])) from None
    if model.width * model.height > MAX_FRAME_PIXELS and model.mode != "audio":
        raise SchemaError(f"frame size {model.width}x{model.height} has more pixels than any release bucket "
                          f"({MAX_FRAME_PIXELS:,}); use one of " + ", ".join(b.label for b in BUCKETS))
    if model.project is not None:
        size = len(json.dumps(model.project, ensure_ascii=False))
        if size > MAX_PROJECT_CHARS:
            raise SchemaError(f"project is {size:,} characters of JSON, over the {MAX_PROJECT_CHARS:,} limit; "
                              "send the builder project only (no media inside it)")
        clean_tree(model.project, "project", MAX_TEXT_CHARS)
    check_voices_for_spans(model.speaker_wavs, count_spans(model.prompt))
    fields = {k: getattr(model, k) for k in data}  # only given fields: RenderRequest fills its own defaults
    if "guidance" in fields:
        g = fields["guidance"]
        fields["guidance"] = GuidanceScales() if g is None else GuidanceScales(**g.model_dump())
    return RenderRequest(**fields)


__all__ = [
    "SchemaError", "RequestModel", "GuidanceModel", "validate_request", "parse_json_text", "check_depth",
    "clean_text", "clean_tree", "count_spans", "check_voices_for_spans", "MAX_TEXT_CHARS", "MAX_SPANS",
    "MAX_VOICES", "MAX_PROJECT_CHARS", "MAX_DEPTH", "MAX_FRAME_SIDE", "MAX_FRAME_PIXELS", "MAX_REQUEST_CHARS",
]
