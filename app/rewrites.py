"""Rewrite jobs for the studio: run beside the render queue, report progress, cancel, bounded per client.

No Gradio here (the panel is `app.rewrite_panel`). A rewrite never goes through the render queue, so a
long render does not hold it up and a slow LLM does not hold up renders. A local LM is moved off the GPU
when a render starts (`release_gpu`, called by the engine) and generates on the CPU while one runs; on
the GPU it holds the engine's render lock, so the two never share the accelerator.

Settings: flags and the environment give the studio's defaults; the Model tab's fields override them
for one browser session, sent with each rewrite and kept nowhere on the server.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

from nava_core.progress import CancelToken
from nava_core.rewriting import RewriteConfig, config_from_env, make_backend, make_rewriter
from prompt_builder.rewrite import ChatBackend, RewriteError, RewriteResult

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 20_000
MAX_PENDING = 8  # rewrites waiting or running, all clients together
KEEP_BACKENDS = 4


@dataclass
class RewriteJob:
    """One rewrite as the page sees it: status, the text so far, the result or the error in words."""

    id: str
    owner: str
    source: str
    status: str = "running"  # running | done | failed | cancelled
    partial: str = ""
    result: RewriteResult | None = None
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    cancel: CancelToken = field(default_factory=CancelToken, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


class RewriteService:
    """Starts, follows and cancels rewrites; caches backends so a local model loads once."""

    def __init__(self, config: RewriteConfig | None = None, gpu_lock: Any = None,
                 workers: int = 2, editable: bool = True) -> None:
        self.config = config if config is not None else config_from_env()
        # whether a page may choose the rewriter (endpoint, key, local model): only on a private studio,
        # since a shared one would let any visitor make the server call any address or load any model
        self.editable = editable
        self.gpu_lock = gpu_lock  # the engine's render lock: a local LM uses the GPU only while holding it
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nava-rewrite")
        self._lock = threading.Lock()
        self._jobs: dict[str, RewriteJob] = {}
        self._backends: OrderedDict[tuple[Any, ...], ChatBackend] = OrderedDict()

    # ---- settings -------------------------------------------------------------------------------------

    def settings(self, endpoint: str = "", model: str = "", api_key: str = "", local_model: str = "",
                 system_prompt_file: str = "") -> RewriteConfig:
        """The studio's defaults with this session's Model-tab fields over them (empty = keep default).
        Naming a local model switches off the default endpoint and the other way round."""
        fields = {k: (v or "").strip() for k, v in dict(endpoint=endpoint, model=model, api_key=api_key,
                                                     local_model=local_model,
                                                     system_prompt_file=system_prompt_file).items()}
        config = self.config
        if fields["local_model"]:
            config = replace(config, endpoint="", model="", api_key="")
        elif fields["endpoint"]:
            config = replace(config, local_model="")
        return replace(config, **{k: v for k, v in fields.items() if v})

    def describe(self, config: RewriteConfig | None = None) -> str:
        return (config or self.config).describe()

    def _backend(self, config: RewriteConfig) -> ChatBackend:
        key = (config.endpoint, config.model, hashlib.sha256(config.api_key.encode()).hexdigest(),
               config.local_model, config.device, config.timeout_s, config.stream, config.temperature,
               config.max_tokens)
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                if config.local_model:  # one local model in memory at a time
                    for k in [k for k in self._backends if k[3]]:
                        self._backends.pop(k).close()
                backend = make_backend(config)
                if config.local_model:
                    backend.gpu_lock = self.gpu_lock  # type: ignore[attr-defined]
                self._backends[key] = backend
                while len(self._backends) > KEEP_BACKENDS:
                    self._backends.popitem(last=False)[1].close()
            self._backends.move_to_end(key)
            return backend

    # ---- jobs -----------------------------------------------------------------------------------------

    def start(self, text: str, *, owner: str = "", config: RewriteConfig | None = None, language: str = "auto",
              speakers: Sequence[str] | None = None) -> RewriteJob:
        """Queue a rewrite; refused (RewriteError 'config') before anything runs when it cannot work."""
        config = config or self.config
        if not text or not text.strip():
            raise RewriteError("config", "there is nothing to rewrite: write an idea or build a prompt first")
        if len(text) > MAX_TEXT_CHARS:
            raise RewriteError("config", f"the text is {len(text)} characters; rewrites take at most "
                                         f"{MAX_TEXT_CHARS}")
        config.validate()
        rewriter = make_rewriter(config, backend=self._backend(config))
        with self._lock:
            running = [j for j in self._jobs.values() if j.status == "running"]
            if any(j.owner == owner for j in running):
                raise RewriteError("config", "a rewrite is already running for this page; wait for it or cancel it")
            if len(running) >= MAX_PENDING:
                raise RewriteError("config", "the studio is busy with other rewrites; try again in a moment")
            job = RewriteJob(uuid.uuid4().hex[:12], owner, text)
            self._jobs = {k: j for k, j in self._jobs.items() if j.status == "running"}
            self._jobs[job.id] = job

        def run() -> None:
            def on_text(partial: str) -> None:
                job.partial = partial

            try:
                job.result = rewriter.rewrite(text, language=language, speakers=speakers, cancel=job.cancel,
                                              on_text=on_text)
                job.status = "done"
            except RewriteError as e:
                job.status = "cancelled" if e.kind == "cancelled" else "failed"
                job.error = str(e)
            except Exception as e:  # noqa: BLE001 - shown on the page, logged with its traceback
                log.exception("rewrite failed")
                job.status, job.error = "failed", f"the rewrite failed unexpectedly: {e}"
            finally:
                job.finished.set()

        self._pool.submit(run)
        return job

    def cancel(self, owner: str) -> str:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.owner == owner and j.status == "running"]
        for j in jobs:
            j.cancel.cancel()
        return "Cancelling the rewrite…" if jobs else "No rewrite is running."

    def follow(self, job: RewriteJob, interval: float = 0.2) -> Iterator[RewriteJob]:
        """Yield the job every `interval` seconds while it runs, then once more when it has ended."""
        while not job.finished.wait(interval):
            yield job
        yield job

    def release_gpu(self) -> None:
        """NAVA is about to render: every local model leaves the GPU."""
        with self._lock:
            backends = list(self._backends.values())
        for b in backends:
            b.release_gpu()

    def close(self) -> None:
        for j in list(self._jobs.values()):
            j.cancel.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for b in self._backends.values():
                b.close()
            self._backends.clear()

