"""The render history: every render's request, builder state, outputs, status and timings in SQLite.

It lives in the user's data folder so a restart keeps it. Rows are written when a render is queued and
updated as it runs, so a crash leaves an honest "interrupted" row rather than nothing. Each row keeps
the builder state the user saw, so "reuse settings" restores the builder exactly (voices included:
voice files are copied into the data folder before they are referenced).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS renders (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    request_json TEXT NOT NULL,
    builder_json TEXT,
    outputs_json TEXT NOT NULL DEFAULT '{}',
    timings_json TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    engine TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS renders_created ON renders(created);
"""


@dataclass
class HistoryEntry:
    id: str
    created: float
    updated: float
    status: str
    title: str
    request_json: str
    builder: dict[str, Any] | None
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""
    engine: str = ""

    @property
    def thumbnail(self) -> str | None:
        p = self.outputs.get("thumbnail")
        return p if p and Path(p).exists() else None


class HistoryStore:
    """SQLite-backed list of renders (WAL, one connection per call: safe across threads)."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.db_path, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            with con:
                yield con
        finally:
            con.close()

    def add(self, render_id: str, request_json: str, builder: dict[str, Any] | None, title: str = "",
            engine: str = "", status: str = "queued") -> None:
        now = time.time()
        with self._lock, self._connect() as con:
            con.execute(
                "INSERT INTO renders (id, created, updated, status, title, request_json, builder_json, engine)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (render_id, now, now, status, title, request_json,
                 json.dumps(builder) if builder is not None else None, engine),
            )

    def update(self, render_id: str, *, status: str | None = None, outputs: dict[str, str] | None = None,
               timings: dict[str, float] | None = None, error: str | None = None) -> None:
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        sets, args = ["updated = ?"], [time.time()]
        for col, val in (("status", status), ("outputs_json", outputs), ("timings_json", timings), ("error", error)):
            if val is None:
                continue
            sets.append(f"{col} = ?")
            args.append(json.dumps(val) if isinstance(val, dict) else val)
        with self._lock, self._connect() as con:
            con.execute(f"UPDATE renders SET {', '.join(sets)} WHERE id = ?", (*args, render_id))

    def get(self, render_id: str) -> HistoryEntry | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM renders WHERE id = ?", (render_id,)).fetchone()
        return _entry(row) if row else None

    def list(self, limit: int = 200) -> list[HistoryEntry]:
        """Newest first."""
        with self._connect() as con:
            rows = con.execute("SELECT * FROM renders ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [_entry(r) for r in rows]

    def mark_interrupted(self, render_id: str | None = None, reason: str | None = None) -> int:
        """Renders left queued/running by a previous process did not finish: say so instead of hiding it.

        Without `render_id` every unfinished row is marked (a store used without a durable queue).
        """
        error = "the studio stopped before this render finished; use 'reuse settings' to render it again"
        if reason:
            error = f"{reason} (use 'reuse settings' to render it again)"
        sql = "UPDATE renders SET status = 'interrupted', updated = ?, error = ? WHERE status IN ('queued', 'running')"
        args: tuple[Any, ...] = (time.time(), error)
        if render_id is not None:
            sql, args = sql + " AND id = ?", (*args, render_id)
        with self._lock, self._connect() as con:
            n = con.execute(sql, args).rowcount
        if n:
            log.info("marked %d unfinished render(s) from a previous run as interrupted", n)
        return n


def _entry(row: sqlite3.Row) -> HistoryEntry:
    return HistoryEntry(
        id=row["id"], created=row["created"], updated=row["updated"], status=row["status"], title=row["title"],
        request_json=row["request_json"],
        builder=json.loads(row["builder_json"]) if row["builder_json"] else None,
        outputs=json.loads(row["outputs_json"] or "{}"), timings=json.loads(row["timings_json"] or "{}"),
        error=row["error"], engine=row["engine"],
    )
