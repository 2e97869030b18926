"""Ulysses sequence parallelism for the NAVA backbone and a persistent worker group that survives a death.

Why this exists: the release splits one render over 8 GPUs with Ulysses (every rank holds 1/N of the
tokens; around each self-attention an all-to-all trades the sequence split for a head split) and, when
one rank fails, hangs every other rank forever. Here:

- `UlyssesContext` shards the video and audio streams of a forward (each padded to a multiple of N,
  padded keys masked, trimmed again after the last block), runs each joint [video; audio] attention
  as scatter-heads/gather-sequence all-to-all -> attention -> reverse all-to-all, and all-gathers the
  streams before the output heads. Everything else in a block is per token and runs on the shard.
  After the gather every rank holds the same full sequence, so the sampler state stays identical
  on all ranks without further communication.
  Diffusers' context parallelism (`_cp_plan` + `ContextParallelConfig`) was the first choice, but its
  plan splits fixed tensor arguments at module boundaries, while NAVA's blocks take two streams of
  different lengths plus per-stream RoPE tables, key masks and time indices, and the gathered joint
  sequence is rank-interleaved ([v0; a0; v1; a1; ...]) so the key mask must be gathered the same way;
  the few lines below are exact and cover both streams and the no-align (block-diagonal) pass.
- `WorkerGroup` keeps N processes with the weights loaded, runs one job at a time fed by the studio's
  queue, forwards progress from rank 0, and broadcasts cancellation from rank 0 at every step check
  (so all ranks stop at the same step). A dead worker (checked by the parent every 0.2 s), a
  collective past `collective_timeout_s` (torch.distributed timeout) or a silent group (no message for
  `stall_timeout_s`) fails the job with a clear message; the group is torn down and restarted in the
  background, and the next job runs on the fresh group. No rank waits forever.

Multi-node (or externally launched) use runs the same code under torchrun, one process per GPU:

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m nava_core.parallel --weights /models/NAVA --out renders/ request1.json request2.json

(see docs/multi_gpu.md). N must divide the 24 attention heads: `valid_gpu_counts()`.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist

from nava_core.progress import CancelToken, ProgressCallback, ProgressEvent, RenderCancelled, null_progress
from nava_core.request import RenderRequest

logger = logging.getLogger(__name__)

VIDEO, AUDIO = 0, 1


def valid_gpu_counts(num_heads: int = 24, available: int | None = None) -> list[int]:
    """GPU counts the UI may offer: divisors of the head count, up to the GPUs available (default: detected)."""
    from nava_core.config import valid_gpu_counts as _divisors

    if available is None:
        available = torch.cuda.device_count() if torch.cuda.is_available() else 1
    return _divisors(available, num_heads)


# ---- Ulysses ---------------------------------------------------------------------------------------


@dataclass
class ShardInfo:
    """Original (unpadded) length of each stream, to trim after the gather."""

    lengths: list[int | None]


@dataclass
class UlyssesContext:
    """Sequence parallel state of one rank; set on a WanAVModel with `enable_ulysses`."""

    world_size: int
    rank: int
    group: Any = None  # torch.distributed process group (None: the default group)

    # -- streams

    def _pad(self, length: int) -> int:
        return (-length) % self.world_size

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1] // self.world_size
        return x[:, self.rank * n:(self.rank + 1) * n].contiguous()

    def shard(self, streams: list, states: list) -> tuple[list, list, ShardInfo]:
        """Pad each stream (and its per-token state) to a multiple of N and keep this rank's slice."""
        from nava_core.model.blocks import StreamState
        from nava_core.model.rope import pad_identity

        out_streams: list = [None, None]
        out_states: list = [None, None]
        lengths: list[int | None] = [None, None]
        for i, (x, st) in enumerate(zip(streams, states)):
            if x is None:
                continue
            b, length = x.shape[0], x.shape[1]
            pad = self._pad(length)
            lengths[i] = length
            # a mask only where some key is padding (batch or N-divisibility): same on every rank, so no
            # rank gathers a mask the others skip, and no host sync on `mask.all()` per attention
            mask = st.key_mask
            if mask is None and pad:
                mask = torch.ones(b, length, dtype=torch.bool, device=x.device)
            rotations = st.rotations
            time_index = st.time_index
            if pad:
                x = torch.cat([x, x.new_zeros(b, pad, x.shape[2])], dim=1)
                mask = torch.cat([mask, mask.new_zeros(b, pad)], dim=1)
                rotations = pad_identity(rotations, pad)
                if time_index is not None:
                    time_index = torch.cat([time_index, time_index.new_zeros(b, pad)], dim=1)
            out_streams[i] = self._local(x)
            n_local = x.shape[1] // self.world_size
            clean = st.clean_tokens
            out_states[i] = StreamState(
                rotations=self._local(rotations),
                key_mask=self._local(mask) if mask is not None else None,
                time_index=self._local(time_index) if time_index is not None else None,
                e0=st.e0,
                clean_tokens=None if clean is None else min(max(clean - self.rank * n_local, 0), n_local),
            )
        return out_streams, out_states, ShardInfo(lengths)

    def gather(self, streams: list, info: ShardInfo) -> list:
        """All-gather the shards of each stream and trim the padding."""
        out: list = [None, None]
        for i, x in enumerate(streams):
            if x is None:
                continue
            parts = [torch.empty_like(x) for _ in range(self.world_size)]
            self._all_gather(parts, x)
            out[i] = torch.cat(parts, dim=1)[:, : info.lengths[i]]
        return out

    # -- communication (gloo cannot move bf16 everywhere: carried as fp32, exactly)

    def _wire(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16) and dist.get_backend(self.group) == "gloo":
            return x.float()
        return x

    def _all_gather(self, parts: list[torch.Tensor], x: torch.Tensor) -> None:
        wire = self._wire(x)
        if wire is x:
            dist.all_gather(parts, x.contiguous(), group=self.group)
            return
        tmp = [torch.empty_like(wire) for _ in parts]
        dist.all_gather(tmp, wire.contiguous(), group=self.group)
        for p, t in zip(parts, tmp):
            p.copy_(t.to(p.dtype))

    def _all_to_all(self, x: torch.Tensor) -> torch.Tensor:
        wire = self._wire(x).contiguous()
        out = torch.empty_like(wire)
        dist.all_to_all_single(out, wire, group=self.group)
        return out.to(x.dtype)

    # -- attention

    def attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  key_mask: torch.Tensor | None, backend: Any = None) -> torch.Tensor:
        """Ulysses attention on local [B, L_local, H, d] tensors; the key mask is local too.

        Scatter heads / gather sequence (q, k and v in ONE all-to-all), attend over the whole
        (rank-interleaved) sequence with the gathered mask (only when some key is padding), then the
        reverse all-to-all. Exact: attention does not depend on key order as long as the mask follows
        the keys.
        """
        from nava_core.model.attention import attention as plain_attention

        n = self.world_size
        b, length, heads, d = query.shape
        if heads % n:
            raise ValueError(f"{heads} attention heads cannot be split over {n} ranks")
        qkv = torch.stack([query.to(value.dtype), key.to(value.dtype), value])  # [3, B, Ll, H, d]
        qkv = qkv.reshape(3, b, length, n, heads // n, d).permute(3, 0, 1, 2, 4, 5)  # [N, 3, B, Ll, H/N, d]
        y = self._all_to_all(qkv)  # [src rank, 3, B, Ll, H/N, d]
        y = y.permute(1, 2, 0, 3, 4, 5).reshape(3, b, n * length, heads // n, d)
        full_mask = None
        if key_mask is not None:
            masks = [torch.empty(b, length, dtype=torch.uint8, device=query.device) for _ in range(n)]
            dist.all_gather(masks, key_mask.to(torch.uint8).contiguous(), group=self.group)
            full_mask = torch.cat(masks, dim=1).bool()
        out = plain_attention(y[0], y[1], y[2], full_mask, backend=backend)
        dv = out.shape[-1]
        out = out.reshape(b, n, length, heads // n, dv).permute(1, 0, 2, 3, 4)
        back = self._all_to_all(out)  # [head group, B, Ll, H/N, d]
        return back.permute(1, 2, 0, 3, 4).reshape(b, length, heads, dv)


def enable_ulysses(model: torch.nn.Module, ctx: UlyssesContext | None) -> None:
    """Run `model` (a WanAVModel) sequence-parallel with `ctx` (None: back to single-process)."""
    heads = model.config.num_heads
    if ctx is not None and heads % ctx.world_size:
        raise ValueError(f"Ulysses degree {ctx.world_size} must divide the {heads} attention heads; "
                         f"use one of {valid_gpu_counts(heads, heads)}")
    model.sequence_parallel = ctx if ctx is not None and ctx.world_size > 1 else None
    for block in [*model.double_blocks, *model.single_blocks]:
        block.self_attn.parallel_config = model.sequence_parallel


# ---- cancellation that every rank sees at the same step ----------------------------------------------


class SyncedCancel(CancelToken):
    """Rank 0 reads the studio's cancel flag; each check broadcasts it so all ranks stop together."""

    def __init__(self, flag: Any, device: torch.device, group: Any = None) -> None:
        super().__init__()
        self.flag = flag  # multiprocessing Event (rank 0) or None
        self.device = device
        self.group = group

    def raise_if_cancelled(self) -> None:
        wanted = 1 if (dist.get_rank() == 0 and self.flag is not None and self.flag.is_set()) else 0
        t = torch.tensor([wanted], dtype=torch.int32, device=self.device)
        dist.broadcast(t, src=0, group=self.group)
        if int(t.item()):
            self.cancel()
            raise RenderCancelled("render cancelled")


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
    attention: str = "auto"  # nava_core.speed: kernel choice, probed on each rank's device
    compile: bool | None = None
    cfg_parallel: int = 1  # guidance-branch groups across ranks (nava_core.cfg_parallel); world / it = Ulysses


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
                               f"are visible; choose one of {valid_gpu_counts(24, torch.cuda.device_count())}")
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


def load_parallel_pipeline(weights: str, device: torch.device, precision: str, memory_profile: str,
                           ctx: UlyssesContext | None, attention: str = "auto", compile: bool | None = None,
                           branch_runner: Any = None) -> Any:
    """One rank's pipeline: weights loaded once, profile applied, backbone made sequence-parallel
    (`ctx`, None: no Ulysses) and, with a `branch_runner` (nava_core.cfg_parallel), CFG-parallel."""
    from nava_core import memory
    from nava_core.pipeline import NAVAPipeline

    pipe = NAVAPipeline.from_pretrained(weights, device=device, precision=precision, attention=attention,
                                        compile=compile)
    memory.apply_profile(pipe, memory_profile)
    enable_ulysses(pipe.transformer, ctx)
    pipe.branch_runner = branch_runner
    return pipe


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
        from nava_core.cfg_parallel import setup_groups

        ctx, runner = setup_groups(cfg.world_size, rank, cfg.cfg_parallel)
        pipe = load_parallel_pipeline(cfg.weights, device, cfg.precision, cfg.memory_profile, ctx,
                                      cfg.attention, cfg.compile, runner)
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
        try:
            from nava_core import memory

            req = memory.prepare_render(pipe, request)
            result = pipe(req, progress=progress if rank == 0 else null_progress, cancel=cancel)
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


# ---- torchrun entry point ------------------------------------------------------------------------


def torchrun_main(argv: Sequence[str] | None = None) -> int:
    """Render request files with all ranks of a torchrun launch; rank 0 writes the outputs."""
    from nava_core.export import write_mp4, write_wav

    p = argparse.ArgumentParser(prog="python -m nava_core.parallel", description=__doc__.split("\n")[0])
    p.add_argument("requests", nargs="+", help="render request JSON files")
    p.add_argument("--weights", required=True)
    p.add_argument("--out", default="renders")
    p.add_argument("--precision", default="nava", choices=["nava", "fp32"])
    p.add_argument("--memory-profile", default="auto")
    p.add_argument("--timeout", type=float, default=600.0, help="collective timeout in seconds")
    p.add_argument("--cfg-parallel", type=int, default=1,
                   help="guidance-branch groups across ranks (divides the rank count; Ulysses inside a group)")
    p.add_argument("--attention", default="auto", help="attention kernel (auto, sdpa, cudnn, flash3, flash)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    from nava_core.cfg_parallel import setup_groups

    ctx, runner = setup_groups(world, rank, args.cfg_parallel)
    pipe = load_parallel_pipeline(args.weights, device, args.precision, args.memory_profile, ctx,
                                  args.attention, None, runner)
    out = Path(args.out)
    for i, path in enumerate(args.requests):
        box = [Path(path).read_text(encoding="utf-8") if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        from nava_core import memory

        req = memory.prepare_render(pipe, RenderRequest.from_json(box[0]))
        result = pipe(req, cancel=SyncedCancel(None, device))
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            stem = out / f"{i:03d}_{Path(path).stem}"
            if result.frames is not None:
                print(write_mp4(stem.with_suffix(".mp4"), result.frames, result.audio, result.sample_rate,
                                req.to_json()))
            else:
                print(write_wav(stem.with_suffix(".wav"), result.audio, result.sample_rate, req.to_json()))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(torchrun_main())
