"""Opt-in speed-ups that change the output (torch-free registry; the sampler side is nava_core.step_cache).

Everything exact is always on (nava_core.speed). What is listed here trades fidelity for time and is
therefore a per-render choice recorded in the request (`RenderRequest.speedup`), so a re-render of a
file reproduces it. Each entry carries the drift measured against the exact path on the same seeds
(`bench/drift.py` writes nava_core/data/speedup_drift.json; the studio shows it next to the choice).

- step caching (TeaCache/MagCache family, at the sampler): a step whose inputs moved little since the
  last computed step reuses that step's guided velocities instead of running the backbone. "Moved" is
  the accumulated relative L1 change of each stream's noisy latent plus the change of the timestep,
  with a threshold per stream (video, audio): the step is computed when either stream's accumulated
  change passes its threshold. The first `warmup` and the last `tail` steps are always computed.
- auxiliary branches every k-th step: the no-align (m) and no-timbre (t) forwards run on every k-th
  step only; in between, their last predictions are reused (the cond and negative branches always run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

DRIFT_FILE = Path(__file__).parent / "data" / "speedup_drift.json"


@dataclass(frozen=True)
class Speedup:
    """One named trade-off. threshold_* = 0 and aux_every = 1 mean "off"."""

    name: str
    label: str
    threshold_video: float = 0.0
    threshold_audio: float = 0.0
    aux_every: int = 1
    warmup: int = 2
    tail: int = 1

    @property
    def exact(self) -> bool:
        return self.threshold_video <= 0 and self.threshold_audio <= 0 and self.aux_every <= 1

    @property
    def caches_steps(self) -> bool:
        return self.threshold_video > 0 or self.threshold_audio > 0


SPEEDUPS: Mapping[str, Speedup] = MappingProxyType({s.name: s for s in (
    Speedup("exact", "exact (no output change)"),
    Speedup("step_cache_light", "step cache, light", threshold_video=0.10, threshold_audio=0.08),
    Speedup("step_cache_strong", "step cache, strong", threshold_video=0.20, threshold_audio=0.15),
    Speedup("aux_every_2", "align/timbre branches every 2nd step", aux_every=2),
    Speedup("aux_every_3", "align/timbre branches every 3rd step", aux_every=3),
    Speedup("fast", "step cache light + align/timbre every 2nd step", threshold_video=0.10,
            threshold_audio=0.08, aux_every=2),
)})
SPEEDUP_NAMES: tuple[str, ...] = tuple(SPEEDUPS)


def get_speedup(name: str | None) -> Speedup:
    key = (name or "exact").strip().lower()
    if key not in SPEEDUPS:
        raise ValueError(f"unknown speed-up {name!r}; choose one of {', '.join(SPEEDUP_NAMES)}")
    return SPEEDUPS[key]


def measured_drift() -> dict[str, dict]:
    """Drift per speed-up as last measured by bench/drift.py ({} when never measured)."""
    try:
        return json.loads(DRIFT_FILE.read_text(encoding="utf-8")).get("speedups", {})
    except (OSError, ValueError):
        return {}


def describe(name: str) -> str:
    """Label with the measured drift, for the studio's choice list."""
    sp = get_speedup(name)
    if sp.exact:
        return sp.label
    d = measured_drift().get(name)
    if not d:
        return f"{sp.label} (drift not measured)"
    return (f"{sp.label}: {d['forward_saving']:.0%} fewer forwards, drift {d['video_rel_l2']:.1%} video / "
            f"{d['audio_rel_l2']:.1%} audio vs exact ({d['where']})")


__all__ = ["Speedup", "SPEEDUPS", "SPEEDUP_NAMES", "get_speedup", "measured_drift", "describe", "DRIFT_FILE"]
