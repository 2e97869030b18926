"""The render farm on a real local Ray cluster (127.0.0.1, 2 CPUs) with tiny weights.

A 6-job batch over 2 actors must give the local runner's files; an actor killed by its PID mid-job,
a driver killed mid-batch and a job that always fails must each end with every other job rendered
exactly once and nothing partial on disk. The fast tests cover what needs no cluster: addresses,
the memory refusal, the progress board, and `--cluster` without Ray installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from nava_core.batch_cli import EVENT_LOG, QUEUE_FILE
from nava_core.cluster import ClusterConfig, ClusterError, check_address
from nava_core.cluster.board import ClusterBoard
from nava_core.cluster.driver import refusal
from nava_core.jobs import JobQueue
from nava_core.request import RenderRequest

ROOT = Path(__file__).resolve().parents[1]
# 1.5 s: the spoken line must fit the clip (batches pass the studio's lint)
TINY = {"width": 160, "height": 96, "seconds": 1.5, "steps": 2}
PROMPT = "A cat on a windowsill says <S>Feed me now.<E> Rain taps the glass."


# ---- fast: no cluster needed ------------------------------------------------------------------------


def test_addresses_are_checked_with_the_accepted_forms() -> None:
    for ok in ("local", "auto", "ray://10.0.0.5:10001", "head.example:6379"):
        assert check_address(ok) == ok
    for bad in ("", "ray://nohost", "10.0.0.5", "ray://h:99999", "http://h:1/x"):
        with pytest.raises(ClusterError, match="ray://HOST:PORT"):
            check_address(bad)
    with pytest.raises(ClusterError, match="divisor of the 24"):
        ClusterConfig(gpus_per_actor=5)


def test_memory_refusal_uses_the_estimator_and_says_what_to_do() -> None:
    small = RenderRequest(prompt=PROMPT, **TINY)
    big = RenderRequest(prompt=PROMPT, width=1280, height=704, seconds=10.0, steps=2)
    gib = 1024**3
    assert refusal(small, None, 1) is None  # unknown memory (CPU actor): nothing refused
    assert refusal(small, 17 * gib, 1) is None
    reason = refusal(big, 17 * gib, 1)
    assert reason is not None and "refused before dispatch" in reason and "17.0 GiB" in reason
    assert "group_offload" in reason and "--gpus-per-actor" in reason
    assert refusal(big, 141 * gib, 1) is None


def test_board_reports_rate_and_eta_from_its_own_clock() -> None:
    now = [0.0]
    board = ClusterBoard(remaining=4, stream=None, clock=lambda: now[0])
    board.start()
    board.actor(1, "job 1: Denoising: step 1/2", "denoising")
    board.actor(2, "ready", "ready")
    assert board.snapshot().jobs_per_hour is None and board.snapshot().eta_s is None
    now[0] = 60.0
    board.job_finished("done")
    board.job_finished("queued")  # a retry is neither done nor failed
    snap = board.snapshot()
    assert snap.actor_lines == ["actor 1: job 1: Denoising: step 1/2", "actor 2: ready"]
    assert (snap.done, snap.failed, snap.remaining) == (1, 0, 3)
    assert snap.jobs_per_hour == pytest.approx(60.0) and snap.eta_s == pytest.approx(180.0)
    assert "60.0 jobs/h" in snap.summary() and "ETA 3.0 min" in snap.summary()


def test_cluster_without_ray_says_how_to_install_and_queues_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "noray"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('No module named ray (blocked by the test)')\n")
    batch = _batch_file(tmp_path, 2)
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"}
    r = subprocess.run([sys.executable, "-m", "nava_core.cli", "batch", str(batch), "--out", str(tmp_path / "out"),
                        "--cluster", "local"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "needs Ray" in r.stderr and 'pip install ".[cluster]"' in r.stderr
    assert not (tmp_path / "out" / QUEUE_FILE).exists()


def test_jobs_reserved_for_a_farm_are_left_to_it_until_handed_back(tmp_path: Path) -> None:
    from nava_core.jobs import CLUSTER_ENGINE_PREFIX

    with JobQueue(tmp_path / "q.sqlite") as q:
        farm = q.enqueue_many([RenderRequest(prompt=PROMPT, seed=s, **TINY) for s in (1, 2)], batch_id="farm",
                              engine=CLUSTER_ENGINE_PREFIX + "local")
        local = q.enqueue(RenderRequest(prompt=PROMPT, **TINY), batch_id="studio", engine="tiny")
        assert q.claim().id == local and q.claim() is None  # the studio's worker skips the farm's jobs
        assert q.claim(job_id=farm[1]).id == farm[1]  # the farm's driver takes them by id
        assert q.set_engine("farm", "tiny") == 1  # what is still queued goes back to the studio
        assert q.claim().id == farm[0]


def test_scheduler_prefers_warm_actors_and_retries_elsewhere(tmp_path: Path) -> None:
    """The driver's placement on its own (no Ray): same profile to the warm actor, a retry away from
    the actor it failed on while another is free, the oldest job otherwise."""
    from nava_core.cluster.driver import ClusterDriver, _Slot

    with JobQueue(tmp_path / "q.sqlite") as q:
        a1, b1, a2 = (q.enqueue(RenderRequest(prompt=PROMPT, memory_profile=p, **TINY))
                      for p in ("resident", "fp8", "resident"))
        driver = ClusterDriver(q, tmp_path / "out", ClusterConfig(actors=2))
        fp8, resident = _Slot(1, info={"profile": "fp8"}), _Slot(2, info={"profile": "resident"})
        driver._slots = [fp8, resident]
        assert driver._pick(fp8).id == b1  # not the oldest: the one this actor is warm for
        assert driver._pick(resident).id == a1
        assert q.mark_failed(a1, "actor died", retry=True, max_attempts=2) == "queued"
        resident.job = None
        fp8.job = None  # the other actor is free: the retry goes there, not back to actor 2
        assert driver._pick(resident).id == a2
        assert driver._pick(fp8).id == a1 and q.get(a1).attempts == 2


@pytest.mark.parametrize("flags, message", [
    (["--cluster", "10.0.0.1"], "is not a cluster address"),
    (["--cluster", "local", "--actors", "0"], "--actors must be at least 1"),
    (["--cluster", "local", "--gpus-per-actor", "5"], "divisor of the 24"),
])
def test_bad_cluster_flags_are_refused_before_anything_is_queued(tmp_path: Path, capsys, flags, message) -> None:
    from nava_core.cli import main

    out = tmp_path / "out"
    assert main(["batch", str(_batch_file(tmp_path, 2)), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# ---- slow: a real local Ray cluster -------------------------------------------------------------------


def _batch_file(folder: Path, n: int, name: str = "farm test") -> Path:
    path = folder / "batch.json"
    path.write_text(json.dumps({"name": name, "overrides": TINY,
                                "items": [{"request": {"prompt": PROMPT}, "seeds": n}]}), encoding="utf-8")
    return path


def _events(out: Path) -> list[dict]:
    p = out / EVENT_LOG
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}


def _cli(batch: Path, out: Path, weights: Path, address: str, actors: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "nava_core.cli", "batch", str(batch), "--weights", str(weights), "--out",
             str(out), "--cluster", address, "--actors", str(actors)],
            cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT)


def _wait_for(out: Path, pred, proc: subprocess.Popen | None, log: Path | None, limit_s: float = 300) -> list[dict]:
    deadline = time.monotonic() + limit_s
    while True:
        ev = _events(out)
        if pred(ev):
            return ev
        if proc is not None:
            assert proc.poll() is None, f"the batch ended early:\n{log.read_text()[-3000:] if log else ''}"
        assert time.monotonic() < deadline, f"no progress in {limit_s} s"
        time.sleep(0.05)


def _assert_clean(out: Path, n_done: int) -> list:
    """Every done job has one complete final folder; nothing temporary or partial is left anywhere."""
    with JobQueue(out / QUEUE_FILE) as q:
        jobs = q.list()
    done = [j for j in jobs if j.state == "done"]
    assert len(done) == n_done, [(j.id, j.state, j.error) for j in jobs]
    mp4s = sorted(out.rglob("*.mp4"))
    assert sorted(Path(j.outputs["mp4"]) for j in done) == mp4s
    for j in done:
        folder = Path(j.final_dir)
        assert json.loads((folder / "job.json").read_text())["job_id"] == j.id
        assert {Path(p).parent for p in j.outputs.values()} == {folder}
    assert not (out / ".incoming").exists()
    assert [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")] == []
    dones = Counter(e["job"] for e in _events(out) if e["event"] == "done")
    assert all(c == 1 for c in dones.values()), f"a job was finished twice: {dones}"
    return jobs


@pytest.fixture(scope="module")
def ray_address():
    """A Ray cluster on 127.0.0.1 with 2 CPUs for this module; the test process is its first driver."""
    ray = pytest.importorskip("ray", reason="the cluster tests need Ray: pip install '.[cluster]'")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ctx = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, namespace="nava-test",
                   log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_six_jobs_on_two_actors_match_the_local_runner(tmp_path: Path, tiny_weights: Path, ray_address: str) -> None:
    from nava_core.cli import main

    batch = _batch_file(tmp_path, 6)
    local, farm = tmp_path / "local", tmp_path / "farm"
    assert main(["batch", str(batch), "--weights", str(tiny_weights), "--out", str(local), "-q"]) == 0
    assert main(["batch", str(batch), "--weights", str(tiny_weights), "--out", str(farm), "-q",
                 "--cluster", ray_address, "--actors", "2"]) == 0

    jobs = _assert_clean(farm, 6)
    ev = _events(farm)
    assert Counter(e["job"] for e in ev if e["event"] == "start") == Counter({j.id: 1 for j in jobs})
    assert len({e["actor"] for e in ev if e["event"] == "start"}) == 2, "both actors should have rendered"
    local_jobs = _assert_clean(local, 6)
    for lj, fj in zip(local_jobs, jobs):
        lf, ff = Path(lj.final_dir), Path(fj.final_dir)
        assert lf.relative_to(local) == ff.relative_to(farm)
        assert sorted(Path(p).suffix for p in lj.outputs.values()) == sorted(Path(p).suffix for p in fj.outputs.values())
        # the request sidecars (what was rendered, exactly) are equal; so are the manifests' requests
        assert Path(lj.outputs["sidecar"]).read_text() == Path(fj.outputs["sidecar"]).read_text()
        assert json.loads((lf / "job.json").read_text())["request"] == json.loads((ff / "job.json").read_text())["request"]
        # same seed, same weights, same CPU maths: the same audio samples
        import soundfile as sf

        la, _ = sf.read(lj.outputs["wav"])
        fa, _ = sf.read(fj.outputs["wav"])
        assert la.shape == fa.shape and abs(la - fa).max() < 1e-4


@pytest.mark.slow
def test_actor_killed_mid_job_costs_one_retry_and_no_duplicate(tmp_path: Path, tiny_weights: Path,
                                                                ray_address: str) -> None:
    n = 4
    batch, out, log = _batch_file(tmp_path, n), tmp_path / "out", tmp_path / "cli.log"
    proc = _cli(batch, out, tiny_weights, ray_address, 2, log)
    try:
        # the third start: one actor is mid-job, the other has finished one and started another
        ev = _wait_for(out, lambda ev: sum(e["event"] == "start" for e in ev) >= 3, proc, log)
        victim = [e for e in ev if e["event"] == "start"][2]
        time.sleep(0.3)
        assert not any(e["event"] != "start" and e["job"] == victim["job"] for e in _events(out)), \
            "the job finished before the kill; the kill must land mid-job"
        os.kill(victim["pid"], signal.SIGKILL)
        assert proc.wait(600) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    jobs = _assert_clean(out, n)
    ev = _events(out)
    retried = [e for e in ev if e["event"] == "queued"]
    assert [e["job"] for e in retried] == [victim["job"]] and "died while rendering" in retried[0]["error"]
    starts = [e for e in ev if e["event"] == "start" and e["job"] == victim["job"]]
    assert len(starts) == 2 and starts[1]["pid"] != victim["pid"], "the retry ran on another actor"
    assert {j.id: j.attempts for j in jobs}[victim["job"]] == 2 and sum(j.attempts for j in jobs) == n + 1
    assert "1 actor death(s)" in log.read_text()


@pytest.mark.slow
def test_driver_killed_mid_batch_resumes_from_the_job_store(tmp_path: Path, tiny_weights: Path,
                                                            ray_address: str) -> None:
    n = 3
    batch, out, log = _batch_file(tmp_path, n), tmp_path / "out", tmp_path / "cli.log"
    proc = _cli(batch, out, tiny_weights, ray_address, 1, log)
    try:
        _wait_for(out, lambda ev: sum(e["event"] == "start" for e in ev) >= 2, proc, log)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with JobQueue(out / QUEUE_FILE) as q:
        states = Counter(j.state for j in q.list())
    assert states["running"] == 1 and 1 <= states["done"] < n, states  # killed with one job in flight

    proc = _cli(batch, out, tiny_weights, ray_address, 1, log)
    assert proc.wait(600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f"resuming: {states['done']}/3 already done" in text and "recovered after a crash: 1 re-queued" in text
    jobs = _assert_clean(out, n)
    assert sum(j.attempts for j in jobs) == n + 1
    assert Counter(e["job"] for e in _events(out) if e["event"] == "done") == Counter({j.id: 1 for j in jobs})


@pytest.mark.slow
def test_always_failing_job_is_failed_after_its_retries_and_oversized_refused(tmp_path: Path, tiny_weights: Path,
                                                                                 ray_address: str) -> None:
    from nava_core.batch_cli import EventLog
    from nava_core.cluster.driver import ClusterDriver

    out = tmp_path / "out"
    out.mkdir()
    broken = tmp_path / "frame.png"
    broken.write_bytes(b"this is not a PNG")  # a render error on every attempt, on every actor
    with JobQueue(out / QUEUE_FILE) as q:
        good = q.enqueue_many([RenderRequest(prompt=PROMPT, seed=s, **TINY) for s in (1, 2)], batch_id="b")
        bad = q.enqueue(RenderRequest(prompt=PROMPT, mode="image_audio_video", image=str(broken), **TINY),
                        batch_id="b")
        huge = q.enqueue(RenderRequest(prompt=PROMPT, width=1280, height=704, seconds=10.0, steps=2), batch_id="b")
        # output="return": the files travel back as bytes, as from nodes that do not see the output volume
        config = ClusterConfig(address=ray_address, weights=str(tiny_weights), actors=2, max_attempts=2,
                               actor_memory_gb=17.0, output="return")
        summary = ClusterDriver(q, out, config, events=EventLog(out / EVENT_LOG).write).run()
        jobs = {j.id: j for j in q.list()}
    ev = _events(out)
    assert (sorted(summary.done), summary.failed, summary.refused) == (good, [bad], [huge]), (summary, ev)
    assert jobs[bad].state == "failed" and jobs[bad].attempts == 2 and "UnidentifiedImageError" in jobs[bad].error
    assert jobs[huge].state == "failed" and jobs[huge].error.startswith("refused before dispatch")
    assert not any(e["event"] == "start" and e["job"] == huge for e in ev), "a refused job was dispatched"
    # (another actor may log the retry's start before the first actor logs the re-queue)
    assert Counter(e["event"] for e in ev if e["job"] == bad) == Counter(start=2, queued=1, failed=1), ev
    _assert_clean(out, 2)


@pytest.mark.slow
def test_batch_through_ray_client_address(tmp_path: Path, tiny_weights: Path, ray_address: str) -> None:
    """`--cluster ray://HOST:PORT`: the driver reaches the cluster through a Ray Client server."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ray.util.client.server", "--address", ray_address, "--host",
                               "127.0.0.1", "--port", str(port), "--mode", "legacy"], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        n = 2
        batch, out, log = _batch_file(tmp_path, n), tmp_path / "out", tmp_path / "cli.log"
        deadline = time.monotonic() + 60
        while True:  # wait for the client server to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the Ray Client server did not start"
                time.sleep(0.2)
        proc = _cli(batch, out, tiny_weights, f"ray://127.0.0.1:{port}", 1, log)
        assert proc.wait(600) == 0, log.read_text()[-3000:]
    finally:
        server.terminate()
        server.wait(30)
    _assert_clean(out, n)
    assert "cluster: 1 actor(s), 2 done" in log.read_text()
