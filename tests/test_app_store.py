"""One job store for every render: studio, API and Batch-tab jobs land in it and in History; the request
stored is the request that rendered (sidecar, MP4 metadata); an old data folder (three stores) is
migrated without losing a row; a studio killed with SIGKILL mid-batch resumes every job exactly once.

Real code paths throughout: the tiny weight set renders on the CPU (160x96, 0.5 s, 2 steps).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import builder as B
from app import engine as E
from app import handlers as H
from app.api import api_render
from app.batches import Batches, build_definition
from app.history_tab import history_rows
from app.paths import StudioPaths
from app.service import StudioService
from nava_core.export import read_request
from nava_core.jobs import JobQueue
from nava_core.request import RenderRequest

ROOT = Path(__file__).resolve().parents[1]
SILENT = "silent_action_effects"  # no dialogue, so a 0.5 s clip passes the lint


def _tiny(weights: Path) -> E.WeightChoice:
    return E.WeightChoice("tiny", str(weights), "test weights")


def _quick_state() -> dict:
    state = H.load_preset_state(SILENT)
    state["project"]["seconds"] = 0.5
    state["settings"]["steps"] = 2
    return state


def _assert_request_is_what_rendered(job) -> None:
    """The stored (final) request is in the sidecar and in the MP4's metadata, unchanged."""
    stored = json.loads(job.request_json)
    assert json.loads(Path(job.outputs["sidecar"]).read_text()) == stored
    assert json.loads(read_request(job.outputs["mp4"])) == stored
    assert job.result.request == job.request


def test_studio_api_and_batch_jobs_land_in_one_store_and_in_history(tmp_path, tiny_weights):
    paths = StudioPaths.from_env(tmp_path / "home")
    svc = StudioService(paths, E.Engine(_tiny(tiny_weights)))
    try:
        studio = svc.submit(_quick_state(), owner="me")
        api_path = api_render(svc, RenderRequest(prompt="Waves on a beach, gulls overhead.", seconds=0.5,
                                                 steps=2, seed=3).to_json())
        batch_id = Batches(svc).enqueue(build_definition([SILENT], 1, steps=2, seconds=0.5))
        jobs = svc.jobs.list()
        assert [j.source for j in jobs] == ["studio", "api", "batch"]
        assert all(svc.worker.wait(j.id, 240).state == "done" for j in jobs)
        jobs = svc.jobs.list()
        assert jobs[1].outputs["mp4"] == api_path and jobs[2].batch_id == batch_id
        for job in jobs:
            _assert_request_is_what_rendered(job)
            # each went through Engine.render (the ZeroGPU-wrapped call holding the GPU lock): it adds the
            # load time and the History thumbnail, which render_to_files alone does not
            assert "load_s" in job.timings and Path(job.outputs["thumbnail"]).is_file()
            # finalised before it was stored: preview size, the profile that ran (not 'auto'), its tiling
            assert (job.request.width, job.request.height) == (160, 96)
            assert job.request.memory_profile == "resident" and job.request.tiled_vae is False
        # History is the same rows, newest first, in the History tab's table too
        assert [j.id for j in svc.history.list()] == [j.id for j in reversed(jobs)]
        _, rows = history_rows(svc)
        assert [(r[0], r[2]) for r in rows] == [(j.id, "done") for j in reversed(jobs)]
        assert svc.reuse(studio.id) == json.loads(json.dumps(_quick_state()))  # the builder as it was
        # the project inside the request does not repeat what the request states itself
        assert jobs[0].request.project and not set(B.REQUEST_OWNED) & set(jobs[0].request.project)
        assert svc.build_request(B.state_from_request(jobs[0].request)) == jobs[0].request
        assert sorted(p.name for p in paths.home.glob("*.sqlite")) == ["jobs.sqlite"]  # one store
        assert not (paths.home / "batch").exists()
    finally:
        svc.close()


def test_a_profile_that_tiles_is_in_the_stored_request_and_the_sidecar(tmp_path, tiny_weights):
    """The fp8 profile decodes the video in tiles: the stored request says so before rendering, and the
    sidecar written after rendering carries that same request (it used to record tiled_vae=false)."""
    svc = StudioService(StudioPaths.from_env(tmp_path / "home"), E.Engine(_tiny(tiny_weights), memory_profile="fp8"))
    try:
        job = svc.submit(_quick_state())
        assert job.request.memory_profile == "fp8" and job.request.tiled_vae is True
        done = svc.worker.wait(job.id, 240)
        assert done.state == "done", done.error
        _assert_request_is_what_rendered(done)
    finally:
        svc.close()


# ---- migration of an old data folder --------------------------------------------------------------

# The schemas of the previous version's three stores, verbatim (queue.sqlite and batch/queue.sqlite
# were JobQueue files of schema 1; history.sqlite the studio's own table).
OLD_QUEUE_SCHEMA = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_json TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0, outputs_json TEXT NOT NULL DEFAULT '{}',
    timings_json TEXT NOT NULL DEFAULT '{}', error TEXT, batch_id TEXT, label TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, worker_pid INTEGER, worker_id TEXT,
    tmp_dir TEXT, final_dir TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0);
CREATE INDEX jobs_state_id ON jobs (state, id);
CREATE INDEX jobs_batch ON jobs (batch_id, id);
PRAGMA user_version = 1;
"""
OLD_HISTORY_SCHEMA = """
CREATE TABLE renders (
    id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, status TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '', request_json TEXT NOT NULL, builder_json TEXT,
    outputs_json TEXT NOT NULL DEFAULT '{}', timings_json TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '', engine TEXT NOT NULL DEFAULT '');
CREATE INDEX renders_created ON renders(created);
"""


def _old_db(path: Path, schema: str, table: str, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(schema)
    for r in rows:
        con.execute(f"INSERT INTO {table} ({', '.join(r)}) VALUES ({', '.join('?' * len(r))})", list(r.values()))
    con.commit()
    con.close()


def test_an_old_data_folder_is_migrated_without_losing_a_history_row(tmp_path, tiny_weights):
    home = tmp_path / "home"
    done_dir = home / "outputs" / "single" / "1-old"
    done_dir.mkdir(parents=True)
    (done_dir / "a.mp4").write_bytes(b"mp4")
    (done_dir / "a.json").write_text("{}")
    req = {i: RenderRequest(prompt=f"Waves {i}.", seconds=0.5, steps=2, seed=i, width=160, height=96,
                            title=f"render {i}").to_json() for i in range(8)}
    state = B.default_state()
    t0 = 1_700_000_000.0
    hist = [
        dict(id="h-done", created=t0, updated=t0 + 5, status="done", title="render 0", request_json=req[0],
             builder_json=json.dumps(state), engine="tiny (random weights)", timings_json='{"total_s": 4.0}',
             outputs_json=json.dumps({"mp4": str(done_dir / "a.mp4"), "request": str(done_dir / "a.json"),
                                      "folder": str(done_dir)})),
        dict(id="h-failed", created=t0 + 1, updated=t0 + 6, status="failed", title="render 1", request_json=req[1],
             error="The GPU ran out of memory."),
        dict(id="h-interrupted", created=t0 + 2, updated=t0 + 7, status="interrupted", title="render 2",
             request_json=req[2], error="the studio stopped before this render finished"),
        dict(id="h-cancelled", created=t0 + 3, updated=t0 + 8, status="cancelled", title="render 3",
             request_json=req[3], error="cancelled"),
        dict(id="h-queued", created=t0 + 4, updated=t0 + 4, status="queued", title="render 4", request_json=req[4],
             builder_json=json.dumps(state)),
        dict(id="h-lost", created=t0 + 5, updated=t0 + 5, status="running", title="render 5", request_json=req[5]),
    ]
    _old_db(home / "history.sqlite", OLD_HISTORY_SCHEMA, "renders", hist)
    _old_db(home / "queue.sqlite", OLD_QUEUE_SCHEMA, "jobs", [
        dict(request_json=req[0], state="done", batch_id="single", label="h-done", created_at=t0, attempts=1,
             final_dir=str(done_dir)),
        dict(request_json=req[4], state="queued", batch_id="single", label="h-queued", created_at=t0 + 4),
    ])
    _old_db(home / "batch" / "queue.sqlite", OLD_QUEUE_SCHEMA, "jobs", [
        dict(request_json=req[6], state="done", batch_id="sweep-1", label="seed=6", created_at=t0 + 9, attempts=1,
             outputs_json=json.dumps({"mp4": str(done_dir / "a.mp4")}), final_dir=str(done_dir)),
        dict(request_json=req[7], state="running", batch_id="sweep-1", label="seed=7", created_at=t0 + 9, attempts=1,
             worker_pid=999999999, worker_id="elsewhere:1"),
    ])

    paths = StudioPaths.from_env(home)
    svc = StudioService(paths, E.Engine(_tiny(tiny_weights)))
    try:
        jobs = {j.label: j for j in svc.jobs.list()}
        assert len(jobs) == 8  # six history rows, two batch jobs
        by_title = {j.title: j for j in svc.history.list()}
        for h in hist:  # every history row is there, with its request, time and builder state
            j = by_title[h["title"]]
            assert j.request_json == h["request_json"] and j.created_at == h["created"]
            assert j.builder == (json.loads(h["builder_json"]) if h.get("builder_json") else None)
        done = by_title["render 0"]
        assert done.state == "done" and done.final_dir == str(done_dir) and done.timings == {"total_s": 4.0}
        assert done.result.mp4 == done_dir / "a.mp4" and done.result.sidecar == done_dir / "a.json"
        assert done.engine == "tiny (random weights)" and svc.reuse(done.id) == state
        assert (by_title["render 1"].state, by_title["render 1"].error) == ("failed", "The GPU ran out of memory.")
        assert by_title["render 2"].state == "failed" and "stopped" in by_title["render 2"].error
        assert by_title["render 3"].state == "cancelled"
        assert by_title["render 5"].state == "failed"  # running with no queue row: it said it was interrupted
        assert jobs["seed=6"].state == "done" and jobs["seed=6"].batch_id == "sweep-1"
        # the queued studio render and the batch job whose worker died are rendered now
        for resumed in (by_title["render 4"], jobs["seed=7"]):
            finished = svc.worker.wait(resumed.id, 240)
            assert finished.state == "done", finished.error
            _assert_request_is_what_rendered(finished)
        assert jobs["seed=7"].batch_id == "sweep-1"
        assert sorted(p.name for p in home.rglob("*.sqlite*.migrated")) == [
            "history.sqlite.migrated", "queue.sqlite.migrated", "queue.sqlite.migrated"]
    finally:
        svc.close()
    again = StudioService(paths, E.Engine(_tiny(tiny_weights)))  # a second start adds nothing
    try:
        assert len(again.jobs.list()) == 8
    finally:
        again.close()


# ---- kill -9 mid-batch -----------------------------------------------------------------------------

STUDIO = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from app import engine as E, handlers as H
from app.batches import Batches, build_definition
from app.paths import StudioPaths
from app.service import StudioService
home, weights = Path(sys.argv[1]), sys.argv[2]
svc = StudioService(StudioPaths.from_env(home), E.Engine(E.WeightChoice("tiny", weights, "test weights")))
if not svc.jobs.list():
    Batches(svc).enqueue(build_definition([%r], 3, [("audio guidance", "1.0, 2.0")], steps=2, seconds=0.5))
    state = H.load_preset_state(%r)
    state["project"]["seconds"] = 0.5
    state["settings"]["steps"] = 2
    svc.submit(state)
print("ready", flush=True)
while True:
    time.sleep(1)
""" % (SILENT, SILENT)


@pytest.mark.slow
def test_kill_9_mid_batch_then_restart_renders_every_job_exactly_once(tmp_path, tiny_weights):
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", STUDIO, str(home), str(tiny_weights)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        store = JobQueue(home / "jobs.sqlite")
        deadline = time.time() + 300
        while True:  # kill it while a job renders and at least two are finished
            counts = store.counts()
            if counts["done"] >= 2 and counts["running"] == 1:
                break
            assert time.time() < deadline and proc.poll() is None, counts
            time.sleep(0.02)
        killed = next(j for j in store.list() if j.state == "running")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        before = {j.id: (j.final_dir, j.finished_at) for j in store.list(states=("done",))}
        store.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    svc = StudioService(StudioPaths.from_env(home), E.Engine(_tiny(tiny_weights)))
    try:
        jobs = svc.jobs.list()
        assert len(jobs) == 7  # six batch jobs (3 seeds x 2 guidance values) and one studio render
        assert all(svc.worker.wait(j.id, 300).state == "done" for j in jobs)
        jobs = svc.jobs.list()
        after = {j.id: (j.final_dir, j.finished_at) for j in jobs}
        assert all(after[i] == v for i, v in before.items())  # finished renders were not rendered again
        assert {j.id: j.attempts for j in jobs} == {j.id: 2 if j.id == killed.id else 1 for j in jobs}
        folders = [p for p in svc.paths.outputs.rglob("*") if p.is_dir() and ".incoming" not in p.parts
                   and list(p.glob("*.mp4"))]
        assert sorted(map(str, folders)) == sorted(j.final_dir for j in jobs)  # one folder per job, no extras
        assert not list((svc.paths.outputs / ".incoming").rglob("*.mp4"))
        for j in jobs:
            _assert_request_is_what_rendered(j)
    finally:
        svc.close()
