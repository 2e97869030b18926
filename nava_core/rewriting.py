"""Which rewriter to use, from flags, the environment or the studio's Model tab, and how to run many.

One `RewriteConfig` for every caller (nava-rewrite, nava-render --rewrite, the studio), one factory.
The endpoint address, model name and key are settings of this process only: nothing here writes
them into a request, the history or a sidecar, and the key is kept out of `repr` and logs.
"""

from __future__ import annotations

import argparse
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from prompt_builder.rewrite import (DEFAULT_ATTEMPTS, LANGUAGE_NAMES, CancelLike, ChatBackend, RewriteError,
                                    RewriteResult, Rewriter, load_system_prompt)

if TYPE_CHECKING:
    from nava_core.request import RenderRequest

log = logging.getLogger(__name__)

ENV = {"endpoint": "NAVA_REWRITE_ENDPOINT", "model": "NAVA_REWRITE_MODEL", "api_key": "NAVA_REWRITE_KEY",
       "local_model": "NAVA_REWRITE_LOCAL", "system_prompt_file": "NAVA_REWRITE_SYSTEM_PROMPT"}
MAX_CONCURRENCY = 64


@dataclass(frozen=True)
class RewriteConfig:
    """An endpoint (`endpoint` + optional `model` + optional `api_key`) or a local model (`local_model`)."""

    endpoint: str = ""
    model: str = ""
    api_key: str = field(default="", repr=False)
    local_model: str = ""
    device: str = "auto"
    timeout_s: float = 120.0
    attempts: int = DEFAULT_ATTEMPTS
    language: str = "auto"
    system_prompt_file: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    stream: bool = True

    @property
    def configured(self) -> bool:
        return bool(self.endpoint or self.local_model)

    def describe(self) -> str:
        """For people and logs: never the key."""
        if self.local_model:
            return f"local model {self.local_model} ({self.device})"
        if self.endpoint:
            return f"{self.model or 'the served model'} at {self.endpoint}"
        return "no rewriter configured"

    def validate(self) -> None:
        if self.endpoint and self.local_model:
            raise RewriteError("config", "choose an endpoint or a local model for rewriting, not both")
        if not self.configured:
            raise RewriteError("config", "no rewriter configured: give an OpenAI-compatible endpoint "
                                         f"({ENV['endpoint']}, --endpoint / --rewrite-endpoint, or the studio's Model "
                                         f"tab) or a local model ({ENV['local_model']}, --local-model / "
                                         "--rewrite-local-model)")
        if self.language not in ("auto", *LANGUAGE_NAMES):
            raise RewriteError("config", f"language must be auto, {', '.join(LANGUAGE_NAMES)}; got {self.language!r}")


def config_from_env(env: Mapping[str, str] | None = None, **overrides: object) -> RewriteConfig:
    """Environment first, then explicit non-empty overrides (flags, the Model tab)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {k: env.get(v, "") for k, v in ENV.items()}
    values.update({k: v for k, v in overrides.items() if v not in (None, "")})
    return RewriteConfig(**values)  # type: ignore[arg-type]


def add_rewrite_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The rewriter's flags; `prefix` 'rewrite-' gives nava-render's --rewrite-endpoint etc."""
    g = parser.add_argument_group("prompt rewriting")
    g.add_argument(f"--{prefix}endpoint", metavar="URL",
                   help=f"OpenAI-compatible server root, e.g. http://127.0.0.1:8000/v1 (env {ENV['endpoint']})")
    g.add_argument(f"--{prefix}model", metavar="NAME",
                   help=f"model name on that server; default: the first it lists (env {ENV['model']})")
    g.add_argument(f"--{prefix}api-key", metavar="KEY",
                   help=f"API key; prefer the environment variable {ENV['api_key']} (a flag shows in the process list)")
    g.add_argument(f"--{prefix}local-model", metavar="PATH_OR_ID",
                   help=f"rewrite with a transformers causal LM in this process instead (env {ENV['local_model']})")
    g.add_argument(f"--{prefix}device", default="auto", help="device for --local-model (auto, cpu, cuda)")
    g.add_argument(f"--{prefix}timeout", type=float, default=120.0, metavar="S", help="seconds per request (default 120)")
    g.add_argument(f"--{prefix}attempts", type=int, default=DEFAULT_ATTEMPTS, metavar="N",
                   help=f"tries before keeping the original prompt (default {DEFAULT_ATTEMPTS})")
    g.add_argument(f"--{prefix}language", default="auto", choices=["auto", *LANGUAGE_NAMES],
                   help="language of the rewrite (default: the prompt's own)")
    g.add_argument(f"--{prefix}system-prompt", metavar="FILE",
                   help=f"replace the built-in system prompt with this file (env {ENV['system_prompt_file']})")
    g.add_argument(f"--{prefix}temperature", type=float, help="sampling temperature (default: the server's)")
    g.add_argument(f"--{prefix}max-tokens", type=int, help="longest reply, thinking included (default: the server's)")
    g.add_argument(f"--{prefix}no-stream", action="store_true", help="ask for the whole reply at once")


def config_from_args(args: argparse.Namespace, prefix: str = "", env: Mapping[str, str] | None = None) -> RewriteConfig:
    p = prefix.replace("-", "_")

    def a(name: str) -> object:
        return getattr(args, p + name, None)

    return config_from_env(env, endpoint=a("endpoint"), model=a("model"), api_key=a("api_key"),
                           local_model=a("local_model"), device=a("device"), timeout_s=a("timeout"),
                           attempts=a("attempts"), language=a("language"), system_prompt_file=a("system_prompt"),
                           temperature=a("temperature"), max_tokens=a("max_tokens"),
                           stream=not a("no_stream"))


def make_backend(config: RewriteConfig) -> ChatBackend:
    config.validate()
    if config.local_model:
        from nava_core.rewrite_local import LocalBackend

        kwargs: dict[str, object] = {}
        if config.max_tokens:
            kwargs["max_new_tokens"] = config.max_tokens
        return LocalBackend(config.local_model, device=config.device, **kwargs)  # type: ignore[arg-type]
    from prompt_builder.rewrite_endpoint import EndpointBackend

    return EndpointBackend(config.endpoint, model=config.model, api_key=config.api_key, timeout_s=config.timeout_s,
                           stream=config.stream, temperature=config.temperature, max_tokens=config.max_tokens)


def make_rewriter(config: RewriteConfig, backend: ChatBackend | None = None) -> Rewriter:
    """The configured rewriter; `backend` lets a caller reuse an already loaded one."""
    config.validate()
    return Rewriter(backend or make_backend(config), max_attempts=config.attempts,
                    system_prompt=load_system_prompt(config.system_prompt_file), language=config.language)


FATAL_KINDS = ("unreachable", "auth", "model_not_found")


def rewrite_many(rewriter: Rewriter, texts: Sequence[str], *, concurrency: int = 1,
                 on_done: Callable[[int, RewriteResult], None] | None = None,
                 cancel: CancelLike | None = None) -> list[RewriteResult | None]:
    """Rewrite `texts` with up to `concurrency` requests in flight (one for a local model).

    Results come back in input order; `on_done(i, result)` fires as each finishes (any order). After an
    error that will not go away by itself (unreachable, key refused, no such model) nothing new starts:
    the remaining entries stay None so the caller can stop and resume later."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise RewriteError("config", f"concurrency must be from 1 to {MAX_CONCURRENCY}; got {concurrency}")
    if getattr(rewriter.backend, "serial", False):
        concurrency = 1
    results: list[RewriteResult | None] = [None] * len(texts)
    stop = _Stop(cancel)

    def one(i: int) -> None:
        if stop.stop_new:
            return
        res = rewriter.rewrite(texts[i], cancel=stop)  # after a fatal error, rows in flight still finish
        if res.error_kind in FATAL_KINDS:
            stop.fatal = res
        results[i] = res
        if on_done is not None:
            on_done(i, res)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rewrite") as pool:
        futures = [pool.submit(one, i) for i in range(len(texts))]
        try:
            for f in futures:
                try:
                    f.result()
                except RewriteError as e:
                    if e.kind != "cancelled":
                        raise
        except BaseException:  # Ctrl-C or an error: stop the rows in flight at their next chunk or token
            stop.aborted = True
            raise
    return results


class _Stop:
    """What stops rows: the caller's cancel or an abort stops them all at once; a fatal error seen by any
    worker only stops new rows from starting."""

    def __init__(self, outer: CancelLike | None) -> None:
        self.outer = outer
        self.fatal: RewriteResult | None = None
        self.aborted = False

    @property
    def cancelled(self) -> bool:
        return self.aborted or bool(self.outer is not None and self.outer.cancelled)

    @property
    def stop_new(self) -> bool:
        return self.cancelled or self.fatal is not None


def rewrite_requests(requests: Sequence["RenderRequest"], config: RewriteConfig, *, concurrency: int = 4,
                     report: Callable[[str], None] = log.info) -> list["RenderRequest"]:
    """`nava-render --rewrite`: each request's prompt rewritten (voices untouched: the lines they bind to
    are guaranteed unchanged), or kept with the reason reported. The rewriter is closed afterwards, so a
    local LM is out of memory before NAVA loads. Raises RewriteError when the rewriter cannot work at all."""
    rewriter = make_rewriter(config)
    try:
        results = rewrite_many(rewriter, [r.prompt for r in requests], concurrency=concurrency)
    finally:
        rewriter.backend.close()
    fatal = next((r for r in results if r is not None and r.error_kind in FATAL_KINDS), None)
    if fatal is not None:
        raise RewriteError(fatal.error_kind, fatal.message.removeprefix("kept the original prompt: "))
    out = []
    for i, (req, res) in enumerate(zip(requests, results), 1):
        assert res is not None
        report(f"request {i}: {res.message}")
        out.append(req.replace(prompt=res.text) if res.accepted else req)
    return out
