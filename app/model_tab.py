"""The Model tab: which weights are in use and what is missing, download, folder, memory profile, GPUs
and the estimate for the request in the builder."""

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
        f"**Memory profile:** {E.canonical_profile(service.engine.memory_profile)} · "
        f"**precision:** {service.engine.precision or 'nava'} · **GPUs used:** {service.engine.gpus}",
        f"**Detected GPUs:** {', '.join(gpus) if gpus else 'none (CPU only: only the tiny preview engine is practical)'}",
    ]
    return "\n\n".join(lines)


def folder_report(folder: str) -> tuple[str, list[list[str]], Any]:
    """(report text, file rows, visibility of the speaker-encoder button) for one weights folder."""
    status = E.weight_status(folder)
    head = "✅ complete" if status.complete else "⚠️ incomplete"
    text = f"{head}: `{status.folder}`\n\n```\n{status.summary}\n```"
    only_speaker = status.missing_components == ("speaker_encoder",)
    if only_speaker:
        text += ("\n\nOnly the **ReDimNet speaker encoder** is missing (it is not part of the Hub repo). Press "
                 "**Download speaker encoder** (~50 MB from its GitHub release), then **Use this folder**.")
    elif not status.complete:
        text += (f"\n\nTo get the weights: press **Download weights** ({E.download_size_text()} from "
                 f"huggingface.co/{E.RELEASE_REPO}; resumable), or copy a downloaded folder here and press "
                 "**Use this folder**.")
    return text, status.rows, gr.update(visible=only_speaker)


def button_variants(folder: str) -> tuple[Any, Any]:
    """'Use this folder' is the main action only when the folder is complete; otherwise 'Download weights' is."""
    complete = E.weight_status(folder).complete
    return (gr.update(variant="primary" if complete else "secondary"),
            gr.update(variant="secondary" if complete else "primary"))


def error_box(message: str) -> str:
    """A failure in plain words that stays on the page (a toast disappears after seconds)."""
    text = message.strip()
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return f'<div class="nava-model-error" role="alert">⛔ {text}</div>'


def build_model_tab(service: StudioService, banner: gr.Markdown) -> gr.Markdown:
    """Build the tab; returns the estimate box the builder keeps up to date."""
    summary = gr.Markdown(engine_summary(service), elem_id="model-summary")
    choice = service.engine.choice
    default_folder = choice.folder if not choice.is_tiny else (choice.suggested or str(service.paths.weights))
    folder = gr.Textbox(value=default_folder, label="Weights folder")
    with gr.Row():
        inspect_btn = gr.Button("Inspect folder")
        complete = E.weight_status(default_folder).complete
        use_btn = gr.Button("Use this folder", variant="primary" if complete else "secondary", elem_id="use-folder")
        tiny_btn = gr.Button("Use tiny preview weights")
        download_btn = gr.Button("Download weights", variant="secondary" if complete else "primary",
                                 elem_id="download-weights")
        speaker_btn = gr.Button("Download speaker encoder", visible=False, elem_id="download-speaker")
    report_md, rows, speaker_vis = folder_report(default_folder)
    speaker_btn.visible = speaker_vis["visible"]
    error = gr.HTML("", elem_id="model-error")
    report = gr.Markdown(report_md)
    table = gr.Dataframe(value=rows, headers=["component", "status", "path", "size"], interactive=False,
                         label="Weight files")
    gpu_choices = E.valid_gpu_counts()
    with gr.Row():
        profile = gr.Dropdown(list(E.MEMORY_PROFILES), value=E.canonical_profile(service.engine.memory_profile),
                              label="Memory profile", elem_id="memory-profile",
                              info="auto picks from the detected GPU; resident > t5_offload > fp8 > group_offload "
                                   "need less GPU memory in that order (README: Memory profiles)")
        gpus = gr.Dropdown(gpu_choices, value=service.engine.gpus if service.engine.gpus in gpu_choices else 1,
                           label="GPUs per render", elem_id="gpu-count",
                           info="counts that divide NAVA's 24 attention heads, up to the GPUs detected")
        precision = gr.Radio(list(E.PRECISIONS), value=service.engine.precision or "nava", label="Precision",
                             info="nava = the release's mixed precision; fp32 = slower reference")
        apply_btn = gr.Button("Apply")
    estimate = gr.Markdown(elem_id="model-estimate")

    def _admin(request: Any, action: str, arg: str | None) -> str | None:
        """The admin gate and the folder boundary for a raw or clicked event; the resolved folder."""
        from app.access import AccessDenied

        try:
            service.admin.check(request, action)
            return None if arg in (None, "tiny") else str(service.weights_boundary.resolve(arg))
        except AccessDenied as e:
            raise gr.Error(f"{e}.") from e

    def _report(folder: str) -> tuple[Any, ...]:
        return (*folder_report(folder), *button_variants(folder), "")

    def _inspect(arg: str, request: gr.Request) -> tuple[Any, ...]:
        return _report(_admin(request, "Inspecting a weights folder", arg) or str(service.paths.weights))

    report_outs = [report, table, speaker_btn, use_btn, download_btn, error]
    inspect_btn.click(_inspect, folder, report_outs, api_visibility="private")
    folder.submit(_inspect, folder, report_outs, api_visibility="private")

    def _use(arg: str, prof: str, n: int, prec: str, request: gr.Request | None = None,
             _checked: bool = False) -> tuple[Any, ...]:
        if not _checked:
            arg = _admin(request, "Switching the weights", arg) or "tiny"
        try:
            choice = service.switch_weights(arg, prof, prec, gpus=int(n or 1))
        except StudioError as e:
            gr.Warning(str(e))
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        if choice.is_tiny and arg != "tiny":
            gr.Warning(f"That folder is not a complete weight set; using the tiny preview weights ({choice.reason}).")
        text, rows, vis = folder_report(arg if arg != "tiny" else str(service.paths.weights))
        return (engine_summary(service), text, rows, vis,
                gr.update(value=E.tiny_banner(choice), visible=choice.is_tiny))

    def _use_folder(arg: str, prof: str, n: int, prec: str, request: gr.Request) -> tuple[Any, ...]:
        return _use(arg, prof, n, prec, request)

    def _use_tiny(prof: str, n: int, prec: str, request: gr.Request) -> tuple[Any, ...]:
        return _use("tiny", prof, n, prec, request)

    def _apply(prof: str, n: int, prec: str, request: gr.Request) -> tuple[Any, ...]:
        _admin(request, "Changing the engine settings", None)
        return _use(service.engine.choice.folder, prof, n, prec, request, _checked=True)[:1] + (gr.update(),) * 4

    outs = [summary, report, table, speaker_btn, banner]
    use_btn.click(_use_folder, [folder, profile, gpus, precision], outs, api_visibility="private")
    tiny_btn.click(_use_tiny, [profile, gpus, precision], outs, api_visibility="private")
    apply_btn.click(_apply, [profile, gpus, precision], outs, api_visibility="private")

    def _download(arg: str, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        arg = _admin(request, "Downloading weights", arg) or str(service.paths.weights)

        def cb(message: str, fraction: float) -> None:
            progress(fraction, desc=message)

        try:
            E.download_weights(arg, cb)
        except Exception as e:  # noqa: BLE001 - shown as a message that says what to do, and kept on the page
            log.warning("weights download failed: %s", e)
            gr.Warning("The download failed; the Model tab says why.")
            return (*folder_report(arg), *button_variants(arg), error_box(str(e)))
        return _report(arg)

    def _download_speaker(arg: str, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        arg = _admin(request, "Downloading the speaker encoder", arg) or str(service.paths.weights)
        try:
            path = E.download_speaker_encoder(lambda m, f: progress(f, desc=m))
        except Exception as e:  # noqa: BLE001
            log.warning("speaker encoder download failed: %s", e)
            gr.Warning("The download failed; the Model tab says why.")
            return (*folder_report(arg), *button_variants(arg), error_box(str(e)))
        gr.Info(f"Speaker encoder saved to {path}; press 'Use this folder' to render with these weights.")
        return _report(arg)

    download_btn.click(_download, folder, report_outs, api_visibility="private")
    speaker_btn.click(_download_speaker, folder, report_outs, api_visibility="private")
    return estimate
