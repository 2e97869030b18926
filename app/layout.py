"""The page: Studio (builder + render), Voice cast & timeline, History, Model, and the API endpoints.

Only layout and event wiring live here; what each event does is in `handlers` and `service`.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import gradio as gr

from nava_core.config import BUCKETS, TINY_PREVIEW_SIZES
from nava_core.request import MAX_SEED, MAX_STEPS
from nava_core.speedups import SPEEDUP_NAMES
from nava_core.speedups import describe as describe_speedup

from app import builder as B
from app import engine as E
from app import handlers as H
from app import timeline_view as TV
from app.batch_tab import build_batch_tab
from app.model_tab import build_model_tab
from app.service import VOICE_EXTS, StudioError, StudioService

log = logging.getLogger(__name__)

RATES = ("slow", "normal", "fast")
SHOT_SIZES = ["", "close-up", "medium close-up", "medium shot", "medium two-shot", "wide shot", "extreme wide shot"]
MOVES = ["", "static", "slow push-in", "slow pull-back", "pan left", "pan right", "tracking shot", "handheld"]


def build_ui(service: StudioService) -> gr.Blocks:
    """Build the whole studio page around one StudioService."""
    initial = B.default_state()
    init_values, init_beats, init_cast = B.form_from_state(initial)
    form: dict[str, gr.components.Component] = {}

    with gr.Blocks(title="NAVA Studio") as demo:
        gr.Markdown("# NAVA Studio\nBuild the scene, cast the voices, render picture and stereo sound together.")
        banner = gr.Markdown(E.tiny_banner(service.engine.choice), visible=service.engine.choice.is_tiny,
                             elem_classes=["nava-banner"], elem_id="nava-banner")
        beats = gr.State(init_beats)
        cast = gr.State(init_cast)
        rev = gr.State(0)  # bumped on structural changes so the dynamic rows re-render
        lint_boxes: dict[str, gr.HTML] = {}

        def _timeline_rows(beat_list: list[dict[str, Any]], cast_list: list[dict[str, Any]]) -> None:
            speakers = [c["id"] for c in cast_list] or ["A"]
            if True:
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

        def _cast_rows(cast_list: list[dict[str, Any]]) -> None:
            if True:
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

        with gr.Tabs():
            # ============================== Studio ==============================
            with gr.Tab("Studio", id="studio"):
                with gr.Row(equal_height=True):
                    preset = gr.Dropdown(H.preset_choices(), value=H.BUILTIN_PRESET, label="Preset", scale=3,
                                         elem_id="preset")
                    load_preset_btn = gr.Button("Load preset", scale=1, elem_id="load-preset")
                    export_btn = gr.Button("Export project (.nava.zip)", scale=1, elem_id="export-bundle")
                    import_file = gr.UploadButton("Import project (.nava.zip)", file_types=[".zip"], scale=1,
                                                  elem_id="import-bundle")
                bundle_file = gr.File(label="Exported project bundle", interactive=False, visible=False,
                                      elem_id="bundle-file")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        with gr.Row():
                            form["title"] = gr.Textbox(label="Title", value=init_values["title"], scale=2)
                            form["mode"] = gr.Radio([(v, k) for k, v in B.MODE_LABELS.items()], value=init_values["mode"],
                                                    label="Mode", scale=3, elem_id="mode")
                            form["language"] = gr.Dropdown(["en", "zh"], value=init_values["language"], label="Prompt language",
                                                           scale=1)
                        with gr.Accordion("Scene and subjects", open=True):
                            with gr.Row():
                                for k in B.SCENE_FIELDS:
                                    form[f"scene.{k}"] = gr.Textbox(label=k.capitalize(), value=init_values[f"scene.{k}"])
                            form["subjects"] = gr.Dataframe(
                                value=init_values["subjects"], headers=["id", "description", "position"],
                                datatype=["str", "str", "str"], column_count=3, row_count=2,
                                interactive=True, label="Subjects (the id is also the speaker id)")
                            lint_boxes["scene"] = gr.HTML()
                        with gr.Accordion("Timeline: what happens and who says what", open=True):
                            gr.render(inputs=[beats, cast], triggers=[rev.change, demo.load])(_timeline_rows)
                            with gr.Row():
                                add_line = gr.Button("+ Line", size="sm")
                                add_action = gr.Button("+ Action", size="sm")
                            lint_boxes["timeline"] = gr.HTML()
                        with gr.Accordion("Cast and voices", open=True):
                            gr.render(inputs=[cast], triggers=[rev.change, demo.load])(_cast_rows)
                            add_speaker = gr.Button("+ Speaker", size="sm")
                            binding = gr.Markdown()
                            lint_boxes["cast"] = gr.HTML()
                        with gr.Accordion("Camera", open=False) as camera_box:
                            with gr.Row():
                                for k in B.CAMERA_FIELDS:
                                    choices = SHOT_SIZES if k == "shot_size" else MOVES if k == "movement" else None
                                    if choices:
                                        form[f"camera.{k}"] = gr.Dropdown(choices, value=init_values[f"camera.{k}"],
                                                                          allow_custom_value=True, label=k.replace("_", " "))
                                    else:
                                        form[f"camera.{k}"] = gr.Textbox(label=k.replace("_", " "), value=init_values[f"camera.{k}"])
                            lint_boxes["camera"] = gr.HTML()
                        with gr.Accordion("Audio design", open=False):
                            with gr.Row():
                                for k in B.AUDIO_FIELDS:
                                    form[f"audio.{k}"] = gr.Textbox(label=k.capitalize(), value=init_values[f"audio.{k}"])
                            lint_boxes["audio"] = gr.HTML()
                        with gr.Accordion("First frame (image to video)", open=False) as image_box:
                            form["image"] = gr.Image(type="filepath", label="Optional first-frame image", height=200)
                            image_note = gr.Markdown("Adding an image switches to image + audio + video and proposes "
                                                     "the aspect bucket that matches it.")
                    with gr.Column(scale=2):
                        form["prompt_manual"] = gr.Checkbox(label="Edit the prompt by hand (builder changes stop updating it)",
                                                            value=False)
                        form["prompt_text"] = gr.Textbox(label="Prompt NAVA will see (compiled live)", lines=8, max_lines=20,
                                                         elem_id="prompt-text")
                        lint_boxes["prompt"] = gr.HTML()
                        with gr.Row():
                            form["bucket"] = gr.Radio([(f"{b.name} {b.label}", b.name) for b in BUCKETS],
                                                      value=init_values["bucket"], label="Aspect bucket")
                        with gr.Row():
                            form["seconds"] = gr.Number(value=init_values["seconds"], label="Duration (s)", elem_id="seconds", minimum=0.5,
                                                        maximum=40.96, step=0.5)
                            form["steps"] = gr.Slider(1, MAX_STEPS, value=init_values["steps"], step=1, label="Steps", elem_id="steps",
                                                      info="50 is the release setting; fewer is faster and rougher")
                        form["speedup"] = gr.Dropdown(
                            [(describe_speedup(n), n) for n in SPEEDUP_NAMES], value=init_values["speedup"],
                            label="Speed-up (all but 'exact' change the output)", elem_id="speedup",
                            info="drift = relative L2 distance of the final latents from the exact render on the "
                                 "same seed, as measured by bench/drift.py")
                        duration_note = gr.Markdown(elem_id="duration-note")
                        lint_boxes["duration"] = gr.HTML()
                        with gr.Row():
                            form["seed"] = gr.Number(value=init_values["seed"], label="Seed (video)", precision=0,
                                                     minimum=0, maximum=MAX_SEED)
                            form["audio_seed"] = gr.Number(value=init_values["audio_seed"], label="Seed (audio)", precision=0,
                                                           minimum=0, maximum=MAX_SEED, interactive=False)
                            form["lock_seeds"] = gr.Checkbox(value=init_values["lock_seeds"], label="Audio seed = video seed")
                            dice = gr.Button("Random seed", size="sm", min_width=80)
                        with gr.Accordion("Guidance (0 switches a branch off)", open=False):
                            for k in B.GUIDANCE_FIELDS:
                                form[f"guidance.{k}"] = gr.Slider(0, 20, value=init_values[f"guidance.{k}"], step=0.1,
                                                                  label=f"{k.replace('_', ' ')}", info=B.GUIDANCE_HELP[k])
                            reset_g = gr.Button("Reset to release defaults", size="sm")
                        estimate = gr.Markdown()
                        with gr.Row():
                            render_btn = gr.Button("Render", variant="primary", elem_id="render-btn")
                            cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                        progress_html = gr.HTML('<div class="nava-progress" data-status="idle">Ready.</div>',
                                                elem_id="render-progress")
                        result_video = gr.Video(label="Result", interactive=False, elem_id="result-video")
                        # the browser's own <audio controls> (seekable, plays stereo WAV); the waveform and
                        # spectrogram picture below replaces Gradio's waveform view
                        result_audio = gr.Audio(label="Result (audio only)", type="filepath", interactive=False,
                                                visible=False, elem_id="result-audio",
                                                waveform_options=gr.WaveformOptions(show_recording_waveform=False))
                        result_picture = gr.Image(label="Waveform and spectrogram", visible=False, interactive=False,
                                                  elem_id="result-picture")
                        result_files = gr.File(label="Downloads: MP4, stereo WAV, SRT, request JSON", file_count="multiple",
                                               interactive=False, elem_id="result-files")

            # ============================== Cast & timeline ==============================
            with gr.Tab("Voice cast & timeline", id="timeline") as timeline_tab:
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

        # ---------------- dynamic rows ----------------
        form_list = [form[k] for k in B.FORM_KEYS]
        all_inputs = form_list + [beats, cast]

        # ---------------- builder events ----------------
        compile_outputs = [form["prompt_text"], *(lint_boxes[g] for g in H.LINT_GROUPS), duration_note, binding, estimate,
                           model_estimate]
        recompile = dict(fn=lambda *v: H.compile_outputs(service, list(v)), inputs=all_inputs, outputs=compile_outputs,
                         show_progress="hidden", trigger_mode="always_last")
        for k, comp in form.items():
            if k == "prompt_text":
                continue
            comp.change(**recompile)
        beats.change(**recompile)
        cast.change(**recompile)
        form["prompt_text"].input(lambda t: gr.update(value=True), form["prompt_text"], form["prompt_manual"])
        demo.load(**recompile)

        add_line.click(lambda bl, cl, r: (bl + [{"kind": "line", "text": "", "speaker": (cl[0]["id"] if cl else "A"),
                                                 "delivery": {"emotion": "", "rate": "normal", "volume": ""},
                                                 "pause": 0.0, "seconds": 0.0}], r + 1),
                       [beats, cast, rev], [beats, rev])
        add_action.click(lambda bl, r: (bl + [{"kind": "action", "text": "", "speaker": "",
                                               "delivery": {"emotion": "", "rate": "normal", "volume": ""},
                                               "pause": 0.0, "seconds": 1.0}], r + 1), [beats, rev], [beats, rev])

        def _add_speaker(cl: list[dict[str, Any]], r: int):
            used = {c["id"] for c in cl}
            new_id = next(ch for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if ch not in used)
            return cl + [{"id": new_id, "name": "", "voice": "", "voice_file": ""}], r + 1

        add_speaker.click(_add_speaker, [cast, rev], [cast, rev])

        def _mode(mode: str):
            vis = H.mode_visibility(mode)
            g = H.reset_guidance(mode)
            return [gr.update(visible=vis["camera"]), gr.update(visible=vis["image"]), gr.update(visible=vis["bucket"]),
                    gr.update(visible=vis["guidance.video"]), gr.update(visible=vis["guidance.video_align"]),
                    gr.update(visible=vis["result_video"]), gr.update(visible=vis["result_audio"]),
                    gr.update(visible=vis["result_picture"]), *g]

        form["mode"].input(_mode, form["mode"],
                           [camera_box, image_box, form["bucket"], form["guidance.video"], form["guidance.video_align"],
                            result_video, result_audio, result_picture, *(form[f"guidance.{k}"] for k in B.GUIDANCE_FIELDS)])
        reset_g.click(H.reset_guidance, form["mode"], [form[f"guidance.{k}"] for k in B.GUIDANCE_FIELDS])
        form["lock_seeds"].change(lambda lock, seed: gr.update(interactive=not lock, value=seed) if lock else gr.update(interactive=True),
                                  [form["lock_seeds"], form["seed"]], form["audio_seed"])
        dice.click(lambda: random.randint(0, MAX_SEED), None, form["seed"])

        def _image(path: str | None, mode: str):
            if not path:
                return gr.update(), gr.update(), gr.update(), "No image: text to video."
            try:
                stored, bucket = service.add_image(path)
            except StudioError as e:
                return gr.update(value=None), gr.update(), gr.update(), f"⛔ {e}"
            return (gr.update(value=stored), gr.update(value="image_audio_video"), gr.update(value=bucket),
                    f"Image mode on; proposed aspect bucket: **{bucket}** (matches the image's shape).")

        form["image"].upload(_image, [form["image"], form["mode"]], [form["image"], form["mode"], form["bucket"], image_note])

        def _load_preset(name: str, r: int):
            state = service.adopt_media(H.load_preset_state(name))
            return [*H.form_updates(state), r + 1]

        load_preset_btn.click(_load_preset, [preset, rev], [*form_list, beats, cast, rev])

        def _export(*v: Any):
            try:
                path = service.export_bundle(H.state_of(list(v)))
            except StudioError as e:
                gr.Warning(str(e))
                return gr.update()
            return gr.update(value=path, visible=True)

        export_btn.click(_export, all_inputs, bundle_file, api_visibility="private")

        def _import(upload: Any, r: int):
            path = getattr(upload, "name", upload)
            try:
                state = service.import_bundle(path)
            except StudioError as e:
                gr.Warning(str(e))
                return [gr.update()] * (len(form_list) + 2) + [r]
            gr.Info("Project imported.")
            return [*H.form_updates(state), r + 1]

        import_file.upload(_import, [import_file, rev], [*form_list, beats, cast, rev], api_visibility="private")

        # ---------------- render ----------------
        def _render(data: dict[Any, Any], request: gr.Request):
            # inputs given as a set arrive as one dict, which leaves room for the gr.Request argument
            owner = getattr(request, "session_hash", "") or ""
            state = H.state_of([data[c] for c in all_inputs])
            try:
                job = service.submit(state, owner=owner)
            except StudioError as e:
                gr.Warning(str(e))
                yield _view_updates(None, str(e))
                return
            for view in service.follow(job):
                yield _view_updates(view)

        def _view_updates(view: Any, error: str = ""):
            from app.service import _panel

            if view is None:
                return [_panel("failed", error, 0.0), gr.update(), gr.update(), gr.update(), gr.update()]
            if view.status == "done":
                # show the players the result has, whatever the mode radio says (a preset may have changed it)
                return [view.html, gr.update(value=view.video, visible=bool(view.video)),
                        gr.update(value=view.audio, visible=bool(view.audio)),
                        gr.update(value=view.picture, visible=bool(view.picture)), list(view.files)]
            return [view.html, gr.update(), gr.update(), gr.update(), gr.update()]

        render_event = render_btn.click(_render, set(all_inputs), [progress_html, result_video, result_audio, result_picture,
                                                              result_files],
                                        concurrency_limit=None, api_visibility="private", show_progress="hidden")

        def _cancel(request: gr.Request) -> None:
            gr.Info(service.cancel(getattr(request, "session_hash", "") or ""))

        cancel_btn.click(_cancel, None, None, api_visibility="private", queue=False)

        # ---------------- timeline tab ----------------
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

        # ---------------- history tab ----------------
        def _history():
            g, rows = H.history_rows(service)
            return g, rows

        history_tab.select(_history, None, [gallery, hist_table])
        refresh.click(_history, None, [gallery, hist_table])
        render_event.then(_history, None, [gallery, hist_table])

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
                return [gr.update()] * (len(form_list) + 2) + [r, gr.update()]
            if state is None:
                gr.Warning("this render has no builder settings to restore")
                return [gr.update()] * (len(form_list) + 2) + [r, gr.update()]
            gr.Info(f"Builder restored from render {rid}.")
            return [*H.form_updates(state), r + 1, gr.Tabs(selected="studio")]

        tabs_holder = demo  # noqa: F841 - tabs are selected through the returned gr.Tabs update below
        reuse_btn.click(_reuse, [hist_id, rev], [*form_list, beats, cast, rev, _tabs_of(demo)])

    _keep_api_to(demo, {"render", "lint", "compile"})
    return demo


def _keep_api_to(demo: gr.Blocks, names: set[str]) -> None:
    """Only the documented endpoints are public; UI events (row edits, tabs) stay out of the API page."""
    for fn in demo.fns.values():
        if fn.api_name not in names:
            fn.api_visibility = "private"


def _tabs_of(demo: gr.Blocks) -> gr.Tabs:
    for block in demo.blocks.values():
        if isinstance(block, gr.Tabs):
            return block
    raise RuntimeError("the page has no tabs")
