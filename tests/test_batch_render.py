"""`nava-render batch` survives SIGKILL: re-running the same command finishes the batch, nothing twice, nothing partial.

The batch runs in a real subprocess (the CLI users run), killed at seeded random points while a job
is rendering, then re-run until it exits 0. The queue file, the event log the CLI writes and the
files on disk must all tell the same story.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from nava_core.config import DEFAULT_SEED

from nava_core.batch_cli import EVENT_LOG, QUEUE_FILE
from nava_core.export import probe
from nava_core.jobs import JobQueue

ROOT = Path(__file__).resolve().parents[1]
# enough steps that a render lasts well over the kill delay even with the fast backbone paths
TINY = {"width": 160, "height": 96, "seconds": 0.5, "steps": 16}


def _batch_file(folder: Path, n: int) -> Path:
    path = folder / "batch.json"
    path.write_text(json.dumps({
        "name": "kill test", "overrides": TINY,
        "items": [{"request": {"prompt": "A cat on a windowsill meows once. Rain taps the glass."},
                   "seeds": n}],
    }), encoding="utf-8")
    return path


def _start(batch: Path, out: Path, weights: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "nava_core.cli", "batch", str(batch), "--weights", str(weights),
                                 "--out", str(out), "-q"], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)


def _events(out: Path) -> list[dict]:
    p = out / EVENT_LOG
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def _kill_mid_job(proc: subprocess.Popen, out: Path, start_no: int, delay_s: float, log: Path) -> None:
    """SIGKILL `delay_s` after the log shows job start number `start_no` (counted over all runs)."""
    deadline = time.monotonic() + 300
    while sum(e["event"] == "start" for e in _events(out)) < start_no:
        assert proc.poll() is None, f"the batch ended before the planned kill:\n{log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "no progress for 300 s"
        time.sleep(0.05)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _run_with_kills(tmp_path: Path, weights: Path, n: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    batch, out, log = _batch_file(tmp_path, n), tmp_path / "out", tmp_path / "cli.log"
    start_no = 0
    for k in range(kills):
        start_no += rng.randint(1, max(1, (n - start_no) // (kills - k + 1)))
        proc = _start(batch, out, weights, log)
        # a 16-step tiny render takes well over a second on one thread, so this lands mid-render
        _kill_mid_job(proc, out, start_no, rng.uniform(0.1, 0.4), log)
        assert proc.returncode == -signal.SIGKILL
    proc = _start(batch, out, weights, log)
    assert proc.wait(600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f"{n} jobs, estimated" in text and "recovered after a crash" in text

    # ---- the queue: every job done, each rendered at most once more than the kills that hit it
    with JobQueue(out / QUEUE_FILE) as q:
        jobs = q.list()
    assert len(jobs) == n and {j.state for j in jobs} == {"done"}
    events = _events(out)
    starts = Counter(e["job"] for e in events if e["event"] == "start")
    dones = Counter(e["job"] for e in events if e["event"] == "done")
    assert max(dones.values()) == 1, f"a job was rendered to completion twice: {dones}"
    assert sum(starts.values()) <= n + kills and sum(j.attempts for j in jobs) <= n + kills
    assert sum(j.attempts for j in jobs) > n, "no kill hit a running job, so nothing was recovered"
    assert len(dones) + sum(1 for j in jobs if j.id not in dones) == n  # the rest were adopted finished folders

    # ---- the files: exactly the queue's outputs, complete, nothing partial left behind
    mp4s = sorted(out.rglob("*.mp4"))
    assert sorted(Path(j.outputs["mp4"]) for j in jobs) == mp4s and len(mp4s) == n
    for j in jobs:
        folder = Path(j.final_dir)
        assert json.loads((folder / "job.json").read_text())["job_id"] == j.id
        info = probe(j.outputs["mp4"])
        assert info.video_codec == "h264" and info.frames == 13 and info.channels == 2 and info.audio_codec == "aac"
        assert (info.width, info.height) == (160, 96)
    assert not (out / ".incoming").exists()
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")]
    assert leftovers == []
    assert {j.request.seed for j in jobs} == set(range(DEFAULT_SEED, DEFAULT_SEED + n))

    # ---- re-running a finished batch renders nothing
    before = len(_events(out))
    proc = _start(batch, out, weights, log)
    assert proc.wait(120) == 0 and len(_events(out)) == before
    assert f"resuming: {n}/{n} already done" in log.read_text()


def test_batch_killed_once_resumes_to_complete_outputs(tmp_path: Path, tiny_weights: Path) -> None:
    _run_with_kills(tmp_path, tiny_weights, n=4, kills=1, seed=7)


@pytest.mark.slow
def test_batch_of_12_killed_twice_resumes_to_complete_outputs(tmp_path: Path, tiny_weights: Path) -> None:
    _run_with_kills(tmp_path, tiny_weights, n=12, kills=2, seed=2024)
