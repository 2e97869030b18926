"""Batches in the studio: presets x seeds x a one- or two-key sweep, queued in the one job store.

A batch is a set of jobs sharing a `batch_id` in the studio's job store: they are admitted like any
render (`StudioService.submit_batch`: lint, input checks, the request finalised for the engine),
rendered by the same worker through the same engine call, one at a time in queue order with the
studio's own renders, and resumed after a restart like them. This module is the Batch tab's plain-
Python side (the form -> BatchDefinition, the job table, compare and zip); `app.batch_tab` lays it out.
"""

from __future__ import annotations

import html
import logging
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from nava_core.batch import BatchDefinition, BatchItem, PlannedJob, batch_id_for, check_files, expand_batch, fmt_seconds

from nava_core.estimate import render_seconds
from nava_core.config import BUCKETS
from nava_core.jobs import Job
from nava_core.validation import InputError

log = logging.getLogger(__name__)

# UI label -> batch grid key
SWEEP_KEYS: dict[str, str] = {
    "video guidance": "video",
    "audio guidance": "audio",
    "video sync guidance": "video_align",
    "audio sync guidance": "audio_align",
    "timbre guidance": "timbre",
    "steps": "steps",
    "duration (s)": "seconds",
    "aspect": "size",
}
NO_SWEEP = "(none)"
TABLE_HEADERS = ["job", "state", "label", "progress", "outputs"]


# ---- definition from the form ---------------------------------------------------------------------


def parse_sweep_values(key: str, text: str) -> list[Any]:
    """'1.0, 2.5' -> [1.0, 2.5]; steps are whole numbers; aspect takes bucket names or WxH."""
    what = f"sweep over {key}"
    parts = [p.strip() for p in str(text or "").replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise InputError(what, "no values given", "type a comma list such as 1.0, 2.0, 3.0")
    out: list[Any] = []
    for p in parts:
        if key == "size":
            bucket = next((b for b in BUCKETS if b.name == p.lower()), None)
            out.append(f"{bucket.width}x{bucket.height}" if bucket else p)
            continue
        try:
            v: Any = int(p) if key == "steps" else float(p)
        except ValueError:
            kind = "a whole number" if key == "steps" else "a number"
            raise InputError(what, f"{p!r} is not {kind}", "type a comma list of numbers") from None
        out.append(v)
    return out


def build_definition(
    presets: Sequence[str],
    seeds: int | float | None,
    sweeps: Sequence[tuple[str | None, str | None]] = (),
    first_seed: int | float | None = None,
    steps: int | float | None = None,
    seconds: float | None = None,
    name: str = "",
) -> BatchDefinition:
    """The Batch tab's form as a BatchDefinition (one item per preset, the same seeds and grid)."""
    if not presets:
        raise InputError("presets", "none picked", "pick at least one preset")
    n = int(seeds or 0)
    if n < 1:
        raise InputError("seeds", f"{seeds!r} is not a count of at least 1", "use 1 or more seeds per setting")
    grid: dict[str, list[Any]] = {}
    for label, text in sweeps:
        if not label or label == NO_SWEEP:
            continue
        key = SWEEP_KEYS.get(label, label)
        if key in grid:
            raise InputError("sweep", f"{label} is swept twice", "pick two different settings to sweep")
        grid[key] = parse_sweep_values(key, text or "")
    seed_spec: int | list[int] = n if first_seed in (None, "") else [int(first_seed) + k for k in range(n)]
    overrides: dict[str, Any] = {}
    if steps not in (None, "", 0):
        overrides["steps"] = int(steps)
    if seconds not in (None, "", 0):
        overrides["seconds"] = float(seconds)
    items = [BatchItem(preset=p, seeds=seed_spec, grid=dict(grid)) for p in presets]
    label = name or (presets[0] if len(presets) == 1 else f"{len(presets)} presets")
    if grid:
        label += " sweep " + " x ".join(grid)
    return BatchDefinition(name=label, items=items, overrides=overrides)


def optional_number(what: str, text: Any, integer: bool = False) -> int | float | None:
    """A form's optional number: blank -> None (the preset's value), else the number or an InputError."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        raise InputError(what, f"{text!r} is not a number", "type a number or leave it blank") from None
    if integer:
        if not value.is_integer():
            raise InputError(what, f"{text!r} is not a whole number", "type a whole number or leave it blank")
        return int(value)
    return value


@dataclass(frozen=True)
class CompareEntry:
    """One cell of the compare view: the job's label (its varied values), its MP4 and state."""

    job_id: int
    label: str
    mp4: str
    varied: dict[str, str] = field(default_factory=dict)


def _varied_of(label: str) -> dict[str, str]:
    text = label.split(": ", 1)[1] if ": " in label and "=" not in label.split(": ", 1)[0] else label
    out = {}
    for part in text.split(", "):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


class Batches:
    """The Batch tab's view of the studio's job store: plan, queue, list, cancel, compare, zip."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.out_root = Path(service.paths.outputs)

    # ---- planning -------------------------------------------------------------------------------

    def plan(self, defn: BatchDefinition) -> list[PlannedJob]:
        """Expand and check every job (files once per distinct set), as the engine in use renders it."""
        jobs = check_files(expand_batch(defn, bundle_dir=self.service.paths.uploads / "bundles"))
        engine = self.service.engine
        return [PlannedJob(engine.finalize(j.request), j.label, j.varied, j.source) for j in jobs]

    def preview(self, defn: BatchDefinition) -> str:
        jobs = self.plan(defn)
        tiny = self.service.engine.choice.is_tiny
        est = sum(render_seconds(j.request, tiny) for j in jobs)
        return (f"**{len(jobs)} job{'s' if len(jobs) != 1 else ''}**, estimated {fmt_seconds(est)}"
                f"{' on the tiny preview engine (rough)' if tiny else ''}.")

    def enqueue(self, defn: BatchDefinition, engine: str | None = None) -> str:
        """Queue a batch (all jobs in one transaction); the same definition while it runs is queued once.

        `engine` "cluster:ADDRESS" reserves the jobs for a render farm instead of the studio's worker."""
        jobs = self.plan(defn)
        batch_id = batch_id_for(defn)
        store = self.service.jobs
        if not store.list(batch_id=batch_id, states=("queued", "running")):
            batch_id = f"{batch_id}-{time.strftime('%H%M%S')}" if store.list(batch_id=batch_id) else batch_id
            self.service.submit_batch(jobs, batch_id, engine=engine)
        return batch_id

    # ---- reading --------------------------------------------------------------------------------

    def batch_choices(self) -> list[str]:
        """Batch ids, newest first."""
        seen: dict[str, None] = {}
        for j in self.service.jobs.list(newest_first=True):
            if j.batch_id:
                seen.setdefault(j.batch_id, None)
        return list(seen)

    def rows(self, batch_id: str | None) -> list[list[Any]]:
        """The live job table: job, state, label, progress, outputs."""
        store, worker = self.service.jobs, self.service.worker
        rows = []
        for j in store.list(batch_id=batch_id or None):
            if j.state == "running":
                ev = worker.event if worker.current == j.id else None
                prog = ev.describe() if ev else "starting"
            elif j.state == "queued":
                prog = f"position {store.position(j.id)}"
            elif j.state == "done":
                prog = f"done in {j.timings.get('total_s', 0):.1f} s"
            else:
                prog = j.error or j.state
            outs = ", ".join(Path(p).name for k, p in j.outputs.items() if k in ("mp4", "wav"))
            rows.append([j.id, j.state, j.label, prog, outs])
        return rows

    def cancel_batch(self, batch_id: str) -> int:
        worker = self.service.worker
        return sum(worker.cancel(j.id) for j in self.service.jobs.list(batch_id=batch_id, states=("queued", "running")))

    def compare(self, batch_id: str) -> list[CompareEntry]:
        """Finished renders of a batch with an MP4, in queue order, each labelled by its varied values."""
        out = []
        for j in self.service.jobs.list(batch_id=batch_id, states=("done",)):
            mp4 = j.outputs.get("mp4")
            if mp4 and Path(mp4).is_file():
                out.append(CompareEntry(j.id, j.label, mp4, _varied_of(j.label)))
        return out

    def zip_outputs(self, batch_id: str) -> Path:
        """One zip of every finished output of the batch (folder per job), written atomically."""
        jobs: list[Job] = self.service.jobs.list(batch_id=batch_id, states=("done",))
        if not jobs:
            raise InputError("download", f"batch {batch_id} has no finished renders yet", "wait for a job to finish")
        dest = self.out_root / "downloads"
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{batch_id}.zip"
        tmp = dest / f".{batch_id}.zip.tmp"
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for j in jobs:
                folder = Path(j.final_dir) if j.final_dir else None
                for p in sorted(folder.iterdir()) if folder and folder.is_dir() else ():
                    if p.is_file():
                        zf.write(p, f"{folder.name}/{p.name}")
        os.replace(tmp, path)
        return path


def compare_html(entries: Sequence[CompareEntry], columns: int | None = None) -> str:
    """A side-by-side grid of <video> cells, one per render, captioned with its varied values.

    Columns follow the last varied key (usually the seed), so each row holds one swept setting.
    """
    if not entries:
        return '<div class="nava-compare nava-empty">No finished renders in this batch yet.</div>'
    if columns is None:
        last = [list(e.varied.items())[-1][1] for e in entries if e.varied]
        columns = max(1, min(6, len(set(last)) if last else len(entries)))
    cells = []
    for e in entries:
        src = "/gradio_api/file=" + quote(str(Path(e.mp4).resolve()))
        cells.append(
            f'<figure class="nava-compare-cell" data-job="{e.job_id}" style="margin:0">'
            f'<video src="{html.escape(src)}" controls muted loop playsinline preload="metadata" '
            f'style="width:100%;border-radius:6px"></video>'
            f'<figcaption style="font-size:0.85em;text-align:center">{html.escape(e.label)}</figcaption></figure>')
    return (f'<div class="nava-compare" style="display:grid;gap:10px;'
            f'grid-template-columns:repeat({columns},minmax(0,1fr))">{"".join(cells)}</div>')


__all__ = [
    "SWEEP_KEYS",
    "Batches",
    "CompareEntry",
    "build_definition",
    "compare_html",
    "optional_number",
    "parse_sweep_values",
]
