"""The Model tab: which weights are in use and what is missing, download, folder, memory and GPUs."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from app import engine as E
from app.service import StudioError, StudioService

log = logging.getLogger(__name__)


def engine_summary(service: StudioService) -> str:
    choice = service.engine.choice
    gpus = E.detect_gpus()
    lines = [
        f"**In use:** {service.engine.label}" + (" — outputs are from random weights" if choice.is_tiny else ""),
        f"**Why:** {choice.reason}",
        f"**Memory profile:** {service.engine.memory_profile} · **precision:** {service.engine.precision or 'nava'} · "
        f"**GPUs used:** {service.engine.gpus}",
        f"**Detected GPUs:** {', '.join(gpus) if gpus else 'none (CPU only: only the tiny preview engine is practical)'}",
    ]
    return "\n\n".join(lines)


def folder_report(folder: str) -> tuple[str, list[list[str]]]:
    status = E.weight_status(folder)
    head = "✅ complete" if status.complete else "⚠️ incomplete"
    text = f"{head}: `{status.folder}`\n\n```\n{status.summary}\n```"
    if not status.complete:
        text += (f"\n\nTo get the weights: press **Download weights** (about 30 GB from huggingface.co/{E.RELEASE_REPO}),"
                 " or copy a downloaded folder here and press **Use this folder**.")
    return text, status.rows


def build_model_tab(service: StudioService, banner: gr.Markdown) -> None:
    summary = gr.Markdown(engine_summary(service), elem_id="model-summary")
    default_folder = service.engine.choice.folder if not service.engine.choice.is_tiny else str(service.paths.weights)
    folder = gr.Textbox(value=default_folder, label="Weights folder")
    with gr.Row():
        inspect_btn = gr.Button("Inspect folder")
        use_btn = gr.Button("Use this folder", variant="primary")
        tiny_btn = gr.Button("Use tiny preview weights")
        download_btn = gr.Button("Download weights")
    report_md, rows = folder_report(default_folder)
    report = gr.Markdown(report_md)
    table = gr.Dataframe(value=rows, headers=["component", "status", "path", "size"], interactive=False,
                         label="Weight files")
    with gr.Row():
        profile = gr.Dropdown(list(E.MEMORY_PROFILES), value=service.engine.memory_profile, label="Memory profile",
                              info="auto picks from the detected GPU; low offloads more to fit smaller GPUs")
        precision = gr.Radio(list(E.PRECISIONS), value=service.engine.precision or "nava", label="Precision",
                             info="nava = the release's mixed precision; fp32 = slower reference")
        apply_btn = gr.Button("Apply")

    inspect_btn.click(folder_report, folder, [report, table], api_visibility="private")

    def _use(arg: str, prof: str, prec: str) -> tuple[Any, ...]:
        try:
            choice = service.switch_weights(arg, prof, prec)
        except StudioError as e:
            gr.Warning(str(e))
            return gr.update(), gr.update(), gr.update(), gr.update()
        if choice.is_tiny and arg != "tiny":
            gr.Warning(f"That folder is not a complete weight set; using the tiny preview weights ({choice.reason}).")
        text, rows = folder_report(arg if arg != "tiny" else str(service.paths.weights))
        return (engine_summary(service), text, rows,
                gr.update(value=E.tiny_banner(choice), visible=choice.is_tiny))

    use_btn.click(_use, [folder, profile, precision], [summary, report, table, banner], api_visibility="private")
    tiny_btn.click(lambda p, q: _use("tiny", p, q), [profile, precision], [summary, report, table, banner],
                   api_visibility="private")
    apply_btn.click(lambda p, q: _use(service.engine.choice.folder, p, q)[:1] + (gr.update(),) * 3,
                    [profile, precision], [summary, report, table, banner], api_visibility="private")

    def _download(arg: str, progress: gr.Progress = gr.Progress()) -> tuple[str, list[list[str]]]:
        def cb(message: str, fraction: float) -> None:
            progress(fraction, desc=message)

        try:
            E.download_weights(arg, cb)
        except Exception as e:  # noqa: BLE001 - shown as a message that says what to do
            raise gr.Error(str(e)) from e
        return folder_report(arg)

    download_btn.click(_download, folder, [report, table], api_visibility="private")
