"""`nava-render batch FILE`: expand a batch definition, queue it durably, render it, resume after a crash.

Why a durable queue even for a terminal run: overnight batches get killed (OOM, reboot, Ctrl-C).
The queue file `<out>/queue.sqlite` makes re-running the *same command* a resume: the batch is
recognised by a hash of its definition and not enqueued twice, jobs already done are never
re-rendered, and jobs a killed process left running are recovered (`JobQueue.recover`).

Everything a batch can get wrong (unknown fields, bad seeds, a voice file that is really a PNG, a
zip bomb bundle, a 10,000-job grid) is refused before the queue file is touched, with one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from nava_core.batch import (
    BatchDefinition,
    PlannedJob,
    batch_id_for,
    check_files,
    expand_batch,
    lint_jobs,
    fmt_seconds,
)
from nava_core.estimate import render_seconds
from nava_core.progress import CancelToken, ProgressCallback, ProgressEvent
from nava_core.request import RenderRequest, RequestError
from nava_core.validation import InputError

log = logging.getLogger(__name__)

QUEUE_FILE = "queue.sqlite"
EVENT_LOG = "batch-log.jsonl"

# Command-line flags that make sense for a whole batch, and the request field each one sets.
_FLAG_FIELDS = {
    "steps": "steps", "seconds": "seconds", "size": "size", "precision": "precision",
    "memory_profile": "memory_profile", "sample_rate": "audio_sample_rate",
    "video_guidance": "video", "audio_guidance": "audio", "video_align_guidance": "video_align",
    "audio_align_guidance": "audio_align", "timbre_guidance": "timbre",
}
_NOT_FOR_BATCH = ("mode", "frames", "seed", "audio_seed", "gpus")


# ---- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPlan:
    """A validated, expanded batch: what will be queued, under which id, and how long it may take."""

    definition: BatchDefinition
    jobs: list[PlannedJob]
    batch_id: str
    estimate_s: float


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Batch-wide request overrides from `nava-render` flags; flags that cannot apply are refused."""
    for name in _NOT_FOR_BATCH:
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag}", "it does not apply to a batch",
                             "set it in the batch file (seeds per item, mode per request or preset)")
    out: dict[str, Any] = {}
    for name, key in _FLAG_FIELDS.items():
        v = getattr(args, name, None)
        if v is not None:
            out[key] = v
    if getattr(args, "tiled_vae", False):
        out["tiled_vae"] = True
    return out


def _absolute_sources(defn: BatchDefinition, base: Path) -> BatchDefinition:
    """Bundles and inline requests' files are relative to the batch file, not the working folder."""
    items = []
    for it in defn.items:
        changes: dict[str, Any] = {}
        if isinstance(it.bundle, str) and it.bundle and not Path(it.bundle).is_absolute():
            changes["bundle"] = str(base / it.bundle)
        if isinstance(it.request, dict):
            req = dict(it.request)
            wavs = req.get("speaker_wavs")
            if isinstance(wavs, list):
                req["speaker_wavs"] = [str(base / w) if isinstance(w, str) and w and not Path(w).is_absolute() else w
                                       for w in wavs]
            img = req.get("image")
            if isinstance(img, str) and img and not Path(img).is_absolute():
                req["image"] = str(base / img)
            changes["request"] = req
        items.append(dataclasses.replace(it, **changes) if changes else it)
    return dataclasses.replace(defn, items=items)


def plan_batch(
    path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None, out_dir: str | os.PathLike[str] = "outputs",
    tiny: bool = True,
) -> BatchPlan:
    """Load, validate and expand a batch file; raises InputError (BatchError) saying what and why."""
    p = Path(path)
    if not p.is_file():
        raise InputError("batch file", f"{p} does not exist or is not a file", "give the path of a batch JSON file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("batch file", f"{p.name} is not UTF-8 text", "save the batch definition as UTF-8 JSON") from None
    defn = BatchDefinition.from_json(text)
    if overrides:
        defn = dataclasses.replace(defn, overrides={**defn.overrides, **overrides})
    defn = _absolute_sources(defn, p.resolve().parent)
    jobs = expand_batch(defn, bundle_dir=Path(out_dir) / "bundles")
    jobs = lint_jobs(check_files(jobs))  # files first (their message is the more specific), then the lint
    est = sum(render_seconds(j.request, tiny) for j in jobs)
    return BatchPlan(defn, jobs, batch_id_for(defn), est)


# ---- rendering --------------------------------------------------------------------------------

RenderFn = Callable[[RenderRequest, Path, "ProgressCallback | None", CancelToken], dict[str, str]]


def make_render_fn(pipe: Any) -> RenderFn:
    """A `jobs.run_queue` render function on one loaded NAVAPipeline (shared by the CLI and the studio)."""
    from nava_core.render import render_to_files

    def render_fn(request: RenderRequest, tmp_dir: Path, progress: ProgressCallback | None,
                  cancel: CancelToken) -> dict[str, str]:
        outs = render_to_files(pipe, request, tmp_dir, progress=progress, cancel=cancel)
        return outs.as_dict()

    return render_fn


class JobLine:
    """One terminal line per job: `[i/N] label: phase step s/S` (rewritten in place on a TTY)."""

    def __init__(self, stream: TextIO, index: int, total: int, label: str, quiet: bool) -> None:
        where = f"[{index}/{total}]" if index else "[other batch]"
        self.stream, self.prefix, self.quiet = stream, f"{where} {label}", quiet
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_phase = ""

    def __call__(self, ev: ProgressEvent) -> None:
        if self.quiet:
            return
        text = f"{self.prefix}: {ev.describe()}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + text[:200])
            self.stream.flush()
        elif ev.phase != self._last_phase or (ev.phase == "denoising" and ev.step == ev.total):
            self.stream.write(text + "\n")
            self.stream.flush()
        self._last_phase = ev.phase

    def end(self, text: str) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r\x1b[2K")
        self.stream.write(f"{self.prefix}: {text}\n")
        self.stream.flush()


class EventLog:
    """`<out>/batch-log.jsonl`: one line per job start and end, flushed at once (survives SIGKILL)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **event: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "pid": os.getpid(), **event}, ensure_ascii=False)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _err(msg: str) -> None:
    """One `nava-render: ...` line; text from the user (a title with a lone surrogate) is escaped, not fatal."""
    line = f"nava-render: {msg}".encode("utf-8", "backslashreplace").decode("utf-8")
    print(line, file=sys.stderr)


@dataclass
class _Interrupt:
    """Ctrl-C stops the worker (the running render at its next step); the queue keeps the rest for a re-run."""

    worker: Any
    previous: Any = None

    def __enter__(self) -> "_Interrupt":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.worker.stopping:
            raise KeyboardInterrupt
        _err("stopping after cancelling the current render (Ctrl-C again to quit at once)")
        self.worker.request_stop()

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def run_batch_cli(args: argparse.Namespace) -> int:
    """`nava-render batch FILE`: 0 all done, 1 some failed (listed), 2 invalid batch, 3 weights failed."""
    from nava_core.jobs import JobQueue
    from nava_core.outdir import OutputFolderError, as_output_error, check_output_dir

    out = Path(args.out)
    if getattr(args, "cluster", None):  # a farm that cannot run is refused before the queue is touched
        from nava_core.cluster import ClusterError
        from nava_core.cluster.cli import cluster_config

        try:
            cluster_config(args)
        except ClusterError as e:
            _err(str(e))
            return 2
    tiny = str(args.weights) == "tiny" or _is_tiny_folder(args.weights)
    try:
        check_output_dir(out, create=False)  # nothing written yet: a refused batch leaves no trace
    except OutputFolderError as e:
        _err(str(e))
        return 3
    try:
        plan = plan_batch(args.batch_file, flag_overrides(args), out, tiny=tiny)
    except (InputError, RequestError) as e:
        _err(str(e).replace("\n", " "))
        return 2
    except (OSError, ValueError) as e:  # unreadable file, a check the validators did not foresee
        _err(f"batch file {args.batch_file}: {e}".replace("\n", " "))
        return 2
    n = len(plan.jobs)
    print(f"batch {plan.definition.name!r}: {n} job{'s' if n != 1 else ''}, estimated {fmt_seconds(plan.estimate_s)}"
          f"{' (tiny engine, rough)' if tiny else ''}", file=sys.stderr)

    try:
        check_output_dir(out)
        queue = JobQueue(out / QUEUE_FILE)
    except (OutputFolderError, OSError) as e:
        _err(str(as_output_error(e, out)))
        return 3
    except Exception as e:  # noqa: BLE001 - sqlite cannot open the queue file (e.g. a folder in its place)
        _err(f"the queue file {out / QUEUE_FILE} cannot be opened ({e}); choose another --out folder")
        return 3
    try:
        return _run_queue(args, queue, plan, out, n)
    except OutputFolderError as e:  # the running job went back to "queued"; a re-run resumes it
        _err(f"{e}; the interrupted job is queued again, re-run the same command to resume")
        return 3
    except OSError as e:
        _err(f"{as_output_error(e, out)}; re-run the same command to resume")
        return 3
    finally:
        queue.close()


def _run_queue(args: argparse.Namespace, queue: Any, plan: BatchPlan, out: Path, n: int) -> int:
    from nava_core.jobs import Worker
    from nava_core.outdir import as_output_error

    events = EventLog(out / EVENT_LOG)
    existing = queue.list(batch_id=plan.batch_id)
    if existing:
        retry = [j.id for j in existing if j.state in ("failed", "cancelled")]
        for jid in retry:
            queue.requeue(jid)
        done = sum(j.state == "done" for j in existing)
        print(f"resuming: {done}/{len(existing)} already done"
              + (f", retrying {len(retry)} failed/cancelled" if retry else ""), file=sys.stderr)
    else:
        queue.enqueue_many(plan.jobs, batch_id=plan.batch_id)
    pipe: list[Any] = []  # loaded below, only when there is work: the worker renders through it
    lines: dict[int, tuple[JobLine, float]] = {}
    worker = Worker(queue, lambda req, tmp, prog, cancel: make_render_fn(pipe[0])(req, tmp, prog, cancel), out,
                    on_progress=lambda ev: lines[worker.current][0](ev) if worker.current in lines else None,
                    requeue_on_output_error=True)
    report = worker.recovered
    if report.changed:
        print(f"recovered after a crash: {len(report.requeued)} re-queued, {len(report.adopted)} finished "
              f"renders adopted, {len(report.failed)} failed (retry limit)", file=sys.stderr)
    others = sum(1 for j in queue.list(states=("queued",)) if j.batch_id != plan.batch_id)
    if others:
        print(f"note: {others} job(s) of other batches are queued in {out / QUEUE_FILE} and run too",
              file=sys.stderr)
    if not queue.list(states=("queued",)):
        return _finish(queue, plan)
    if getattr(args, "cluster", None):
        from nava_core.cluster.cli import StopHandle, run_on_cluster

        stop = StopHandle()
        with _Interrupt(stop):
            code = run_on_cluster(args, queue, out, events, stop.token)
        return code or _finish(queue, plan)

    from nava_core.pipeline import NAVAPipeline

    try:
        pipe.append(NAVAPipeline.from_pretrained(args.weights, device=getattr(args, "device", None)))
    except (FileNotFoundError, ValueError, OSError) as e:
        _err(f"cannot load weights: {e}")
        return 3
    order = {j.id: i for i, j in enumerate(queue.list(batch_id=plan.batch_id), 1)}
    durations: list[float] = []

    def on_start(job: Any) -> None:
        idx = order.get(job.id)
        line = JobLine(sys.stderr, idx or 0, n if idx else 0, job.label or f"job {job.id}", args.quiet)
        lines[job.id] = (line, time.perf_counter())
        try:
            events.write(event="start", job=job.id, attempt=job.attempts, label=job.label)
        except OSError as e:  # the log cannot be written: the output folder's problem, not the job's
            queue.release(job.id, str(as_output_error(e, out)))
            raise as_output_error(e, out) from e

    def on_end(job: Any, state: str) -> None:
        line, t0 = lines.pop(job.id)
        dt = time.perf_counter() - t0
        final = queue.get(job.id)
        events.write(event=state, job=job.id, folder=(final.final_dir if final else None))
        if state == "done":
            durations.append(dt)
            left = len(queue.list(states=("queued",)))
            eta = f", ~{fmt_seconds(left * sum(durations) / len(durations))} left" if left else ""
            line.end(f"done in {dt:.1f} s -> {final.final_dir if final else '?'}{eta}")
        else:
            line.end(f"{state}: {final.error if final else ''}")

    with _Interrupt(worker):
        worker.run(stop_when_empty=True, on_start=on_start, on_end=on_end)
    if worker.stopping:
        _err(f"stopped; re-run the same command to resume ({len(queue.list(states=('queued',)))} job(s) queued)")
    return _finish(queue, plan)


def _finish(queue: Any, plan: BatchPlan) -> int:
    jobs = queue.list(batch_id=plan.batch_id)
    failed = [j for j in jobs if j.state in ("failed", "cancelled")]
    done = [j for j in jobs if j.state == "done"]
    print(f"batch {plan.definition.name!r}: {len(done)}/{len(jobs)} done", file=sys.stderr)
    for j in failed:
        _err(f"job {j.id} ({j.label}) {j.state}: {j.error}")
    for j in done:
        print(j.outputs.get("mp4") or j.outputs.get("wav") or j.final_dir)
    return 1 if failed or len(done) < len(jobs) else 0


def _is_tiny_folder(weights: Any) -> bool:
    try:
        from nava_core.weights.layouts import inspect_weights

        return bool(getattr(inspect_weights(Path(str(weights))), "is_tiny", False))
    except Exception:  # noqa: BLE001 - only picks the estimate's rates
        return False


__all__ = [
    "BatchPlan",
    "plan_batch",
    "flag_overrides",
    "make_render_fn",
    "run_batch_cli",
    "EventLog",
    "QUEUE_FILE",
    "EVENT_LOG",
]
