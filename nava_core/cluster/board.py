"""Progress of a cluster batch: one line per actor, plus done/failed counts, jobs/hour and an ETA.

The driver feeds it (actor lines from the actors' phase/step, job ends from the job store); the
terminal and the studio's Batch tab read the same `snapshot()`.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO


@dataclass(frozen=True)
class BoardSnapshot:
    """What a view shows: actor lines in actor order and the batch's rate and ETA."""

    actor_lines: list[str] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    remaining: int = 0
    jobs_per_hour: float | None = None
    eta_s: float | None = None

    def summary(self) -> str:
        from nava_core.batch import fmt_seconds

        rate = f"{self.jobs_per_hour:.1f} jobs/h" if self.jobs_per_hour is not None else "- jobs/h"
        eta = f"ETA {fmt_seconds(self.eta_s)}" if self.eta_s is not None else "ETA -"
        return f"{self.done} done, {self.failed} failed, {self.remaining} to go | {rate} | {eta}"


class ClusterBoard:
    """Thread-safe aggregate of the actors' progress. `stream=None` keeps it silent (the studio)."""

    def __init__(self, remaining: int = 0, stream: TextIO | None = sys.stderr, quiet: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._lines: dict[int, str] = {}
        self._phases: dict[int, str] = {}
        self._job_text: dict[int, str] = {}
        self._done = self._failed = 0
        self._remaining = remaining
        self._clock = clock
        self._t0 = clock()
        self.stream = None if quiet else stream
        self._tty = bool(self.stream is not None and getattr(self.stream, "isatty", lambda: False)())
        self._drawn = 0

    def set_remaining(self, n: int) -> None:
        with self._lock:
            self._remaining = max(0, n)

    def start(self) -> None:
        """Start the jobs/hour clock (when the actors are up: start-up is not render time)."""
        with self._lock:
            self._t0 = self._clock()

    def actor(self, index: int, text: str, phase: str = "", job: int | None = None, job_text: str = "") -> None:
        """Set actor `index`'s line (and job `job`'s progress text); a plain stream prints phase changes only."""
        with self._lock:
            self._lines[index] = text
            if job is not None:
                self._job_text[job] = f"actor {index}: {job_text or text}"
            changed = self._phases.get(index) != phase
            self._phases[index] = phase
            if self.stream is None:
                return
            if self._tty:
                self._redraw()
            elif changed:
                self.stream.write(f"actor {index}: {text}\n")
                self.stream.flush()

    def job_progress(self, job: int) -> str | None:
        """The running job's latest progress on its actor (the Batch tab's job table shows it)."""
        with self._lock:
            return self._job_text.get(job)

    def job_finished(self, state: str, job: int | None = None) -> None:
        """Count a job end (done, failed; a re-queued retry is neither) and print the summary."""
        with self._lock:
            self._job_text.pop(job, None)
            if state == "done":
                self._done += 1
                self._remaining = max(0, self._remaining - 1)
            elif state in ("failed", "cancelled", "refused"):
                self._failed += 1
                self._remaining = max(0, self._remaining - 1)
            if self.stream is None:
                return
            if self._tty:
                self._redraw()
            else:
                self.stream.write(self._snapshot().summary() + "\n")
                self.stream.flush()

    def _snapshot(self) -> BoardSnapshot:
        elapsed = max(1e-9, self._clock() - self._t0)
        rate = self._done / elapsed * 3600 if self._done else None
        eta = self._remaining * elapsed / self._done if self._done else None
        lines = [f"actor {i}: {self._lines[i]}" for i in sorted(self._lines)]
        return BoardSnapshot(lines, self._done, self._failed, self._remaining, rate, eta)

    def snapshot(self) -> BoardSnapshot:
        with self._lock:
            return self._snapshot()

    def _redraw(self) -> None:
        assert self.stream is not None
        snap = self._snapshot()
        rows = [*snap.actor_lines, snap.summary()]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{r[:200]}\n" for r in rows))
        self.stream.flush()
        self._drawn = len(rows)


__all__ = ["BoardSnapshot", "ClusterBoard"]
