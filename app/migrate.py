"""Move a data folder of an earlier studio (three SQLite stores) into the one job store, losing nothing.

Earlier versions kept single renders in `queue.sqlite`, their history in `history.sqlite` (kept in step
after each crash) and Batch-tab jobs in `batch/queue.sqlite`. On the first start of this version every
history row becomes a job (its request, builder state, outputs, timings, error and time kept), queued
renders stay queued and are resumed, and batch jobs keep their batch, label, state and outputs. The
rows are copied in one transaction that also records which files were migrated, so a crash half way
re-runs the whole migration and a finished one is never applied twice; the old files are then renamed
to `*.migrated` (kept, not deleted).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from nava_core.jobs import JobQueue

from app.paths import StudioPaths

log = logging.getLogger(__name__)

LEGACY_QUEUE = "queue.sqlite"
LEGACY_HISTORY = "history.sqlite"
LEGACY_BATCH_QUEUE = "batch/queue.sqlite"
SINGLE_BATCH = "single"  # the batch id the old studio gave its single renders
_INTERRUPTED = "the studio stopped before this render finished; use 'reuse settings' to render it again"
# old history output names -> the job store's (RenderOutputs) names
_OUTPUT_NAMES = {"request": "sidecar", "picture": "thumbnail"}


def legacy_stores(paths: StudioPaths) -> list[Path]:
    return [p for p in (paths.home / LEGACY_QUEUE, paths.home / LEGACY_HISTORY, paths.home / LEGACY_BATCH_QUEUE)
            if p.is_file()]


def migrate_data_folder(paths: StudioPaths) -> int:
    """Copy the old stores' rows into `paths.jobs_db` (once); returns the number of jobs added."""
    found = legacy_stores(paths)
    if not found:
        return 0
    JobQueue(paths.jobs_db).close()  # the current schema
    con = sqlite3.connect(paths.jobs_db, timeout=30, isolation_level=None)
    con.row_factory = sqlite3.Row
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("CREATE TABLE IF NOT EXISTS migrated (source TEXT PRIMARY KEY, at REAL NOT NULL)")
        done = {r[0] for r in con.execute("SELECT source FROM migrated")}
        todo = [p for p in found if _key(paths, p) not in done]
        added = 0
        if todo:
            queue_rows = _rows(paths.home / LEGACY_QUEUE, "jobs") if paths.home / LEGACY_QUEUE in todo else []
            if paths.home / LEGACY_HISTORY in todo:
                added += _copy_history(con, _rows(paths.home / LEGACY_HISTORY, "renders"), queue_rows)
            elif queue_rows:
                added += _copy_unmatched_queue(con, queue_rows, matched=set())
            if paths.home / LEGACY_BATCH_QUEUE in todo:
                added += _copy_batch(con, _rows(paths.home / LEGACY_BATCH_QUEUE, "jobs"))
            for p in todo:
                con.execute("INSERT INTO migrated (source, at) VALUES (?, ?)", (_key(paths, p), time.time()))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    for p in found:
        _retire(p)
    if added:
        log.info("migrated %d render(s) from %s into %s", added, ", ".join(p.name for p in found), paths.jobs_db)
    return added


def _key(paths: StudioPaths, p: Path) -> str:
    return str(p.relative_to(paths.home))


def _rows(db: Path, table: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(db, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    finally:
        con.close()  # the last connection checkpoints the WAL into the file


def _retire(p: Path) -> None:
    """Rename an old store (and its WAL files) out of the way; kept for the user, never read again."""
    for suffix in ("", "-wal", "-shm"):
        f = p.with_name(p.name + suffix)
        if f.exists():
            f.rename(f.with_name(f.name + ".migrated"))


_COLUMNS = ("request_json", "state", "attempts", "outputs_json", "timings_json", "error", "batch_id", "label",
            "created_at", "started_at", "finished_at", "final_dir", "source", "owner", "engine", "builder_json")


def _insert(con: sqlite3.Connection, **row: Any) -> None:
    cols = [c for c in _COLUMNS if c in row]
    con.execute(f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [row[c] for c in cols])


def _outputs(raw: str | None) -> tuple[str, str | None]:
    """Old history outputs -> (store outputs JSON, final folder)."""
    old = json.loads(raw or "{}")
    folder = old.pop("folder", None)
    new: dict[str, str] = {}
    for k, v in old.items():
        name = _OUTPUT_NAMES.get(k, k)
        new.setdefault(name, v)
    return json.dumps(new), folder


def _copy_history(con: sqlite3.Connection, history: list[dict[str, Any]], queue_rows: list[dict[str, Any]]) -> int:
    by_label = {q["label"]: q for q in queue_rows if q.get("batch_id") == SINGLE_BATCH}
    matched: set[int] = set()
    for h in sorted(history, key=lambda r: r["created"]):
        q = by_label.get(h["id"])
        if q is not None:
            matched.add(q["id"])
        status, error = h["status"], h["error"] or None
        outputs_json, folder = _outputs(h["outputs_json"])
        timings_json = h["timings_json"] or "{}"
        if status == "interrupted":
            status = "failed"
        elif status in ("queued", "running"):
            if q is not None and q["state"] == "done":
                status, outputs_json, folder = "done", q["outputs_json"], q["final_dir"]
                timings_json = q["timings_json"] or timings_json
            elif q is not None and q["state"] in ("queued", "running"):
                status = "queued"  # its renderer is gone: render it (again) from the start
            else:
                status, error = "failed", (q["error"] if q is not None and q["error"] else _INTERRUPTED)
        finished = status in ("done", "failed", "cancelled")
        _insert(con, request_json=h["request_json"], state=status, attempts=0, outputs_json=outputs_json,
                timings_json=timings_json, error=error, batch_id=None, label=h["title"] or "",
                created_at=h["created"], finished_at=h["updated"] if finished else None,
                final_dir=folder if status == "done" else None, source="studio", engine=h["engine"] or "",
                builder_json=h["builder_json"])
    return len(history) + _copy_unmatched_queue(con, queue_rows, matched)


def _copy_unmatched_queue(con: sqlite3.Connection, queue_rows: list[dict[str, Any]], matched: set[int]) -> int:
    """Single renders queued by another process, with no history row: still queued, so still rendered."""
    n = 0
    for q in queue_rows:
        if q["id"] in matched or q["state"] not in ("queued", "running"):
            continue
        _insert(con, request_json=q["request_json"], state="queued", attempts=0, outputs_json="{}",
                timings_json="{}", created_at=q["created_at"], source="studio", label="")
        n += 1
    return n


def _copy_batch(con: sqlite3.Connection, rows: list[dict[str, Any]]) -> int:
    for q in rows:
        state = "queued" if q["state"] == "running" else q["state"]
        _insert(con, request_json=q["request_json"], state=state, attempts=q["attempts"] if state != "queued" else 0,
                outputs_json=q["outputs_json"] or "{}", timings_json=q["timings_json"] or "{}", error=q["error"],
                batch_id=q["batch_id"], label=q["label"] or "", created_at=q["created_at"],
                started_at=q["started_at"], finished_at=q["finished_at"],
                final_dir=q["final_dir"] if state == "done" else None, source="batch")
    return len(rows)


__all__ = ["migrate_data_folder", "legacy_stores"]
