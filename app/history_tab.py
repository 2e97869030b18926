"""The History tab: every render of the job store (studio, API, batch), newest first, with its
thumbnail, request and a "reuse settings" button that restores the builder.

Layout and the tab's own events; `app.layout` connects *Reuse settings* to the Studio tab and
refreshes the list when a render finishes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.history import thumbnail
from app.service import StudioError, StudioService

HEADERS = ["id", "when", "status", "title", "mode", "seconds", "time (s)", "message"]


def history_rows(service: StudioService, query: str = "") -> tuple[list[tuple[str, str]], list[list[Any]]]:
    """(gallery items, table rows) for the store's renders of every origin (studio, API, batch), newest
    first; `query` keeps the ones whose title, id, state, batch or prompt contain all its words."""
    gallery, rows = [], []
    for job in service.history.search(query):
        try:
            req = json.loads(job.request_json)
        except json.JSONDecodeError:
            req = {}
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
        seconds, total = req.get("seconds", ""), job.timings.get("total_s", "")
        where = f" (batch {job.batch_id})" if job.batch_id else ""
        rows.append([job.id, when, job.state, (job.label or job.title) + where, req.get("mode", ""),
                     round(seconds, 2) if isinstance(seconds, (int, float)) else seconds,
                     round(total, 1) if isinstance(total, (int, float)) else total, job.error or ""])
        thumb = thumbnail(job)
        if thumb:
            gallery.append((thumb, f"{job.id} · {job.state}"))
    return gallery, rows


@dataclass
class HistoryTab:
    gallery: gr.Gallery
    table: gr.Dataframe
    selected: gr.Textbox
    reuse_btn: gr.Button

    @property
    def lists(self) -> list[Any]:
        return [self.gallery, self.table]


def build_history_tab(service: StudioService, tab: gr.Tab) -> HistoryTab:
    """Create the tab's components inside `tab` (opened by the caller) and wire its own events."""
    with gr.Row(equal_height=True):
        search = gr.Textbox(label="Search renders", placeholder="words from the title, prompt, batch or state",
                            scale=4, elem_id="history-search")
        refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90)
    gallery = gr.Gallery(label="Renders (click one to show it)", columns=8, rows=1, height=200,
                         object_fit="contain", allow_preview=False, elem_id="history-gallery")
    table = gr.Dataframe(headers=HEADERS, interactive=False, label="All renders")
    with gr.Row():
        selected = gr.Textbox(label="Selected render id", interactive=True)
        reuse_btn = gr.Button("Reuse settings", variant="primary", elem_id="reuse-btn")
        delete_btn = gr.Button("Delete render", variant="stop", elem_id="history-delete")
    note = gr.Markdown(elem_id="history-note")
    video = gr.Video(label="Selected render", interactive=False)
    request = gr.Code(label="Request", language="json")

    def _lists(query: str = ""):
        return history_rows(service, query or "")

    def _show(rid: Any):
        job = service.history.get(rid)
        if job is None:
            return str(rid), None, ""
        return str(job.id), job.outputs.get("mp4"), job.request_json

    def _pick_row(evt: gr.SelectData, rows: Any):
        rows = rows.values.tolist() if hasattr(rows, "values") else rows
        return _show(rows[evt.index[0]][0] if rows else "")

    def _pick_gallery(evt: gr.SelectData):
        return _show(str(evt.value["caption"] if isinstance(evt.value, dict) else evt.value).split(" ")[0])

    tab.select(_lists, search, [gallery, table], api_visibility="private")
    refresh.click(_lists, search, [gallery, table], api_visibility="private")
    search.change(_lists, search, [gallery, table], trigger_mode="always_last", show_progress="hidden",
                  api_visibility="private")

    def _delete(rid: str, query: str):
        if not str(rid or "").strip():
            return "Pick a render first (click it in the gallery or the table).", gr.update(), gr.update(), \
                gr.update(), gr.update(), gr.update()
        message = service.history.delete(str(rid).strip(), service.paths.outputs)
        return (message, "", None, "", *_lists(query))

    delete_btn.click(_delete, [selected, search], [note, selected, video, request, gallery, table],
                     api_visibility="private")
    table.select(_pick_row, table, [selected, video, request])
    gallery.select(_pick_gallery, None, [selected, video, request])
    return HistoryTab(gallery, table, selected, reuse_btn)


def reuse_state(service: StudioService, rid: str) -> dict[str, Any]:
    """The builder state to restore for a history row; raises StudioError saying why not."""
    state = service.reuse(rid)
    if state is None:
        raise StudioError("this render has no builder settings to restore")
    return state


__all__ = ["HEADERS", "HistoryTab", "build_history_tab", "history_rows", "reuse_state"]
