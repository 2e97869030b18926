"""A small OpenAI-compatible chat-completions server for tests, on 127.0.0.1 and a free port.

It speaks the real protocol (GET /v1/models, POST /v1/chat/completions, JSON or server-sent events,
OpenAI-style error bodies and status codes) so the rewrite client is exercised exactly as against
vLLM or a hosted API. What it "writes" is decided by the model name, like choosing a real model:

- `writer`: thinks first (`<think>...</think>` inline and `reasoning_content` in the stream), then
  expands the input into one English paragraph that keeps every spoken line.
- `learner`: its first answer to an input rewords the first spoken line; once the request says why the
  previous answer was refused it answers like `writer` (a retry that fixes itself).
- `paraphraser`: always rewords the first spoken line (every attempt fails the check).
- `lister`: answers with a markdown list.
- `busy`: always 429 with Retry-After: 0.  `slow`: answers after `slow_s` seconds.
- `rambler`: thinks until the token limit: a reply cut off (`finish_reason: length`) with no answer yet.
Any other model name is a 404 "model does not exist", a wrong key a 401.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ("writer", "learner", "paraphraser", "lister", "busy", "slow", "rambler")
_SPAN = re.compile(r"<S>(.*?)<E>", re.S)


@dataclass
class ServerState:
    api_key: str = ""  # required bearer key ("" = none)
    delay_s: float = 0.0  # per request, to make concurrency observable
    slow_s: float = 5.0
    refuse_after: int | None = None  # answer this many chat requests, then 401 every further one
    in_flight: int = 0
    max_in_flight: int = 0
    chat_requests: int = 0
    prompts: list[str] = field(default_factory=list)  # the "Input:" of every chat request, in arrival order
    lock: threading.Lock = field(default_factory=threading.Lock)


def _input_of(messages: list[dict[str, Any]]) -> str:
    user = next(m["content"] for m in reversed(messages) if m.get("role") == "user")
    return user.split("Input:\n", 1)[1] if "Input:\n" in user else user


def expand(text: str) -> str:
    """A deterministic 'dense caption' of `text`: prose around it, spoken lines untouched."""
    return (f"This cinematic video is shot in soft evening light with a slow dolly-in. {text.strip()} "
            "The ambience is a quiet room tone and there is no music.")


def reword_first_line(text: str) -> str:
    return _SPAN.sub(lambda m: f"<S>{m.group(1).upper()}!<E>", text, count=1)


def answer(model: str, messages: list[dict[str, Any]]) -> tuple[str, str]:
    """(reasoning, content) for a chat request."""
    src = _input_of(messages)
    retried = "previous answer was refused" in messages[-1]["content"]
    thinking = "The user wants a dense caption. Keep the lines. Maybe <S>not this<E>."
    if model == "writer" or (model == "learner" and retried):
        return thinking, f"<think>{thinking}</think>\n\n{expand(src)}"
    if model in ("learner", "paraphraser"):
        return thinking, expand(reword_first_line(src))
    if model == "rambler":  # the template opened <think>; the reply is thinking that quotes every line
        return "", f"Let me restate the input: {src} and then I will"
    if model == "lister":
        return "", "# Caption\n- a video\n- with things\n- " + src
    return "", expand(src)


class _Handler(BaseHTTPRequestHandler):
    server: "ChatServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def _authorised(self) -> bool:
        key = self.server.state.api_key
        return not key or self.headers.get("Authorization") == f"Bearer {key}"

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return self._error(401, "Incorrect API key provided.", "invalid_request_error")
        if self.path.rstrip("/") == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
        self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no route {self.path}", "not_found")
        st = self.server.state
        if not self._authorised():
            return self._error(401, "Incorrect API key provided.", "invalid_request_error")
        model = body.get("model", "")
        if model not in MODELS:
            return self._error(404, f"The model `{model}` does not exist.", "NotFoundError")
        if model == "busy":
            return self._error(429, "Rate limit reached, slow down.", "rate_limit", {"Retry-After": "0"})
        with st.lock:
            if st.refuse_after is not None and st.chat_requests >= st.refuse_after:
                refuse = True
            else:
                refuse = False
                st.chat_requests += 1
                st.prompts.append(_input_of(body["messages"]))
                st.in_flight += 1
                st.max_in_flight = max(st.max_in_flight, st.in_flight)
        if refuse:
            return self._error(401, "Your key has expired.", "invalid_request_error")
        try:
            time.sleep(st.slow_s if model == "slow" else st.delay_s)
            reasoning, content = answer(model, body["messages"])
            if body.get("stream"):
                self._stream(model, reasoning, content, "length" if model == "rambler" else "stop")
            else:
                self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                                 "model": model, "choices": [{"index": 0, "message": {
                                     "role": "assistant", "content": content, "reasoning_content": reasoning},
                                     "finish_reason": "length" if model == "rambler" else "stop"}]})
        finally:
            with st.lock:
                st.in_flight -= 1

    def _stream(self, model: str, reasoning: str, content: str, finish: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self._chunk(f"data: {json.dumps(chunk)}\n\n")

        send({"role": "assistant", "content": ""})
        for i in range(0, len(reasoning), 16):
            send({"reasoning_content": reasoning[i:i + 16]})
        for i in range(0, len(content), 7):  # small pieces: spans arrive split across chunks
            send({"content": content[i:i + 7]})
        send({}, finish)
        self._chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a deliberately slow answer must not hold up the test's teardown

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeout, cancel) is part of the tests, not an error."""

    def __init__(self, state: ServerState | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state or ServerState()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> "ChatServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()
