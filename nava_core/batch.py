"""Batch definitions: presets / bundles / inline requests x seeds x grids, expanded up front.

Why: overnight users sweep seeds and guidance grids over dozens of presets. Expanding the whole
batch into concrete RenderRequests *before* anything is queued lets the user see the job count and
an estimate, and means a typo (unknown field, empty grid, a 10,000-job grid) is refused before a
single render starts. Each planned job carries a label ("timbre=2.0, seed=7") naming what varies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from nava_core.config import GuidanceScales, Resolution
from nava_core.request import RenderRequest, RequestError
from nava_core.validation import InputError, check_request_dict, check_seed, check_zip_bundle

BATCH_VERSION = 1
MAX_JOBS = 1000
GUIDANCE_KEYS = tuple(f.name for f in fields(GuidanceScales))  # video, audio, video_align, audio_align, timbre
GRID_KEYS = GUIDANCE_KEYS + ("steps", "seconds", "size")


class BatchError(InputError):
    """A batch definition that cannot be expanded; says which item and what to change."""


@dataclass
class BatchItem:
    """One source (exactly one of preset / bundle / request), its seeds and optional grid.

    `seeds`: a count N (seeds base, base+1, ..., base from the source's request) or an explicit list.
    `grid`: {key: [values]} over guidance scales (any of the five), steps, seconds or size ("WxH");
    every combination is rendered for every seed. `overrides`: request fields set on every job.
    """

    preset: str | None = None
    bundle: str | None = None
    request: dict[str, Any] | None = None
    seeds: int | list[int] = 1
    grid: dict[str, list[Any]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def source_name(self) -> str:
        if self.name:
            return self.name
        if self.preset:
            return self.preset
        if self.bundle:
            return Path(self.bundle).stem
        return str((self.request or {}).get("title") or "request")


@dataclass
class BatchDefinition:
    """A batch file: a name, shared request overrides and a list of items."""

    name: str
    items: list[BatchItem]
    overrides: dict[str, Any] = field(default_factory=dict)
    version: int = BATCH_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "overrides": dict(self.overrides),
            "items": [{k: v for k, v in vars(it).items() if v not in (None, {}, "")} for it in self.items],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        tmp = p.with_name(p.name + ".part")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, p)
        return p

    @classmethod
    def from_dict(cls, d: Any) -> "BatchDefinition":
        what = "batch definition"
        if not isinstance(d, dict):
            raise BatchError(what, f"it must be a JSON object, got {type(d).__name__}", 'start from {"name": ..., "items": [...]}')
        _refuse_unknown(what, d, {"version", "name", "overrides", "items"})
        if d.get("version", BATCH_VERSION) != BATCH_VERSION:
            raise BatchError(what, f"version {d.get('version')!r} is not supported (this studio reads {BATCH_VERSION})",
                             "re-export the batch from a matching NAVA Studio")
        items = d.get("items")
        if not isinstance(items, list) or not items:
            raise BatchError(what, "it has no items", "add at least one item with a preset, bundle or request")
        parsed = []
        item_keys = {f.name for f in fields(BatchItem)}
        for i, it in enumerate(items):
            w = f"batch item {i + 1}"
            if not isinstance(it, dict):
                raise BatchError(w, f"it must be an object, got {type(it).__name__}", "")
            _refuse_unknown(w, it, item_keys)
            parsed.append(BatchItem(**it))
        overrides = d.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise BatchError(what, "'overrides' must be an object of request fields", "")
        return cls(name=str(d.get("name") or "batch"), items=parsed, overrides=overrides)

    @classmethod
    def from_json(cls, text: str) -> "BatchDefinition":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BatchError("batch definition", f"it is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                             "fix the JSON syntax") from None
        except RecursionError:
            raise BatchError("batch definition", "its JSON is nested too deeply",
                             "write items and requests as plain objects") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "BatchDefinition":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class PlannedJob:
    """One render of an expanded batch: the request, its label and the values that vary."""

    request: RenderRequest
    label: str
    varied: dict[str, Any]
    source: str = ""


def _refuse_unknown(what: str, d: dict, known: set[str]) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise BatchError(what, f"unknown field(s) {', '.join(unknown)}", f"known fields are {', '.join(sorted(known))}")


def _seed_list(item: BatchItem, base: int, what: str) -> list[int]:
    s = item.seeds
    if isinstance(s, bool):
        raise BatchError(what, "'seeds' must be a count or a list of seeds", "")
    if isinstance(s, int):
        if not 1 <= s <= MAX_JOBS:
            raise BatchError(what, f"'seeds' = {s} must be from 1 to {MAX_JOBS}", "")
        return [(base + k) % (2**32) for k in range(s)]
    if isinstance(s, list) and s:
        return [check_seed(v, f"{what} seed") for v in s]
    raise BatchError(what, "'seeds' must be a count (>= 1) or a non-empty list of seeds", "")


def _check_grid(item: BatchItem, what: str) -> list[tuple[str, list[Any]]]:
    if not isinstance(item.grid, dict):
        raise BatchError(what, "'grid' must be an object of {key: [values]}", "")
    out = []
    for key, values in item.grid.items():
        k = key.removeprefix("guidance.")
        if k not in GRID_KEYS:
            raise BatchError(what, f"unknown grid key {key!r}", f"grid keys are {', '.join(GRID_KEYS)}")
        if not isinstance(values, list) or not values:
            raise BatchError(what, f"grid {key!r} is empty", "give it at least one value, or remove it")
        if len(set(map(repr, values))) != len(values):
            raise BatchError(what, f"grid {key!r} repeats a value", "list each value once")
        out.append((k, values))
    return out


def _base_request(item: BatchItem, what: str, bundle_dir: Path | None) -> RenderRequest:
    sources = [x for x in (item.preset, item.bundle, item.request) if x]
    if len(sources) != 1:
        raise BatchError(what, f"it names {len(sources)} sources", "give exactly one of 'preset', 'bundle' or 'request'")
    if item.request is not None:
        if not isinstance(item.request, dict):
            raise BatchError(what, "'request' must be an object", "")
        return check_request_dict(item.request, check_files=False)
    import prompt_builder  # lazy: the builder is pure Python but owned elsewhere

    if item.preset:
        try:
            project = prompt_builder.load_preset(item.preset)
        except (KeyError, FileNotFoundError, ValueError) as e:
            raise BatchError(what, f"preset {item.preset!r} cannot be loaded ({e})", "pick a name from the preset list") from None
        title = item.preset
    else:
        p = Path(str(item.bundle))
        if p.suffix.lower() == ".json":  # a saved render request
            return check_request_dict(p.read_text(encoding="utf-8"), base_dir=p.parent, check_files=False)
        if bundle_dir is None:
            raise BatchError(what, "a bundle needs a folder to extract into", "pass bundle_dir to expand_batch")
        dest = bundle_dir / p.stem
        check_zip_bundle(p)  # refuse traversal / bombs before the builder touches it
        project = prompt_builder.load_bundle(p, dest)
        title = p.stem
    compiled = prompt_builder.compile_project(project)
    to_dict = getattr(project, "to_dict", None)
    kwargs: dict[str, Any] = {}
    for k in ("mode", "seconds", "width", "height", "image"):  # the project's own clip settings, if any
        v = getattr(project, k, None)
        if v not in (None, ""):
            kwargs[k] = v
    if kwargs.get("mode") == "audio":
        kwargs["guidance"] = GuidanceScales.audio_only()
    try:
        return RenderRequest(
            prompt=compiled.text,
            speaker_wavs=tuple(v or None for v in compiled.voices),
            project=to_dict() if callable(to_dict) else None,
            title=getattr(project, "title", "") or title,
            **kwargs,
        )
    except RequestError as e:
        raise BatchError(what, f"its project does not make a valid request ({e})", "fix the preset or bundle") from None


def _apply(req: RenderRequest, changes: dict[str, Any], what: str) -> RenderRequest:
    d = req.to_dict()
    for k, v in changes.items():
        k = k.removeprefix("guidance.")
        if k in GUIDANCE_KEYS:
            d["guidance"] = {**d["guidance"], k: v}
        elif k == "size":
            try:
                r = Resolution.parse(str(v))
            except ValueError as e:
                raise BatchError(what, str(e), "") from None
            d["width"], d["height"] = r.width, r.height
        else:
            d[k] = v
    try:
        return RenderRequest.from_dict(d)
    except RequestError as e:
        raise BatchError(what, str(e), "change the value or remove it from the grid") from None


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)  # 2.0 stays "2.0": the label reads as typed


def count_jobs(defn: BatchDefinition) -> int:
    """Jobs the batch expands to, computed without building them (to refuse huge batches early)."""
    total = 0
    for i, item in enumerate(defn.items):
        what = f"batch item {i + 1} ({item.source_name})"
        n = item.seeds if isinstance(item.seeds, int) and not isinstance(item.seeds, bool) else len(item.seeds or [])
        total += max(n, 0) * math.prod(len(v) for _, v in _check_grid(item, what))
    return total


def expand_batch(defn: BatchDefinition, bundle_dir: str | os.PathLike[str] | None = None) -> list[PlannedJob]:
    """Every render of the batch as a validated RenderRequest with its label, in a stable order.

    Order: items in order; within an item, grid combinations (keys in file order) then seeds.
    """
    n = count_jobs(defn)
    if n > MAX_JOBS:
        raise BatchError("batch definition", f"it expands to {n:,} renders, over the limit of {MAX_JOBS:,}",
                         "split it into smaller batches or shrink the grids")
    bdir = Path(bundle_dir) if bundle_dir is not None else None
    many = len(defn.items) > 1
    jobs: list[PlannedJob] = []
    for i, item in enumerate(defn.items):
        what = f"batch item {i + 1} ({item.source_name})"
        try:
            grid = _check_grid(item, what)
            base = _apply(_base_request(item, what, bdir), {**defn.overrides, **item.overrides}, what)
            seeds = _seed_list(item, base.seed, what)
        except BatchError:
            raise
        except InputError as e:  # a file/request/seed check: say which batch item it came from
            raise BatchError(f"{what}, {e.what}", e.why, e.fix) from None
        keys = [k for k, _ in grid]
        for combo in itertools.product(*(v for _, v in grid)):
            changes = dict(zip(keys, combo))
            req = _apply(base, changes, what) if changes else base
            for seed in seeds:
                r = req.replace(seed=seed)
                varied = {**changes, "seed": seed}
                label = ", ".join(f"{k}={_fmt(v)}" for k, v in varied.items())
                if many:
                    label = f"{item.source_name}: {label}"
                jobs.append(PlannedJob(r.replace(title=r.title or item.source_name), label, varied, item.source_name))
    return jobs


__all__ = [
    "BatchError",
    "BatchItem",
    "BatchDefinition",
    "PlannedJob",
    "expand_batch",
    "count_jobs",
    "MAX_JOBS",
    "GRID_KEYS",
]


def check_files(jobs: Sequence[PlannedJob]) -> list[PlannedJob]:
    """Run the file checks (voices, first-frame image) once per distinct set of files."""
    seen: dict[tuple[Any, ...], RenderRequest] = {}
    out = []
    for job in jobs:
        key = (job.request.speaker_wavs, job.request.image)
        if key not in seen:
            try:
                seen[key] = check_request_dict(job.request.to_dict(), check_files=True)
            except InputError as e:
                raise BatchError(f"{job.source or 'batch'} ({job.label}), {e.what}", e.why, e.fix) from None
        checked = seen[key]
        req = job.request.replace(speaker_wavs=checked.speaker_wavs, image=checked.image)
        out.append(dataclasses.replace(job, request=req))
    return out


def lint_jobs(jobs: Sequence[PlannedJob]) -> list[PlannedJob]:
    """The Studio's prompt checks (nava_core.preflight) on every planned job: a batch never renders what
    the Studio would refuse. Raises BatchError naming the first job that fails; the jobs otherwise."""
    from nava_core.preflight import lint_problems

    seen: set[tuple[str, str, float]] = set()
    for job in jobs:
        r = job.request
        key = (r.prompt, json.dumps(r.project, sort_keys=True) if r.project else "", r.seconds)
        if key in seen:  # seeds and guidance do not change the lint
            continue
        seen.add(key)
        problems = lint_problems(r)
        if problems:
            raise BatchError(f"batch job {job.label}", "; ".join(problems),
                             "fix the preset or bundle, or make the clip longer")
    return list(jobs)


def batch_id_for(defn: BatchDefinition) -> str:
    """Same definition (after flags and path resolution) -> same id, so a re-run resumes it."""
    digest = hashlib.sha256(defn.to_json().encode("utf-8")).hexdigest()[:10]
    from nava_core.jobs import slugify

    return f"{slugify(defn.name, 40)}-{digest}"


def fmt_seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
