"""Command line of the studio (`python app.py`, `nava-studio`)."""

from __future__ import annotations

import argparse
import logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nava-studio", description="NAVA Studio: build, cast and render NAVA clips in the browser.")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 to expose on the network)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import gradio as gr

    with gr.Blocks(title="NAVA Studio") as demo:
        gr.Markdown("# NAVA Studio\nThe studio is being built; the engine lands first.")
    demo.launch(server_name=args.host, server_port=args.port)
