"""The Voice cast & timeline tab: the builder's lines on a time axis (drag to retime, reassign, reorder),
the line table, move/reassign buttons and subtitle export. It edits the Studio tab's beats directly.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app import builder as B
from app import handlers as H
from app import timeline_view as TV
from app.service import StudioService
from app.studio_tab import StudioTab


def build_timeline_tab(service: StudioService, studio: StudioTab, timeline_tab: gr.Tab) -> None:
    """Create the tab's components inside `timeline_tab` (already opened by the caller) and wire them."""
    beats, cast, rev, form, all_inputs = studio.beats, studio.cast, studio.rev, studio.form, studio.all_inputs
    init_cast = B.form_from_state(B.default_state())[2]
    gr.Markdown("Lines on a time axis (estimated from the builder's text and delivery). Drag, reorder "
                "and reassign lines here; the Studio tab follows.")
    tl_html = gr.HTML(elem_id="timeline-html", js_on_load=TV.DRAG_JS, css_template=TV.DRAG_CSS)
    # the drag script writes its JSON edit here (see timeline_view.apply_edit); a script-set value fires
    # .change (Gradio 6 fires a Textbox's .input from key events only)
    tl_edit = gr.Textbox(visible="hidden", elem_id="timeline-edit", label="timeline edit")
    tl_status = gr.Markdown(elem_id="timeline-status")
    tl_table = gr.Dataframe(headers=["#", "start (s)", "end (s)", "speaker", "text"], interactive=False,
                            label="Lines", elem_id="timeline-table")
    with gr.Row():
        tl_line = gr.Number(value=1, precision=0, label="Line #", minimum=1)
        tl_up = gr.Button("Move up")
        tl_down = gr.Button("Move down")
        tl_speaker = gr.Dropdown([c["id"] for c in init_cast], label="Reassign to speaker",
                                 allow_custom_value=True)
        tl_assign = gr.Button("Reassign")
    tl_cast = gr.Dataframe(headers=["id", "name", "voice description", "voice file"], interactive=False,
                           label="Speakers")
    with gr.Row():
        srt_btn = gr.Button("Export SRT")
        vtt_btn = gr.Button("Export VTT")
        subs_file = gr.File(label="Subtitles", interactive=False)

    timeline_tab.select(lambda *v: H.timeline_outputs(list(v)), all_inputs, [tl_html, tl_table])
    for ev in (beats.change, cast.change, form["seconds"].change):
        ev(lambda *v: H.timeline_outputs(list(v)), all_inputs, [tl_html, tl_table], show_progress="hidden")
    timeline_tab.select(lambda cl: ([[c["id"], c.get("name", ""), c.get("voice", ""), c.get("voice_file", "")]
                                     for c in cl], gr.update(choices=[c["id"] for c in cl])), cast, [tl_cast, tl_speaker])

    def _tl_edit(text: str, r: int, *v: Any):
        new_beats, picture, rows, message, ok = H.timeline_edit(text, list(v))
        if not ok:
            gr.Warning(message)
        return new_beats, r + 1 if ok else r, picture, rows, message

    tl_edit.change(_tl_edit, [tl_edit, rev, *all_inputs], [beats, rev, tl_html, tl_table, tl_status],
                  api_visibility="private", show_progress="hidden")

    def _tl_move(delta: int):
        def fn(bl: list[dict[str, Any]], n: float, r: int):
            from app.timeline_view import move_beat
            try:
                return move_beat(bl, int(n or 0), delta), r + 1, int(n or 0) + delta
            except ValueError as e:
                gr.Warning(str(e))
                return bl, r, n
        return fn

    tl_up.click(_tl_move(-1), [beats, tl_line, rev], [beats, rev, tl_line])
    tl_down.click(_tl_move(1), [beats, tl_line, rev], [beats, rev, tl_line])

    def _tl_assign(bl: list[dict[str, Any]], n: float, spk: str, r: int):
        from app.timeline_view import reassign_beat
        try:
            return reassign_beat(bl, int(n or 0), spk or ""), r + 1
        except ValueError as e:
            gr.Warning(str(e))
            return bl, r

    tl_assign.click(_tl_assign, [beats, tl_line, tl_speaker, rev], [beats, rev])

    def _subs(kind: str):
        def fn(*v: Any):
            path = service.export_subtitles(H.state_of(list(v)), kind)
            return path
        return fn

    srt_btn.click(_subs("srt"), all_inputs, subs_file, api_visibility="private")
    vtt_btn.click(_subs("vtt"), all_inputs, subs_file, api_visibility="private")
