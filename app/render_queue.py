"""The studio's render queue: one GPU job at a time, the others wait and can see their position.

Gradio's own queue decides which *events* run; this queue decides which *render* owns the GPU, so a
browser click, an API call and a second tab all line up in one FIFO. Each job carries a CancelToken
the pipeline checks before every denoising step, so cancel stops at the next step. A cancel of a job
that has not started yet removes it without touching the GPU.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from nava_core.progress import CancelToken, ProgressEvent, RenderCancelled
from nava_core.request import RenderRequest

from app.errors import explain

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")


@dataclass
class RenderJob:
    request: RenderRequest
    builder: dict[str, Any] | None = None
    owner: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = "queued"  # queued | running | done | failed | cancelled
    event: ProgressEvent | None = None
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


Runner = Callable[[RenderJob, Callable[[ProgressEvent], None]], dict[str, Any]]


class RenderQueue:
    """FIFO of RenderJobs served by one worker thread.

    `runner(job, progress)` does the work and returns {"outputs": {...}, "timings": {...}}; it must
    raise RenderCancelled when `job.cancel` is set. `on_change(job)` is called on every state change
    (the history store listens to it).
    """

    def __init__(self, runner: Runner, on_change: Callable[[RenderJob], None] | None = None) -> None:
        self._runner = runner
        self._on_change = on_change or (lambda job: None)
        self._lock = threading.Condition()
        self._waiting: deque[RenderJob] = deque()
        self._jobs: dict[str, RenderJob] = {}
        self._current: RenderJob | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="nava-render-worker", daemon=True)
        self._thread.start()

    # ---- public API --------------------------------------------------------------------------

    def submit(self, request: RenderRequest, builder: dict[str, Any] | None = None, owner: str = "",
               job_id: str | None = None) -> RenderJob:
        job = RenderJob(request=request, builder=builder, owner=owner)
        if job_id:
            job.id = job_id
        with self._lock:
            if self._stopped:
                raise RuntimeError("the render queue is shut down")
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._lock.notify_all()
        self._notify(job)
        return job

    def get(self, job_id: str) -> RenderJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs_ahead(self, job_id: str) -> int:
        """How many renders run before this one starts (the running one included)."""
        with self._lock:
            for i, j in enumerate(self._waiting):
                if j.id == job_id:
                    return i + (1 if self._current is not None else 0)
            return 0

    def cancel(self, job_id: str) -> bool:
        """Stop a job: a waiting one is dropped at once, a running one at its next denoising step."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in FINISHED:
                return False
            job.cancel.cancel()
            if job.status == "queued":
                self._waiting.remove(job)
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
        with self._lock:
            return ([self._current] if self._current else []) + list(self._waiting)

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            for job in list(self._waiting):
                job.cancel.cancel()
            if self._current:
                self._current.cancel.cancel()
            self._lock.notify_all()
        self._thread.join(timeout)

    # ---- worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopped:
                    self._lock.wait()
                if self._stopped:
                    for job in list(self._waiting):
                        self._finish(job, "cancelled", error="the studio is shutting down")
                    self._waiting.clear()
                    return
                job = self._waiting.popleft()
                self._current = job
                job.status = "running"
                job.started = time.time()
            self._notify(job)
            try:
                result = self._runner(job, lambda ev, j=job: self._progress(j, ev))
            except RenderCancelled:
                with self._lock:
                    self._finish(job, "cancelled", error="cancelled; nothing was written")
            except Exception as e:  # noqa: BLE001 - every failure must reach the user as a message
                log.exception("render %s failed", job.id)
                with self._lock:
                    self._finish(job, "failed", error=explain(e))
            else:
                with self._lock:
                    job.outputs = dict(result.get("outputs", {}))
                    job.timings = dict(result.get("timings", {}))
                    self._finish(job, "done")
            finally:
                with self._lock:
                    self._current = None

    def _progress(self, job: RenderJob, event: ProgressEvent) -> None:
        job.event = event

    def _finish(self, job: RenderJob, status: str, error: str = "") -> None:
        job.status = status
        job.error = error
        job.finished = time.time()
        if job.started:
            job.timings.setdefault("total_s", round(job.finished - job.started, 3))
        job.done_event.set()
        # called with the lock held; notify outside would race with waiters reading outputs
        self._notify(job)

    def _notify(self, job: RenderJob) -> None:
        try:
            self._on_change(job)
        except Exception:  # noqa: BLE001 - a history write failure must not kill the worker
            log.exception("history update for render %s failed", job.id)
