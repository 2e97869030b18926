"""Command line of the studio (`python app.py`, `nava-studio`): parse options, build, launch."""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

from app.engine import MEMORY_PROFILES, PROFILE_ALIASES

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nava-studio",
                                description="NAVA Studio: build, cast and render NAVA clips in the browser.")
    p.add_argument("--weights", default=os.environ.get("NAVA_WEIGHTS"), metavar="PATH|tiny",
                   help="weights folder, or 'tiny' for the random-weight preview engine (default: the data folder's "
                        "weights/nava; the studio falls back to tiny, with a banner, when weights are missing)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (0.0.0.0 to expose on the network; a Space sets GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or 7860),
                   help="port to listen on (default GRADIO_SERVER_PORT, else PORT, else 7860)")
    p.add_argument("--auth", default=os.environ.get("NAVA_STUDIO_AUTH"), metavar="USER:PASSWORD",
                   help="require a login (or set NAVA_STUDIO_AUTH)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload accepted (MB)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs for one render (sequence parallel; divides 24)")
    p.add_argument("--memory-profile", default="auto", choices=[*MEMORY_PROFILES, *PROFILE_ALIASES],
                   help="where the weights live during a render (auto picks from the detected GPU; "
                        "high/balanced/low are the old names of resident/t5_offload/fp8)")
    p.add_argument("--precision", default=None, choices=["nava", "fp32"], help="numeric precision (default nava)")
    p.add_argument("--no-live-preview", action="store_true",
                   help="do not show the clip taking shape while it denoises (saves a little time per render)")
    p.add_argument("--allow-path", action="append", default=[], metavar="FOLDER",
                   help="also accept request voice/image paths and weights folders inside FOLDER (repeatable; "
                        "by default only the data folder's uploads, and weights inside the data folder)")
    p.add_argument("--max-queued-per-client", type=int, default=10, metavar="N",
                   help="renders one client (browser session, API client or login) may have waiting or running")
    p.add_argument("--max-queued", type=int, default=100, metavar="N",
                   help="renders the studio accepts waiting or running in total (then: 'queue full')")
    p.add_argument("--allow-remote-admin", action="store_true",
                   help="without --auth, let clients other than this machine download weights and switch the "
                        "weights folder (off: those actions answer only to 127.0.0.1)")
    p.add_argument("--home", default=None, help="data folder (default NAVA_STUDIO_HOME, else $XDG_DATA_HOME/nava-studio, else ~/.local/share/nava-studio)")
    from nava_core.rewriting import add_rewrite_arguments

    add_rewrite_arguments(p, prefix="rewrite-")
    return p


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SystemExit("--auth must be USER:PASSWORD")
    return user, password


def create_app(args: argparse.Namespace):  # -> tuple[gr.Blocks, StudioService]
    """Build the studio (no server yet); tests and app.py share it."""
    from app.engine import Engine, choose_weights
    from app.layout import build_ui
    from app.paths import StudioPaths
    from app.service import StudioService

    paths = StudioPaths.from_env(args.home)
    choice = choose_weights(args.weights, paths.weights)
    if choice.is_tiny:
        log.warning("rendering with the tiny random-weight engine: %s", choice.reason)
    engine = Engine(choice, memory_profile=args.memory_profile, precision=args.precision, gpus=args.gpus)
    if getattr(args, "no_live_preview", False):
        engine.preview_every = 0
    from app.access import AdminPolicy
    from app.service import QueueLimits

    roots = tuple(str(Path(r).expanduser().resolve()) for r in (getattr(args, "allow_path", None) or ()))
    limits = QueueLimits(per_client=getattr(args, "max_queued_per_client", 10), total=getattr(args, "max_queued", 100))
    service = StudioService(paths, engine, allowed_roots=roots, limits=limits)
    service.admin = AdminPolicy(auth=bool(getattr(args, "auth", None)),
                                allow_remote=bool(getattr(args, "allow_remote_admin", False)))
    demo = build_ui(service, _rewrites(args, service))
    # Gradio's queue: bounded too (events waiting for a slot beyond this are refused by Gradio)
    demo.queue(default_concurrency_limit=4, max_size=limits.total + GRADIO_SPARE_SLOTS * 4)
    return demo, service


# Gradio runs at most `max_threads` events at once, async ones included. An open /render call waits on
# the event loop but keeps its slot, so the studio allows as many slots as renders may wait (the queue
# limit) plus these spare ones, which keep /lint, /compile and the page answering while the queue is full.
GRADIO_SPARE_SLOTS = 40


def _rewrites(args: argparse.Namespace, service):  # -> RewriteService
    """The studio's rewriter: flags over environment; pages may pick their own only on a private studio."""
    from app.rewrites import RewriteService
    from app.zerogpu import on_zerogpu
    from nava_core.rewriting import config_from_args

    private = (getattr(args, "host", "127.0.0.1") in ("127.0.0.1", "localhost", "::1")
               and not getattr(args, "share", False) and not on_zerogpu() and not os.environ.get("SPACE_ID"))
    return RewriteService(config_from_args(args, prefix="rewrite-"), gpu_lock=service.engine.gpu_lock,
                          editable=private)


def launch_kwargs(args: argparse.Namespace, service) -> dict:
    from app.rewrite_panel import CSS as REWRITE_CSS
    from app.theme import CSS

    from starlette.middleware import Middleware

    from app.access import LoginLimiter, StudioGuard

    return dict(
        server_name=args.host, server_port=args.port, share=bool(args.share), auth=parse_auth(args.auth),
        app_kwargs={"middleware": [Middleware(StudioGuard, limiter=LoginLimiter())]},
        max_threads=getattr(args, "max_queued", 100) + GRADIO_SPARE_SLOTS,
        allowed_paths=service.paths.allowed_paths(), max_file_size=f"{args.max_upload_mb:g}mb",
        css=CSS + REWRITE_CSS, footer_links=["api", "settings"],
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    demo, service = create_app(args)
    from app.zerogpu import on_zerogpu

    if on_zerogpu() and not service.engine.choice.is_tiny:
        # ZeroGPU forks the GPU worker from this process: weights loaded on the CPU now are inherited
        threading.Thread(target=_preload, args=(service,), name="nava-preload", daemon=True).start()
    try:
        demo.launch(**launch_kwargs(args, service))
    finally:
        service.close()


def _preload(service) -> None:
    try:
        service.engine.pipeline()
    except Exception:  # noqa: BLE001 - the first render reports the same error to the user
        log.exception("loading the weights in the background failed")
