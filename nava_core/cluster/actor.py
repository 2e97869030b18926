"""One render actor: a process that loads a weight set once and renders the requests it is sent.

Plain Python (no Ray import): the driver wraps it with `ray.remote`, so the same class is the unit of
execution on a laptop cluster and on a rack. An actor owns one GPU, or a group of N GPUs running
Ulysses sequence parallelism (`gpus > 1`, via the same engine loader as `nava-render --gpus N`).

A render always goes to a node-local temporary folder first. Then either the files are copied into
the job's temporary folder on the shared output volume (when this node sees it), or their bytes are
returned for the driver to write. Either way the final, atomic rename into the output folder is the
driver's (`jobs.run_one`), so a killed actor can never leave a partial file under a final name.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from nava_core.progress import CancelToken, ProgressEvent
from nava_core.request import RenderRequest

GIB = 1024**3


class RenderActor:
    """Holds one engine (weights + memory profile) and renders one request at a time."""

    def __init__(self, weights: str, device: str | None = None, precision: str = "nava", memory_profile: str = "auto",
                 gpus: int = 1, memory_bytes: int | None = None, warm: bool = True) -> None:
        self.weights, self.device, self.precision = str(weights), device, precision
        self.gpus = max(1, int(gpus))
        self._memory_override = memory_bytes
        self._engine: Any = None
        self._profile: str | None = None
        self._load_s = 0.0
        self._lock = threading.Lock()  # one render at a time; progress/cancel/info run alongside
        self._cancel: CancelToken | None = None
        self._progress: dict[str, Any] | None = None
        self.rendered = 0
        if warm:
            self._engine_for(memory_profile)

    # ---- engine ---------------------------------------------------------------------------------

    def _engine_for(self, profile: str) -> Any:
        """The loaded engine for `profile`, reloading only when a job asks for another profile."""
        if self._engine is not None and self._profile == profile:
            return self._engine
        if self._engine is not None and hasattr(self._engine, "close"):
            self._engine.close()
        self._engine = None
        from nava_core.workers import load_engine  # the one engine loader (single GPU or Ulysses group)

        t0 = time.perf_counter()
        self._engine = load_engine(self.weights, device=self.device, precision=self.precision, memory_profile=profile,
                                   gpus=self.gpus, progress=self._on_progress)
        self._profile, self._load_s = profile, time.perf_counter() - t0
        return self._engine

    def info(self) -> dict[str, Any]:
        """Where this actor runs and what it holds (the driver schedules and refuses jobs with it)."""
        gpus: list[Any] = []
        try:
            from nava_core.estimate import detect_gpus

            gpus = detect_gpus()
        except Exception:  # noqa: BLE001 - a CPU-only node has none
            gpus = []
        mem = self._memory_override
        if mem is None and gpus:
            mem = min(g.total_bytes for g in gpus[: self.gpus])
        return {
            "pid": os.getpid(), "host": socket.gethostname(), "profile": self._profile, "gpus": self.gpus,
            "gpu_names": [g.name for g in gpus[: self.gpus]], "memory_bytes": mem, "load_s": round(self._load_s, 3),
            "rendered": self.rendered,
        }

    # ---- rendering ------------------------------------------------------------------------------

    def _on_progress(self, ev: ProgressEvent) -> None:
        self._progress = {**(self._progress or {}), "phase": ev.phase, "step": ev.step, "total": ev.total,
                          "text": ev.describe(), "t": time.time()}

    def render(self, job_id: int, request_json: str, shared_dir: str | None) -> dict[str, Any]:
        """Render one job. Returns {"outputs": {name: path in shared_dir}} or {"files": {name: (file, bytes)}}."""
        from nava_core.progress import RenderCancelled
        from nava_core.render import render_to_files

        with self._lock:
            request = RenderRequest.from_json(request_json)
            token = CancelToken()
            self._cancel = token
            self._progress = {"job": job_id, "phase": "starting", "step": 0, "total": 0, "text": "starting",
                              "t": time.time()}
            work = Path(tempfile.mkdtemp(prefix=f"nava-job{job_id}-"))
            try:
                engine = self._engine_for(request.memory_profile or "auto")
                outs = render_to_files(engine, request, work, progress=self._on_progress, cancel=token).as_dict()
                if token.cancelled:
                    raise RenderCancelled("render cancelled")
                self.rendered += 1
                shared = Path(shared_dir) if shared_dir else None
                if shared is not None and shared.is_dir():  # the driver made it: this node sees the volume
                    placed = {}
                    for name, p in outs.items():
                        dest = shared / Path(p).name
                        shutil.copyfile(p, dest)
                        placed[name] = str(dest)
                    return {"outputs": placed, "pid": os.getpid()}
                return {"files": {name: (Path(p).name, Path(p).read_bytes()) for name, p in outs.items()},
                        "pid": os.getpid()}
            finally:
                shutil.rmtree(work, ignore_errors=True)
                self._cancel = None
                self._progress = None

    def progress(self) -> dict[str, Any] | None:
        """The running job's latest phase/step (None when idle)."""
        return self._progress

    def cancel(self) -> None:
        """Stop the running render at its next step (the driver asks on Ctrl-C or a user's cancel)."""
        if self._cancel is not None:
            self._cancel.cancel()

    def pid(self) -> int:
        return os.getpid()


__all__ = ["RenderActor"]
