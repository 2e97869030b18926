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
import os
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


__all__ = ["AccessDenied", "AdminPolicy", "FolderBoundary", "LoginLimiter", "is_loopback", "client_host"]
