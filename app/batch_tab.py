"""The studio's Batch tab: presets x seeds x a one- or two-key sweep, queued durably and compared side by side.

Why a separate, durable queue: the studio's interactive queue (`app.render_queue`) lives in memory,
which is right for one click but wrong for an overnight batch. Batch jobs go into a SQLite
`JobQueue` in the studio data folder (`<home>/batch/queue.sqlite`, outputs under
`<home>/outputs/batch/`), so a restart of the studio resumes the batch where it stopped. One
background thread renders one job at a time and only while the studio's own render queue is idle,
holding the engine's lock for the whole render so an interactive render waits for it instead of
sharing the GPU (see `StudioGate`).

Everything here except `build_batch_tab` is plain Python, so tests drive the same code as the page.
"""

from __future__ import annotations

import html
import logging
import os
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote

from nava_core.batch import BatchDefinition, BatchItem, PlannedJob, expand_batch
from nava_core.batch_cli import batch_id_for, check_files, fmt_seconds, make_render_fn
from nava_core.estimate import render_seconds
from nava_core.config import BUCKETS
from nava_core.jobs import Job, JobQueue, run_one
from nava_core.progress import CancelToken, ProgressEvent
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


# ---- running --------------------------------------------------------------------------------------


class StudioGate:
    """One GPU job at a time between the studio's render queue and the batch worker.

    `hold()` yields the loaded pipeline while holding a lock that the studio's render path also
    takes: the service's public `gpu_lock` if it has one, else the engine's load lock (which every
    studio render takes in `Engine.pipeline()` before touching the GPU). Taking the lock *then*
    seeing the studio queue empty means no studio render is running now and any new one waits.
    """

    def __init__(self, service: Any, poll_s: float = 0.5) -> None:
        self.service, self.poll_s = service, poll_s

    @contextmanager
    def hold(self, stop: threading.Event) -> Iterator[Any]:
        while True:
            engine = self.service.engine
            pipe = engine.pipeline()  # load outside the lock: pipeline() takes the engine lock itself
            public = getattr(self.service, "gpu_lock", None)
            lock = public if public is not None else engine._lock  # noqa: SLF001 - see class docstring
            lock.acquire()
            if public is not None or not self.service.queue.snapshot():
                break
            lock.release()
            if stop.wait(self.poll_s):
                raise _Stopped
        try:
            yield pipe
        finally:
            lock.release()


class LockGate:
    """A gate for a runner without a studio: its own lock around one pipeline from `load()`."""

    def __init__(self, load: Callable[[], Any], lock: threading.Lock | None = None) -> None:
        self.load, self.lock = load, lock or threading.Lock()

    @contextmanager
    def hold(self, stop: threading.Event) -> Iterator[Any]:
        pipe = self.load()
        with self.lock:
            yield pipe


class _Stopped(Exception):
    pass


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


class BatchRunner:
    """The batch queue file, its output folder and the one worker thread that renders from it."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        outputs: str | os.PathLike[str],
        gate: StudioGate | LockGate,
        is_tiny: Callable[[], bool] = lambda: True,
        adapt: Callable[[Any], Any] = lambda request: request,
        poll_s: float = 0.5,
        start: bool = True,
    ) -> None:
        self.queue = JobQueue(Path(home) / "batch" / "queue.sqlite")
        self.out_root = Path(outputs) / "batch"
        self.out_root.mkdir(parents=True, exist_ok=True)
        self.gate, self.is_tiny, self.adapt, self.poll_s = gate, is_tiny, adapt, poll_s
        self._stop = threading.Event()
        self._cancel = CancelToken()
        self._current: tuple[int, ProgressEvent] | None = None
        self._thread: threading.Thread | None = None
        report = self.queue.recover(out_root=self.out_root)
        if report.changed:
            log.info("batch queue: %d jobs re-queued after a restart", len(report.requeued))
        if start:
            self.start()

    @classmethod
    def for_service(cls, service: Any, **kw: Any) -> "BatchRunner":
        """A runner on a StudioService: its data folder, its engine, its render queue as the GPU gate."""
        from app.engine import adapt_for_engine

        return cls(service.paths.home, service.paths.outputs, StudioGate(service),
                   is_tiny=lambda: service.engine.choice.is_tiny,
                   adapt=lambda r: adapt_for_engine(r, service.engine.choice), **kw)

    # ---- planning -------------------------------------------------------------------------------

    def plan(self, defn: BatchDefinition) -> list[PlannedJob]:
        """Expand and check every job as the engine in use will render it (tiny: preview sizes)."""
        jobs = check_files(expand_batch(defn, bundle_dir=self.out_root / "bundles"))
        out = []
        for j in jobs:
            r = self.adapt(j.request)
            out.append(j if r is j.request else PlannedJob(r, j.label, j.varied, j.source))
        return out

    def preview(self, defn: BatchDefinition) -> str:
        jobs = self.plan(defn)
        tiny = self.is_tiny()
        est = sum(render_seconds(j.request, tiny) for j in jobs)
        return (f"**{len(jobs)} job{'s' if len(jobs) != 1 else ''}**, estimated {fmt_seconds(est)}"
                f"{' on the tiny preview engine (rough)' if tiny else ''}.")

    def enqueue(self, defn: BatchDefinition) -> str:
        """Queue a batch (all jobs in one transaction); the same definition twice is queued once."""
        jobs = self.plan(defn)
        batch_id = batch_id_for(defn)
        if not self.queue.list(batch_id=batch_id, states=("queued", "running")):
            batch_id = f"{batch_id}-{time.strftime('%H%M%S')}" if self.queue.list(batch_id=batch_id) else batch_id
            self.queue.enqueue_many(jobs, batch_id=batch_id)
        return batch_id

    # ---- worker ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="nava-batch-worker", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._cancel.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
        self.queue.close()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (tests, scripts)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            c = self.queue.counts()
            if c["queued"] == 0 and c["running"] == 0:
                return True
            time.sleep(0.1)
        return False

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self.queue.counts()["queued"]:
                self._stop.wait(self.poll_s)
                continue
            try:
                with self.gate.hold(self._stop) as pipe:
                    job = self.queue.claim()
                    if job is None:
                        continue
                    self._current = (job.id, ProgressEvent("loading", message="starting"))
                    progress = lambda ev, jid=job.id: setattr(self, "_current", (jid, ev))  # noqa: E731
                    run_one(self.queue, job, make_render_fn(pipe), self.out_root, progress, self._cancel)
            except _Stopped:
                return
            except Exception:  # noqa: BLE001 - e.g. weights fail to load: keep serving, retry later
                log.exception("batch worker could not start a job")
                self._stop.wait(5.0)
            finally:
                self._current = None

    # ---- reading --------------------------------------------------------------------------------

    def batch_choices(self) -> list[str]:
        """Batch ids, newest first."""
        seen: dict[str, None] = {}
        for j in reversed(self.queue.list()):
            if j.batch_id:
                seen.setdefault(j.batch_id, None)
        return list(seen)

    def rows(self, batch_id: str | None) -> list[list[Any]]:
        """The live job table: job, state, label, progress, outputs."""
        current = self._current
        rows = []
        for j in self.queue.list(batch_id=batch_id or None):
            if j.state == "running":
                ev = current[1] if current and current[0] == j.id else None
                prog = ev.describe() if ev else "starting"
            elif j.state == "queued":
                prog = f"position {self.queue.position(j.id)}"
            elif j.state == "done":
                prog = f"done in {j.timings.get('total_s', 0):.1f} s"
            else:
                prog = j.error or j.state
            outs = ", ".join(Path(p).name for k, p in j.outputs.items() if k in ("mp4", "wav"))
            rows.append([j.id, j.state, j.label, prog, outs])
        return rows

    def cancel_batch(self, batch_id: str) -> int:
        return sum(self.queue.cancel(j.id) for j in self.queue.list(batch_id=batch_id, states=("queued", "running")))

    def compare(self, batch_id: str) -> list[CompareEntry]:
        """Finished renders of a batch with an MP4, in queue order, each labelled by its varied values."""
        out = []
        for j in self.queue.list(batch_id=batch_id, states=("done",)):
            mp4 = j.outputs.get("mp4")
            if mp4 and Path(mp4).is_file():
                out.append(CompareEntry(j.id, j.label, mp4, _varied_of(j.label)))
        return out

    def zip_outputs(self, batch_id: str) -> Path:
        """One zip of every finished output of the batch (folder per job), written atomically."""
        jobs: list[Job] = self.queue.list(batch_id=batch_id, states=("done",))
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


# ---- the tab --------------------------------------------------------------------------------------


def build_batch_tab(studio: Any) -> BatchRunner:
    """Create the Batch tab's components inside the caller's `with gr.Tab("Batch"):` block.

    `studio` is the StudioService (its data folder, engine and render queue are used) or a ready
    BatchRunner. Returns the runner (its worker thread is already started).
    """
    import gradio as gr

    runner = studio if isinstance(studio, BatchRunner) else BatchRunner.for_service(studio)
    try:
        import prompt_builder as pb

        preset_names = pb.list_presets()
    except Exception as e:  # noqa: BLE001 - a broken presets folder must not stop the studio
        log.warning("presets unavailable for the Batch tab: %s", e)
        preset_names = []
    sweep_choices = [NO_SWEEP, *SWEEP_KEYS]

    gr.Markdown("Queue many renders at once: presets × seeds × up to two swept settings. The queue is kept on "
                "disk, so a restart resumes it; renders run one at a time, after the Studio tab's renders.")
    with gr.Row():
        presets = gr.Dropdown(preset_names, multiselect=True, label="Presets", scale=3, elem_id="batch-presets")
        seeds = gr.Number(1, precision=0, minimum=1, label="Seeds per setting", scale=1, elem_id="batch-seeds")
        # text boxes, not gr.Number: a Number shows an empty value as 0, and 0 is a real seed
        first_seed = gr.Textbox(label="First seed", placeholder="blank: the preset's", scale=1, elem_id="batch-first-seed")
    with gr.Row():
        sweep1 = gr.Dropdown(sweep_choices, value=NO_SWEEP, label="Sweep 1", scale=1, elem_id="batch-sweep1")
        values1 = gr.Textbox(label="values (comma list)", placeholder="1.0, 2.0, 3.0", scale=2, elem_id="batch-values1")
        sweep2 = gr.Dropdown(sweep_choices, value=NO_SWEEP, label="Sweep 2", scale=1)
        values2 = gr.Textbox(label="values (comma list)", placeholder="landscape, portrait", scale=2)
    with gr.Row():
        steps = gr.Textbox(label="Steps", placeholder="blank: the preset's", elem_id="batch-steps")
        seconds = gr.Textbox(label="Duration in s", placeholder="blank: the preset's", elem_id="batch-seconds")
    preview = gr.Markdown(elem_id="batch-preview")
    queue_btn = gr.Button("Queue batch", variant="primary", elem_id="batch-queue")
    with gr.Row():
        pick = gr.Dropdown(runner.batch_choices(), value=(runner.batch_choices() or [None])[0], label="Batch",
                           scale=3, allow_custom_value=False, elem_id="batch-pick")
        cancel_btn = gr.Button("Cancel batch", variant="stop", scale=1)
        zip_btn = gr.Button("Download all (zip)", scale=1, elem_id="batch-zip")
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="Jobs", elem_id="batch-table")
    zip_file = gr.File(label="All finished outputs", interactive=False)
    gr.Markdown("### Compare")
    compare = gr.HTML(elem_id="batch-compare")
    shown = gr.State("")
    timer = gr.Timer(1.0)

    form = [presets, seeds, sweep1, values1, sweep2, values2, first_seed, steps, seconds]

    def _defn(p, n, k1, v1, k2, v2, s0, st, sec) -> BatchDefinition:
        return build_definition(p or [], n, [(k1, v1), (k2, v2)], optional_number("first seed", s0, True),
                                optional_number("steps", st, True), optional_number("duration", sec))

    def _preview(*vals: Any) -> str:
        try:
            return runner.preview(_defn(*vals))
        except (InputError, ValueError) as e:
            return f"⛔ {html.escape(str(e))}"

    def _queue(*vals: Any):
        try:
            batch_id = runner.enqueue(_defn(*vals))
        except (InputError, ValueError) as e:
            gr.Warning(str(e))
            return gr.update(), gr.update(), f"⛔ {html.escape(str(e))}"
        gr.Info(f"Queued batch {batch_id}.")
        return gr.update(choices=runner.batch_choices(), value=batch_id), runner.rows(batch_id), _preview(*vals)

    def _refresh(batch_id: str | None, last: str):
        entries = runner.compare(batch_id) if batch_id else []
        sig = ",".join(str(e.job_id) for e in entries) + f"@{batch_id}"
        html_update = gr.update() if sig == last else compare_html(entries)
        return runner.rows(batch_id), html_update, sig

    def _zip(batch_id: str | None):
        if not batch_id:
            gr.Warning("Pick a batch first.")
            return None
        try:
            return str(runner.zip_outputs(batch_id))
        except InputError as e:
            gr.Warning(str(e))
            return None

    def _cancel(batch_id: str | None) -> None:
        if batch_id:
            gr.Info(f"Cancelled {runner.cancel_batch(batch_id)} job(s); a running one stops at its next step.")

    for comp in form:
        comp.change(_preview, form, preview, show_progress="hidden", api_visibility="private")
    queue_btn.click(_queue, form, [pick, table, preview], api_visibility="private")
    pick.change(_refresh, [pick, shown], [table, compare, shown], show_progress="hidden", api_visibility="private")
    timer.tick(_refresh, [pick, shown], [table, compare, shown], show_progress="hidden", api_visibility="private")
    zip_btn.click(_zip, pick, zip_file, api_visibility="private")
    cancel_btn.click(_cancel, pick, None, api_visibility="private")
    return runner


__all__ = [
    "SWEEP_KEYS",
    "BatchRunner",
    "CompareEntry",
    "LockGate",
    "StudioGate",
    "build_batch_tab",
    "build_definition",
    "compare_html",
    "parse_sweep_values",
]
