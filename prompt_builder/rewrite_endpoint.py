"""Rewrite backend for any OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, llama.cpp, hosted APIs).

Uses the `openai` client (not huggingface_hub's InferenceClient: with a custom base URL and no key it
sends the user's saved Hugging Face token to that server, and `HF_HUB_OFFLINE=1` blocks even a server
on 127.0.0.1). Retries are the Rewriter's job, so the client's own are off. Replies are streamed by
default so a cancel stops the download at once and progress can be shown. Reasoning that servers send
in a separate field (`reasoning_content`) is never read; reasoning inline in the text is removed by
`rewrite.clean_output`.

The API key lives only in this object; it is never logged, put in a request, history or sidecar.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from .rewrite import CancelLike, Message, RewriteError, TextCallback

log = logging.getLogger(__name__)

NO_KEY = "EMPTY"  # what local servers (vLLM, llama.cpp) accept when they were started without a key


@dataclass
class EndpointBackend:
    """`base_url` is the server's OpenAI root, e.g. http://127.0.0.1:8000/v1. An empty `model` means the
    first model the server lists (a vLLM or llama.cpp server serves exactly one)."""

    base_url: str
    model: str = ""
    api_key: str = field(default="", repr=False)
    timeout_s: float = 120.0
    stream: bool = True
    temperature: float | None = 0.7
    max_tokens: int | None = None
    _client: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        url = (self.base_url or "").strip()
        if not url.startswith(("http://", "https://")):
            raise RewriteError("config", f"the rewrite endpoint must be an http(s) URL such as "
                                         f"http://127.0.0.1:8000/v1; got {self.base_url!r}")
        self.base_url = url.rstrip("/")
        if not self.timeout_s or self.timeout_s <= 0:
            raise RewriteError("config", f"the timeout must be a positive number of seconds; got {self.timeout_s!r}")

    # ---- client -------------------------------------------------------------------------------------

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    import openai
                except ImportError:
                    raise RewriteError("config", "the 'openai' package is missing: pip install openai") from None
                self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key or NO_KEY,
                                             timeout=self.timeout_s, max_retries=0)
            return self._client

    def resolve_model(self) -> str:
        """The model to ask: the configured one, or the first the server lists."""
        if self.model:
            return self.model
        client = self._get_client()
        try:
            models = [m.id for m in client.models.list()]
        except Exception as e:  # noqa: BLE001 - translated into words below
            raise self._translate(e) from None
        if not models:
            raise RewriteError("model_not_found", f"the endpoint {self.base_url} serves no models; "
                                                  "start it with a model or name one with --rewrite-model")
        self.model = models[0]
        log.info("rewrite endpoint serves %s; using it", self.model)
        return self.model

    # ---- ChatBackend ---------------------------------------------------------------------------------

    def complete(self, messages: list[Message], *, attempt: int = 0, cancel: CancelLike | None = None,
                 on_text: TextCallback | None = None) -> str:
        model = self.resolve_model()
        client = self._get_client()
        kwargs: dict[str, Any] = {"model": model, "messages": messages}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens:
            kwargs["max_tokens"] = self.max_tokens
        try:
            if not self.stream:
                resp = client.chat.completions.create(**kwargs)
                if not getattr(resp, "choices", None):
                    raise RewriteError("bad_response", f"the endpoint answered without a choice ({model})")
                self._check_finished(resp.choices[0].finish_reason)
                return resp.choices[0].message.content or ""
            parts: list[str] = []
            finish = None
            stream = client.chat.completions.create(stream=True, **kwargs)
            try:
                for chunk in stream:
                    if cancel is not None and cancel.cancelled:
                        raise RewriteError("cancelled", "rewrite cancelled")
                    for choice in getattr(chunk, "choices", None) or ():
                        piece = getattr(choice.delta, "content", None)
                        if piece:
                            parts.append(piece)
                        finish = choice.finish_reason or finish
                    if on_text is not None and parts:
                        on_text("".join(parts))
            finally:
                stream.close()
            self._check_finished(finish)
            return "".join(parts)
        except RewriteError:
            raise
        except Exception as e:  # noqa: BLE001 - every client error becomes one plain sentence
            raise self._translate(e, model) from None

    def _check_finished(self, finish_reason: str | None) -> None:
        """A reply cut off by the token limit may be unfinished thinking: never use it."""
        if finish_reason == "length":
            limit = f" of {self.max_tokens}" if self.max_tokens else ""
            raise RewriteError("bad_response", f"the reply was cut off at the token limit{limit} (thinking models "
                                               "need room: raise --max-tokens / the server's limit)")

    def release_gpu(self) -> None:
        """Nothing to release: the model runs elsewhere."""

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ---- errors in plain words ---------------------------------------------------------------------

    def _translate(self, e: Exception, model: str = "") -> RewriteError:
        err = self._words(e, model)
        if self.api_key and self.api_key in str(err):  # a server that echoes the key must not put it on screen
            err = RewriteError(err.kind, str(err).replace(self.api_key, "***"), retry_after_s=err.retry_after_s)
        return err

    def _words(self, e: Exception, model: str) -> RewriteError:
        import openai

        url = self.base_url
        status = getattr(e, "status_code", None)
        detail = _server_detail(e)
        if isinstance(e, openai.APITimeoutError):
            return RewriteError("timeout", f"the rewrite endpoint {url} did not answer within {self.timeout_s:g} s; "
                                           "try again, raise the timeout, or use a smaller or less busy model")
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            why = f" ({cause})" if cause else ""
            return RewriteError("unreachable", f"cannot reach the rewrite endpoint {url}{why}; check that the "
                                               "server is running and the address is right (for example "
                                               "http://127.0.0.1:8000/v1)")
        if status in (401, 403):
            return RewriteError("auth", f"the rewrite endpoint {url} refused the API key (HTTP {status}{detail}); "
                                        "set the right key (--rewrite-key, NAVA_REWRITE_KEY or the Model tab)")
        if status == 404:
            return RewriteError("model_not_found", f"model {model or '(default)'!r} was not found at {url} "
                                                   f"(HTTP 404{detail}); check the model name (the server lists "
                                                   f"its models at {url}/models) and that the address ends in /v1")
        if status == 429:
            return RewriteError("rate_limit", f"the rewrite endpoint {url} is rate-limiting requests (HTTP 429"
                                              f"{detail}); wait a moment or lower --concurrency",
                                retry_after_s=_retry_after(e))
        if status is not None and status >= 500:
            return RewriteError("server", f"the rewrite endpoint {url} failed (HTTP {status}{detail})")
        if status is not None:
            return RewriteError("bad_response", f"the rewrite endpoint {url} refused the request "
                                                f"(HTTP {status}{detail})")
        if isinstance(e, openai.APIError):
            return RewriteError("server", f"the rewrite endpoint {url} reported an error: {e}")
        return RewriteError("bad_response", f"unexpected answer from the rewrite endpoint {url}: {e}")


def _server_detail(e: Exception) -> str:
    body = getattr(e, "body", None)
    msg = ""
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message", "") if isinstance(err, dict) else str(err)
    msg = " ".join(str(msg).split())[:200]
    return f": {msg}" if msg else ""


def _retry_after(e: Exception) -> float | None:
    response = getattr(e, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
