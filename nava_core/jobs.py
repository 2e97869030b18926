"""A durable render queue shared by the studio and the CLI (SQLite in WAL mode).

Why: batch users queue dozens of renders overnight. A crash at render 37 must cost neither renders
1-36 nor their re-rendering, and two processes (studio + CLI) may share one queue file. So:

- every job is one row holding its full render request JSON, so a queue file alone can be resumed;
- `claim` is atomic (`BEGIN IMMEDIATE`), so two workers never take the same job;
- `run_queue` renders into a per-job temporary folder, writes a manifest, records the final folder
  name, renames the folder into place (atomic on one filesystem) and only then marks the job done.
  A kill at any point leaves either a temporary folder (cleaned by `recover`), or a complete folder
  with its manifest that `recover` adopts as done (so a finished render is never rendered again),
  never a "done" row without files and never partial files under a final name;
- `recover` re-queues (or fails, past the retry limit) jobs whose worker died while running them.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from nava_core.progress import CancelToken, ProgressCallback, ProgressEvent, RenderCancelled
from nava_core.request import RenderRequest

if TYPE_CHECKING:
    from nava_core.outputs import RenderOutputs

log = logging.getLogger(__name__)

STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
SCHEMA_VERSION = 2
MANIFEST_NAME = "job.json"
INCOMING_DIR = ".incoming"  # temporary per-job folders live here, on the same filesystem as outputs
DEFAULT_MAX_ATTEMPTS = 3

# render_fn(request, tmp_dir, progress, cancel) -> RenderOutputs (or a plain {name: path} mapping)
RenderFn = Callable[[RenderRequest, Path, "ProgressCallback | None", CancelToken], Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_json TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    outputs_json TEXT NOT NULL DEFAULT '{}',
    timings_json TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    batch_id TEXT,
    label TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker_pid INTEGER,
    worker_id TEXT,
    tmp_dir TEXT,
    final_dir TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    engine TEXT NOT NULL DEFAULT '',
    builder_json TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state_id ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, id);
"""
# Columns added by schema 2 (one store for studio, API and batch jobs); added to version-1 files on open.
_V2_COLUMNS = (
    ("source", "TEXT NOT NULL DEFAULT ''"),
    ("owner", "TEXT NOT NULL DEFAULT ''"),
    ("engine", "TEXT NOT NULL DEFAULT ''"),
    ("builder_json", "TEXT"),
)
FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")
# `engine` of jobs reserved for a render farm (`nava_core.cluster`): the farm's driver claims them by id,
# a plain `claim()` (the studio's worker) leaves them alone.
CLUSTER_ENGINE_PREFIX = "cluster:"


@dataclass(frozen=True)
class Job:
    """One row of the store: a render of any origin (studio, API, batch), queued, running or finished.

    `request` parses `request_json` on demand; `result` rebuilds the render's `RenderOutputs` once it
    is done. `source` says who queued it (studio, api, batch, cli), `owner` which browser session,
    `builder` the studio builder state it came from (History's "reuse settings").
    """

    id: int
    request_json: str
    state: str
    attempts: int
    outputs: dict[str, str]
    timings: dict[str, Any]
    error: str | None
    batch_id: str | None
    label: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker_pid: int | None
    worker_id: str | None
    tmp_dir: str | None
    final_dir: str | None
    cancel_requested: bool
    source: str = ""
    owner: str = ""
    engine: str = ""
    builder: dict[str, Any] | None = None

    @property
    def request(self) -> RenderRequest:
        return RenderRequest.from_json(self.request_json)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def title(self) -> str:
        try:
            return str(json.loads(self.request_json).get("title") or "")
        except ValueError:
            return ""

    @property
    def result(self) -> "RenderOutputs | None":
        """The render's outputs (files, timings, final request) once done; None before."""
        if self.state != "done":
            return None
        from nava_core.outputs import RenderOutputs

        return RenderOutputs.from_files(self.request, self.outputs, self.timings)


class RenderFailed(RuntimeError):
    """A render error whose message is already written for the user; stored as is (no class name)."""


@dataclass
class RecoveryReport:
    """What `recover` did: jobs re-queued, failed (retry limit), adopted as done, folders removed."""

    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.requeued) + len(self.failed) + len(self.adopted)


@dataclass
class RunSummary:
    """What one `run_queue` call did."""

    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)


def default_worker_id() -> str:
    """`host:pid`: recovery only judges liveness of workers on this host."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        request_json=row["request_json"],
        state=row["state"],
        attempts=row["attempts"],
        outputs=json.loads(row["outputs_json"] or "{}"),
        timings=json.loads(row["timings_json"] or "{}"),
        error=row["error"],
        batch_id=row["batch_id"],
        label=row["label"] or "",
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker_pid=row["worker_pid"],
        worker_id=row["worker_id"],
        tmp_dir=row["tmp_dir"],
        final_dir=row["final_dir"],
        cancel_requested=bool(row["cancel_requested"]),
        source=row["source"] or "",
        owner=row["owner"] or "",
        engine=row["engine"] or "",
        builder=json.loads(row["builder_json"]) if row["builder_json"] else None,
    )


def _request_json(request: RenderRequest | Mapping[str, Any] | str) -> str:
    """Normalise to compact JSON of a *valid* request: a queue never holds an unrenderable job."""
    if isinstance(request, RenderRequest):
        req = request
    elif isinstance(request, str):
        req = RenderRequest.from_json(request)
    elif isinstance(request, Mapping):
        req = RenderRequest.from_dict(dict(request))
    else:
        raise TypeError(f"expected a RenderRequest, dict or JSON text; got {type(request).__name__}")
    return req.to_json(indent=None)


class JobQueue:
    """The queue file. Safe to share between threads (one lock) and processes (SQLite locking)."""

    def __init__(self, db_path: str | os.PathLike[str], busy_timeout_s: float = 30.0) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.db_path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("queue %s is not in WAL mode (%s); concurrent readers may block", self.db_path, mode)
        # NORMAL in WAL mode survives any process crash; only an OS crash may lose the last commit.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._tx():
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(jobs)")}
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                self._conn.execute(stmt)
            if have:  # an older file: add what schema 2 added, keeping every row
                for name, decl in _V2_COLUMNS:
                    if name not in have:
                        self._conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ---- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front so reads inside it are consistent."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "JobQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- adding -------------------------------------------------------------------------------

    def enqueue(
        self, request: RenderRequest | Mapping[str, Any] | str, batch_id: str | None = None, label: str = "",
        *, source: str = "", owner: str = "", engine: str = "", builder: Mapping[str, Any] | None = None,
    ) -> int:
        """Add one job; returns its id. The request is validated and stored as compact JSON."""
        rj = _request_json(request)
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO jobs (request_json, batch_id, label, created_at, source, owner, engine, builder_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rj, batch_id, label or "", time.time(), source, owner, engine,
                 json.dumps(builder) if builder is not None else None),
            )
            return int(cur.lastrowid)

    def enqueue_many(
        self,
        requests: Iterable[Any],
        batch_id: str | None = None,
        labels: Sequence[str] | None = None,
        *, source: str = "", owner: str = "", engine: str = "",
    ) -> builtins.list[int]:
        """Add many jobs in one transaction (all or nothing).

        Items are RenderRequests (dicts, JSON) or planned jobs with `.request` and `.label`
        (`nava_core.batch.PlannedJob`); `labels` overrides per-item labels.
        """
        rows: builtins.list[tuple[str, str]] = []
        for i, item in enumerate(requests):
            if hasattr(item, "request") and not isinstance(item, (RenderRequest, str, Mapping)):
                req, label = item.request, getattr(item, "label", "")
            else:
                req, label = item, ""
            if labels is not None:
                label = labels[i]
            rows.append((_request_json(req), label or ""))
        now = time.time()
        ids: builtins.list[int] = []
        with self._tx() as c:
            for rj, label in rows:
                cur = c.execute(
                    "INSERT INTO jobs (request_json, batch_id, label, created_at, source, owner, engine)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rj, batch_id, label, now, source, owner, engine),
                )
                ids.append(int(cur.lastrowid))
        return ids

    # ---- state changes --------------------------------------------------------------------------

    def claim(self, worker_id: str | None = None, job_id: int | None = None) -> Job | None:
        """Atomically take the oldest queued job (or job `job_id`, if still queued) and mark it running.

        `job_id` lets a scheduler that places jobs itself (the Ray driver: warm actors, retries on
        another actor) take a chosen job with the same atomicity; None if someone else took it.
        """
        wid = worker_id or default_worker_id()
        with self._tx() as c:
            if job_id is None:
                row = c.execute("SELECT id FROM jobs WHERE state = 'queued' AND engine NOT LIKE ? ORDER BY id LIMIT 1",
                                (CLUSTER_ENGINE_PREFIX + "%",)).fetchone()
            else:
                row = c.execute("SELECT id FROM jobs WHERE state = 'queued' AND id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?, finished_at = NULL,"
                " worker_pid = ?, worker_id = ?, error = NULL, tmp_dir = NULL, final_dir = NULL WHERE id = ?",
                (time.time(), os.getpid(), wid, row["id"]),
            )
            return _row_to_job(c.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    def set_engine(self, batch_id: str, engine: str) -> int:
        """Re-tag a batch's queued jobs: reserve them for a farm (`cluster:ADDRESS`) or hand them back."""
        with self._tx() as c:
            return c.execute("UPDATE jobs SET engine = ? WHERE batch_id = ? AND state = 'queued'",
                             (engine, batch_id)).rowcount

    def set_paths(self, job_id: int, tmp_dir: str | None = None, final_dir: str | None = None) -> None:
        """Record where a running job's files are, *before* they are created (so recovery finds them)."""
        with self._tx() as c:
            if tmp_dir is not None:
                c.execute("UPDATE jobs SET tmp_dir = ? WHERE id = ? AND state = 'running'", (tmp_dir, job_id))
            if final_dir is not None:
                c.execute("UPDATE jobs SET final_dir = ? WHERE id = ? AND state = 'running'", (final_dir, job_id))

    def mark_done(self, job_id: int, outputs: Mapping[str, str], timings: Mapping[str, Any] | None = None) -> bool:
        """Running -> done with its output paths. False if the job was not running (e.g. recovered)."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET state = 'done', outputs_json = ?, timings_json = ?, finished_at = ?,"
                " tmp_dir = NULL, error = NULL WHERE id = ? AND state = 'running'",
                (
                    json.dumps({k: str(v) for k, v in outputs.items()}),
                    json.dumps(dict(timings or {})),
                    time.time(),
                    job_id,
                ),
            )
            return cur.rowcount == 1

    def mark_failed(
        self, job_id: int, error: str, retry: bool = False, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> str | None:
        """Running -> queued (retry, attempts left) or failed. Returns the new state, None if not running."""
        with self._tx() as c:
            row = c.execute("SELECT attempts, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] != "running":
                return None
            new = "queued" if retry and row["attempts"] < max_attempts else "failed"
            c.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = ?, worker_pid = NULL, tmp_dir = NULL,"
                " final_dir = NULL WHERE id = ?",
                (new, str(error), None if new == "queued" else time.time(), job_id),
            )
            return new

    def mark_cancelled(self, job_id: int, reason: str = "cancelled") -> bool:
        """Running -> cancelled (the runner calls this when the render stopped on a cancel)."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ?, tmp_dir = NULL, final_dir = NULL"
                " WHERE id = ? AND state = 'running'",
                (reason, time.time(), job_id),
            )
            return cur.rowcount == 1

    def cancel(self, job_id: int) -> bool:
        """Cancel a job: a queued one at once; a running one is flagged and stops at its next step.

        Returns False for finished jobs (done/failed/cancelled stay as they are).
        """
        with self._tx() as c:
            row = c.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            if row["state"] == "queued":
                c.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?, error = 'cancelled before it started'"
                    " WHERE id = ?",
                    (time.time(), job_id),
                )
                return True
            if row["state"] == "running":
                c.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                return True
            return False

    def delete(self, job_id: int) -> Job | None:
        """Forget a finished job (History's Delete); returns its last row, or None when it does not exist
        or has not finished (a waiting or running job is cancelled, never deleted)."""
        with self._tx() as c:
            row = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] not in ("done", "failed", "cancelled"):
                return None
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return _row_to_job(row)

    def release(self, job_id: int, note: str = "") -> bool:
        """Running -> queued without counting the attempt: the run stopped for a reason outside the job
        (its output folder is full or gone), so it waits for the next run as if it had never started."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET state = 'queued', error = ?, worker_pid = NULL, worker_id = NULL, tmp_dir = NULL,"
                " final_dir = NULL, started_at = NULL, attempts = MAX(attempts - 1, 0) WHERE id = ? AND state = 'running'",
                (note or None, job_id),
            )
            return cur.rowcount == 1

    def requeue(self, job_id: int) -> bool:
        """Put a failed or cancelled job back in line (a user's "retry"). Done jobs are never re-rendered."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET state = 'queued', error = NULL, cancel_requested = 0, finished_at = NULL,"
                " attempts = 0 WHERE id = ? AND state IN ('failed', 'cancelled')",
                (job_id,),
            )
            return cur.rowcount == 1

    def cancel_requested(self, job_id: int) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    # ---- recovery ----------------------------------------------------------------------------

    def recover(
        self,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        all_running: bool = False,
        out_root: str | os.PathLike[str] | None = None,
    ) -> RecoveryReport:
        """Repair the queue after a crash.

        Jobs left `running` by a dead worker on this host (or every running job when
        `all_running=True`, for use at process start when no other worker shares the file) are:
        adopted as done when their complete folder (with manifest) exists, else re-queued, or marked
        failed once they have been attempted `max_attempts` times. Their temporary folders are
        removed; with `out_root`, orphaned folders under `out_root/.incoming` are removed too.
        """
        report = RecoveryReport()
        host = socket.gethostname()
        with self._tx() as c:
            rows = c.execute("SELECT * FROM jobs WHERE state = 'running' ORDER BY id").fetchall()
            for row in rows:
                job = _row_to_job(row)
                if not all_running:
                    same_host = (job.worker_id or "").rsplit(":", 1)[0] in ("", host)
                    if not same_host or (job.worker_pid and _pid_alive(job.worker_pid)):
                        continue
                adopted = _adopt_finished(job)
                if adopted is not None:
                    final_dir, outputs, timings = adopted
                    c.execute(
                        "UPDATE jobs SET state = 'done', outputs_json = ?, timings_json = ?, finished_at = ?,"
                        " final_dir = ?, tmp_dir = NULL WHERE id = ?",
                        (json.dumps(outputs), json.dumps(timings), time.time(), final_dir, job.id),
                    )
                    report.adopted.append(job.id)
                    continue
                if job.tmp_dir and Path(job.tmp_dir).exists():
                    shutil.rmtree(job.tmp_dir, ignore_errors=True)
                    report.cleaned.append(job.tmp_dir)
                if job.attempts >= max_attempts:
                    c.execute(
                        "UPDATE jobs SET state = 'failed', finished_at = ?, worker_pid = NULL, tmp_dir = NULL,"
                        " final_dir = NULL, error = ? WHERE id = ?",
                        (
                            time.time(),
                            f"the worker stopped while rendering this job {job.attempts} time(s); giving up "
                            f"(retry limit {max_attempts}). Check memory/GPU logs, then retry it by hand.",
                            job.id,
                        ),
                    )
                    report.failed.append(job.id)
                else:
                    c.execute(
                        "UPDATE jobs SET state = 'queued', started_at = NULL, worker_pid = NULL, worker_id = NULL,"
                        " tmp_dir = NULL, final_dir = NULL WHERE id = ?",
                        (job.id,),
                    )
                    report.requeued.append(job.id)
            if out_root is not None:
                live = {
                    r["tmp_dir"]
                    for r in c.execute("SELECT tmp_dir FROM jobs WHERE state = 'running' AND tmp_dir IS NOT NULL")
                }
                incoming = Path(out_root) / INCOMING_DIR
                # layout: .incoming/<batch>/<job folder>; a live worker's folder is never touched
                for batch_dir in (incoming.iterdir() if incoming.is_dir() else ()):
                    entries = builtins.list(batch_dir.iterdir()) if batch_dir.is_dir() else [batch_dir]
                    for p in entries:
                        if str(p) not in live:
                            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                            report.cleaned.append(str(p))
                    if batch_dir.is_dir():
                        try:
                            batch_dir.rmdir()
                        except OSError:
                            pass
        if report.changed or report.cleaned:
            log.info(
                "queue recovery: %d re-queued, %d failed, %d adopted as done, %d folders removed",
                len(report.requeued), len(report.failed), len(report.adopted), len(report.cleaned),
            )
        return report

    # ---- reading ------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def list(self, batch_id: str | None = None, states: Iterable[str] | None = None,
             newest_first: bool = False, limit: int | None = None) -> builtins.list[Job]:
        """Jobs in queue order (or newest first), optionally of one batch and/or some states."""
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if batch_id is not None:
            sql += " AND batch_id = ?"
            args.append(batch_id)
        if states is not None:
            st = builtins.list(states)
            bad = set(st) - set(STATES)
            if bad:
                raise ValueError(f"unknown job state(s) {sorted(bad)}; states are {', '.join(STATES)}")
            sql += f" AND state IN ({','.join('?' * len(st))})"
            args.extend(st)
        with self._lock:
            sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            rows = self._conn.execute(sql, args).fetchall()
        return [_row_to_job(r) for r in rows]

    def position(self, job_id: int) -> int | None:
        """1 for the next job to run, 2 after it, ...; 0 while running; None once finished/unknown."""
        with self._lock:
            row = self._conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["state"] == "running":
                return 0
            if row["state"] != "queued":
                return None
            n = self._conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND id < ?", (job_id,)).fetchone()
        return int(n[0]) + 1

    def counts(self, batch_id: str | None = None) -> dict[str, int]:
        """Jobs per state (every state present, zero included)."""
        sql, args = "SELECT state, COUNT(*) FROM jobs", []
        if batch_id is not None:
            sql += " WHERE batch_id = ?"
            args.append(batch_id)
        with self._lock:
            rows = self._conn.execute(sql + " GROUP BY state", args).fetchall()
        out = {s: 0 for s in STATES}
        out.update({r[0]: int(r[1]) for r in rows})
        return out


# ---- files ----------------------------------------------------------------------------------


def slugify(text: str, max_len: int = 40) -> str:
    """A filesystem-safe short name from a label or title."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:max_len].rstrip("-") or "render"


def _fresh_dir(parent: Path, name: str) -> Path:
    """`parent/name`, or `name-2`, `name-3`, ... if taken: outputs are never overwritten."""
    p, i = parent / name, 2
    while p.exists():
        p, i = parent / f"{name}-{i}", i + 1
    return p


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_manifest(folder: Path, job: Job, rel_outputs: dict[str, str], timings: dict[str, Any]) -> None:
    """The manifest marks a folder as complete: written last, atomically, after the outputs are synced."""
    for rel in rel_outputs.values():
        with open(folder / rel, "rb") as f:
            os.fsync(f.fileno())
    data = {
        "job_id": job.id,
        "batch_id": job.batch_id,
        "label": job.label,
        "outputs": rel_outputs,
        "timings": timings,
        "request": json.loads(job.request_json),
    }
    tmp = folder / (MANIFEST_NAME + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST_NAME)
    _fsync_dir(folder)


def _read_manifest(folder: Path, job_id: int) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("job_id") != job_id or not isinstance(data.get("outputs"), dict):
        return None
    if not all((folder / rel).is_file() for rel in data["outputs"].values()):
        return None
    return data


def _adopt_finished(job: Job) -> tuple[str, dict[str, str], dict[str, Any]] | None:
    """If a killed worker had finished the render, return (final_dir, outputs, timings) to mark done."""
    if job.final_dir and Path(job.final_dir).is_dir():
        final = Path(job.final_dir)
        data = _read_manifest(final, job.id)
        if data is not None:
            return str(final), {k: str(final / v) for k, v in data["outputs"].items()}, data.get("timings", {})
    if job.tmp_dir and Path(job.tmp_dir).is_dir():
        tmp = Path(job.tmp_dir)
        data = _read_manifest(tmp, job.id)
        if data is not None:
            parent = _final_parent(tmp)
            parent.mkdir(parents=True, exist_ok=True)
            final = _fresh_dir(parent, _folder_name(job))
            os.rename(tmp, final)
            _fsync_dir(final.parent)
            return str(final), {k: str(final / v) for k, v in data["outputs"].items()}, data.get("timings", {})
    return None


def _final_parent(tmp: Path) -> Path:
    """Temporary folders are `<out_root>/.incoming/<batch>/<name>`; finals `<out_root>/<batch>/...`."""
    batch = tmp.parent.name
    return tmp.parent.parent.parent / batch


def _folder_name(job: Job) -> str:
    title = job.label
    if not title:
        try:
            title = json.loads(job.request_json).get("title") or ""
        except ValueError:
            title = ""
    return f"{job.id}-{slugify(title)}"


def job_dirs(out_root: str | os.PathLike[str], job: Job) -> tuple[Path, Path]:
    """(temporary folder, final parent) for a job. Batch folders are slugs of the batch id."""
    batch = slugify(job.batch_id, 80) if job.batch_id else "single"
    tmp = Path(out_root) / INCOMING_DIR / batch / f"{job.id}-{uuid.uuid4().hex[:10]}"
    return tmp, Path(out_root) / batch


# ---- the runner -----------------------------------------------------------------------------


def _watch_cancel(queue: JobQueue, job_id: int, outer: CancelToken | None, token: CancelToken,
                  stop: threading.Event, poll_s: float) -> None:
    while not stop.wait(poll_s):
        if (outer is not None and outer.cancelled) or queue.cancel_requested(job_id):
            token.cancel()
            return


def run_one(
    queue: JobQueue,
    job: Job,
    render_fn: RenderFn,
    out_root: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    poll_s: float = 0.25,
    requeue_on_output_error: bool = False,
    retry: bool = False,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> str:
    """Render one claimed job to its final folder; returns its end state (done/failed/cancelled/queued).

    With `requeue_on_output_error` a problem of the output folder itself (not a folder, not
    writable, disk full) is not the job's fault: the job goes back to "queued" (its attempt not
    counted) and OutputFolderError is raised for the caller to stop and report. With `retry`, a
    render error puts the job back in line until it has been attempted `max_attempts` times (a
    render farm: the error may be the machine's, not the job's).
    """
    from nava_core.outdir import as_output_error, is_output_error

    t0 = time.perf_counter()
    tmp, parent = job_dirs(out_root, job)
    queue.set_paths(job.id, tmp_dir=str(tmp))  # recorded before it exists: recovery can always clean it
    try:
        tmp.mkdir(parents=True, exist_ok=False)
    except OSError as e:
        if requeue_on_output_error and is_output_error(e):
            queue.release(job.id, str(as_output_error(e, out_root)))
            raise as_output_error(e, out_root) from e
        raise
    token = CancelToken()
    if cancel is not None and cancel.cancelled:
        token.cancel()
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch_cancel, args=(queue, job.id, cancel, token, stop, poll_s), daemon=True
    )
    watcher.start()
    try:
        request = job.request
        result = render_fn(request, tmp, progress, token)
        outputs = result.files() if hasattr(result, "files") else dict(result)
        extra = {k: float(v) for k, v in (getattr(result, "timings", None) or {}).items()
                 if isinstance(v, (int, float))}
        t_render = time.perf_counter() - t0
        rel: dict[str, str] = {}
        for name, p in outputs.items():
            path = Path(p).resolve()
            try:
                rel[name] = str(path.relative_to(tmp.resolve()))
            except ValueError:
                raise RuntimeError(f"render output {name!r} ({p}) was written outside its job folder {tmp}") from None
            if not path.is_file():
                raise RuntimeError(f"render output {name!r} ({p}) does not exist")
        timings = {**extra, "render_s": round(t_render, 6)}
        _write_manifest(tmp, job, rel, timings)
        parent.mkdir(parents=True, exist_ok=True)
        final = _fresh_dir(parent, _folder_name(job))
        queue.set_paths(job.id, final_dir=str(final))
        os.rename(tmp, final)
        _fsync_dir(parent)
        timings["total_s"] = round(time.perf_counter() - t0, 6)
        if job.started_at is not None:
            timings["queued_s"] = round(job.started_at - job.created_at, 6)
        queue.mark_done(job.id, {k: str(final / v) for k, v in rel.items()}, timings)
        log.info("job %d done -> %s", job.id, final)
        return "done"
    except RenderCancelled:
        shutil.rmtree(tmp, ignore_errors=True)
        queue.mark_cancelled(job.id)
        log.info("job %d cancelled", job.id)
        return "cancelled"
    except Exception as e:  # a render error fails this job, not the runner
        shutil.rmtree(tmp, ignore_errors=True)
        if requeue_on_output_error and is_output_error(e, out_root):
            queue.release(job.id, str(as_output_error(e, out_root)))
            raise as_output_error(e, out_root) from e
        reason = str(e) if isinstance(e, RenderFailed) else f"{type(e).__name__}: {e}"
        state = queue.mark_failed(job.id, reason, retry=retry, max_attempts=max_attempts)
        log.exception("job %d failed (attempt %d, now %s)", job.id, job.attempts, state)
        return state or "failed"
    finally:
        stop.set()
        watcher.join()
        _rmdir_empty_parents(tmp.parent, Path(out_root) / INCOMING_DIR)


def _rmdir_empty_parents(path: Path, stop_at: Path) -> None:
    for p in (path, stop_at):
        try:
            p.rmdir()
        except OSError:
            return


def run_queue(
    queue: JobQueue,
    render_fn: RenderFn,
    out_root: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    stop_when_empty: bool = True,
    worker_id: str | None = None,
    poll_s: float = 0.5,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> RunSummary:
    """Work through the queue: recover dead workers' jobs, then claim and render until empty.

    `render_fn(request, tmp_dir, progress, cancel) -> {name: path}` writes its outputs inside
    `tmp_dir`. `cancel` stops the runner: the current render is cancelled and nothing more claimed.
    With `stop_when_empty=False` it polls for new jobs every `poll_s` until cancelled.
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    queue.recover(max_attempts=max_attempts, out_root=out_root)
    summary = RunSummary()
    while cancel is None or not cancel.cancelled:
        job = queue.claim(worker_id)
        if job is None:
            if stop_when_empty:
                break
            if cancel is not None:
                cancel._event.wait(poll_s)  # noqa: SLF001 - wake at once on cancel
            else:
                time.sleep(poll_s)
            continue
        state = run_one(queue, job, render_fn, out_root, progress, cancel)
        getattr(summary, state).append(job.id)
    return summary


class Worker:
    """The one worker of a job store: claims jobs in order and renders each through one `render_fn`.

    Used by the studio (a background thread serving studio, API and Batch-tab jobs alike) and by
    `nava-render batch` (in the foreground, `run()`). It remembers the running job's latest progress
    event and wakes waiters when a job finishes; everything else lives in the store, so a restarted
    worker carries on from the file (`recover` first).
    """

    def __init__(self, queue: JobQueue, render_fn: RenderFn, out_root: str | os.PathLike[str],
                 on_change: Callable[[int], None] | None = None, poll_s: float = 0.25,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, on_progress: ProgressCallback | None = None,
                 requeue_on_output_error: bool = False) -> None:
        # requeue_on_output_error: a full or missing output folder puts the job back and stops the run
        # (OutputFolderError), as the CLI wants; the studio's worker fails that job and carries on
        self.requeue_on_output_error = requeue_on_output_error
        self.queue, self.render_fn, self.out_root = queue, render_fn, Path(out_root)
        self.out_root.mkdir(parents=True, exist_ok=True)
        self.on_change = on_change or (lambda job_id: None)
        self.on_progress = on_progress
        self.poll_s, self.max_attempts = poll_s, max_attempts
        self.current: int | None = None
        self.event: ProgressEvent | None = None  # the running job's latest progress
        self._cancel = CancelToken()  # stops the worker (and the render in progress)
        self._job_cancel: CancelToken | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.recovered = queue.recover(max_attempts=max_attempts, out_root=self.out_root)

    # ---- control --------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve the store from a background thread until `stop()`."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self.run, kwargs={"stop_when_empty": False},
                                            name="nava-job-worker", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """A job was added: claim it now rather than at the next poll."""
        with self._cond:
            self._cond.notify_all()

    @property
    def stopping(self) -> bool:
        return self._cancel.cancelled

    def request_stop(self) -> None:
        """Stop claiming and cancel the render in progress at its next step (it goes back in line)."""
        self._cancel.cancel()
        if self._job_cancel is not None:
            self._job_cancel.cancel()
        self.wake()

    def stop(self, timeout: float = 10.0) -> bool:
        """`request_stop`, then wait for the background thread; True once it ended."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the job worker did not stop within %.0f s", timeout)
                return False
        return True

    def cancel(self, job_id: int) -> bool:
        """A queued job is dropped at once; the running one stops at its next denoising step."""
        ok = self.queue.cancel(job_id)
        if ok and self.current == job_id and self._job_cancel is not None:
            self._job_cancel.cancel()
        if ok:
            self._changed(job_id)
        return ok

    def wait(self, job_id: int, timeout: float | None = None) -> Job | None:
        """Block until the job is finished (or `timeout`); returns its row."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.queue.get(job_id)
            if job is None or job.finished:
                return job
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return job
            with self._cond:
                self._cond.wait(min(self.poll_s * 4, left) if left is not None else self.poll_s * 4)

    # ---- work -----------------------------------------------------------------------------------

    def run(self, stop_when_empty: bool = True, on_start: Callable[[Job], None] | None = None,
            on_end: Callable[[Job, str], None] | None = None) -> RunSummary:
        """Claim and render until the store is empty (or, with `stop_when_empty=False`, until stopped)."""
        summary = RunSummary()
        while not self._cancel.cancelled:
            job = self.queue.claim()
            if job is None:
                if stop_when_empty:
                    break
                with self._cond:
                    self._cond.wait(self.poll_s)
                continue
            self.current, self.event, self._job_cancel = job.id, ProgressEvent("loading", message="starting"), CancelToken()
            if self._cancel.cancelled:
                self._job_cancel.cancel()
            self._changed(job.id)
            if on_start is not None:
                on_start(job)
            try:
                state = run_one(self.queue, job, self.render_fn, self.out_root, self._progress, self._job_cancel,
                                requeue_on_output_error=self.requeue_on_output_error)
            except Exception as e:  # noqa: BLE001 - e.g. the output folder cannot be made: fail this job only
                from nava_core.outdir import OutputFolderError

                if isinstance(e, OutputFolderError):  # the job is queued again; the caller stops and reports
                    self.current, self.event, self._job_cancel = None, None, None
                    self._changed(job.id)
                    raise
                log.exception("job %d could not run", job.id)
                self.queue.mark_failed(job.id, f"{type(e).__name__}: {e}")
                state = "failed"
            if state == "cancelled" and self._cancel.cancelled and not self.queue.cancel_requested(job.id):
                # the worker stopped, nobody cancelled this job: put it back for the next start
                self.queue.requeue(job.id)
                state = "queued"
            self.current, self.event, self._job_cancel = None, None, None
            if state in ("done", "failed", "cancelled"):
                getattr(summary, state).append(job.id)
            self._changed(job.id)
            if on_end is not None:
                on_end(job, state)
        return summary

    def _progress(self, ev: ProgressEvent) -> None:
        self.event = ev
        if self.on_progress is not None:
            self.on_progress(ev)

    def _changed(self, job_id: int) -> None:
        try:
            self.on_change(job_id)
        except Exception:  # noqa: BLE001 - a listener's failure must not stop the worker
            log.exception("job change listener failed for job %d", job_id)
        with self._cond:
            self._cond.notify_all()


__all__ = [
    "STATES",
    "Job",
    "JobQueue",
    "RecoveryReport",
    "RunSummary",
    "run_queue",
    "run_one",
    "Worker",
    "RenderFailed",
    "FINISHED",
    "job_dirs",
    "slugify",
    "default_worker_id",
]
