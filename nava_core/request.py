"""The render request: the one object that crosses every boundary (UI, presets, queue, CLI, MP4 metadata).

It is a plain, versioned, JSON-serialisable dataclass. Re-rendering a file means reading its request
back, so `from_json(to_json(r)) == r` must always hold, and unknown fields are refused rather than
silently dropped (a typo in a batch file must not quietly render the defaults).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from nava_core.config import (
    DEFAULT_SECONDS,
    DEFAULT_SEED,
    DEFAULT_SHIFT,
    DEFAULT_STEPS,
    GuidanceScales,
    Resolution,
    audio_tokens_for_latent_frames,
    audio_tokens_for_seconds,
    latent_frames_for_seconds,
    max_audio_seconds,
    seconds_for_latent_frames,
    valid_gpu_counts,
)
from nava_core.profiles import canonical_profile

REQUEST_VERSION = 1
Mode = Literal["audio_video", "image_audio_video", "audio"]
MODES: tuple[str, ...] = ("audio_video", "image_audio_video", "audio")
MAX_SEED = 2**32 - 1
MAX_STEPS = 200
MAX_VIDEO_SECONDS = 20.0


class RequestError(ValueError):
    """A render request that cannot be rendered; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class RenderRequest:
    """Everything needed to reproduce one render.

    `speaker_wavs[i]` is the reference voice for the i-th `<S>...<E>` span in `prompt` (order of
    appearance, as the release binds them); `None` or "" means no reference (NAVA's null speaker token).
    `audio_seed=None` means "same as `seed`", which is what the release does.
    """

    prompt: str
    mode: Mode = "audio_video"
    negative_prompt: str | None = None  # None: the release's negative prompt
    speaker_wavs: tuple[str | None, ...] = ()
    image: str | None = None
    width: int = 1280
    height: int = 704
    seconds: float = DEFAULT_SECONDS
    steps: int = DEFAULT_STEPS
    shift: float = DEFAULT_SHIFT
    guidance: GuidanceScales = field(default_factory=GuidanceScales)
    seed: int = DEFAULT_SEED
    audio_seed: int | None = None
    precision: Literal["nava", "fp32"] = "nava"
    audio_sample_rate: Literal[16000, 48000] = 16000
    tiled_vae: bool = False
    truncate_prompt: bool = False  # over 512 tokens: False refuses the render, True cuts as the release
    memory_profile: str = "auto"
    gpus: int = 1
    project: dict[str, Any] | None = None  # the structured prompt_builder project it was compiled from
    title: str = ""
    version: int = REQUEST_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "speaker_wavs", tuple(self.speaker_wavs or ()))
        if isinstance(self.guidance, dict):
            object.__setattr__(self, "guidance", _guidance_from_dict(self.guidance))
        self.validate()

    # ---- validation --------------------------------------------------------------------------

    def validate(self) -> None:
        if self.version != REQUEST_VERSION:
            raise RequestError(
                f"render request version {self.version!r} is not supported (this studio reads version "
                f"{REQUEST_VERSION}); re-export the request from a matching NAVA Studio"
            )
        if self.mode not in MODES:
            raise RequestError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise RequestError("the prompt is empty: describe the scene (or load a preset) before rendering")
        if self.mode == "image_audio_video" and not self.image:
            raise RequestError("mode 'image_audio_video' needs a first-frame image; add one or use 'audio_video'")
        for name in ("seed", "audio_seed"):
            v = getattr(self, name)
            if v is None and name == "audio_seed":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED:
                raise RequestError(f"{name} must be a whole number from 0 to {MAX_SEED}; got {v!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise RequestError(f"steps must be a whole number from 1 to {MAX_STEPS}; got {self.steps!r}")
        if not _finite_number(self.shift) or not 0 < self.shift <= 20:
            raise RequestError(f"shift must be a number in (0, 20]; got {self.shift!r}")
        if not _finite_number(self.seconds) or self.seconds <= 0:
            raise RequestError(f"duration must be a positive number of seconds; got {self.seconds!r}")
        limit = max_audio_seconds() if self.mode == "audio" else MAX_VIDEO_SECONDS
        if self.seconds > limit:
            raise RequestError(f"duration {self.seconds} s is longer than the {limit:g} s this mode supports")
        if self.mode != "audio":
            try:
                Resolution(int(self.width), int(self.height))
            except (ValueError, TypeError) as e:
                raise RequestError(str(e)) from None
        if not isinstance(self.truncate_prompt, bool):
            raise RequestError(f"truncate_prompt must be true or false; got {self.truncate_prompt!r}")
        if self.precision not in ("nava", "fp32"):
            raise RequestError(f"precision must be 'nava' or 'fp32'; got {self.precision!r}")
        if self.audio_sample_rate not in (16000, 48000):
            raise RequestError(f"audio_sample_rate must be 16000 or 48000; got {self.audio_sample_rate!r}")
        counts = valid_gpu_counts()
        if isinstance(self.gpus, bool) or self.gpus not in counts:
            raise RequestError(f"gpus must divide the {counts[-1]} attention heads "
                               f"({', '.join(map(str, counts))}); got {self.gpus!r}")
        if not isinstance(self.memory_profile, str):
            raise RequestError(f"memory_profile must be a profile name; got {type(self.memory_profile).__name__}")
        try:
            canonical_profile(self.memory_profile)
        except ValueError as e:
            raise RequestError(str(e)) from None
        for i, w in enumerate(self.speaker_wavs):
            if w is not None and not isinstance(w, str):
                raise RequestError(f"speaker_wavs[{i}] must be a file path or empty; got {type(w).__name__}")

    # ---- derived quantities ------------------------------------------------------------------

    @property
    def resolution(self) -> Resolution:
        return Resolution.parse(f"{self.width}x{self.height}")

    @property
    def latent_frames(self) -> int:
        return latent_frames_for_seconds(self.seconds)

    @property
    def audio_tokens(self) -> int:
        if self.mode == "audio":
            return audio_tokens_for_seconds(self.seconds)
        return audio_tokens_for_latent_frames(self.latent_frames)

    @property
    def output_seconds(self) -> float:
        """The exact length of what will be rendered (the requested length snapped to the model grid)."""
        if self.mode == "audio":
            return self.audio_tokens / 25
        return seconds_for_latent_frames(self.latent_frames)

    @property
    def effective_audio_seed(self) -> int:
        return self.seed if self.audio_seed is None else self.audio_seed

    @property
    def has_video(self) -> bool:
        return self.mode != "audio"

    # ---- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speaker_wavs"] = list(self.speaker_wavs)
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RenderRequest":
        if not isinstance(data, dict):
            raise RequestError(f"a render request must be a JSON object; got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RequestError(
                f"unknown field(s) in render request: {', '.join(unknown)}; known fields are: {', '.join(sorted(known))}"
            )
        if "prompt" not in data:
            raise RequestError("the render request has no 'prompt'")
        kwargs = dict(data)
        if "guidance" in kwargs:
            kwargs["guidance"] = _guidance_from_dict(kwargs["guidance"])
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise RequestError(f"malformed render request: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "RenderRequest":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RequestError(f"the render request is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "RenderRequest":
        return replace(self, **changes)


def count_spans(prompt: str) -> int:
    """`<S>...<E>` spans as the model sees them: one speaker slot per `<S>` in the raw prompt (the
    release marks them before cleaning the text, NAVA_SPEC.md 4)."""
    return prompt.count("<S>")


def voices_for_spans(speaker_wavs: tuple[str | None, ...] | list[str | None], spans: int) -> list[str | None]:
    """One voice (or None) per span, by the release's rule (NAVA_SPEC.md 5, "Voices and spans").

    No voice: []. One voice and several spans: that voice on every span. At least as many voices as
    spans: the first `spans`. 2..spans-1 voices: the release crashes; refused here with what to do.
    The studio always lists one entry per span (binding by speaker), so it meets the last two cases.
    """
    wavs = [w or None for w in speaker_wavs]
    if not any(wavs) or spans == 0:
        return []
    if len(wavs) == 1:
        return wavs * spans
    if len(wavs) >= spans:
        return wavs[:spans]
    raise RequestError(
        f"the prompt has {spans} <S>...<E> spans but {len(wavs)} reference voices were given; give one "
        f"voice for every span (in order of appearance, empty for none), or a single voice to use it on "
        f"all {spans} spans"
    )


def _finite_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _guidance_from_dict(g: Any) -> GuidanceScales:
    if isinstance(g, GuidanceScales):
        return g
    if not isinstance(g, dict):
        raise RequestError(f"guidance must be an object of the five scales; got {type(g).__name__}")
    known = {f.name for f in fields(GuidanceScales)}
    unknown = sorted(set(g) - known)
    if unknown:
        raise RequestError(f"unknown guidance scale(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return GuidanceScales(**g)
    except ValueError as e:
        raise RequestError(str(e)) from None
