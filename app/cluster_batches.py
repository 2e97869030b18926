"""The Batch tab's "Run on cluster": one batch of the studio's job store rendered by Ray actors.

The jobs stay in the studio's one job store (History, the job table, cancel and zip see them as
always), queued with `engine` "cluster:ADDRESS" so the studio's own worker leaves them to a
`ClusterDriver` limited to the batch. Whatever the farm does not finish (no actor left, an error)
is handed back to the studio's worker, as are farm jobs left queued by a studio that was closed.
Ray is optional: without it the choice explains how to install it and nothing is queued.
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
        self._hand_back()

    def engine_tag(self, config: Any) -> str:
        """The job store's `engine` of jobs reserved for this farm (the studio's worker skips them)."""
        from nava_core.jobs import CLUSTER_ENGINE_PREFIX

        return CLUSTER_ENGINE_PREFIX + config.address

    def _hand_back(self, batch_id: str | None = None) -> int:
        """Give queued farm jobs (of `batch_id`, or left by an earlier run) back to the studio's worker."""
        from nava_core.jobs import CLUSTER_ENGINE_PREFIX

        store = self.service.jobs
        batches = {batch_id} if batch_id else {j.batch_id for j in store.list(states=("queued",))
                                               if j.batch_id and j.engine.startswith(CLUSTER_ENGINE_PREFIX)}
        n = sum(store.set_engine(b, self.service.engine.label) for b in batches)
        if n:
            log.info("%d queued farm job(s) handed back to the studio's worker", n)
            self.service.worker.wake()
        return n

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def config(self, address: str, actors: int | None = None) -> Any:
        """The farm settings for this studio's engine; raises ClusterError (Ray missing, bad address or count)."""
        from nava_core.cluster import ClusterConfig, require_ray

        engine = self.service.engine
        config = ClusterConfig(address=(address or "local").strip(), weights=str(engine.choice.folder),
                               actors=actors, memory_profile=getattr(engine, "memory_profile", None) or "auto",
                               precision=getattr(engine, "precision", None) or "nava")
        require_ray()
        return config

    def start(self, batch_id: str, config: Any) -> str:
        """Start rendering `batch_id` on the cluster (`config` from `config()`); returns what the page says."""
        from nava_core.cluster.board import ClusterBoard
        from nava_core.cluster.driver import ClusterDriver

        with self._lock:
            if self.running:
                self._hand_back(batch_id)
                return (f"⛔ The cluster is busy with batch {html.escape(str(self._batch))}; this batch is rendered "
                        "by the studio.")
            self._board = ClusterBoard(stream=None)
            self._cancel = CancelToken()
            self._batch, self._message = batch_id, ""
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
        except Exception as e:  # noqa: BLE001 - shown on the page; the studio renders what is left
            log.exception("cluster run failed")
            self._message = f"⛔ Cluster run stopped: {e}. The studio renders the batch's remaining jobs."
        finally:
            if not (self._cancel and self._cancel.cancelled):  # the studio closing keeps them for the next run
                self._hand_back(driver.batch_id)

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
