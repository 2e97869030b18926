"""Render queue: one job at a time, positions for the waiting, cancel at the next step."""

from __future__ import annotations

import threading
import time

from nava_core.progress import ProgressEvent, RenderCancelled
from nava_core.request import RenderRequest

from app.render_queue import RenderQueue


def _stepping_runner(steps: int, step_s: float, gate: threading.Event | None = None):
    """Follows the pipeline contract: reports each step and checks the cancel token before it."""
    running = []

    def run(job, progress):
        running.append(job.id)
        if gate is not None:
            gate.wait(10)
        for i in range(steps):
            job.cancel.raise_if_cancelled()
            progress(ProgressEvent("denoising", i + 1, steps))
            time.sleep(step_s)
        return {"outputs": {"mp4": f"/out/{job.id}.mp4"}, "timings": {"steps": steps}}

    return run, running


def _req(seed: int = 1) -> RenderRequest:
    return RenderRequest(prompt="a cat", seed=seed)


def test_two_renders_run_one_at_a_time_with_positions():
    gate = threading.Event()
    runner, running = _stepping_runner(3, 0.01, gate)
    changes = []
    q = RenderQueue(runner, on_change=lambda j: changes.append((j.id, j.status)))
    try:
        a = q.submit(_req(1))
        b = q.submit(_req(2))
        deadline = time.time() + 5
        while a.status != "running" and time.time() < deadline:
            time.sleep(0.01)
        assert a.status == "running" and b.status == "queued"
        assert q.jobs_ahead(b.id) == 1  # shown to the user as position 2
        gate.set()
        assert q.wait(b.id, 10).status == "done"
        assert a.status == "done" and a.finished <= b.started
        assert running == [a.id, b.id]
        assert b.outputs == {"mp4": f"/out/{b.id}.mp4"}
        assert (a.id, "running") in changes and (b.id, "done") in changes
    finally:
        q.shutdown()


def test_cancel_running_stops_at_next_step_and_queued_is_dropped():
    runner, running = _stepping_runner(1000, 0.01)
    q = RenderQueue(runner)
    try:
        a = q.submit(_req(1), owner="me")
        b = q.submit(_req(2), owner="me")
        c = q.submit(_req(3), owner="other")
        while not (a.event and a.event.step >= 3):
            time.sleep(0.01)
        assert q.cancel_owner("me") == 2
        assert q.wait(a.id, 5).status == "cancelled"
        assert a.event.step < 1000  # stopped early, at a step boundary
        assert b.status == "cancelled" and b.started is None  # never touched the GPU
        q.cancel(c.id)
        assert q.wait(c.id, 5).status == "cancelled"
        assert b.id not in running
    finally:
        q.shutdown()


def test_failure_becomes_a_message_and_queue_continues():
    def runner(job, progress):
        if job.request.seed == 1:
            raise MemoryError("CUDA out of memory")
        return {"outputs": {"wav": "/x.wav"}}

    q = RenderQueue(runner)
    try:
        a = q.submit(_req(1))
        b = q.submit(_req(2))
        assert q.wait(a.id, 5).status == "failed"
        assert "memory profile" in a.error  # says what to do
        assert q.wait(b.id, 5).status == "done"
    finally:
        q.shutdown()


def test_runner_raising_cancelled_marks_cancelled():
    def runner(job, progress):
        raise RenderCancelled("x")

    q = RenderQueue(runner)
    try:
        a = q.submit(_req())
        assert q.wait(a.id, 5).status == "cancelled"
    finally:
        q.shutdown()
