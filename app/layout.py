"""The page: Studio (builder + render), Voice cast & timeline, History, Model, and the API endpoints.

Only layout and event wiring live here; what each event does is in `handlers` and `service`.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from app import engine as E
from app import handlers as H
from app.batch_tab import build_batch_tab
from app.model_tab import build_model_tab
from app.service import StudioError, StudioService
from app.studio_tab import build_studio_tab, wire_loads
from app.timeline_tab import build_timeline_tab

log = logging.getLogger(__name__)


def build_ui(service: StudioService) -> gr.Blocks:
    """Build the whole studio page around one StudioService."""
    with gr.Blocks(title="NAVA Studio") as demo:
        gr.Markdown("# NAVA Studio\nBuild the scene, cast the voices, render picture and stereo sound together.")
        banner = gr.Markdown(E.tiny_banner(service.engine.choice), visible=service.engine.choice.is_tiny,
                             elem_classes=["nava-banner"], elem_id="nava-banner")
        with gr.Tabs() as tabs:
            with gr.Tab("Studio", id="studio"):
                studio = build_studio_tab(service, demo)
            with gr.Tab("Voice cast & timeline", id="timeline") as timeline_tab:
                tl_status, subs_file = build_timeline_tab(service, studio, timeline_tab)

            # ============================== History ==============================
            with gr.Tab("History", id="history") as history_tab:
                refresh = gr.Button("Refresh", size="sm")
                gallery = gr.Gallery(label="Renders (click one to show it)", columns=8, rows=1, height=200,
                                     object_fit="contain", allow_preview=False, elem_id="history-gallery")
                hist_table = gr.Dataframe(headers=H.HISTORY_HEADERS, interactive=False, label="All renders")
                with gr.Row():
                    hist_id = gr.Textbox(label="Selected render id", interactive=True)
                    reuse_btn = gr.Button("Reuse settings", variant="primary", elem_id="reuse-btn")
                hist_video = gr.Video(label="Selected render", interactive=False)
                hist_request = gr.Code(label="Request", language="json")

            # ============================== Batch ==============================
            with gr.Tab("Batch", id="batch"):
                batch_runner = build_batch_tab(service)
                service.attach_batch(batch_runner)  # closed with the service; switch_weights waits for it

            # ============================== Model ==============================
            with gr.Tab("Model", id="model"):
                model_estimate = build_model_tab(service, banner)

        # ---------------- hidden API endpoints (typed str inputs) ----------------
        with gr.Row(visible=False):
            api_req = gr.Textbox()
            api_file = gr.File()
            api_proj = gr.Textbox()
            api_text = gr.Textbox()
            api_render_btn = gr.Button()
            api_lint_btn = gr.Button()
            api_compile_btn = gr.Button()
        api_render_btn.click(lambda s: H.api_render(service, s), api_req, api_file, api_name="render",
                             concurrency_limit=None,
                             api_description="Render a request (RenderRequest JSON text); returns the MP4 file.")
        api_lint_btn.click(H.api_lint, api_proj, api_text, api_name="lint",
                           api_description="Lint a project (Project JSON text); returns findings as JSON text.")
        api_compile_btn.click(H.api_compile, api_proj, api_text, api_name="compile",
                              api_description="Compile a project (Project JSON text); returns {prompt, voices, span_speakers} JSON.")

        # ---------------- wiring between tabs ----------------
        studio.estimate.change(lambda text: text, studio.estimate, model_estimate, show_progress="hidden",
                               api_visibility="private")
        studio.on_load_reset = [(tl_status, ""), (subs_file, None)]  # a new project leaves no old status behind
        wire_loads(studio, service, demo)
        render_event = studio.render_event

        # ---------------- history tab ----------------
        def _history():
            g, rows = H.history_rows(service)
            return g, rows

        history_tab.select(_history, None, [gallery, hist_table])
        refresh.click(_history, None, [gallery, hist_table])
        render_event.then(_history, None, [gallery, hist_table], api_visibility="private")

        def _pick_row(evt: gr.SelectData, table: Any):
            rows = table.values.tolist() if hasattr(table, "values") else table
            rid = rows[evt.index[0]][0] if rows else ""
            return _show(rid)

        def _pick_gallery(evt: gr.SelectData):
            rid = str(evt.value["caption"] if isinstance(evt.value, dict) else evt.value).split(" ")[0]
            return _show(rid)

        def _show(rid: str):
            entry = service.history.get(rid)
            if entry is None:
                return rid, None, ""
            return rid, entry.outputs.get("mp4"), entry.request_json

        hist_table.select(_pick_row, hist_table, [hist_id, hist_video, hist_request])
        gallery.select(_pick_gallery, None, [hist_id, hist_video, hist_request])

        def _reuse(rid: str, r: int):
            try:
                state = service.reuse(rid)
            except StudioError as e:
                gr.Warning(str(e))
                return [gr.update()] * (len(studio.state_outputs) + 1)
            if state is None:
                gr.Warning("this render has no builder settings to restore")
                return [gr.update()] * (len(studio.state_outputs) + 1)
            gr.Info(f"Builder restored from render {rid}.")
            return [*studio.load_updates(state, f"settings of render {rid}", None, int(r or 0)),
                    gr.Tabs(selected="studio")]

        reuse_btn.click(_reuse, [hist_id, studio.rev], [*studio.state_outputs, tabs],
                        api_visibility="private").then(**studio.recompile)

    _keep_api_to(demo, {"render", "lint", "compile"})
    return demo


def _keep_api_to(demo: gr.Blocks, names: set[str]) -> None:
    """Only the documented endpoints are public; UI events (row edits, tabs) stay out of the API page."""
    for fn in demo.fns.values():
        if fn.api_name not in names:
            fn.api_visibility = "private"
