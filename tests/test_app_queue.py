"""Render queue: durable, one job at a time, positions for the waiting, cancel at the next step, resume on restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from nava_core.progress import ProgressEvent, RenderCancelled
from nava_core.request import RenderRequest

from app.errors import explain
from app.render_queue import RenderQueue


def _queue(tmp_path, runner, **kw) -> RenderQueue:
    return RenderQueue(tmp_path / "queue.sqlite", tmp_path / "outputs", runner, **kw)


def _stepping_runner(steps: int, step_s: float, gate: threading.Event | None = None):
    """Follows the pipeline contract: reports each step and checks the cancel token before it."""
    running = []

    def run(job, out_dir, progress, cancel):
        running.append(job.id)
        if gate is not None:
            gate.wait(10)
        for i in range(steps):
            cancel.raise_if_cancelled()
            progress(ProgressEvent("denoising", i + 1, steps))
            time.sleep(step_s)
        mp4 = out_dir / f"{job.id}.mp4"
        mp4.write_bytes(b"mp4")
        return {"outputs": {"mp4": str(mp4)}, "timings": {"steps": steps}}

    return run, running


def _req(seed: int = 1) -> RenderRequest:
    return RenderRequest(prompt="a cat", seed=seed)


def test_two_renders_run_one_at_a_time_with_positions(tmp_path):
    gate = threading.Event()
    runner, running = _stepping_runner(3, 0.01, gate)
    changes = []
    q = _queue(tmp_path, runner, on_change=lambda j: changes.append((j.id, j.status)))
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
        # outputs end in their own final folder under the outputs root, never in the temporary one
        folder = Path(b.outputs["folder"])
        assert b.outputs["mp4"] == str(folder / f"{b.id}.mp4") and Path(b.outputs["mp4"]).read_bytes() == b"mp4"
        assert folder.parent.parent == tmp_path / "outputs" and ".incoming" not in b.outputs["mp4"]
        assert (a.id, "running") in changes and (b.id, "done") in changes
    finally:
        q.shutdown()


def test_cancel_running_stops_at_next_step_and_queued_is_dropped(tmp_path):
    runner, running = _stepping_runner(1000, 0.01)
    q = _queue(tmp_path, runner)
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
        assert [j.state for j in q.db.list()] == ["cancelled"] * 3  # the queue file agrees
        assert not list((tmp_path / "outputs").rglob("*.mp4"))  # a cancelled render leaves no file
    finally:
        q.shutdown()


def test_failure_becomes_a_message_and_queue_continues(tmp_path):
    def runner(job, out_dir, progress, cancel):
        if job.request.seed == 1:
            raise MemoryError("CUDA out of memory")
        (out_dir / "x.wav").write_bytes(b"wav")
        return {"outputs": {"wav": str(out_dir / "x.wav")}}

    q = _queue(tmp_path, runner, explain=explain)
    try:
        a = q.submit(_req(1))
        b = q.submit(_req(2))
        assert q.wait(a.id, 5).status == "failed"
        assert "memory profile" in a.error  # says what to do
        assert q.wait(b.id, 5).status == "done"
    finally:
        q.shutdown()


def test_runner_raising_cancelled_marks_cancelled(tmp_path):
    def runner(job, out_dir, progress, cancel):
        raise RenderCancelled("x")

    q = _queue(tmp_path, runner)
    try:
        a = q.submit(_req())
        assert q.wait(a.id, 5).status == "cancelled"
    finally:
        q.shutdown()


def test_queued_renders_survive_a_restart_and_resume_in_order(tmp_path):
    """Nothing lost on restart: jobs waiting when the studio stopped render after the next start."""
    runner, running = _stepping_runner(1000, 0.01)
    q = _queue(tmp_path, runner)
    a = q.submit(_req(1))
    b = q.submit(_req(2))
    c = q.submit(_req(3))
    deadline = time.time() + 5
    while a.status != "running" and time.time() < deadline:
        time.sleep(0.01)
    assert q.jobs_ahead(c.id) == 2
    q.shutdown()  # the running one is stopped; b and c stay queued in the file
    assert a.status == "cancelled" and b.status == "queued" and c.status == "queued"

    runner2, running2 = _stepping_runner(2, 0.0)
    q2 = _queue(tmp_path, runner2, start=False)
    try:
        assert [j.id for j in q2.resumed()] == [b.id, c.id]
        assert q2.jobs_ahead(c.id) == 1
        q2.start()
        assert q2.wait(c.id, 10).status == "done" and q2.get(b.id).status == "done"
        assert running2 == [b.id, c.id]
        assert Path(q2.get(c.id).outputs["mp4"]).is_file()
    finally:
        q2.shutdown()


def test_a_render_killed_mid_way_is_requeued_and_rendered_once(tmp_path):
    """A worker that died while running leaves a 'running' row: the next start renders it again."""
    from nava_core.jobs import JobQueue

    db = JobQueue(tmp_path / "queue.sqlite")
    qid = db.enqueue(_req(5), batch_id="single", label="abc123")
    db.claim(worker_id="elsewhere:999999999")  # a dead worker on this host claimed it
    db._conn.execute("UPDATE jobs SET worker_id = ?, worker_pid = 999999999 WHERE id = ?",
                     (f"{__import__('socket').gethostname()}:999999999", qid))
    db.close()
    runner, running = _stepping_runner(1, 0.0)
    q = _queue(tmp_path, runner)
    try:
        assert q.wait("abc123", 10).status == "done"
        assert running == ["abc123"] and q.db.get(qid).attempts == 2
    finally:
        q.shutdown()
