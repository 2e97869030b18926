"""The cluster driver: claims jobs from the durable store, places them on Ray actors, finalises the files.

Why the store and not Ray owns the batch: a driver (or the machine it runs on) can die; the queue
file says what is done, and re-running the same command resumes from it (`JobQueue.recover` puts a
dead driver's running jobs back in line, or adopts renders that had reached their final folder).
Ray tasks are therefore not retried by Ray (actors have `max_restarts=0`): the driver decides. An
actor that dies mid-job makes `jobs.run_one` put the job back in line (`retry=True`, at most
`max_attempts` tries in all), the scheduler prefers another actor for it, and the dead actor is
replaced a bounded number of times. The files of a job reach their final name only by the driver's
atomic rename in `run_one`, after the actor has returned, so a death at any point leaves at most a
temporary folder under `.incoming`, which the driver removes.

One thread per actor slot runs `claim -> run_one -> repeat`; a scheduler lock makes the choice of
job (warm profile first, a retry away from the actor it failed on, memory refusals) atomic.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nava_core.cluster import LOCAL, ClusterConfig, ClusterError, require_ray
from nava_core.cluster.actor import GIB, RenderActor
from nava_core.cluster.board import ClusterBoard
from nava_core.jobs import Job, JobQueue, run_one
from nava_core.progress import CancelToken, RenderCancelled
from nava_core.request import RenderRequest

log = logging.getLogger(__name__)

EventFn = Callable[..., None]
MEMORY_MARGIN = 0.95  # an estimate must leave 5% of the GPU free (estimates are not measurements)


class ActorLost(RuntimeError):
    """The actor rendering a job died (process killed, node lost); the job is retried elsewhere."""


def refusal(request: RenderRequest, memory_bytes: int | None, gpus: int) -> str | None:
    """Why `request` cannot run on an actor with `memory_bytes` per GPU (None: it fits, or unknown memory).

    Uses the project's memory estimator, so the studio's warning, the CLI and the farm agree.
    """
    if not memory_bytes:
        return None
    from nava_core.estimate import GPUInfo, estimate

    est = estimate(request, gpus=gpus, gpu=GPUInfo(0, "actor GPU", int(memory_bytes), None))
    if est.peak_vram_bytes <= memory_bytes * MEMORY_MARGIN:
        return None
    return (f"refused before dispatch: the memory estimate is {est.peak_vram_bytes / GIB:.1f} GiB per GPU "
            f"({est.profile} profile, {gpus} GPU(s) per actor) but the largest actor has {memory_bytes / GIB:.1f} GiB; "
            "render it shorter or smaller, pick a lighter memory profile (fp8, group_offload), or give actors "
            "more GPUs (--gpus-per-actor)")


@dataclass
class ClusterSummary:
    """What one `ClusterDriver.run` did (job ids by end state, retries, rate)."""

    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    actors: int = 0
    actor_deaths: int = 0
    elapsed_s: float = 0.0
    startup_s: float = 0.0

    @property
    def jobs_per_hour(self) -> float:
        return len(self.done) / self.elapsed_s * 3600 if self.elapsed_s > 0 else 0.0


@dataclass
class _Slot:
    index: int
    handle: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    replacements: int = 0
    job: int | None = None
    alive: bool = True


class ClusterDriver:
    """Runs the queued jobs of `queue` on Ray actors until none is left (or `cancel` is set)."""

    def __init__(self, queue: JobQueue, out_root: str | os.PathLike[str], config: ClusterConfig,
                 board: ClusterBoard | None = None, events: EventFn | None = None,
                 cancel: CancelToken | None = None, startup_timeout_s: float = 900.0,
                 batch_id: str | None = None) -> None:
        self.queue, self.out_root, self.config = queue, Path(out_root), config
        self.batch_id = batch_id  # only this batch's jobs (the studio); None: every queued job, like the CLI
        self.board = board or ClusterBoard(stream=None)
        self.events = events or (lambda **_: None)
        self.cancel = cancel or CancelToken()
        self.startup_timeout_s = startup_timeout_s
        self._ray: Any = None
        self._remote: Any = None
        self._slots: list[_Slot] = []
        self._sched = threading.Lock()
        self._last_slot: dict[int, int] = {}
        self._requests: dict[int, RenderRequest] = {}
        self._summary = ClusterSummary()

    # ---- connection and actors ------------------------------------------------------------------

    def _connect(self) -> bool:
        """Connect (or start a local Ray); True when this driver must shut Ray down at the end."""
        ray = self._ray = require_ray()
        if ray.is_initialized():  # an embedding process (tests, the studio) already connected
            return False
        kw: dict[str, Any] = {"namespace": "nava", "log_to_driver": False}
        try:
            if self.config.address == LOCAL:
                ray.init(num_cpus=self.config.local_cpus, include_dashboard=False, **kw)
            else:
                ray.init(address=self.config.address, **kw)
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds for a wrong or dead address
            raise ClusterError(f"cannot connect to the Ray cluster at {self.config.address}: {_short(e)}; start it with "
                               "`ray start --head` (see docs/cluster.md) or check the address") from None
        return True

    def _actor_count(self) -> tuple[int, int]:
        """(actors, GPUs per actor): one actor per GPU group the cluster has, or 1 CPU actor without GPUs."""
        gpus = float(self._ray.cluster_resources().get("GPU", 0))
        per = self.config.gpus_per_actor if gpus >= 1 else 0
        n = self.config.actors or (int(gpus // per) if per else 1)
        if n < 1:
            raise ClusterError(f"the cluster has {gpus:g} GPU(s), fewer than --gpus-per-actor {per}")
        cpus = float(self._ray.cluster_resources().get("CPU", 0))
        if self.config.address == LOCAL and n * self.config.cpus_per_actor > cpus:
            # one machine cannot grow: actors that do not fit would wait for resources forever
            raise ClusterError(f"{n} actor(s) x {self.config.cpus_per_actor:g} CPU do not fit the {cpus:g} CPU(s) of "
                               "this machine; ask for fewer --actors or a smaller --cpus-per-actor")
        return n, per

    def _spawn(self, slot: _Slot) -> None:
        """Start (or replace) the slot's actor and wait until its weights are loaded."""
        mem = int(self.config.actor_memory_gb * GIB) if self.config.actor_memory_gb else None
        slot.handle = self._remote.remote(self.config.weights, self.config.device, self.config.precision,
                                          self.config.memory_profile, max(1, self.config.gpus_per_actor), mem)
        slot.info = self._ray.get(slot.handle.info.remote(), timeout=self.startup_timeout_s)
        slot.alive = True
        self.board.actor(slot.index, f"ready on {slot.info['host']} (pid {slot.info['pid']}, "
                         f"weights loaded in {slot.info['load_s']:.1f} s)", "ready")

    def _start_actors(self) -> None:
        n, per = self._actor_count()
        self._remote = self._ray.remote(RenderActor).options(
            num_cpus=self.config.cpus_per_actor, num_gpus=per, max_restarts=0, max_concurrency=4)
        self._slots = [_Slot(i + 1) for i in range(n)]
        errors = []
        threads = [threading.Thread(target=self._spawn_or_record, args=(s, errors)) for s in self._slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not any(s.alive for s in self._slots):
            raise ClusterError(f"no render actor could start: {errors[0] if errors else 'unknown error'}")
        self._summary.actors = sum(s.alive for s in self._slots)

    def _spawn_or_record(self, slot: _Slot, errors: list[str]) -> None:
        try:
            self._spawn(slot)
        except Exception as e:  # noqa: BLE001 - e.g. weights missing on that node; the others may run
            slot.alive = False
            errors.append(_short(e))
            self.board.actor(slot.index, f"could not start: {_short(e)}", "dead")
            log.error("actor %d could not start: %s", slot.index, e)

    def _replace(self, slot: _Slot) -> bool:
        """A dead actor is replaced at most `replacements_per_actor` times; then its slot retires."""
        self._summary.actor_deaths += 1
        try:
            self._ray.kill(slot.handle)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if slot.replacements >= self.config.replacements_per_actor or self.cancel.cancelled:
            self.board.actor(slot.index, "died; retired (replacement limit reached)", "dead")
            return False
        others = sum(s.alive for s in self._slots if s is not slot)
        if others and len(self._queued()) <= others:
            # loading weights takes longer than letting the live actors take what is left
            self.board.actor(slot.index, "died; not replaced (the other actors take the remaining jobs)", "dead")
            return False
        slot.replacements += 1
        self.board.actor(slot.index, f"died; starting a replacement ({slot.replacements}/"
                         f"{self.config.replacements_per_actor})", "restarting")
        try:
            self._spawn(slot)
        except Exception as e:  # noqa: BLE001
            self.board.actor(slot.index, f"replacement could not start: {_short(e)}", "dead")
            slot.alive = False
            return False
        return True

    # ---- scheduling -----------------------------------------------------------------------------

    def _queued(self) -> list[Job]:
        return self.queue.list(batch_id=self.batch_id, states=("queued",))

    def _request(self, job: Job) -> RenderRequest:
        if job.id not in self._requests:
            self._requests[job.id] = job.request
        return self._requests[job.id]

    def _largest_memory(self) -> int | None:
        mems = [s.info.get("memory_bytes") for s in self._slots if s.alive]
        return None if any(m is None for m in mems) or not mems else max(mems)

    def _pick(self, slot: _Slot) -> Job | None:
        """Claim the best queued job for `slot`: not the actor it just failed on, warm profile, oldest."""
        with self._sched:
            others_idle = any(s.alive and s.job is None and s is not slot for s in self._slots)
            gpus = max(1, self.config.gpus_per_actor)
            best: Job | None = None
            best_key: tuple[Any, ...] | None = None
            for job in self._queued():
                try:
                    req = self._request(job)
                except Exception as e:  # noqa: BLE001 - a row written by an older version, say
                    self._refuse(job, f"refused before dispatch: the stored request is not valid: {_short(e)}")
                    continue
                reason = refusal(req, self._largest_memory(), gpus)
                if reason is not None:
                    self._refuse(job, reason)
                    continue
                if refusal(req, slot.info.get("memory_bytes"), gpus) is not None:
                    continue  # another, larger actor takes it
                again = self._last_slot.get(job.id) == slot.index
                if again and others_idle:
                    continue
                key = (again, (req.memory_profile or "auto") != slot.info.get("profile"), job.id)
                if best_key is None or key < best_key:
                    best, best_key = job, key
            if best is None:
                return None
            claimed = self.queue.claim(job_id=best.id)
            if claimed is not None:
                slot.job = claimed.id
                self._last_slot[claimed.id] = slot.index
            return claimed

    def _refuse(self, job: Job, reason: str) -> None:
        claimed = self.queue.claim(job_id=job.id)
        if claimed is None:
            return
        self.queue.mark_failed(job.id, reason, retry=False)
        self._summary.refused.append(job.id)
        self.events(event="refused", job=job.id, label=job.label, error=reason)
        self.board.job_finished("refused", job.id)
        log.warning("job %d %s", job.id, reason)

    def _finished(self) -> bool:
        with self._sched:
            if any(s.job is not None for s in self._slots):
                return False
            return not self._queued()

    # ---- running ----------------------------------------------------------------------------------

    def _render_fn(self, slot: _Slot, job: Job) -> Callable[..., dict[str, str]]:
        ray = self._ray

        def render(request: RenderRequest, tmp: Path, progress: Any, token: CancelToken) -> dict[str, str]:
            shared = None if self.config.output == "return" else str(tmp)
            ref = slot.handle.render.remote(job.id, job.request_json, shared)
            asked_cancel = False
            while not ray.wait([ref], timeout=self.config.poll_s)[0]:
                if token.cancelled and not asked_cancel:
                    slot.handle.cancel.remote()
                    asked_cancel = True
                self._poll_progress(slot, job)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                slot.alive = False
                raise ActorLost(f"actor {slot.index} (pid {slot.info.get('pid')} on {slot.info.get('host')}) died "
                                f"while rendering (attempt {job.attempts} of {self.config.max_attempts}): "
                                f"{_short(e)}") from None
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, RenderCancelled):
                    raise RenderCancelled("render cancelled") from None
                if isinstance(cause, Exception):
                    raise cause from None
                raise RuntimeError(_short(e)) from None
            if "files" in result:
                if self.config.output == "shared":
                    raise RuntimeError(f"actor {slot.index} on {slot.info.get('host')} does not see the output "
                                       f"folder {self.out_root}; mount it on every node or use --cluster-output return")
                outputs = {}
                for name, (fname, data) in result["files"].items():
                    path = tmp / Path(fname).name
                    path.write_bytes(data)
                    outputs[name] = str(path)
                return outputs
            return dict(result["outputs"])

        return render

    def _poll_progress(self, slot: _Slot, job: Job) -> None:
        try:
            p = self._ray.get(slot.handle.progress.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - a dying actor; the render call reports it
            return
        if p:
            self.board.actor(slot.index, f"job {job.id} {job.label or ''} (try {job.attempts}): {p['text']}",
                             str(p.get("phase", "")), job=job.id, job_text=str(p["text"]))

    def _work(self, slot: _Slot) -> None:
        while not self.cancel.cancelled and slot.alive:
            job = self._pick(slot)
            if job is None:
                if self._finished():
                    break
                self.cancel._event.wait(self.config.poll_s)  # noqa: SLF001 - wake at once on cancel
                continue
            self.events(event="start", job=job.id, attempt=job.attempts, label=job.label, actor=slot.index,
                        pid=slot.info.get("pid"), host=slot.info.get("host"))
            try:
                state = run_one(self.queue, job, self._render_fn(slot, job), self.out_root, cancel=self.cancel,
                                poll_s=self.config.poll_s, retry=True, max_attempts=self.config.max_attempts)
            finally:
                with self._sched:
                    slot.job = None
            final = self.queue.get(job.id)
            self.events(event=state, job=job.id, actor=slot.index, folder=final.final_dir if final else None,
                        error=final.error if final and state != "done" else None)
            if state == "queued":
                self._summary.retried.append(job.id)
            elif state in ("done", "failed", "cancelled"):
                getattr(self._summary, state).append(job.id)
            self.board.job_finished(state, job.id)
            self.board.actor(slot.index, f"job {job.id} {state}" + (f": {final.error}" if final and final.error
                                                                    and state != "done" else ""), "idle")
            if not slot.alive and not self._replace(slot):
                break

    def run(self) -> ClusterSummary:
        """Recover, start the actors, render until the queue is empty; always stops the actors."""
        t0 = time.perf_counter()
        self.queue.recover(max_attempts=self.config.max_attempts, out_root=self.out_root)
        self.board.set_remaining(len(self._queued()))
        owns = self._connect()
        try:
            self._start_actors()
            self._summary.startup_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            self.board.start()
            threads = [threading.Thread(target=self._work, args=(s,), name=f"nava-actor-{s.index}", daemon=True)
                       for s in self._slots if s.alive]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
            self._summary.elapsed_s = time.perf_counter() - t1
            return self._summary
        finally:
            for s in self._slots:
                if s.handle is not None:
                    try:
                        self._ray.kill(s.handle)
                    except Exception:  # noqa: BLE001
                        pass
            if owns:
                self._ray.shutdown()


def _short(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["ActorLost", "ClusterDriver", "ClusterSummary", "refusal"]
