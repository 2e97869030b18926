"""The Studio tab: the builder (scene, timeline, cast, camera, audio, first frame), the compiled prompt,
render settings, and the render panel (`app.render_panel`).

`build_studio_tab` lays the tab out and wires its own events; it returns a `StudioTab` holding what
the other tabs and the page wiring (`app.layout`) connect to.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import gradio as gr

from nava_core.config import BUCKETS
from nava_core.request import MAX_SEED, MAX_STEPS
from nava_core.speedups import SPEEDUP_NAMES
from nava_core.speedups import describe as describe_speedup

from app import builder as B
from app import handlers as H
from app.render_panel import RenderPanel, build_render_panel, wire_render_panel
from app.rewrite_panel import RewritePanel, build_rewrite_panel
from app.service import StudioError, StudioService
from app.studio_rows import beat_rows, cast_rows

SHOT_SIZES = ["", "close-up", "medium close-up", "medium shot", "medium two-shot", "wide shot", "extreme wide shot"]
MOVES = ["", "static", "slow push-in", "slow pull-back", "pan left", "pan right", "tracking shot", "handheld"]


@dataclass
class StudioTab:
    """The builder's state and the components other parts of the page read or update."""

    form: dict[str, gr.components.Component]
    beats: gr.State
    cast: gr.State
    rev: gr.State  # bumped on structural changes so the dynamic rows re-render
    estimate: gr.Markdown
    render: RenderPanel | None = None
    render_event: Any = None
    rewrite: RewritePanel | None = None  # the Rewrite box under the prompt (wired by app.layout)

    @property
    def form_list(self) -> list[gr.components.Component]:
        return [self.form[k] for k in B.FORM_KEYS]

    @property
    def all_inputs(self) -> list[gr.components.Component]:
        """Every value the builder state is made of: form fields, then beats and cast."""
        return self.form_list + [self.beats, self.cast]

    @property
    def state_outputs(self) -> list[Any]:
        """What a restored builder state is written to (form fields, beats, cast, revision)."""
        return [*self.form_list, self.beats, self.cast, self.rev]


def build_studio_tab(service: StudioService, demo: gr.Blocks) -> StudioTab:
    """Create the Studio tab inside the caller's `with gr.Tab("Studio"):` block."""
    initial = B.default_state()
    init_values, init_beats, init_cast = B.form_from_state(initial)
    form: dict[str, gr.components.Component] = {}
    lint_boxes: dict[str, gr.HTML] = {}
    beats = gr.State(init_beats)
    cast = gr.State(init_cast)
    rev = gr.State(0)

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
                gr.render(inputs=[beats, cast], triggers=[rev.change, demo.load])(
                    lambda bl, cl: beat_rows(bl, cl, beats, rev))
                with gr.Row():
                    add_line = gr.Button("+ Line", size="sm")
                    add_action = gr.Button("+ Action", size="sm")
                lint_boxes["timeline"] = gr.HTML()
            with gr.Accordion("Cast and voices", open=True):
                gr.render(inputs=[cast], triggers=[rev.change, demo.load])(
                    lambda cl: cast_rows(service, cl, cast, rev))
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
                form["image"] = CheckedImage(type="filepath", label="Optional first-frame image", height=200,
                                             elem_id="first-image")
                image_note = gr.Markdown("Adding an image switches to image + audio + video and proposes "
                                         "the aspect bucket that matches it.")
        with gr.Column(scale=2):
            form["prompt_manual"] = gr.Checkbox(label="Edit the prompt by hand (builder changes stop updating it)",
                                                value=False)
            form["prompt_text"] = gr.Textbox(label="Prompt NAVA will see (compiled live)", lines=8, max_lines=20,
                                             elem_id="prompt-text")
            lint_boxes["prompt"] = gr.HTML(elem_id="prompt-lint")
            form["truncate_prompt"] = gr.Checkbox(label=B.TRUNCATE_LABEL, value=bool(init_values.get("truncate_prompt")),
                                                  elem_id="truncate-prompt",
                                                  info="Over 512 umT5 tokens the release cuts the prompt (and any line "
                                                       "past the cut); unticked, the studio refuses it")
            rewrite_panel = build_rewrite_panel()
            with gr.Row():
                form["bucket"] = gr.Dropdown([(f"{b.name} {b.label}", b.name) for b in BUCKETS],
                                             value=init_values["bucket"], label="Aspect bucket", elem_id="bucket",
                                             info="The release's 13 sizes at its 960 level; an image proposes its nearest")
            with gr.Row():
                form["seconds"] = gr.Number(value=init_values["seconds"], label="Duration (s)", elem_id="seconds", minimum=0.5,
                                            maximum=40.96, step=0.5)
                form["steps"] = gr.Slider(1, MAX_STEPS, value=init_values["steps"], step=1, label="Steps", elem_id="steps",
                                          info="50 is the release setting; fewer is faster and rougher")
            form["speedup"] = gr.Dropdown(
                [(describe_speedup(n), n) for n in SPEEDUP_NAMES], value=init_values["speedup"],
                label="Speed-up (all but 'exact' change the output)", elem_id="speedup",
                info="drift = relative L2 distance of the final latents from the exact render on the same seed, "
                     "as measured by bench/drift.py")
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
                guidance_form = gr.Markdown(elem_id="guidance-form")
                reset_g = gr.Button("Reset to release defaults", size="sm")
            estimate = gr.Markdown()
            render = build_render_panel()

    tab = StudioTab(form, beats, cast, rev, estimate, render, rewrite=rewrite_panel)
    form_list = [form[k] for k in B.FORM_KEYS]
    all_inputs = form_list + [beats, cast]

    # ---------------- builder events ----------------
    compile_outputs = [form["prompt_text"], *(lint_boxes[g] for g in H.LINT_GROUPS), duration_note, binding, estimate,
                       guidance_form]
    recompile = dict(fn=lambda *v: H.compile_outputs(service, list(v)), inputs=all_inputs, outputs=compile_outputs,
                     show_progress="hidden", trigger_mode="always_last")
    for k, comp in form.items():
        if k == "prompt_text":
            continue
        comp.change(**recompile)
    beats.change(**recompile)
    cast.change(**recompile)
    form["prompt_text"].input(lambda t: gr.update(value=True), form["prompt_text"], form["prompt_manual"])
    form["prompt_text"].blur(**recompile)  # re-lint a hand-edited prompt (its .change would loop)
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
                        render.video, render.audio, render.picture, *(form[f"guidance.{k}"] for k in B.GUIDANCE_FIELDS)])
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

    tab.render_event = wire_render_panel(service, render, all_inputs)
    return tab


class CheckedImage(gr.Image):
    """The first-frame image input, handing the uploaded file to the studio's own checks untouched.

    gr.Image opens (and may convert) an upload with PIL before the handler runs, so a 0-byte file, a
    WAV named .png or a decompression bomb failed inside Gradio with a blank error; the studio's
    check reads the header (pixel count) first and says what is wrong.
    """

    @classmethod
    def get_block_name(cls) -> str:
        return "image"  # the page draws it with Gradio's own image component

    def preprocess(self, payload: Any) -> Any:
        path = getattr(payload, "path", None)
        if self.type == "filepath" and path and not str(getattr(payload, "url", "") or "").startswith("data:"):
            return str(path)
        return super().preprocess(payload)
