"""The durable job queue: state machine, atomic claims, crash recovery with real killed processes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the module doubles as the worker script run in a subprocess
    sys.path.insert(0, str(REPO))

from nava_core.jobs import (  # noqa: E402
    INCOMING_DIR,
    MANIFEST_NAME,
    JobQueue,
    _write_manifest,
    job_dirs,
    run_queue,
)
from nava_core.progress import CancelToken  # noqa: E402
from nava_core.request import RenderRequest  # noqa: E402

CHUNKS = 10
CHUNK_BYTES = 4096


def expected_bytes(request: RenderRequest) -> bytes:
    """What a complete output of `slow_render` holds: a hash chain seeded by the request."""
    out, h = bytearray(), hashlib.sha256(request.to_json(indent=None).encode()).digest()
    for _ in range(CHUNKS):
        for _ in range(CHUNK_BYTES // 32):
            h = hashlib.sha256(h).digest()
            out += h
    return bytes(out)


def _log(log_path: Path, line: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def make_slow_render(log_path: Path, chunk_sleep: float = 0.025):
    """A small deterministic file-producing render: ~CHUNKS*chunk_sleep seconds, writes as it goes."""

    def render(request: RenderRequest, tmp_dir: Path, progress, cancel: CancelToken) -> dict[str, Path]:
        _log(log_path, f"start {request.title} {os.getpid()}")
        data = expected_bytes(request)
        out = tmp_dir / "render.bin"
        with open(out, "wb") as f:
            for i in range(CHUNKS):
                cancel.raise_if_cancelled()
                f.write(data[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES])
                f.flush()
                time.sleep(chunk_sleep)
        (tmp_dir / "request.json").write_text(request.to_json())
        _log(log_path, f"end {request.title} {os.getpid()}")
        return {"bin": out, "request": tmp_dir / "request.json"}

    return render


def _requests(n: int) -> list[RenderRequest]:
    return [RenderRequest(prompt=f"a lighthouse in the rain, take {i}", seed=i, title=f"job{i:02d}") for i in range(n)]


# ---- crash safety with a real process ------------------------------------------------------


def _start_worker(db: Path, out: Path, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, __file__, "worker", str(db), str(out), str(log_path)], env=env, cwd=REPO)


def test_sigkilled_worker_loses_nothing_and_renders_nothing_twice(tmp_path: Path) -> None:
    db, out, log_path = tmp_path / "queue.db", tmp_path / "out", tmp_path / "render.log"
    q = JobQueue(db)
    reqs = _requests(12)
    ids = q.enqueue_many(reqs, batch_id="night-sweep", labels=[f"seed={r.seed}" for r in reqs])
    rng = random.Random(1234)
    kills = 0
    for _ in range(2):
        proc = _start_worker(db, out, log_path)
        # wait until it has started a render, then kill at a random point within the next renders
        deadline = time.monotonic() + 30
        while (not log_path.exists() or "start" not in log_path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.1, 1.2))
        assert proc.poll() is None, "worker finished before it could be killed; slow the render down"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        assert q.counts()["running"] <= 1  # the dead worker's job is still marked running
    proc = _start_worker(db, out, log_path)
    assert proc.wait(timeout=120) == 0

    assert kills == 2
    counts = q.counts()
    assert counts == {"queued": 0, "running": 0, "done": 12, "failed": 0, "cancelled": 0}

    events = [line.split() for line in log_path.read_text().splitlines()]
    starts = Counter(e[1] for e in events if e[0] == "start")
    ends = Counter(e[1] for e in events if e[0] == "end")
    titles = {r.title for r in reqs}
    # every job rendered; a render can only repeat when a kill landed after it ended but before its
    # job was finalised (manifest + "done"), so repeats are bounded by the kills and the finished
    # folders below show no job was finalised twice
    assert set(ends) == titles, ends
    assert sum(ends.values()) - 12 <= kills, ends
    assert sum(starts.values()) - 12 <= 2  # at most one interrupted render per kill
    assert sum(starts.values()) >= 12

    batch_dir = out / "night-sweep"
    folders = sorted(p for p in batch_dir.iterdir())
    assert len(folders) == 12
    by_id = {j.id: j for j in q.list()}
    for jid, req in zip(ids, reqs):
        job = by_id[jid]
        folder = Path(job.outputs["bin"]).parent
        assert folder.parent == batch_dir and folder.name.startswith(f"{jid}-seed-")
        assert sorted(p.name for p in folder.iterdir()) == sorted(["render.bin", "request.json", MANIFEST_NAME])
        assert Path(job.outputs["bin"]).read_bytes() == expected_bytes(req)  # complete, the right content
        assert RenderRequest.from_json(Path(job.outputs["request"]).read_text()) == req
        assert json.loads((folder / MANIFEST_NAME).read_text())["job_id"] == jid
    assert {Path(j.outputs["bin"]).parent for j in by_id.values()} == set(folders)
    leftovers = list((out / INCOMING_DIR).rglob("*")) if (out / INCOMING_DIR).exists() else []
    assert leftovers == []
    assert not list(out.rglob("*.part"))


# ---- the queue's state machine -------------------------------------------------------------


def test_enqueue_claim_position_counts(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    a, b, c = q.enqueue_many(_requests(3), batch_id="b")
    d = q.enqueue(RenderRequest(prompt="solo"), label="single one")
    assert [q.position(x) for x in (a, b, c, d)] == [1, 2, 3, 4]
    job = q.claim("w1")
    assert job.id == a and job.state == "running" and job.attempts == 1 and job.worker_pid == os.getpid()
    assert job.request == _requests(3)[0]
    assert q.position(a) == 0 and q.position(b) == 1
    assert q.counts() == {"queued": 3, "running": 1, "done": 0, "failed": 0, "cancelled": 0}
    assert q.counts(batch_id="b")["queued"] == 2
    assert q.mark_done(a, {"mp4": "/x.mp4"}, {"render_s": 1.5})
    assert not q.mark_done(a, {"mp4": "/y.mp4"}, {})  # a done job is never changed again
    assert q.get(a).outputs == {"mp4": "/x.mp4"} and q.get(a).timings == {"render_s": 1.5}
    assert q.position(a) is None
    assert [j.id for j in q.list(batch_id="b", states=["queued"])] == [b, c]
    assert q.get(d).label == "single one" and q.get(d).batch_id is None


def test_enqueue_many_is_all_or_nothing(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    good = RenderRequest(prompt="ok").to_dict()
    bad = dict(good, steps=-3)
    try:
        q.enqueue_many([good, good, bad])
    except ValueError as e:
        assert "steps" in str(e)
    else:
        raise AssertionError("an invalid request was queued")
    assert sum(q.counts().values()) == 0


def test_claims_are_exclusive_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    q = JobQueue(db)
    q.enqueue_many(_requests(60))
    code = (
        "import sys, json; from nava_core.jobs import JobQueue\n"
        "q = JobQueue(sys.argv[1]); got = []\n"
        "while (j := q.claim()) is not None: got.append(j.id)\n"
        "print(json.dumps(got))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, env=env, cwd=REPO)
        for _ in range(3)
    ]
    got = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    flat = [i for g in got for i in g]
    assert sorted(flat) == list(range(1, 61))  # every job exactly once
    assert q.counts()["running"] == 60


def test_failure_retry_limit_and_recover(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    jid = q.enqueue(RenderRequest(prompt="flaky"))
    for attempt in (1, 2):
        assert q.claim().attempts == attempt
        assert q.mark_failed(jid, "CUDA out of memory", retry=True, max_attempts=3) == "queued"
    q.claim()
    assert q.mark_failed(jid, "CUDA out of memory", retry=True, max_attempts=3) == "failed"
    assert q.get(jid).error == "CUDA out of memory"
    assert q.requeue(jid) and q.get(jid).state == "queued"

    # a running job of a live worker is left alone; all_running (process start) takes it back
    q.claim()
    assert q.recover().changed == 0
    rep = q.recover(max_attempts=1, all_running=True)
    assert rep.failed == [jid] and "retry limit" in q.get(jid).error


def test_recover_requeues_dead_workers_job_and_cleans_temp(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    jid = q.enqueue(RenderRequest(prompt="x"))
    q.enqueue(RenderRequest(prompt="y"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = q.claim()
    tmp, _ = job_dirs(tmp_path / "out", job)
    q.set_paths(jid, tmp_dir=str(tmp))
    tmp.mkdir(parents=True)
    (tmp / "half.bin").write_bytes(b"partial")
    q._conn.execute("UPDATE jobs SET worker_pid = ? WHERE id = ?", (dead.pid, jid))  # the worker that died
    orphan = tmp_path / "out" / INCOMING_DIR / "single" / "999-orphan"
    orphan.mkdir(parents=True)
    live = q.claim()  # a job this (live) process is rendering right now: its folder must survive
    live_tmp, _ = job_dirs(tmp_path / "out", live)
    q.set_paths(live.id, tmp_dir=str(live_tmp))
    live_tmp.mkdir(parents=True)
    rep = q.recover(out_root=tmp_path / "out")
    assert rep.requeued == [jid]
    assert not tmp.exists() and not orphan.exists() and live_tmp.is_dir()
    assert q.get(jid).state == "queued" and q.get(jid).tmp_dir is None


def test_recover_adopts_a_finished_render_instead_of_rerendering(tmp_path: Path) -> None:
    """A kill after the render finished but before `mark_done` must not cost a re-render."""
    q = JobQueue(tmp_path / "q.db")
    jid = q.enqueue(RenderRequest(prompt="x"), batch_id="b", label="seed=1")
    job = q.claim()
    tmp, parent = job_dirs(tmp_path / "out", job)
    q.set_paths(jid, tmp_dir=str(tmp))
    tmp.mkdir(parents=True)
    (tmp / "a.wav").write_bytes(b"RIFF")
    _write_manifest(tmp, job, {"wav": "a.wav"}, {"render_s": 2.0})
    rep = q.recover(all_running=True)
    assert rep.adopted == [jid]
    done = q.get(jid)
    assert done.state == "done" and Path(done.outputs["wav"]).read_bytes() == b"RIFF"
    assert Path(done.outputs["wav"]).parent.parent == parent and not tmp.exists()


def test_run_queue_failure_cancel_and_never_overwrite(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    out = tmp_path / "out"
    ok = q.enqueue(RenderRequest(prompt="fine", title="Same Title"))
    boom = q.enqueue(RenderRequest(prompt="explode"))
    (out / "single" / f"{ok}-same-title").mkdir(parents=True)  # a folder already holds that name
    (out / "single" / f"{ok}-same-title" / "keep.txt").write_text("user file")

    def render(request, tmp_dir, progress, cancel):
        if request.prompt == "explode":
            (tmp_dir / "partial.bin").write_bytes(b"xx")
            raise RuntimeError("decoder exploded")
        (tmp_dir / "o.txt").write_text(request.prompt)
        return {"txt": tmp_dir / "o.txt"}

    summary = run_queue(q, render, out)
    assert summary.done == [ok] and summary.failed == [boom]
    assert "decoder exploded" in q.get(boom).error
    assert (out / "single" / f"{ok}-same-title" / "keep.txt").read_text() == "user file"
    assert Path(q.get(ok).outputs["txt"]).parent.name == f"{ok}-same-title-2"
    assert sorted(p.name for p in (out / "single").iterdir()) == [f"{ok}-same-title", f"{ok}-same-title-2"]
    assert not (out / INCOMING_DIR).exists()


def test_cancel_a_running_job_through_the_queue(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    out = tmp_path / "out"
    jid = q.enqueue(RenderRequest(prompt="long"))
    later = q.enqueue(RenderRequest(prompt="later"))
    assert q.cancel(later) and q.get(later).state == "cancelled"
    started = threading.Event()

    def render(request, tmp_dir, progress, cancel):
        started.set()
        for _ in range(400):
            cancel.raise_if_cancelled()
            time.sleep(0.01)
        raise AssertionError("cancel was not delivered")

    t = threading.Thread(target=lambda: run_queue(q, render, out, poll_s=0.05))
    t.start()
    assert started.wait(10)
    assert q.cancel(jid)
    t.join(10)
    assert q.get(jid).state == "cancelled" and not q.cancel(jid)
    assert not (out / INCOMING_DIR).exists() and not (out / "single").exists()


def test_runner_cancel_token_stops_runner(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    q.enqueue_many(_requests(3))
    token = CancelToken()

    def render(request, tmp_dir, progress, cancel):
        token.cancel()  # the user presses "stop" during the first render
        time.sleep(0.3)
        cancel.raise_if_cancelled()
        raise AssertionError("not cancelled")

    summary = run_queue(q, render, tmp_path / "out", cancel=token)
    assert summary.cancelled == [1] and q.counts()["queued"] == 2


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
    _db, _out, _log_path = (Path(a) for a in sys.argv[2:5])
    run_queue(JobQueue(_db), make_slow_render(_log_path), _out)
