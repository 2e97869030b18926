"""Model configuration and the frame/token arithmetic every part of NAVA Studio shares.

Field names follow the release's model config so that a config read from a release checkpoint maps
one-to-one. The arithmetic lives here (and only here) because the UI, the prompt linter, the memory
estimator and the pipeline must all agree on how many frames, audio tokens and DiT tokens a clip has.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

Precision = Literal["nava", "fp32"]

# Temporal and spatial facts of the release (NAVA_SPEC.md sections 2, 5, 6).
VIDEO_FPS = 24
LATENT_FPS = 6  # latent frames per second of video (temporal VAE stride 4 at 24 fps)
VAE_TEMPORAL_STRIDE = 4
VAE_SPATIAL_STRIDE = 16
AUDIO_TOKENS_PER_SECOND = 25
AUDIO_MEL_HOP = 160
AUDIO_MEL_RATE = 16_000
AUDIO_VOCODER_RATE = 48_000
SPEAKER_DIM = 192
MAX_AUDIO_TOKENS = 1024  # RoPE table length of the release (positions 0..1023 per axis)


@dataclass(frozen=True)
class NAVAConfig:
    """Backbone hyper-parameters with the release config's field names."""

    dim: int = 3072
    ffn_dim: int = 14336
    freq_dim: int = 256
    text_dim: int = 4096
    num_heads: int = 24
    num_double_layers: int = 10
    num_single_layers: int = 20
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    vid_in_dim: int = 48
    vid_out_dim: int = 48
    audio_in_dim: int = 128
    audio_out_dim: int = 128
    eps: float = 1e-6
    temporal_rope_scaling_factor: float = 0.24
    speaker_dim: int = SPEAKER_DIM
    qk_norm: bool = True
    cross_attn_norm: bool = True
    precision: Precision = "nava"

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.precision not in ("nava", "fp32"):
            raise ValueError(f"precision must be 'nava' or 'fp32', got {self.precision!r}")
        object.__setattr__(self, "patch_size", tuple(self.patch_size))

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def num_layers(self) -> int:
        return self.num_double_layers + self.num_single_layers

    @property
    def audio_hidden_dim(self) -> int:
        """Hidden width of the audio SwiGLU patch embedding (LLaMA rule: 8/3 * dim, multiple of 256)."""
        hidden = int(2 * (4 * self.dim) / 3)
        return 256 * ((hidden + 255) // 256)

    @classmethod
    def release(cls, precision: Precision = "nava") -> "NAVAConfig":
        """The released 6.3B model (6,296,995,520 parameters)."""
        return cls(precision=precision)

    @classmethod
    def tiny(cls, precision: Precision = "nava") -> "NAVAConfig":
        """A CPU-fast model with the release's head_dim (128), so the RoPE split is the release's.

        It is also the configuration of the golden fixture (`tests/data/nava_golden/spec.json`).
        """
        return cls(
            dim=256,
            ffn_dim=512,
            num_heads=2,
            num_double_layers=2,
            num_single_layers=2,
            precision=precision,
        )

    def with_precision(self, precision: Precision) -> "NAVAConfig":
        return replace(self, precision=precision)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NAVAConfig":
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "patch_size" in kwargs:
            kwargs["patch_size"] = tuple(kwargs["patch_size"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Resolution:
    """A frame size in pixels. The release's aspect buckets are the named ones."""

    width: int
    height: int
    name: str = ""

    def __post_init__(self) -> None:
        step = VAE_SPATIAL_STRIDE * 2  # VAE stride 16 x patch 2
        if self.width <= 0 or self.height <= 0 or self.width % step or self.height % step:
            raise ValueError(
                f"frame size {self.width}x{self.height} must be positive multiples of {step} pixels; "
                f"use one of the release buckets: {', '.join(b.label for b in BUCKETS)}"
            )

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.height // VAE_SPATIAL_STRIDE, self.width // VAE_SPATIAL_STRIDE

    @property
    def tokens_per_latent_frame(self) -> int:
        h, w = self.latent_hw
        return (h // 2) * (w // 2)

    @property
    def is_release_bucket(self) -> bool:
        return any(self.width == b.width and self.height == b.height for b in BUCKETS)

    @classmethod
    def parse(cls, text: str) -> "Resolution":
        """Parse '1280x704' (width x height)."""
        try:
            w, h = (int(x) for x in text.lower().replace(" ", "").split("x"))
        except ValueError:
            raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 1280x704") from None
        for b in BUCKETS:
            if (b.width, b.height) == (w, h):
                return b
        return cls(w, h)


# The release CLI's image-to-video buckets at its "960" level (NAVA_SPEC.md 5): aspect (short:long)
# and size (short x long side); every size exists in both orientations (square once).
RELEASE_ASPECTS: tuple[tuple[int, int], ...] = ((1, 1), (4, 5), (3, 4), (2, 3), (9, 16), (1, 2), (2, 5))
RELEASE_960_SIZES: tuple[tuple[int, int], ...] = (
    (960, 960), (864, 1056), (832, 1088), (736, 1184), (704, 1280), (672, 1344), (608, 1536),
)
# Tiny-engine preview sizes (short x long, multiples of 32) with the same aspects, CPU-fast token counts.
_TINY_SIZES: tuple[tuple[int, int], ...] = ((128, 128), (128, 160), (96, 128), (64, 96), (96, 160), (96, 192), (64, 160))


def _bucket_name(aspect: tuple[int, int], landscape: bool) -> str:
    short, long = aspect
    if short == long:
        return "square"
    if aspect == (9, 16):  # the release's recommended sizes keep their plain names
        return "landscape" if landscape else "portrait"
    return f"landscape {long}:{short}" if landscape else f"portrait {short}:{long}"


def _oriented(short: int, long: int, landscape: bool) -> tuple[int, int]:
    return (long, short) if landscape else (short, long)


def _buckets(sizes: tuple[tuple[int, int], ...], suffix: str = "") -> tuple[Resolution, ...]:
    out = []
    for aspect, (short, long) in zip(RELEASE_ASPECTS, sizes):
        for landscape in ((True,) if short == long else (True, False)):
            out.append(Resolution(*_oriented(short, long, landscape), _bucket_name(aspect, landscape) + suffix))
    # 16:9 first: the release's recommended text-to-video size (1280x704) is the default bucket.
    out.sort(key=lambda r: (0 if r.name.split(" (")[0] in ("landscape", "portrait") else 1))
    return tuple(out)


BUCKETS: tuple[Resolution, ...] = _buckets(RELEASE_960_SIZES)


# Frame sizes used with the tiny (random-weight) engine, keyed by bucket name: same aspects.
TINY_PREVIEW_SIZES: dict[str, Resolution] = {
    r.name.removesuffix(" (tiny preview)"): r for r in _buckets(_TINY_SIZES, " (tiny preview)")
}


def nearest_bucket(width: int, height: int) -> Resolution:
    """The release CLI's bucket for an image of width x height (NAVA_SPEC.md 5).

    r = min(h/w, w/h) goes to the nearest of the 7 aspect ratios (thresholds at the midpoints; a tie
    goes to the squarer one), oriented like the image (a square image: 960x960).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height} must be positive")
    r = min(height / width, width / height)
    best = min(range(len(RELEASE_ASPECTS)), key=lambda i: (abs(r - RELEASE_ASPECTS[i][0] / RELEASE_ASPECTS[i][1]), i))
    short, long = RELEASE_960_SIZES[best]
    size = _oriented(short, long, landscape=width >= height)
    return next(b for b in BUCKETS if (b.width, b.height) == size)


# ---- time arithmetic -------------------------------------------------------------------------


def latent_frames_for_seconds(seconds: float) -> int:
    """Latent frames for a clip of `seconds` (6 per second plus the first): 6 s -> 37."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {seconds!r}")
    return int(round(seconds * LATENT_FPS)) + 1


def snap_seconds(seconds: float) -> float:
    """The duration NAVA will actually produce for a requested one (a whole number of latent frames)."""
    return seconds_for_latent_frames(latent_frames_for_seconds(seconds))


def pixel_frames(latent_frames: int) -> int:
    """Decoded frames for T latent frames: 4T-3 (37 -> 145)."""
    if latent_frames < 1:
        raise ValueError("need at least one latent frame")
    return VAE_TEMPORAL_STRIDE * latent_frames - (VAE_TEMPORAL_STRIDE - 1)


def seconds_for_latent_frames(latent_frames: int) -> float:
    """Playback length of the decoded video: (4T-3)/24 s."""
    return pixel_frames(latent_frames) / VIDEO_FPS


def audio_tokens_for_frames(frames: int) -> int:
    """Audio tokens covering `frames` video frames: ceil(frames/24*25) (145 -> 152)."""
    return math.ceil(frames / VIDEO_FPS * AUDIO_TOKENS_PER_SECOND - 1e-9)


def audio_tokens_for_latent_frames(latent_frames: int) -> int:
    return audio_tokens_for_frames(pixel_frames(latent_frames))


def audio_tokens_for_seconds(seconds: float) -> int:
    """Audio tokens for audio-only clips (25 per second)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {seconds!r}")
    return math.ceil(seconds * AUDIO_TOKENS_PER_SECOND - 1e-9)


def audio_samples_for_tokens(tokens: int, sample_rate: int = AUDIO_MEL_RATE) -> int:
    """Waveform samples the audio VAE + vocoder make from L tokens: 160*(4L-3) at 16 kHz."""
    mel_frames = 4 * tokens - 3
    return AUDIO_MEL_HOP * mel_frames * sample_rate // AUDIO_MEL_RATE


def max_audio_seconds() -> float:
    return MAX_AUDIO_TOKENS / AUDIO_TOKENS_PER_SECOND


@dataclass(frozen=True)
class TokenCounts:
    """How many DiT tokens one forward sees; drives memory and time estimates."""

    latent_frames: int
    video_tokens: int
    audio_tokens: int

    @property
    def total(self) -> int:
        return self.video_tokens + self.audio_tokens


def token_counts(resolution: Resolution, latent_frames: int, with_video: bool = True) -> TokenCounts:
    """Tokens per forward: 1280x704, 37 latent frames -> 32,560 video + 152 audio."""
    video = resolution.tokens_per_latent_frame * latent_frames if with_video else 0
    return TokenCounts(latent_frames, video, audio_tokens_for_latent_frames(latent_frames))


@dataclass(frozen=True)
class GuidanceScales:
    """The five guidance scales (0 switches a branch off). How they combine depends on the stream
    (NAVA_SPEC.md 5, `nava_core.guidance.combine`): anchored c + g*(c-x) terms when the stream has an
    alignment or timbre term, classic u + g*(c-u) when it has none. Defaults are the release's
    `nava.yaml` (audio+video); `audio_only()` is its `nava_seedtts.yaml`."""

    video: float = 3.0
    audio: float = 2.0
    video_align: float = 3.0
    audio_align: float = 2.0
    timbre: float = 3.0

    def __post_init__(self) -> None:
        for name in ("video", "audio", "video_align", "audio_align", "timbre"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"guidance scale '{name}' must be a finite number >= 0, got {v!r}")
            if v > 20:
                raise ValueError(f"guidance scale '{name}' = {v} is above 20; use a value between 0 and 20")

    @classmethod
    def audio_only(cls) -> "GuidanceScales":
        """The release's audio-only settings (`nava_seedtts.yaml`): audio 2.0, alignment off, timbre 3.0."""
        return cls(video=0.0, audio=2.0, video_align=0.0, audio_align=0.0, timbre=3.0)


def valid_gpu_counts(available: int | None = None, num_heads: int = NAVAConfig.num_heads) -> list[int]:
    """GPU counts one render may use: Ulysses splits the attention heads, so N divides them (24 in the
    release), up to the GPUs present (None: no limit but the head count). The one copy of this rule."""
    limit = num_heads if available is None else max(1, available)
    return [n for n in range(1, limit + 1) if num_heads % n == 0]


DEFAULT_STEPS = 50
DEFAULT_SHIFT = 5.0
DEFAULT_SECONDS = 6.0
DEFAULT_SEED = 100  # the release CLI's default (inference_nava.py --seed)

__all__ = [
    "NAVAConfig",
    "Resolution",
    "BUCKETS",
    "GuidanceScales",
    "TokenCounts",
    "nearest_bucket",
    "RELEASE_ASPECTS",
    "RELEASE_960_SIZES",
    "TINY_PREVIEW_SIZES",
    "valid_gpu_counts",
    "latent_frames_for_seconds",
    "snap_seconds",
    "pixel_frames",
    "seconds_for_latent_frames",
    "audio_tokens_for_frames",
    "audio_tokens_for_latent_frames",
    "audio_tokens_for_seconds",
    "audio_samples_for_tokens",
    "token_counts",
]
