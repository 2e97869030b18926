"""Queue overhead per job relative to a render, and recovery time for 1,000 jobs after a kill.

Run: `python bench/queue.py`. Prints ratios; not a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this file is named queue.py: keep its folder off sys.path so `import queue` finds the stdlib
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import os
import subprocess
import tempfile
import time

import numpy as np

sys.path.insert(0, str(_HERE.parent))

from nava_core.jobs import JobQueue, run_queue  # noqa: E402
from nava_core.request import RenderRequest  # noqa: E402


def tiny_render_fn():
    """The real tiny NAVA render if the pipeline is there, else a measured synthetic workload."""
    try:
        from nava_core.pipeline import NAVAPipeline
        from nava_core.render import render_to_files

        pipe = NAVAPipeline.from_pretrained("tiny")

        def render(request, tmp_dir, progress, cancel):
            out = render_to_files(pipe, request.replace(width=160, height=96, seconds=1.0, steps=4), tmp_dir,
                                  progress, cancel)
            return {k: v for k, v in vars(out).items() if isinstance(v, (str, os.PathLike))}

        render(RenderRequest(prompt="warm-up"), Path(tempfile.mkdtemp()), None, None)
        return render, "tiny NAVA render (160x96, 1 s, 4 steps)"
    except Exception as e:  # noqa: BLE001 - the pipeline is being written in parallel
        reason = f"{type(e).__name__}: {e}"[:120]

    rng = np.random.default_rng(0)
    a = rng.standard_normal((192, 192)).astype(np.float32) / 14

    def render(request, tmp_dir, progress, cancel):
        x = a
        for _ in range(150):  # tens of ms of matmuls, then a ~0.6 MB output file
            x = np.tanh(x @ a)
        out = Path(tmp_dir) / "out.npy"
        np.save(out, np.repeat(x, 4, axis=0))
        return {"npy": out}

    return render, f"SYNTHETIC workload (numpy matmuls + 1 MB file); tiny pipeline unavailable ({reason})"


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="nava-queue-bench-"))
    render, what = tiny_render_fn()
    n = 8 if what.startswith("tiny NAVA") else 40
    reqs = [RenderRequest(prompt=f"bench {i}", seed=i) for i in range(n)]

    # render alone, no queue
    t = time.perf_counter()
    for i, r in enumerate(reqs):
        d = root / "bare" / str(i)
        d.mkdir(parents=True)
        render(r, d, None, None)
    bare = (time.perf_counter() - t) / n

    # queue bookkeeping alone: enqueue + claim + paths + done
    q = JobQueue(root / "ops.db")
    m = 500
    t = time.perf_counter()
    for i in range(m):
        jid = q.enqueue(reqs[i % n], batch_id="b", label=f"seed={i}")
        job = q.claim()
        q.set_paths(job.id, tmp_dir=f"/tmp/x{jid}")
        q.set_paths(job.id, final_dir=f"/tmp/y{jid}")
        q.mark_done(job.id, {"mp4": f"/tmp/y{jid}/a.mp4"}, {"render_s": 1.0})
    ops = (time.perf_counter() - t) / m

    # the whole runner: temp folder, manifest + fsyncs, rename, DB
    q2 = JobQueue(root / "run.db")
    q2.enqueue_many(reqs, batch_id="b")
    t = time.perf_counter()
    run_queue(q2, render, root / "out")
    full = (time.perf_counter() - t) / n

    print(f"stand-in render: {what}")
    print(f"  render alone            {bare * 1000:8.2f} ms/job")
    print(f"  queue DB ops only       {ops * 1000:8.2f} ms/job  ({ops / bare:.2%} of the stand-in render)")
    per = [j.timings["total_s"] - j.timings["render_s"] for j in q2.list()]
    over = sum(per) / len(per)
    print(f"  run_queue per job       {full * 1000:8.2f} ms/job  (render timed inside the runner; wall varies run to run)")
    print(f"  runner overhead         {over * 1000:8.2f} ms/job  (manifest + fsyncs + rename + DB) = {over / bare:.2%} of "
          f"the stand-in render")

    # recovery after a kill: 1,000 queued, 50 of them left running by a dead worker with temp folders
    q3 = JobQueue(root / "rec.db")
    q3.enqueue_many([RenderRequest(prompt=f"r {i}", seed=i) for i in range(1000)], batch_id="big")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for _ in range(50):
        job = q3.claim()
        tmp = root / "recout" / ".incoming" / "big" / f"{job.id}-x"
        q3.set_paths(job.id, tmp_dir=str(tmp))
        tmp.mkdir(parents=True)
        (tmp / "half.bin").write_bytes(b"\0" * 4096)
    q3._conn.execute("UPDATE jobs SET worker_pid = ? WHERE state = 'running'", (dead.pid,))
    q3.close()
    t = time.perf_counter()
    q4 = JobQueue(root / "rec.db")  # a fresh process would open the file like this
    rep = q4.recover(out_root=root / "recout")
    rec = time.perf_counter() - t
    print(f"recovery, 1,000 jobs (50 running by a dead worker): {rec * 1000:.1f} ms "
          f"(re-queued {len(rep.requeued)}, folders removed {len(rep.cleaned)}); counts {q4.counts()}")


if __name__ == "__main__":
    main()
