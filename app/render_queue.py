"""The studio's render queue: durable, one GPU job at a time, the others wait and can see their position.

Why durable: "nothing lost on restart". Every single render is a row in a `nava_core.jobs.JobQueue`
(SQLite, WAL) in the studio's data folder, written before the click returns, so a crash or a restart
resumes the queued renders in order; `run_one` renders into a temporary folder and renames it into
place before marking the job done, so a render is never half-written under its final name and a
finished render interrupted before its bookkeeping is adopted as done, not rendered again.

Gradio's own queue decides which *events* run; this queue decides which *render* owns the GPU, so a
browser click, an API call and a second tab all line up in one FIFO. The in-memory `RenderJob` next to
each row carries what cannot be stored: the live progress event, the CancelToken and the done event
the page waits on. A cancel of a running job stops it at the next denoising step (the pipeline checks
the token before each step); a cancel of a queued job drops it without touching the GPU.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nava_core.jobs import Job, JobQueue, run_one
from nava_core.progress import CancelToken, ProgressEvent
from nava_core.request import RenderRequest

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")
SINGLE_BATCH = "single"  # batch id of the studio's single renders in the queue file


@dataclass
class RenderJob:
    """One render as the page sees it; `id` is the history id, `qid` the queue row."""

    request: RenderRequest
    builder: dict[str, Any] | None = None
    owner: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    qid: int = 0
    status: str = "queued"  # queued | running | done | failed | cancelled
    event: ProgressEvent | None = None
    preview: Any = None  # the latest live preview (nava_core.preview.Preview) while it renders
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    done_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished_ok(self) -> bool:
        return self.status == "done"


# runner(job, out_dir, progress, cancel) -> {"outputs": {name: file inside out_dir}, "timings": {...}};
# it must raise RenderCancelled when `cancel` (or `job.cancel`) is set.
Runner = Callable[[RenderJob, Path, Callable[[ProgressEvent], None], CancelToken], dict[str, Any]]


class RenderQueue:
    """A JobQueue file of single renders served by one worker thread.

    `on_change(job)` is called on every state change (the history store listens to it). `explain`
    turns a runner's exception text into the message the page shows.
    """

    def __init__(self, db_path: str | Path, out_root: str | Path, runner: Runner,
                 on_change: Callable[[RenderJob], None] | None = None,
                 explain: Callable[[BaseException], str] | None = None, poll_s: float = 0.25,
                 start: bool = True) -> None:
        self._runner = runner
        self._on_change = on_change or (lambda job: None)
        self._explain = explain or (lambda e: f"{type(e).__name__}: {e}")
        self.out_root = Path(out_root)
        self.out_root.mkdir(parents=True, exist_ok=True)
        self.db = JobQueue(db_path)
        self._lock = threading.Condition()
        self._jobs: dict[str, RenderJob] = {}
        self._current: RenderJob | None = None
        self._stopped = False
        self._poll_s = poll_s
        self.recovered = self.db.recover(out_root=self.out_root)
        for row in self.db.list(batch_id=SINGLE_BATCH, states=("queued",)):
            self._jobs[row.label] = RenderJob(request=row.request, id=row.label, qid=row.id, created=row.created_at)
        self._thread = threading.Thread(target=self._work, name="nava-render-worker", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start the worker (separately, so a caller can reconcile its records with the file first)."""
        if not self._thread.is_alive():
            self._thread.start()

    # ---- public API --------------------------------------------------------------------------

    def submit(self, request: RenderRequest, builder: dict[str, Any] | None = None, owner: str = "",
               job_id: str | None = None) -> RenderJob:
        """Write the job to the queue file (durable from here on) and wake the worker."""
        job = RenderJob(request=request, builder=builder, owner=owner)
        if job_id:
            job.id = job_id
        with self._lock:
            if self._stopped:
                raise RuntimeError("the render queue is shut down")
            job.qid = self.db.enqueue(request, batch_id=SINGLE_BATCH, label=job.id)
            self._jobs[job.id] = job
            self._lock.notify_all()
        self._notify(job)
        return job

    def get(self, job_id: str) -> RenderJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def resumed(self) -> list[RenderJob]:
        """Jobs queued by a previous run of the studio that this one will render."""
        with self._lock:
            return [j for j in self._jobs.values() if j.status == "queued"]

    def jobs_ahead(self, job_id: str) -> int:
        """How many renders run before this one starts (the running one included)."""
        job = self.get(job_id)
        if job is None or job.status != "queued":
            return 0
        pos = self.db.position(job.qid)
        if not pos:
            return 0
        return pos - 1 + (1 if self._current is not None else 0)

    def cancel(self, job_id: str) -> bool:
        """Stop a job: a waiting one is dropped at once, a running one at its next denoising step."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in FINISHED:
                return False
            job.cancel.cancel()
            if job.status == "queued" and self.db.cancel(job.qid):
                if self.db.get(job.qid).state == "cancelled":
                    self._finish(job, "cancelled", error="cancelled before it started")
                return True
        log.info("cancel requested for running render %s", job_id)
        return True

    def cancel_owner(self, owner: str) -> int:
        """Cancel every unfinished job of one browser session (the Cancel button)."""
        with self._lock:
            ids = [j.id for j in self._jobs.values() if j.owner == owner and j.status not in FINISHED]
        return sum(self.cancel(i) for i in ids)

    def wait(self, job_id: str, timeout: float | None = None) -> RenderJob:
        job = self._jobs[job_id]
        job.done_event.wait(timeout)
        return job

    def snapshot(self) -> list[RenderJob]:
        """Unfinished jobs: the running one first, then the waiting ones in queue order."""
        with self._lock:
            waiting = sorted((j for j in self._jobs.values() if j.status == "queued"), key=lambda j: j.qid)
            return ([self._current] if self._current else []) + waiting

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the worker; queued jobs stay queued in the file (the next start resumes them)."""
        with self._lock:
            self._stopped = True
            if self._current:
                self._current.cancel.cancel()
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():  # a render that ignores its cancel token: leave the file to the process exit
            log.warning("the render worker did not stop within %.0f s", timeout)
            return
        self.db.close()

    # ---- worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                row = self.db.claim()
                if row is None:
                    self._lock.wait(self._poll_s)
                    continue
                job = self._jobs.get(row.label)
                if job is None:  # queued by another process sharing the file
                    job = RenderJob(request=row.request, id=row.label, qid=row.id)
                    self._jobs[job.id] = job
                self._current = job
                job.status, job.started = "running", time.time()
            self._notify(job)
            try:
                self._run(row, job)
            finally:
                with self._lock:
                    self._current = None

    def _run(self, row: Job, job: RenderJob) -> None:
        errors: list[BaseException] = []
        extra: dict[str, Any] = {}

        def render_fn(request: RenderRequest, tmp_dir: Path, progress: Any, cancel: CancelToken) -> dict[str, str]:
            try:
                result = self._runner(job, tmp_dir, progress, cancel)
            except Exception as e:
                errors.append(e)
                raise
            extra.update(result.get("timings", {}))
            return dict(result.get("outputs", {}))

        try:
            state = run_one(self.db, row, render_fn, self.out_root, self._progress_of(job), job.cancel)
        except Exception as e:  # noqa: BLE001 - e.g. the output folder cannot be created: fail this job only
            log.exception("render %s could not run", job.id)
            errors.append(e)
            self.db.mark_failed(row.id, f"{type(e).__name__}: {e}")
            state = "failed"
        done = self.db.get(row.id)
        with self._lock:
            if state == "done" and done is not None:
                job.outputs = dict(done.outputs)
                if done.final_dir:
                    job.outputs["folder"] = done.final_dir
                job.timings = {**extra, **{k: float(v) for k, v in done.timings.items()
                                           if isinstance(v, (int, float))}}
                self._finish(job, "done")
            elif state == "cancelled":
                self._finish(job, "cancelled", error="cancelled; nothing was written")
            else:
                err = errors[0] if errors else RuntimeError((done.error if done else "") or "the render failed")
                self._finish(job, "failed", error=self._explain(err))

    @staticmethod
    def _progress_of(job: RenderJob) -> Callable[[ProgressEvent], None]:
        def progress(ev: ProgressEvent) -> None:
            job.event = ev
            if ev.preview is not None:
                job.preview = ev.preview
        return progress

    def _finish(self, job: RenderJob, status: str, error: str = "") -> None:
        job.status = status
        job.error = error
        job.finished = time.time()
        if job.started:
            job.timings.setdefault("total_s", round(job.finished - job.started, 3))
        # history first, then wake the waiters: a waiter that reads the history sees the final row
        self._notify(job)
        job.done_event.set()

    def _notify(self, job: RenderJob) -> None:
        try:
            self._on_change(job)
        except Exception:  # noqa: BLE001 - a history write failure must not kill the worker
            log.exception("history update for render %s failed", job.id)
