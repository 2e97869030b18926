"""History: a view of the finished (and waiting) jobs in the one job store, newest first.

Why a view and not a table: the store already holds every render's final request, builder state,
outputs, timings and error (`nava_core.jobs.Job`), written as the job moves through the queue. A second
database had to be kept in step with it after every crash; a view cannot disagree with it.
"""

from __future__ import annotations

from pathlib import Path

from nava_core.jobs import Job, JobQueue


class HistoryView:
    """Reads the job store as the History tab lists it."""

    def __init__(self, jobs: JobQueue) -> None:
        self.jobs = jobs

    def list(self, limit: int = 200) -> list[Job]:
        """Renders of every origin, newest first."""
        return self.jobs.list(newest_first=True, limit=limit)

    def get(self, job_id: int | str) -> Job | None:
        try:
            return self.jobs.get(int(job_id))
        except (TypeError, ValueError):
            return None


def thumbnail(job: Job) -> str | None:
    """The still shown in the gallery, if the render made one and it is still on disk."""
    p = job.outputs.get("thumbnail")
    return p if p and Path(p).exists() else None
