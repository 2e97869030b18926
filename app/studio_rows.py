"""The builder's dynamic rows: one row per timeline beat and one per speaker (voice upload included).

Each is a `gr.render` body: Gradio re-runs it when the revision counter changes, so a structural change
(add, remove, move) redraws the rows while plain edits only write into the beats/cast state.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.service import VOICE_EXTS, StudioError, StudioService

RATES = ("slow", "normal", "fast")


def beat_rows(beat_list: list[dict[str, Any]], cast_list: list[dict[str, Any]], beats: gr.State, rev: gr.State) -> None:
    """One editable row per timeline beat (re-rendered when `rev` changes); edits write into `beats`."""
    speakers = [c["id"] for c in cast_list] or ["A"]
    for i, beat in enumerate(beat_list):
        with gr.Row(key=f"beat-{i}", equal_height=True):
            # wide enough to read the value and the arrow ("normal", "action") at any page width
            kind = gr.Dropdown(["line", "action"], value=beat.get("kind", "line"), label="kind", min_width=100,
                               scale=0, key=f"kind-{i}", elem_classes=["nava-beat-kind"])
            spk = gr.Dropdown(speakers, value=beat.get("speaker") or None, label="speaker", min_width=90,
                              scale=0, allow_custom_value=True, key=f"spk-{i}",
                              visible=beat.get("kind") == "line")
            text = gr.Textbox(value=beat.get("text", ""), label=f"{i + 1}. text", scale=4, min_width=140, key=f"text-{i}")
            emo = gr.Textbox(value=beat.get("delivery", {}).get("emotion", ""), label="delivery", scale=2, min_width=100,
                             key=f"emo-{i}")
            rate = gr.Dropdown(list(RATES), value=beat.get("delivery", {}).get("rate", "normal"), label="rate",
                               min_width=110, scale=0, key=f"rate-{i}", elem_classes=["nava-beat-rate"])
            with gr.Column(scale=0, min_width=40):
                up = gr.Button("↑", size="sm", min_width=36, key=f"up-{i}")
                rm = gr.Button("✕", size="sm", min_width=36, key=f"rm-{i}")

        def _set(field: str, sub: str | None = None, idx: int = i):
            def fn(value: Any, bl: list[dict[str, Any]]) -> list[dict[str, Any]]:
                bl = [dict(b, delivery=dict(b.get("delivery") or {})) for b in bl]
                if idx < len(bl):
                    if sub:
                        bl[idx][field][sub] = value or ("normal" if sub == "rate" else "")
                    else:
                        bl[idx][field] = value or ""
                return bl
            return fn

        text.input(_set("text"), [text, beats], beats, show_progress="hidden")
        emo.input(_set("delivery", "emotion"), [emo, beats], beats, show_progress="hidden")
        rate.input(_set("delivery", "rate"), [rate, beats], beats, show_progress="hidden")
        spk.input(_set("speaker"), [spk, beats], beats, show_progress="hidden")
        kind.input(_set("kind"), [kind, beats], beats, show_progress="hidden").then(
            lambda r: r + 1, rev, rev)

        def _move(bl: list[dict[str, Any]], r: int, idx: int = i):
            bl = list(bl)
            if idx > 0:
                bl[idx - 1], bl[idx] = bl[idx], bl[idx - 1]
            return bl, r + 1

        def _remove(bl: list[dict[str, Any]], r: int, idx: int = i):
            return [b for j, b in enumerate(bl) if j != idx], r + 1

        up.click(_move, [beats, rev], [beats, rev])
        rm.click(_remove, [beats, rev], [beats, rev])

def cast_rows(service: StudioService, cast_list: list[dict[str, Any]], cast: gr.State, rev: gr.State) -> None:
    """One row per speaker: id, name, description and the reference voice (upload, preview)."""
    for i, member in enumerate(cast_list):
        with gr.Row(key=f"cast-{i}", equal_height=False):
            cid = gr.Textbox(value=member["id"], label="speaker id", min_width=90, scale=1, key=f"cid-{i}")
            name = gr.Textbox(value=member.get("name", ""), label="name", scale=1, key=f"cname-{i}")
            desc = gr.Textbox(value=member.get("voice", ""), label="voice description", scale=2,
                              key=f"cdesc-{i}")
            with gr.Column(scale=3, min_width=280):
                # tall enough for the drop zone's three lines ("Drop File Here - or - Click to Upload")
                drop = gr.File(label=f"voice of {member['id']} (any audio format)", type="filepath",
                               file_types=sorted(VOICE_EXTS), height=180, key=f"cdrop-{i}",
                               elem_classes=["nava-voice-drop"])
                preview, note = service.voice_preview(member.get("voice_file") or "")
                player = gr.Audio(value=preview, label="reference voice", interactive=False,
                                  visible=bool(preview), key=f"cplay-{i}")
                info = gr.Markdown(note, key=f"cnote-{i}")
            rm = gr.Button("✕", size="sm", min_width=30, scale=0, key=f"crm-{i}")

        def _set(field: str, idx: int = i):
            def fn(value: Any, cl: list[dict[str, Any]]) -> list[dict[str, Any]]:
                cl = [dict(c) for c in cl]
                if idx < len(cl):
                    cl[idx][field] = value or ""
                return cl
            return fn

        cid.blur(_set("id"), [cid, cast], cast).then(lambda r: r + 1, rev, rev)
        name.input(_set("name"), [name, cast], cast, show_progress="hidden")
        desc.input(_set("voice"), [desc, cast], cast, show_progress="hidden")

        def _voice(path: str | None, cl: list[dict[str, Any]], idx: int = i):
            cl = [dict(c) for c in cl]
            if not path:
                return cl, gr.update(), gr.update()
            try:
                up = service.add_voice(path)
            except StudioError as e:
                gr.Warning(str(e))
                return cl, gr.update(), f"⛔ {e}"
            cl[idx]["voice_file"] = up.path
            return cl, gr.update(value=up.preview, visible=True), f"Voice: {up.note}"

        drop.upload(_voice, [drop, cast], [cast, player, info])

        def _remove(cl: list[dict[str, Any]], r: int, idx: int = i):
            return [c for j, c in enumerate(cl) if j != idx], r + 1

        rm.click(_remove, [cast, rev], [cast, rev])
