"""`nava-render batch FILE --cluster ADDRESS`: the batch command's flags and run for a Ray cluster.

Kept apart from `batch_cli` so the local path does not change: `batch_cli` plans, validates and
queues exactly as before, then hands the queue to `run_on_cluster` instead of a local engine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nava_core.cluster import ClusterConfig, ClusterError, check_address, require_ray
from nava_core.progress import CancelToken


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """The flags of `nava-render batch` that send the batch to a Ray cluster."""
    g = p.add_argument_group("render farm (batch only; needs Ray: pip install \".[cluster]\")")
    g.add_argument("--cluster", metavar="ADDRESS",
                   help="run the batch on Ray: 'local' (a Ray instance on this machine), 'ray://HOST:PORT' "
                        "(Ray Client) or 'HOST:PORT' (this machine is a cluster node); see docs/cluster.md")
    g.add_argument("--actors", type=int, help="render actors (default: one per GPU, or per --gpus-per-actor group)")
    g.add_argument("--gpus-per-actor", type=int, default=1,
                   help="GPUs per actor; more than 1 runs Ulysses sequence parallel in each actor (default 1)")
    g.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs Ray reserves per actor (default 1)")
    g.add_argument("--actor-memory-gb", type=float,
                   help="per-GPU memory of an actor for the refusal check (default: what its GPU reports)")
    g.add_argument("--cluster-output", choices=["auto", "shared", "return"], default="auto",
                   help="auto: actors write into --out when their node sees it (shared volume), else return the "
                        "files to this driver; shared: require the shared volume; return: always return")
    g.add_argument("--max-attempts", type=int, default=2, help="tries per job before it is marked failed (default 2)")


def cluster_config(args: argparse.Namespace) -> ClusterConfig:
    """The cluster settings of a command line; raises ClusterError (Ray missing, bad address or counts)."""
    check_address(args.cluster)
    config = ClusterConfig(
        address=args.cluster, weights=str(args.weights), actors=getattr(args, "actors", None),
        gpus_per_actor=getattr(args, "gpus_per_actor", 1), cpus_per_actor=getattr(args, "cpus_per_actor", 1.0),
        device=getattr(args, "device", None), precision=getattr(args, "precision", None) or "nava",
        memory_profile=getattr(args, "memory_profile", None) or "auto",
        actor_memory_gb=getattr(args, "actor_memory_gb", None), max_attempts=getattr(args, "max_attempts", 2),
        output=getattr(args, "cluster_output", "auto"),
    )
    require_ray()
    return config


class StopHandle:
    """Ctrl-C for a cluster run in the shape `batch_cli`'s handler stops a worker: `stopping`, `request_stop`."""

    def __init__(self) -> None:
        self.token = CancelToken()

    @property
    def stopping(self) -> bool:
        return self.token.cancelled

    def request_stop(self) -> None:
        self.token.cancel()


def run_on_cluster(args: argparse.Namespace, queue: Any, out: Path, events: Any, cancel: CancelToken) -> int:
    """Render the queued jobs on the cluster; 0 when it ran to the end, 3 when the cluster could not start."""
    from nava_core.cluster.board import ClusterBoard
    from nava_core.cluster.driver import ClusterDriver

    try:
        config = cluster_config(args)
    except ClusterError as e:
        print(f"nava-render: {e}", file=sys.stderr)
        return 2
    board = ClusterBoard(stream=sys.stderr, quiet=bool(getattr(args, "quiet", False)))
    driver = ClusterDriver(queue, out, config, board=board, events=events.write, cancel=cancel)
    try:
        summary = driver.run()
    except ClusterError as e:
        print(f"nava-render: {e}", file=sys.stderr)
        return 3
    print(f"cluster: {summary.actors} actor(s), {len(summary.done)} done, {len(summary.failed)} failed, "
          f"{len(summary.refused)} refused, {len(summary.retried)} retried, {summary.actor_deaths} actor death(s); "
          f"{summary.jobs_per_hour:.1f} jobs/h after {summary.startup_s:.1f} s start-up", file=sys.stderr)
    left = len(queue.list(states=("queued",)))
    if left and not cancel.cancelled:
        print(f"nava-render: {left} job(s) still queued: no render actor is left (see the actor lines above); "
              "re-run the same command to resume", file=sys.stderr)
    return 0


__all__ = ["StopHandle", "add_cluster_args", "cluster_config", "run_on_cluster"]
