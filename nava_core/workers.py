"""A persistent group of worker processes that render one job at a time sequence-parallel, and
survive a death.

The release, when one rank fails, hangs every other rank forever. `WorkerGroup` keeps N processes with
the weights loaded (`nava_core.ulysses`), runs one job at a time fed by the caller's queue, forwards
progress from rank 0, and broadcasts cancellation from rank 0 at every step check (so all ranks stop
at the same step). A dead worker (checked by the parent every 0.2 s), a collective past
`collective_timeout_s` (torch.distributed timeout) or a silent group (no message for
`stall_timeout_s`) fails the job with a clear message; the group is torn down and restarted in the
background, and the next job runs on the fresh group. No rank waits forever.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from nava_core.config import valid_gpu_counts
from nava_core.progress import CancelToken, ProgressCallback, ProgressEvent, RenderCancelled, null_progress
from nava_core.request import RenderRequest
from nava_core.ulysses import SyncedCancel, UlyssesContext, load_parallel_pipeline

logger = logging.getLogger(__name__)


# ---- the worker group --------------------------------------------------------------------------------


class WorkerGroupError(RuntimeError):
    """A job failed because the group failed (a worker died, a collective timed out, or it went silent)."""


@dataclass(frozen=True)
class GroupConfig:
    """How to build the group. `device` "auto": one CUDA GPU per rank when there are enough, else CPU/gloo."""

    weights: str
    world_size: int = 2
    device: str = "auto"
    precision: str = "nava"
    memory_profile: str = "auto"
    collective_timeout_s: float = 120.0
    start_timeout_s: float = 600.0
    stall_timeout_s: float = 900.0
    threads_per_worker: int = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _use_cuda(cfg: GroupConfig) -> bool:
    """NCCL on one GPU per rank; CPU/gloo only when asked or when there is no CUDA at all (never a silent
    fallback from a GPU machine that has too few GPUs)."""
    if cfg.device == "cpu":
        return False
    if not torch.cuda.is_available():
        if cfg.device == "cuda":
            raise WorkerGroupError("device 'cuda' requested but no CUDA device is available")
        return False
    if torch.cuda.device_count() < cfg.world_size:
        raise WorkerGroupError(f"{cfg.world_size} GPUs requested but {torch.cuda.device_count()} CUDA devices "
                               f"are visible; choose one of {valid_gpu_counts(torch.cuda.device_count())}")
    return True


def _to_wire(result: Any) -> Any:
    """RenderResult with tensors as numpy (no shared-memory handles that die with a worker)."""
    return replace(
        result,
        video_latents=None if result.video_latents is None else result.video_latents.detach().cpu().numpy(),
        audio_latents=result.audio_latents.detach().cpu().numpy(),
    )


def _from_wire(result: Any) -> Any:
    return replace(
        result,
        video_latents=None if result.video_latents is None else torch.from_numpy(result.video_latents),
        audio_latents=torch.from_numpy(result.audio_latents),
    )


def _worker_main(rank: int, cfg: GroupConfig, port: int, jobs: Any, results: Any, cancel_flag: Any) -> None:
    """Entry point of one worker process (spawned)."""
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # NCCL: a timeout aborts instead of hanging
    torch.set_num_threads(cfg.threads_per_worker)
    cuda = _use_cuda(cfg)
    device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(
            "nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
            world_size=cfg.world_size, timeout=timedelta(seconds=cfg.collective_timeout_s))
        ctx = UlyssesContext(cfg.world_size, rank)
        pipe = load_parallel_pipeline(cfg.weights, device, cfg.precision, cfg.memory_profile, ctx)
    except Exception:  # noqa: BLE001 - reported to the parent, which fails the start
        results.put(("start_error", rank, traceback.format_exc()))
        return
    results.put(("ready", rank, None))
    while True:
        job = jobs.get()
        if job is None:
            break
        job_id, request_json = job
        request = RenderRequest.from_json(request_json)

        def progress(ev: ProgressEvent, _job: int = job_id) -> None:
            results.put(("progress", _job, ev))

        cancel = SyncedCancel(cancel_flag if rank == 0 else None, device)
        try:  # the pipeline applies the request's profile tiling itself (memory.prepare_render)
            result = pipe(request, progress=progress if rank == 0 else null_progress, cancel=cancel)
        except RenderCancelled:
            if rank == 0:
                results.put(("cancelled", job_id, None))
            continue
        except Exception:  # noqa: BLE001 - the group is unusable after a failed collective: report and exit
            results.put(("error", job_id, f"rank {rank}: {traceback.format_exc()}"))
            break
        if rank == 0:
            results.put(("done", job_id, _to_wire(result)))
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        pass


@dataclass
class _Running:
    procs: list
    jobs: list
    results: Any
    cancel_flag: Any
    ready: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class WorkerGroup:
    """N worker processes with the weights loaded; `render(request)` runs one job at a time.

    Thread-safe: concurrent callers are serialised. A failed job raises WorkerGroupError (or
    RenderCancelled); the group restarts itself in the background and the next call waits for it.
    """

    def __init__(self, config: GroupConfig) -> None:
        import multiprocessing as mp

        if config.world_size < 1:
            raise ValueError("world_size must be >= 1")
        self.config = config
        _use_cuda(config)  # refuse impossible GPU counts before spawning anything
        self._mp = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._running: _Running | None = None
        self._starter: threading.Thread | None = None
        self._job_counter = 0
        self.restarts = 0

    # -- lifecycle

    def start(self, wait: bool = True) -> None:
        """Spawn the workers (in the background when wait=False)."""
        with self._state_lock:
            if self._running is None and (self._starter is None or not self._starter.is_alive()):
                self._starter = threading.Thread(target=self._spawn, name="nava-worker-group-start", daemon=True)
                self._starter.start()
        if wait:
            self.wait_ready()

    def _spawn(self) -> None:
        cfg = self.config
        port = _free_port()
        results = self._mp.Queue()
        cancel_flag = self._mp.Event()
        jobs = [self._mp.Queue() for _ in range(cfg.world_size)]
        procs = []
        for rank in range(cfg.world_size):
            p = self._mp.Process(target=_worker_main, args=(rank, cfg, port, jobs[rank], results, cancel_flag),
                                 name=f"nava-worker-{rank}", daemon=True)
            p.start()
            procs.append(p)
        running = _Running(procs, jobs, results, cancel_flag)
        ready: set[int] = set()
        deadline = time.monotonic() + cfg.start_timeout_s
        while len(ready) < cfg.world_size:
            dead = [r for r, p in enumerate(procs) if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                running.error = (f"worker rank {dead[0]} exited (code {procs[dead[0]].exitcode}) while loading"
                                 if dead else f"workers not ready after {cfg.start_timeout_s:.0f} s")
                break
            try:
                kind, rank, payload = results.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "ready":
                ready.add(rank)
            elif kind == "start_error":
                running.error = f"worker rank {rank} failed to start:\n{payload}"
                break
        if running.error is not None:
            self._terminate(running)
        with self._state_lock:
            self._running = running
        running.ready.set()
        logger.info("worker group of %d %s", cfg.world_size, "failed: " + running.error if running.error else "ready")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the group is up; raise WorkerGroupError when it could not start."""
        starter = self._starter
        if starter is not None:
            starter.join(timeout if timeout is not None else self.config.start_timeout_s + 30)
        running = self._running
        if running is None:
            raise WorkerGroupError("the worker group is not started (call start())")
        if running.error is not None:
            err = running.error
            with self._state_lock:
                self._running = None
            raise WorkerGroupError(err)

    @staticmethod
    def _terminate(running: _Running) -> None:
        for q in running.jobs:
            try:
                q.put_nowait(None)
            except Exception:  # noqa: BLE001
                pass
        for p in running.procs:
            p.join(timeout=0.5) if not p.is_alive() else None
        for p in running.procs:
            if p.is_alive():
                p.terminate()
        for p in running.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for q in [*running.jobs, running.results]:
            q.cancel_join_thread()
            q.close()

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        starter = self._starter
        if starter is not None:
            starter.join(self.config.start_timeout_s + 30)
        with self._state_lock:
            running, self._running = self._running, None
        if running is not None:
            self._terminate(running)

    def restart(self) -> None:
        """Tear the group down and start a fresh one in the background."""
        self.close()
        self.restarts += 1
        self.start(wait=False)

    def pids(self) -> list[int]:
        running = self._running
        return [p.pid for p in running.procs] if running is not None else []

    def __enter__(self) -> "WorkerGroup":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs

    def render(self, request: RenderRequest, progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None) -> Any:
        """Render on all ranks; returns rank 0's RenderResult. Raises WorkerGroupError or RenderCancelled."""
        progress = progress or null_progress
        with self._lock:
            if self._running is None:
                self.start(wait=False)
            self.wait_ready()
            running = self._running
            assert running is not None
            self._job_counter += 1
            job_id = self._job_counter
            running.cancel_flag.clear()
            for q in running.jobs:
                q.put((job_id, request.to_json()))
            try:
                return self._await(running, job_id, progress, cancel)
            except WorkerGroupError:
                self.restart()
                raise

    def __call__(self, request: RenderRequest, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> Any:
        """Same call as NAVAPipeline, so `render.render_to_files(group, request, ...)` works unchanged."""
        return self.render(request, progress=progress, cancel=cancel)

    def _await(self, running: _Running, job_id: int, progress: ProgressCallback, cancel: CancelToken | None) -> Any:
        cfg = self.config
        last = time.monotonic()
        while True:
            if cancel is not None and cancel.cancelled:
                running.cancel_flag.set()
            dead = [r for r, p in enumerate(running.procs) if not p.is_alive()]
            if dead:
                r = dead[0]
                raise WorkerGroupError(
                    f"worker rank {r} died during the render (exit code {running.procs[r].exitcode}); "
                    "the job failed and the worker group is restarting")
            if time.monotonic() - last > cfg.stall_timeout_s:
                raise WorkerGroupError(f"the worker group sent nothing for {cfg.stall_timeout_s:.0f} s; "
                                       "the job failed and the group is restarting")
            try:
                kind, jid, payload = running.results.get(timeout=0.2)
            except queue.Empty:
                continue
            last = time.monotonic()
            if jid != job_id:
                continue
            if kind == "progress":
                progress(payload)
            elif kind == "done":
                return _from_wire(payload)
            elif kind == "cancelled":
                raise RenderCancelled("render cancelled")
            elif kind == "error":
                raise WorkerGroupError(self._describe_failure(running, payload))

    @staticmethod
    def _describe_failure(running: _Running, payload: str, grace_s: float = 2.0) -> str:
        """A broken collective usually means a peer died: name it when it did (within `grace_s`)."""
        logger.error("worker group failure:\n%s", payload)
        lines = [ln for ln in str(payload).strip().splitlines() if ln.strip()]
        seen = f"{lines[0].split(':')[0]} reported: {lines[-1].strip()[:300]}" if lines else ""
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            dead = [r for r, p in enumerate(running.procs) if not p.is_alive()]
            if dead:
                r = dead[0]
                return (f"worker rank {r} died during the render (exit code {running.procs[r].exitcode}); "
                        f"the job failed and the worker group is restarting ({seen})")
            time.sleep(0.05)
        return f"the render failed on a worker and the worker group is restarting: {seen}"


def load_engine(weights: Any, device: str | None = None, precision: str | None = None, memory_profile: str | None = None,
                gpus: int | None = None, progress: Any = None) -> Any:
    """The one engine loader: an in-process pipeline, or a Ulysses worker group when `gpus` > 1.

    `nava-render` and the render farm's actors (`nava_core.cluster.actor`) load through it, so a
    render on one machine and on a cluster node use the same engine.
    """
    profile = memory_profile or "auto"
    if gpus and gpus > 1:
        group = WorkerGroup(GroupConfig(weights=weights, world_size=gpus, device=device or "auto",
                                        precision=precision or "nava", memory_profile=profile))
        group.start(wait=True)
        return group
    from nava_core.pipeline import NAVAPipeline

    return NAVAPipeline.from_pretrained(weights, device=device, progress=progress, precision=precision or "nava",
                                        memory_profile=profile)

