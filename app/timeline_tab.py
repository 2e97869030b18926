"""The Voice cast & timeline tab: the builder's lines on a time axis (drag to retime, reassign, reorder),
the line table, move/reassign buttons, each speaker's voice (listen, replace) and subtitle export.

It edits the Studio tab's beats: every edit starts from what the Studio's boxes say (the merged
state) and writes the beats and the changed Studio row fields in the same event, then compiles.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app import builder as B
from app import handlers as H
from app import timeline_view as TV
from app.service import VOICE_EXTS, StudioService
from app.studio_tab import StudioTab


def build_timeline_tab(service: StudioService, studio: StudioTab, timeline_tab: gr.Tab) -> tuple[Any, Any]:
    """Create the tab's components inside `timeline_tab` and wire them; returns (status, subtitle file),
    which a newly loaded project clears."""
    beats, cast, form, all_inputs = studio.beats, studio.cast, studio.form, studio.all_inputs
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
    gr.Markdown("### Voices\nListen to each speaker's reference voice; drop another file on it to replace it.")
    studio.rows.build_cast_tab(init_cast, sorted(VOICE_EXTS))
    studio.rows.wire_cast_tab(studio.recompile)
    with gr.Row():
        srt_btn = gr.Button("Export SRT")
        vtt_btn = gr.Button("Export VTT")
        subs_file = gr.File(label="Subtitles", interactive=False, elem_id="subs-file")

    def _refresh(*v: Any):
        state = H.state_of(list(v))
        picture, rows = H.timeline_outputs(list(v))
        ids = [c["id"] for c in state["project"]["cast"]]
        return [picture, rows, gr.update(choices=ids, value=ids[0] if ids else None), *studio.rows.tab_updates(state["project"]["cast"])]

    refresh_outs = [tl_html, tl_table, tl_speaker, *studio.rows.tab_outputs]
    timeline_tab.select(_refresh, all_inputs, refresh_outs, api_visibility="private")
    for ev in (beats.change, cast.change, form["seconds"].change):
        ev(lambda *v: H.timeline_outputs(list(v)), all_inputs, [tl_html, tl_table], show_progress="hidden",
           api_visibility="private")

    rows = studio.rows

    def _sync(v: tuple[Any, ...], new_beats: list[dict[str, Any]]) -> list[Any]:
        """The Studio rows showing the edited beats, in the same event (no second event can race it)."""
        cur = H.state_of(list(v))["project"]
        return rows.updates(new_beats, cur["cast"], old=(cur["timeline"], cur["cast"]))

    def _tl_edit(text: str, *v: Any):
        new_beats, picture, table, message, ok = H.timeline_edit(text, list(v))
        if not ok:
            gr.Warning(message)
            return [gr.update(), picture, table, message, *([gr.update()] * len(rows.outputs))]
        return [new_beats, picture, table, message, *_sync(v, new_beats)]

    tl_edit.change(_tl_edit, [tl_edit, *all_inputs], [beats, tl_html, tl_table, tl_status, *rows.outputs],
                   api_visibility="private", show_progress="hidden").then(**studio.recompile)

    def _tl_move(delta: int):
        def fn(n: float, *v: Any):
            from app.timeline_view import move_beat

            merged = H.state_of(list(v))["project"]["timeline"]  # what the Studio's boxes say now
            try:
                new_beats = move_beat(merged, int(n or 0), delta)
            except ValueError as e:
                gr.Warning(str(e))
                return [gr.update(), n, *([gr.update()] * len(rows.outputs))]
            return [new_beats, int(n or 0) + delta, *_sync(v, new_beats)]
        return fn

    move_outs = [beats, tl_line, *rows.outputs]
    tl_up.click(_tl_move(-1), [tl_line, *all_inputs], move_outs, api_visibility="private").then(**studio.recompile)
    tl_down.click(_tl_move(1), [tl_line, *all_inputs], move_outs, api_visibility="private").then(**studio.recompile)

    def _tl_assign(n: float, spk: str, *v: Any):
        from app.timeline_view import reassign_beat

        merged = H.state_of(list(v))["project"]["timeline"]
        try:
            new_beats = reassign_beat(merged, int(n or 0), spk or "")
        except ValueError as e:
            gr.Warning(str(e))
            return [gr.update(), *([gr.update()] * len(rows.outputs))]
        return [new_beats, *_sync(v, new_beats)]

    tl_assign.click(_tl_assign, [tl_line, tl_speaker, *all_inputs], [beats, *rows.outputs],
                    api_visibility="private").then(**studio.recompile)

    def _subs(kind: str):
        def fn(*v: Any):
            return service.export_subtitles(H.state_of(list(v)), kind)
        return fn

    srt_btn.click(_subs("srt"), all_inputs, subs_file, api_visibility="private")
    vtt_btn.click(_subs("vtt"), all_inputs, subs_file, api_visibility="private")
    return tl_status, subs_file
