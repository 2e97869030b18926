"""The page: one tab module each (Studio, Voice cast & timeline, History, Batch, Model), the API, and
the wiring between tabs at the end. What each event does lives in the tab modules and `service`.
"""

from __future__ import annotations

import logging

import gradio as gr

from app import engine as E
from app.api import keep_api_to, mount_api
from app.batch_tab import build_batch_tab
from app.history_tab import build_history_tab, history_rows, reuse_state
from app.model_tab import build_model_tab
from app.rewrite_panel import build_rewrite_settings, wire_rewrite
from app.rewrites import RewriteService
from app.service import StudioError, StudioService
from app.studio_tab import build_studio_tab, wire_loads
from app.timeline_tab import build_timeline_tab

log = logging.getLogger(__name__)


def build_ui(service: StudioService, rewrites: RewriteService | None = None) -> gr.Blocks:
    """Build the whole studio page around one StudioService (and the rewriter, from the environment by default)."""
    rewrites = rewrites or RewriteService(gpu_lock=service.engine.gpu_lock)
    service.engine.before_render.append(rewrites.release_gpu)
    with gr.Blocks(title="NAVA Studio") as demo:
        gr.Markdown("# NAVA Studio\nBuild the scene, cast the voices, render picture and stereo sound together.")
        banner = gr.Markdown(E.tiny_banner(service.engine.choice), visible=service.engine.choice.is_tiny,
                             elem_classes=["nava-banner"], elem_id="nava-banner")
        with gr.Tabs() as tabs:
            with gr.Tab("Studio", id="studio"):
                studio = build_studio_tab(service, demo)
            with gr.Tab("Voice cast & timeline", id="timeline") as timeline_tab:
                tl_status, subs_file = build_timeline_tab(service, studio, timeline_tab)
            with gr.Tab("History", id="history") as history_tab:
                history = build_history_tab(service, history_tab)
            with gr.Tab("Batch", id="batch"):
                build_batch_tab(service)
            with gr.Tab("Model", id="model"):
                model_estimate = build_model_tab(service, banner)
                rewrite_settings = build_rewrite_settings(rewrites)
        mount_api(service)

        # ---- wiring between tabs ----
        studio.estimate.change(lambda text: text, studio.estimate, model_estimate, show_progress="hidden",
                               api_visibility="private")
        studio.on_load_reset = [(tl_status, ""), (subs_file, None)]  # a new project leaves no old status behind
        wire_loads(studio, service, demo)
        if studio.rewrite is not None:
            wire_rewrite(rewrites, studio.rewrite, rewrite_settings, studio.form, studio.all_inputs)
        studio.render_event.then(lambda: history_rows(service), None, history.lists, api_visibility="private")

        def _reuse(rid: str, r: int):
            try:
                state = reuse_state(service, rid)
            except StudioError as e:
                gr.Warning(str(e))
                return [gr.update()] * (len(studio.state_outputs) + 1)
            gr.Info(f"Builder restored from render {rid}.")
            return [*studio.load_updates(state, f"settings of render #{rid}", None, int(r or 0)),
                    gr.Tabs(selected="studio")]

        history.reuse_btn.click(_reuse, [history.selected, studio.rev], [*studio.state_outputs, tabs],
                                api_visibility="private").then(
            lambda b, c: studio.rows.updates(list(b or []), list(c or [])), [studio.beats, studio.cast],
            studio.rows.outputs, show_progress="hidden", api_visibility="private").then(**studio.recompile)

    keep_api_to(demo)
    return demo


__all__ = ["build_ui"]
