"""Render farm throughput: jobs/hour of a tiny batch on 1 vs 2 local Ray actors, and Ray's per-job overhead.

Run: `python bench/cluster.py [--jobs 6] [--cpus 2]` (needs the cluster extra: pip install ".[cluster]").
Everything is measured in this run on this machine: the local runner (`jobs.run_queue` on one
in-process pipeline) is the reference; each Ray run starts its actors first (start-up is reported
apart) and is timed from the first dispatch to the last job's rename. Prints ratios; not a test.
On a machine with fewer free cores than actors, the 2-actor ratio measures the contention, not Ray.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

TINY = {"width": 160, "height": 96, "seconds": 0.5, "steps": 2}
PROMPT = "A cat on a windowsill says <S>Feed me now.<E> Rain taps the glass."


def _enqueue(out: Path, n: int):
    from nava_core.jobs import JobQueue
    from nava_core.request import RenderRequest

    q = JobQueue(out / "queue.sqlite")
    q.enqueue_many([RenderRequest(prompt=PROMPT, seed=s, **TINY) for s in range(n)], batch_id="bench")
    return q


def steady_seconds_per_job(q, warm: int) -> float:
    """Seconds per job after each worker's first job (imports, caches): from the store's finish times."""
    ends = sorted(j.finished_at for j in q.list(states=("done",)))
    return (ends[-1] - ends[warm - 1]) / (len(ends) - warm)


def local_run(weights: Path, root: Path, n: int) -> tuple[float, float, float]:
    """(seconds for n jobs, steady s/job, weight load seconds): the local runner on one in-process pipeline."""
    from nava_core.batch_cli import make_render_fn
    from nava_core.jobs import run_queue
    from nava_core.pipeline import NAVAPipeline

    t0 = time.perf_counter()
    pipe = NAVAPipeline.from_pretrained(weights, device="cpu")
    load = time.perf_counter() - t0
    q = _enqueue(root / "local", n)
    t1 = time.perf_counter()
    summary = run_queue(q, make_render_fn(pipe), root / "local")
    dt = time.perf_counter() - t1
    assert len(summary.done) == n, summary
    steady = steady_seconds_per_job(q, 1)
    q.close()
    return dt, steady, load


def ray_run(weights: Path, root: Path, n: int, actors: int) -> tuple[float, float, float]:
    """(seconds for n jobs from first dispatch, steady s/job, actor start-up seconds) on local Ray actors."""
    from nava_core.cluster import ClusterConfig
    from nava_core.cluster.driver import ClusterDriver

    out = root / f"ray{actors}"
    q = _enqueue(out, n)
    config = ClusterConfig(address="local", weights=str(weights), actors=actors)
    summary = ClusterDriver(q, out, config).run()
    assert len(summary.done) == n, summary
    steady = steady_seconds_per_job(q, actors)
    q.close()
    return summary.elapsed_s, steady, summary.startup_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import torch

    torch.set_num_threads(1)
    from nava_core.weights.tiny import build_tiny_weight_set

    with tempfile.TemporaryDirectory(prefix="nava-bench-cluster-") as tmp:
        root = Path(tmp)
        weights = build_tiny_weight_set(root / "tiny", seed=0)
        n = args.jobs
        t_local, s_local, load = local_run(weights, root, n)
        ray.init(num_cpus=args.cpus, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
        try:
            t1, s1, up1 = ray_run(weights, root, n, 1)
            t2, s2, up2 = ray_run(weights, root, n, 2)
        finally:
            ray.shutdown()
    jph = lambda t: n / t * 3600  # noqa: E731
    print(f"tiny batch: {n} jobs of {TINY['width']}x{TINY['height']}, {TINY['seconds']} s, {TINY['steps']} steps; "
          f"{os.cpu_count()} CPUs visible, Ray given {args.cpus}, load average {os.getloadavg()[0]:.1f}")
    print("                    all jobs                 steady state (after each worker's first job)")
    for name, t, st, extra in (("local runner", t_local, s_local, f"weights load {load:.1f} s"),
                               ("Ray, 1 actor", t1, s1, f"actor start-up {up1:.1f} s"),
                               ("Ray, 2 actors", t2, s2, f"actor start-up {up2:.1f} s")):
        print(f"{name:14s}: {jph(t):8.1f} jobs/h ({t / n:.2f} s/job) | {3600 / st:8.1f} jobs/h ({st:.2f} s/job); {extra}")
    print(f"2 actors / 1 actor: {t1 / t2:.2f}x jobs/h (steady state {s1 / s2:.2f}x)")
    print(f"Ray per-job overhead vs the local runner (1 actor, steady state): {s1 - s_local:+.2f} s/job "
          f"({s1 / s_local:.2f}x the local time per job)")


if __name__ == "__main__":
    main()
