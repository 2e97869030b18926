"""Who may do what on a studio that is on a network: admin actions, weights folders, logins, API pages.

Why: the studio's page events can be called raw by anyone who reaches the port. Actions that touch the
server's disk beyond the data folder (download 40 GB of weights, inspect or switch a weights folder) are
admin actions: with `--auth` only a logged-in user may call them, without it only this machine
(127.0.0.1 / ::1) unless the operator passes `--allow-remote-admin`. Weights folders picked in the UI
must lie inside the data folder or a folder the operator allowed (`--allow-path`, or the `--weights`
folder the studio started with), and a folder outside gets one message whether or not it exists.
Login attempts are rate-limited per client, and the API description is only for logged-in clients.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class AccessDenied(PermissionError):
    """An action this client may not take; the message says why and what the operator can change."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def client_host(request: Any) -> str | None:
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


@dataclass(frozen=True)
class AdminPolicy:
    """Admin actions (weights download, inspecting or switching the weights folder)."""

    auth: bool = False
    allow_remote: bool = False

    def check(self, request: Any, action: str) -> None:
        if self.auth:
            if not getattr(request, "username", None):
                raise AccessDenied(f"{action} needs a login; sign in to the studio first")
            return
        if self.allow_remote or is_loopback(client_host(request)):
            return
        raise AccessDenied(f"{action} is only allowed from the studio's own machine (this studio runs without "
                           "--auth); the operator can start it with --auth USER:PASSWORD or --allow-remote-admin")


@dataclass(frozen=True)
class FolderBoundary:
    """Weights folders the UI may use: inside one of `roots` (after resolving `..` and symlinks)."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, *roots: str | os.PathLike[str] | None) -> "FolderBoundary":
        return cls(tuple(Path(os.path.realpath(r)) for r in roots if r))

    def resolve(self, folder: str) -> Path:
        if not isinstance(folder, str) or not folder.strip() or len(folder) > 1024 or "\x00" in folder:
            raise AccessDenied("the weights folder must be a path of at most 1024 characters")
        p = Path(folder.strip()).expanduser()
        real = Path(os.path.realpath(p if p.is_absolute() else self.roots[0] / p))
        if not any(real == r or r in real.parents for r in self.roots):
            raise AccessDenied("that weights folder is outside the folders this studio may use (its data folder "
                               "and the folders the operator allowed with --allow-path)")
        return real


@dataclass
class LoginLimiter:
    """At most `attempts` failed logins per client in `window_s`; then refused until the window passes."""

    attempts: int = 5
    window_s: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str) -> float:
        """Seconds this client must wait before its next attempt (0: may try now)."""
        now = time.monotonic()
        with self._lock:
            q = self._failures.get(client)
            if not q:
                return 0.0
            while q and now - q[0] > self.window_s:
                q.popleft()
            if len(q) < self.attempts:
                return 0.0
            return max(0.0, self.window_s - (now - q[0]))

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._failures) > 10_000:  # bounded memory: forget the oldest clients first
                for key in list(self._failures)[:1000]:
                    del self._failures[key]
            self._failures.setdefault(client, deque(maxlen=self.attempts * 2)).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)




# ---- the ASGI guard in front of Gradio's routes ------------------------------------------------------

_API_INFO = re.compile(rb"window\.gradio_api_info\s*=\s*.*?;</script>", re.DOTALL)


class StudioGuard:
    """ASGI middleware (inside Gradio's app): with auth on, login attempts are rate-limited per client
    address, and pages served to a client that is not logged in (the login page, /gradio_api/runs) carry
    no API description. Everything else passes through untouched."""

    def __init__(self, app: Any, limiter: LoginLimiter | None = None) -> None:
        self.app = app
        self.limiter = limiter or LoginLimiter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        gradio_app = scope.get("app")
        if scope.get("type") != "http" or getattr(gradio_app, "auth", None) is None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").rstrip("/")
        method = scope.get("method", "GET")
        if method == "POST" and path.endswith("/login"):
            await self._login(scope, receive, send)
        elif method == "GET" and _is_page(path) and not _logged_in(scope, gradio_app):
            await self._without_api_info(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _login(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.limiter.retry_after(client)
        if wait > 0:
            body = json.dumps({"detail": f"Too many failed logins from this address; try again in {wait:.0f} s."})
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(int(wait) + 1).encode())]})
            await send({"type": "http.response.body", "body": body.encode()})
            return
        status: list[int] = []

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.limiter.succeeded(client)
        elif status and 400 <= status[0] < 500:
            self.limiter.failed(client)

    async def _without_api_info(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def buffer(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                body = _API_INFO.sub(b"window.gradio_api_info = null;</script>", body)
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffer)


def _is_page(path: str) -> bool:
    """The HTML pages Gradio renders with the API description: the app's pages and the run history."""
    return path.endswith("/gradio_api/runs") or "/" not in path.lstrip("/") and "." not in path \
        and not path.startswith("/gradio_api")


def _logged_in(scope: dict[str, Any], gradio_app: Any) -> bool:
    cookie_id = getattr(gradio_app, "cookie_id", None)
    tokens = getattr(gradio_app, "tokens", {}) or {}
    if not cookie_id:
        return False
    names = {f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"}
    for key, value in scope.get("headers", []):
        if key.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, _, token = part.strip().partition("=")
            if name in names and token in tokens:
                return True
    return False


__all__ = ["AccessDenied", "AdminPolicy", "FolderBoundary", "LoginLimiter", "StudioGuard", "is_loopback",
           "client_host"]
