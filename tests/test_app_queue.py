"""The one worker (nava_core.jobs.Worker): one job at a time in order, positions for the waiting, cancel at
the next step, a failure stored as its message, resume on restart, a killed render rendered once more."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from nava_core.jobs import JobQueue, RenderFailed, Worker
from nava_core.progress import ProgressEvent, RenderCancelled
from nava_core.request import RenderRequest


def _stepping(steps: int, step_s: float, gate: threading.Event | None = None):
    """A render function following the pipeline contract: checks the cancel token before each step."""
    ran: list[int] = []

    def render(request, out_dir, progress, cancel):
        ran.append(request.seed)
        if gate is not None:
            gate.wait(10)
        for i in range(steps):
            cancel.raise_if_cancelled()
            progress(ProgressEvent("denoising", i + 1, steps))
            time.sleep(step_s)
        mp4 = out_dir / f"{request.seed}.mp4"
        mp4.write_bytes(b"mp4")
        return {"mp4": str(mp4)}

    return render, ran


def _req(seed: int = 1) -> RenderRequest:
    return RenderRequest(prompt="a cat", seed=seed)


def _worker(tmp_path, render, start=True) -> Worker:
    w = Worker(JobQueue(tmp_path / "jobs.sqlite"), render, tmp_path / "outputs", poll_s=0.05)
    if start:
        w.start()
    return w


def _until(cond, timeout=10.0):
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "timed out"
        time.sleep(0.01)


def test_two_renders_run_one_at_a_time_with_positions(tmp_path):
    gate = threading.Event()
    render, ran = _stepping(3, 0.01, gate)
    w = _worker(tmp_path, render)
    try:
        a, b = w.queue.enqueue(_req(1)), w.queue.enqueue(_req(2))
        _until(lambda: w.current == a)
        assert w.queue.get(b).state == "queued" and w.queue.position(b) == 1
        gate.set()
        assert w.wait(b, 10).state == "done"
        ja, jb = w.queue.get(a), w.queue.get(b)
        assert ja.finished_at <= jb.started_at and ran == [1, 2]
        folder = Path(jb.final_dir)
        assert jb.outputs["mp4"] == str(folder / "2.mp4") and Path(jb.outputs["mp4"]).read_bytes() == b"mp4"
        assert folder.parent.parent == tmp_path / "outputs" and ".incoming" not in jb.outputs["mp4"]
    finally:
        w.stop()


def test_cancel_running_stops_at_next_step_and_queued_is_dropped(tmp_path):
    render, ran = _stepping(1000, 0.01)
    w = _worker(tmp_path, render)
    try:
        a, b = w.queue.enqueue(_req(1)), w.queue.enqueue(_req(2))
        _until(lambda: w.event is not None and w.event.step >= 3)
        assert w.cancel(a) and w.cancel(b)
        assert w.wait(a, 5).state == "cancelled" and w.wait(b, 5).state == "cancelled"
        assert w.queue.get(b).started_at is None and ran == [1]  # b never touched the GPU
        assert not list((tmp_path / "outputs").rglob("*.mp4"))  # a cancelled render leaves no file
    finally:
        w.stop()


def test_failure_is_stored_as_its_message_and_the_worker_continues(tmp_path):
    def render(request, out_dir, progress, cancel):
        if request.seed == 1:
            raise RenderFailed("The GPU ran out of memory. What to do: pick the 'fp8' memory profile")
        if request.seed == 2:
            raise RenderCancelled("x")
        (out_dir / "x.wav").write_bytes(b"wav")
        return {"wav": str(out_dir / "x.wav")}

    w = _worker(tmp_path, render)
    try:
        a, b, c = (w.queue.enqueue(_req(s)) for s in (1, 2, 3))
        ja = w.wait(a, 5)
        assert ja.state == "failed" and ja.error.startswith("The GPU ran out of memory")  # no class name
        assert w.wait(b, 5).state == "cancelled"
        assert w.wait(c, 5).state == "done"
    finally:
        w.stop()


def test_queued_renders_survive_a_restart_and_resume_in_order(tmp_path):
    render, _ = _stepping(1000, 0.01)
    w = _worker(tmp_path, render)
    a, b, c = (w.queue.enqueue(_req(s)) for s in (1, 2, 3))
    _until(lambda: w.current == a)
    assert w.queue.position(c) == 2
    w.stop()  # the running render is stopped and put back in line, nothing is lost
    assert [w.queue.get(i).state for i in (a, b, c)] == ["queued"] * 3
    w.queue.close()

    render2, ran2 = _stepping(2, 0.0)
    w2 = _worker(tmp_path, render2)
    try:
        assert w2.wait(c, 10).state == "done"
        assert ran2 == [1, 2, 3] and all(w2.queue.get(i).state == "done" for i in (a, b))
    finally:
        w2.stop()


def test_a_render_killed_mid_way_is_requeued_and_rendered_once(tmp_path):
    """A worker that died while running leaves a 'running' row: the next start renders it again, once."""
    db = JobQueue(tmp_path / "jobs.sqlite")
    qid = db.enqueue(_req(5))
    db.claim()
    db._conn.execute("UPDATE jobs SET worker_id = ?, worker_pid = 999999999 WHERE id = ?",
                     (f"{socket.gethostname()}:999999999", qid))  # a dead worker on this host
    db.close()
    render, ran = _stepping(1, 0.0)
    w = _worker(tmp_path, render)
    try:
        assert w.wait(qid, 10).state == "done"
        assert ran == [5] and w.queue.get(qid).attempts == 2
    finally:
        w.stop()
