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

    def search(self, text: str, limit: int = 200) -> list[Job]:
        """Renders whose id, title, batch label, state, error or prompt contain every word of `text`."""
        words = [w.lower() for w in (text or "").split()]
        jobs = self.list(limit=limit if not words else 10 * limit)
        if not words:
            return jobs
        def hay(j: Job) -> str:
            return " ".join(str(x) for x in (j.id, j.title, j.label, j.state, j.batch_id or "", j.error or "",
                                             j.request_json)).lower()
        return [j for j in jobs if all(w in hay(j) for w in words)][:limit]

    def delete(self, job_id: int | str, outputs_root: Path) -> str:
        """Delete a finished render and its files (only inside the outputs folder); returns what was done."""
        import shutil

        try:
            job = self.jobs.delete(int(job_id))
        except (TypeError, ValueError):
            job = None
        if job is None:
            return f"Render {job_id} is not a finished render in the history (waiting ones are cancelled, not deleted)."
        folder = Path(job.final_dir) if job.final_dir else None
        root = Path(outputs_root).resolve()
        if folder is not None and folder.exists() and folder.resolve().is_relative_to(root) and folder.resolve() != root:
            shutil.rmtree(folder, ignore_errors=True)
            return f"Render {job.id} and its files were deleted."
        return f"Render {job.id} was removed from the history."

    def get(self, job_id: int | str) -> Job | None:
        try:
            return self.jobs.get(int(job_id))
        except (TypeError, ValueError):
            return None


def thumbnail(job: Job) -> str | None:
    """The still shown in the gallery, if the render made one and it is still on disk."""
    p = job.outputs.get("thumbnail")
    return p if p and Path(p).exists() else None
