"""Render farms: a batch from the durable job store executed by Ray actors across machines.

Why Ray and not a home-made scheduler: it is the standard for GPU inference fleets (KubeRay,
`ray start`, `ray up`), installs from PyPI and runs a one-machine cluster for tests. Ray is an
optional extra (`pip install "nava-studio[cluster]"`): nothing outside this package imports it, and
without it the local path is unchanged and `--cluster` says how to install it.

The split of work: `nava_core.jobs.JobQueue` stays the source of truth (what is queued, running,
done, failed, and why); Ray only executes. `actor.RenderActor` holds one loaded engine (one GPU, or
one Ulysses group of N GPUs) and renders requests; `driver.ClusterDriver` claims jobs from the store,
places them on actors, finalises their files through the same `jobs.run_one` as the local runner
(same folders, manifest and sidecars, atomic rename) and retries a job once on another actor when an
actor dies; `board.ClusterBoard` turns the actors' progress into one line per actor plus jobs/hour
and an ETA.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

INSTALL_HINT = 'pip install "nava-studio[cluster]"  (from a checkout: pip install ".[cluster]")'
LOCAL = "local"


class ClusterError(RuntimeError):
    """The cluster cannot be used as asked (Ray missing, address wrong, no actor could start)."""


def require_ray() -> ModuleType:
    """Import Ray or say exactly how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, which is not installed; install it with: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach the cluster and how to shape its actors (one per GPU or per Ulysses group)."""

    address: str = LOCAL  # "local" (start Ray here), "auto", "ray://HOST:PORT" (Ray Client) or "HOST:PORT" (GCS)
    weights: str = "tiny"
    actors: int | None = None  # None: one per GPU group the cluster has (1 on a CPU-only cluster)
    gpus_per_actor: int = 1  # >1: the actor runs a Ulysses worker group over that many GPUs
    cpus_per_actor: float = 1.0
    device: str | None = None
    precision: str = "nava"
    memory_profile: str = "auto"  # the profile an actor warms up with; jobs asking for another reload it
    actor_memory_gb: float | None = None  # per-GPU memory of an actor; default: what the actor's GPU reports
    max_attempts: int = 2  # a job is tried at most this many times (actor death or render error)
    replacements_per_actor: int = 2  # a dead actor is replaced this many times, then its slot retires
    output: str = "auto"  # "auto": write into the shared output folder when the actor sees it, else "return" bytes
    local_cpus: int | None = None  # --cluster local: CPUs Ray may use on this machine
    poll_s: float = 0.25

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ClusterError(f"--actors must be at least 1; got {self.actors}")
        if self.gpus_per_actor < 0 or (self.gpus_per_actor > 1 and 24 % self.gpus_per_actor):
            raise ClusterError(f"--gpus-per-actor must be 0, 1 or a divisor of the 24 attention heads; "
                               f"got {self.gpus_per_actor}")
        if self.max_attempts < 1:
            raise ClusterError(f"max_attempts must be at least 1; got {self.max_attempts}")
        if self.output not in ("auto", "shared", "return"):
            raise ClusterError(f"output must be auto, shared or return; got {self.output!r}")
        check_address(self.address)


def check_address(address: str) -> str:
    """`local`, `auto`, `ray://HOST:PORT` or `HOST:PORT`; anything else is refused with the forms."""
    a = (address or "").strip()
    if a in (LOCAL, "auto"):
        return a
    rest = a[len("ray://"):] if a.startswith("ray://") else a
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ClusterError(f"--cluster {address!r} is not a cluster address; use 'local', "
                           "'ray://HOST:PORT' (Ray Client, port 10001 by default) or 'HOST:PORT' (the head's GCS "
                           "port, 6379 by default, when this machine is a node of the cluster)")
    return a


__all__ = ["ClusterConfig", "ClusterError", "INSTALL_HINT", "LOCAL", "check_address", "require_ray"]
