"""The Batch tab's "Run on cluster": one batch of the studio's job store rendered by Ray actors.

The jobs stay in the studio's one job store (History, the job table, cancel and zip see them as
always); a `ClusterDriver` limited to the batch claims them and runs them on the cluster. The
studio's own worker may still take some of them when it is idle: both claim atomically from the
same store, so a job is rendered once either way. Ray is optional: without it the choice explains
how to install it and nothing is started.
"""

from __future__ import annotations

import html
import logging
import threading
from typing import Any

from nava_core.progress import CancelToken

log = logging.getLogger(__name__)


class ClusterBatches:
    """At most one cluster run at a time, in a background thread; its progress for the page."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel: CancelToken | None = None
        self._board: Any = None
        self._batch: str | None = None
        self._message = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, batch_id: str, address: str, actors: int | None = None) -> str:
        """Start rendering `batch_id` on the cluster at `address`; returns what the page says."""
        from nava_core.cluster import ClusterConfig, ClusterError, require_ray

        with self._lock:
            if self.running:
                return f"⛔ The cluster is busy with batch {self._batch}; this batch stays queued for the studio."
            try:
                require_ray()
                engine = self.service.engine
                config = ClusterConfig(address=(address or "local").strip(), weights=str(engine.choice.folder),
                                       actors=int(actors) if actors else None,
                                       memory_profile=getattr(engine, "memory_profile", None) or "auto",
                                       precision=getattr(engine, "precision", None) or "nava")
            except (ClusterError, ValueError) as e:
                return f"⛔ {html.escape(str(e))}"
            from nava_core.cluster.board import ClusterBoard
            from nava_core.cluster.driver import ClusterDriver

            self._board = ClusterBoard(stream=None)
            self._cancel = CancelToken()
            self._batch, self._message = batch_id, f"Starting actors on {config.address}…"
            driver = ClusterDriver(self.service.jobs, self.service.paths.outputs, config, board=self._board,
                                   cancel=self._cancel, batch_id=batch_id)
            self._thread = threading.Thread(target=self._run, args=(driver,), name="nava-cluster", daemon=True)
            self._thread.start()
            return f"Batch {html.escape(batch_id)} is running on the cluster ({html.escape(config.address)})."

    def _run(self, driver: Any) -> None:
        try:
            s = driver.run()
            self._message = (f"Cluster run finished: {len(s.done)} done, {len(s.failed)} failed, {len(s.refused)} "
                             f"refused, {len(s.retried)} retried on {s.actors} actor(s).")
        except Exception as e:  # noqa: BLE001 - shown on the page; the jobs stay queued for the studio
            log.exception("cluster run failed")
            self._message = f"⛔ Cluster run stopped: {e}. The batch's jobs stay queued for the studio."

    def status_markdown(self) -> str:
        """Actor lines, counts, jobs/hour and ETA of the current (or last) run; empty if none ran."""
        if self._board is None:
            return ""
        snap = self._board.snapshot()
        lines = [f"**Cluster** — batch `{self._batch}`: {html.escape(snap.summary())}"]
        if self.running:
            lines += [f"- {html.escape(line)}" for line in snap.actor_lines]
        if self._message:
            lines.append(html.escape(self._message))
        return "\n".join(lines)

    def job_progress(self, job_id: int) -> str | None:
        return self._board.job_progress(job_id) if self._board is not None else None

    def close(self, timeout: float = 30.0) -> None:
        """Stop the run: renders in progress are cancelled (re-queued by the store), actors stopped."""
        if self._cancel is not None:
            self._cancel.cancel()
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = ["ClusterBatches"]
