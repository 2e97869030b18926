"""The Studio tab: the builder (scene, timeline, cast, camera, audio, first frame), the compiled prompt,
render settings, the queue, and the sticky action bar with progress, live preview and result players.

How it survives a real person (issue 14):

- rows are a fixed pool whose fields are the truth (`app.studio_rows`); one recompile, `always_last`
  and serialised, reads every field, so the prompt always says what the boxes say;
- every way a project arrives (preset, bundle, Reuse settings, a dropped MP4, the autosave) goes
  through `StudioTab.load_updates`, which writes every component, the mode-dependent parts, the
  preset selector and the "loaded from" line;
- the builder autosaves on every compile (browser storage + data folder) and a reload restores it;
- Render only queues a job and returns; a timer shows the queue (position, state, cancel per job) and
  follows this browser's latest job (its ids live in browser storage), so a second click is a second
  visible job and a reload re-attaches to the running one.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from nava_core.config import BUCKETS
from nava_core.request import MAX_SEED, MAX_STEPS
from nava_core.speedups import SPEEDUP_NAMES
from nava_core.speedups import describe as describe_speedup

from app import autosave as A
from app import builder as B
from app import handlers as H
from app import queue_view as Q
from app.restore import RestoreError, state_from_media
from app.rewrite_panel import RewritePanel, build_rewrite_panel
from app.service import VOICE_EXTS, StudioError, StudioService
from app.studio_rows import BuilderRows

log = logging.getLogger(__name__)

SHOT_SIZES = ["", "close-up", "medium close-up", "medium shot", "medium two-shot", "wide shot", "extreme wide shot"]
MOVES = ["", "static", "slow push-in", "slow pull-back", "pan left", "pan right", "tracking shot", "handheld"]
TICK_S = 0.5  # how often the page asks for the queue and its job's progress
MAX_KEPT_JOBS = 20  # a browser's recent jobs looked at per tick
RECENT_FINISHED = 4  # finished jobs of this browser still listed under the queue


@dataclass
class StudioTab:
    """The builder's state and the components other parts of the page read or update."""

    form: dict[str, gr.components.Component]
    beats: gr.State
    cast: gr.State
    rev: gr.State  # bumped whenever a whole project is loaded
    estimate: gr.Markdown
    rows: BuilderRows
    preset: gr.Dropdown
    loaded: gr.Markdown  # "Loaded: preset X / render #n / file.mp4"
    sections: dict[str, Any] = field(default_factory=dict)  # mode-dependent parts
    recompile: dict[str, Any] = field(default_factory=dict)
    saved: Any = None  # gr.BrowserState holding the autosave record
    render_event: Any = None
    rewrite: RewritePanel | None = None  # the Rewrite box under the prompt (wired by app.layout)
    on_load_reset: list[tuple[Any, Any]] = field(default_factory=list)  # (component, value) other tabs clear

    @property
    def form_list(self) -> list[gr.components.Component]:
        return [self.form[k] for k in B.FORM_KEYS]

    @property
    def all_inputs(self) -> list[Any]:
        """Every value the builder state is made of: form fields, beats and cast, then the row fields."""
        return self.form_list + [self.beats, self.cast] + self.rows.fields

    @property
    def state_outputs(self) -> list[Any]:
        """What `load_updates` writes (a restored project touches all of it)."""
        mode_parts = [self.sections[k] for k in ("camera", "image", "result_video", "result_audio", "result_picture",
                                                 "result_files", "progress", "preview")]
        return [*self.form_list, self.beats, self.cast, self.rev, *self.rows.outputs, self.preset, self.loaded,
                *mode_parts, *(c for c, _ in self.on_load_reset)]

    def load_updates(self, state: dict[str, Any], label: str, preset: str | None, rev: int,
                     clear_result: bool = True) -> list[Any]:
        """Every component showing `state`, whatever was on the page before (no trace of it stays).

        `clear_result=False` (the autosave of this very project, restored on page load) leaves the
        progress and result players to the job this page follows."""
        values, beats, cast = B.form_from_state(state)
        mode = values["mode"]
        vis = H.mode_visibility(mode)
        form_updates = []
        for k in B.FORM_KEYS:
            v = values[k]
            if k in ("bucket", "guidance.video", "guidance.video_align"):
                form_updates.append(gr.update(value=v, visible=vis[k]))
            elif k == "audio_seed":
                form_updates.append(gr.update(value=v, interactive=not values["lock_seeds"]))
            else:
                form_updates.append(v)
        idle = '<div class="nava-progress" data-status="idle">Ready.</div>'
        mode_parts = [gr.update(visible=vis["camera"]), gr.update(visible=vis["image"]),
                      gr.update(value=None, visible=vis["result_video"]),
                      gr.update(value=None, visible=vis["result_audio"]),
                      gr.update(value=None, visible=vis["result_picture"]), None, idle,
                      gr.update(value=None, visible=False)]
        if not clear_result:
            mode_parts = [*mode_parts[:2], *(gr.update(visible=u["visible"]) for u in mode_parts[2:5]),
                          gr.update(), gr.update(), gr.update()]
        return [*form_updates, beats, cast, rev + 1, *self.rows.updates(beats, cast), gr.update(value=preset),
                f"**Loaded:** {label}", *mode_parts, *(v for _, v in self.on_load_reset)]


def build_studio_tab(service: StudioService, demo: gr.Blocks) -> StudioTab:
    """Create the Studio tab inside the caller's `with gr.Tab("Studio"):` block."""
    initial = B.default_state()
    init_values, init_beats, init_cast = B.form_from_state(initial)
    form: dict[str, gr.components.Component] = {}
    lint_boxes: dict[str, gr.HTML] = {}
    beats = gr.State(init_beats)
    cast = gr.State(init_cast)
    rev = gr.State(0)
    rows = BuilderRows(service, beats, cast)
    saved = gr.BrowserState(None, storage_key="nava-studio-project")
    # this browser's id (localStorage): its jobs are those whose owner ends in "#" + this id, so two quick
    # clicks cannot overwrite each other's record and a reloaded page finds its running job again
    client = gr.BrowserState("", storage_key="nava-studio-client")
    seen = gr.State({})  # what this page shows: {"result": job id, "panel": html, "queue": html, "preview": step}

    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=260):
            preset = gr.Dropdown(H.preset_choices(), value=H.BUILTIN_PRESET, label="Preset", elem_id="preset")
            loaded = gr.Markdown(f"**Loaded:** preset {H.BUILTIN_PRESET}", elem_id="preset-status")
        with gr.Column(scale=2, min_width=200):
            load_preset_btn = gr.Button("Load preset", size="sm", elem_id="load-preset")
            export_btn = gr.Button("Export project (.nava.zip)", size="sm", elem_id="export-bundle")
            import_file = gr.UploadButton("Import project (.nava.zip)", file_types=[".zip"], size="sm",
                                          elem_id="import-bundle")
        with gr.Column(scale=3, min_width=260):
            restore_drop = gr.File(label="Drop a clip made here (MP4, WAV, FLAC) to restore its settings",
                                   file_types=[".mp4", ".wav", ".flac", ".json"], type="filepath", height=120,
                                   elem_id="restore-drop")
    bundle_file = gr.File(label="Exported project bundle", interactive=False, visible=False,
                          elem_id="bundle-file")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, elem_id="builder"):
            with gr.Row():
                form["title"] = gr.Textbox(label="Title", value=init_values["title"], scale=2, elem_id="title")
                form["mode"] = gr.Radio([(v, k) for k, v in B.MODE_LABELS.items()], value=init_values["mode"],
                                        label="Mode", scale=3, elem_id="mode")
                form["language"] = gr.Dropdown(["en", "zh"], value=init_values["language"], label="Prompt language",
                                               scale=1)
            with gr.Accordion("Scene and subjects", open=True):
                with gr.Row():
                    for k in B.SCENE_FIELDS:
                        form[f"scene.{k}"] = gr.Textbox(label=k.capitalize(), value=init_values[f"scene.{k}"],
                                                        elem_id=f"scene-{k}")
                form["subjects"] = gr.Dataframe(
                    value=init_values["subjects"], headers=["id", "description", "position"],
                    datatype=["str", "str", "str"], column_count=3, row_count=2,
                    interactive=True, label="Subjects (the id is also the speaker id)")
                lint_boxes["scene"] = gr.HTML()
            with gr.Accordion("Timeline: what happens and who says what", open=True):
                rows.build_beats(init_beats, init_cast)
                with gr.Row():
                    add_line = gr.Button("+ Line", size="sm", elem_id="add-line")
                    add_action = gr.Button("+ Action", size="sm", elem_id="add-action")
                lint_boxes["timeline"] = gr.HTML()
            with gr.Accordion("Cast and voices", open=True):
                rows.build_cast(init_cast, sorted(VOICE_EXTS))
                add_speaker = gr.Button("+ Speaker", size="sm", elem_id="add-speaker")
                binding = gr.Markdown()
                lint_boxes["cast"] = gr.HTML()
            with gr.Accordion("Camera", open=False, elem_id="camera-box") as camera_box:
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
            with gr.Accordion("First frame (image to video)", open=False, elem_id="image-box") as image_box:
                form["image"] = CheckedImage(type="filepath", label="Optional first-frame image", height=200,
                                             elem_id="first-image")
                image_note = gr.Markdown("Adding an image switches to image + audio + video and proposes "
                                         "the aspect bucket that matches it.")
        with gr.Column(scale=2):
            form["prompt_manual"] = gr.Checkbox(label="Edit the prompt by hand (builder changes stop updating it)",
                                                value=False, elem_id="prompt-manual")
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
                form["seconds"] = gr.Number(value=init_values["seconds"], label="Duration (s)", elem_id="seconds",
                                            minimum=0.5, maximum=40.96, step=0.5)
                form["steps"] = gr.Slider(1, MAX_STEPS, value=init_values["steps"], step=1, label="Steps",
                                          elem_id="steps", info="50 is the release setting; fewer is faster and rougher")
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
                                               minimum=0, maximum=MAX_SEED, interactive=False,
                                               info="follows the video seed while 'Audio seed = video seed' is ticked")
                form["lock_seeds"] = gr.Checkbox(value=init_values["lock_seeds"], label="Audio seed = video seed")
                dice = gr.Button("Random seed", size="sm", min_width=80)
            with gr.Accordion("Guidance (0 switches a branch off)", open=False):
                for k in B.GUIDANCE_FIELDS:
                    form[f"guidance.{k}"] = gr.Slider(0, 20, value=init_values[f"guidance.{k}"], step=0.1,
                                                      label=f"{k.replace('_', ' ')}", info=B.GUIDANCE_HELP[k])
                guidance_form = gr.Markdown(elem_id="guidance-form")
                reset_g = gr.Button("Reset to release defaults", size="sm")
            estimate = gr.Markdown()
            live = gr.Checkbox(value=service.engine.preview_every > 0, label="Live preview while rendering",
                               info="every few steps, the clip as the model currently sees it (low resolution)",
                               elem_id="live-preview")
            queue_box = gr.HTML(Q.queue_html([]), elem_id="nava-queue", js_on_load=Q.QUEUE_JS)
            cancel_box = gr.Textbox(visible="hidden", elem_id=Q.CANCEL_BOX, label="cancel job")
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
    # the action bar: last child of the tab, sticky at the window's bottom, so Render is always in reach
    with gr.Group(elem_id="nava-actions"):
        with gr.Row(equal_height=True, elem_id="nava-actions-row"):
            render_btn = gr.Button("Render", variant="primary", elem_id="render-btn", scale=0, min_width=120)
            cancel_btn = gr.Button("Cancel my renders", variant="stop", elem_id="cancel-btn", scale=0, min_width=120,
                                   size="sm")
            progress_html = gr.HTML('<div class="nava-progress" data-status="idle">Ready.</div>',
                                    elem_id="render-progress", min_width=200)
        preview = gr.Image(label="Live preview (clean estimate, low resolution)", visible=False, interactive=False,
                           elem_id="nava-preview", height=130, show_label=True)
    timer = gr.Timer(TICK_S)

    tab = StudioTab(form, beats, cast, rev, estimate, rows, preset, loaded, saved=saved, rewrite=rewrite_panel)
    tab.sections = {"load_btn": load_preset_btn, "import": import_file, "restore": restore_drop, "camera": camera_box, "image": image_box, "result_video": result_video,
                    "result_audio": result_audio, "result_picture": result_picture, "result_files": result_files,
                    "progress": progress_html, "preview": preview}
    all_inputs = tab.all_inputs

    # ---------------- builder: one compile, always the last one, and the autosave ----------------
    compile_outputs = [form["prompt_text"], *(lint_boxes[g] for g in H.LINT_GROUPS), duration_note, binding, estimate,
                       guidance_form, saved]

    def _recompile(*v: Any) -> list[Any]:
        outs = H.compile_outputs(service, list(v[:-1]))
        record = None
        try:
            record = A.envelope(H.state_of(list(v[:-1])), preset=str(v[-1] or ""))
            A.save(service.paths.home, record)
        except (OSError, ValueError, TypeError) as e:  # an autosave problem must not break editing
            log.warning("autosave failed: %s", e)
        return [*outs[:len(compile_outputs) - 1], record if record is not None else gr.update()]

    recompile = dict(fn=_recompile, inputs=[*all_inputs, loaded], outputs=compile_outputs, show_progress="hidden",
                     trigger_mode="always_last", concurrency_id="nava-recompile", concurrency_limit=1,
                     api_visibility="private")
    tab.recompile = recompile
    for k, comp in form.items():
        if k in ("prompt_text", "subjects", "image"):
            continue
        comp.input(**recompile)  # what a person does; a load writes fields and then compiles once
    form["subjects"].change(**recompile)
    form["image"].change(**recompile)
    rows.wire(recompile, add_line, add_action, add_speaker)
    form["prompt_text"].input(lambda t: gr.update(value=True), form["prompt_text"], form["prompt_manual"],
                              api_visibility="private").then(**recompile)
    form["prompt_text"].blur(**recompile)  # re-lint a hand-edited prompt (its .change would loop)
    def _mode(mode: str):
        vis = H.mode_visibility(mode)
        g = H.reset_guidance(mode)
        return [gr.update(visible=vis["camera"]), gr.update(visible=vis["image"]), gr.update(visible=vis["bucket"]),
                gr.update(visible=vis["guidance.video"]), gr.update(visible=vis["guidance.video_align"]),
                gr.update(visible=vis["result_video"]), gr.update(visible=vis["result_audio"]),
                gr.update(visible=vis["result_picture"]), *g]

    form["mode"].input(_mode, form["mode"],
                       [camera_box, image_box, form["bucket"], form["guidance.video"], form["guidance.video_align"],
                        result_video, result_audio, result_picture, *(form[f"guidance.{k}"] for k in B.GUIDANCE_FIELDS)],
                       api_visibility="private").then(**recompile)
    reset_g.click(H.reset_guidance, form["mode"], [form[f"guidance.{k}"] for k in B.GUIDANCE_FIELDS],
                  api_visibility="private").then(**recompile)
    form["lock_seeds"].change(lambda lock, seed: gr.update(interactive=not lock, value=seed) if lock else gr.update(interactive=True),
                              [form["lock_seeds"], form["seed"]], form["audio_seed"], api_visibility="private")
    dice.click(lambda: random.randint(0, MAX_SEED), None, form["seed"], api_visibility="private").then(**recompile)

    def _image(path: str | None, mode: str):
        if not path:
            return gr.update(), gr.update(), gr.update(), "No image: text to video."
        try:
            stored, bucket = service.add_image(path)
        except StudioError as e:
            return gr.update(value=None), gr.update(), gr.update(), f"⛔ {e}"
        return (gr.update(value=stored), gr.update(value="image_audio_video"), gr.update(value=bucket),
                f"Image mode on; proposed aspect bucket: **{bucket}** (matches the image's shape).")

    form["image"].upload(_image, [form["image"], form["mode"]], [form["image"], form["mode"], form["bucket"], image_note],
                         api_visibility="private").then(**recompile)

    def _live(on: bool) -> None:
        from nava_core.preview import DEFAULT_PREVIEW_EVERY

        service.engine.preview_every = DEFAULT_PREVIEW_EVERY if on else 0

    live.input(_live, live, None, api_visibility="private", queue=False)

    def _export(*v: Any):
        try:
            path = service.export_bundle(H.state_of(list(v)))
        except StudioError as e:
            gr.Warning(str(e))
            return gr.update()
        return gr.update(value=path, visible=True)

    export_btn.click(_export, all_inputs, bundle_file, api_visibility="private")

    # ---------------- render, the queue and the job this browser follows ----------------
    def _submit(data: dict[Any, Any], request: gr.Request):
        # inputs given as a set arrive as one dict, which leaves room for the gr.Request argument: the
        # job counts against the server's id of this client (queue limits), then this browser's id
        from app.api import client_id

        me, shown = str(data[client] or ""), dict(data[seen] or {})
        try:
            state = H.state_of([data[c] for c in all_inputs])
            job_id = _submit_job(service, state, f"{client_id(request)}#{me}")
        except StudioError as e:
            gr.Warning(str(e))
            html = _failed_panel(str(e))
            # the refusal stays on the panel until this browser's followed job changes
            shown.update(panel=html, hold=True, hold_job=shown.get("job"))
            return html, shown
        shown["hold"] = False
        return _queued_panel(service, job_id), shown

    tab.render_event = render_btn.click(_submit, {*all_inputs, client, seen}, [progress_html, seen],
                                        trigger_mode="multiple",
                                        concurrency_limit=None, api_visibility="private", show_progress="hidden")
    demo.load(lambda c: c or uuid.uuid4().hex, client, client, api_visibility="private")

    def _tick(me: str, shown: dict[str, Any]):
        return _follow(service, str(me or ""), dict(shown or {}))

    timer.tick(_tick, [client, seen], [queue_box, progress_html, preview, result_video, result_audio, result_picture,
                                       result_files, seen], show_progress="hidden", concurrency_limit=None,
               api_visibility="private")

    def _cancel_one(text: str, me: str) -> None:
        job = _job(service, (text or "").split(":")[0])
        if job is not None and _is_mine(job.owner, me):
            gr.Info(_cancel_job(service, str(job.id)) or f"Render #{job.id} has already finished.")

    # a script-set value fires .change (Gradio 6 fires a Textbox's .input from key events only)
    cancel_box.change(_cancel_one, [cancel_box, client], None, api_visibility="private")

    def _cancel_mine(me: str) -> None:
        n = sum(bool(_cancel_job(service, str(j.id))) for j in service.pending() if _is_mine(j.owner, me))
        gr.Info("Cancelling: a running render stops at its next step." if n else "Nothing to cancel.")

    cancel_btn.click(_cancel_mine, client, None, api_visibility="private", queue=False)
    return tab


def wire_loads(tab: StudioTab, service: StudioService, demo: gr.Blocks) -> None:
    """Every way a project arrives, through `load_updates` (called by the page once all tabs exist).

    Each load is followed by a second write of the rows from the new beats/cast state, then the compile:
    the rows must show the state even if the page had not mounted every row when the first write came
    (seen once on page load under heavy CPU load: a restored state with the page's default row texts)."""
    outs = tab.state_outputs
    keep = [gr.update()] * len(outs)
    resync = dict(fn=lambda b, c: tab.rows.updates(list(b or []), list(c or [])), inputs=[tab.beats, tab.cast],
                  outputs=tab.rows.outputs, show_progress="hidden", api_visibility="private")

    def _loaded(state_fn: Callable[..., tuple[dict[str, Any], str, str | None]]):
        def fn(*args: Any):
            *inputs, r = args
            try:
                state, label, preset = state_fn(*inputs)
            except (StudioError, RestoreError, ValueError, KeyError, FileNotFoundError) as e:
                gr.Warning(str(e))
                return keep
            return tab.load_updates(state, label, preset, int(r or 0))
        return fn

    def _preset(name: str):
        state = service.adopt_media(H.load_preset_state(name))
        return state, f"preset {name}", name

    load_btn = tab.sections["load_btn"]
    load_btn.click(_loaded(_preset), [tab.preset, tab.rev], outs, api_visibility="private").then(
        **resync).then(**tab.recompile)

    importer = tab.sections["import"]

    def _import(upload: Any):
        path = getattr(upload, "name", upload)
        state = service.import_bundle(path)
        return state, f"project {Path(str(path)).name}", None

    importer.upload(_loaded(_import), [importer, tab.rev], outs, api_visibility="private").then(
        **resync).then(**tab.recompile)

    drop = tab.sections["restore"]

    def _restore(path: str | None):
        if not path:
            raise ValueError("No file.")
        state, request = state_from_media(path)
        state = service.adopt_media(state)
        return state, f"settings of {Path(path).name} (seed {request.seed})", None

    drop.upload(_loaded(_restore), [drop, tab.rev], outs, api_visibility="private").then(**resync).then(
        **tab.recompile).then(lambda: None, None, drop, api_visibility="private")

    def _autosaved(record: Any, r: Any):
        """On page load: the newest of the browser's and the data folder's autosave, if any."""
        best = A.newest(record, A.load(service.paths.home))
        if best is None:
            return keep
        state, notes = A.missing_media(best["state"])
        try:
            updates = tab.load_updates(state, f"your last session (autosaved){' — ' + '; '.join(notes) if notes else ''}",
                                       None, int(r or 0), clear_result=False)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("autosave not restored: %s", e)
            return keep
        return updates

    demo.load(_autosaved, [tab.saved, tab.rev], outs, api_visibility="private").then(**resync).then(
        **tab.recompile)


# ---- the job store, as the Studio tab sees it ------------------------------------------------------


def _is_mine(owner: str | None, me: str) -> bool:
    """Whether a job was queued from this browser ('CLIENT#BROWSER', see `app.service.limit_key`)."""
    return bool(me) and (owner or "").partition("#")[2] == me


def _submit_job(service: StudioService, state: dict[str, Any], owner: str) -> str:
    job = service.submit(state, owner=owner)
    return str(job.id)


def _job(service: StudioService, job_id: str) -> Any:
    try:
        return service.jobs.get(int(job_id))
    except (TypeError, ValueError):
        return None


def _cancel_job(service: StudioService, job_id: str) -> str:
    return f"Cancelling render #{job_id}." if service.worker.cancel(int(job_id)) else ""


def _queued_panel(service: StudioService, job_id: str) -> str:
    return service.view(int(job_id)).html


def _failed_panel(message: str) -> str:
    from app.service import panel

    return panel("failed", message, 0.0)


def _mine(service: StudioService, me: str) -> list[Any]:
    """This browser's recent jobs, oldest first."""
    if not me:
        return []
    return [j for j in reversed(service.jobs.list(newest_first=True, limit=200)) if _is_mine(j.owner, me)][-MAX_KEPT_JOBS:]


def _queue_rows(service: StudioService, mine: list[Any]) -> list[Q.QueueRow]:
    """Every unfinished job (any origin), in the order they run, then this browser's recent finished ones."""
    rows = []
    pending = service.pending()
    mine_ids = {j.id for j in mine}
    for pos, job in enumerate(pending):
        running = job.state == "running"
        ev = service.worker.event if running and service.worker.current == job.id else None
        detail = ev.describe() if ev is not None else ""
        rows.append(Q.QueueRow(job.id, job.state, job.label or job.title, pos if not running else 0, detail,
                               job.id in mine_ids, job.source or "studio"))
    listed = {job.id for job in pending}
    recent = [j for j in mine if j.id not in listed][-RECENT_FINISHED:]
    for job in recent:
        rows.append(Q.QueueRow(job.id, job.state, job.label or job.title, -1, job.error or "", True,
                               job.source or "studio"))
    return rows


def _live_preview(service: StudioService, job_id: str) -> Any:
    live = service.live_preview
    return live[1] if live is not None and str(live[0]) == job_id else None


def _follow(service: StudioService, me: str, seen: dict[str, Any]) -> list[Any]:
    """One timer tick: the queue list, and the latest job of this browser (progress, preview, result)."""
    same = gr.update()
    mine = _mine(service, me)
    queue_html = Q.queue_html(_queue_rows(service, mine))
    out_queue = same if queue_html == seen.get("queue") else queue_html
    seen["queue"] = queue_html
    # the panel follows this browser's job that renders now (or waits first); once none is left, the one
    # that finished last
    current = next((j for j in mine if not j.finished), None)
    if current is None and mine:
        current = max(mine, key=lambda j: (j.finished_at or 0.0, j.id))
    latest = str(current.id) if current is not None else None
    if latest is None:
        seen["job"] = None
        return [out_queue, same, same, same, same, same, same, seen]
    view = service.view(int(latest))
    if seen.get("hold") and seen.get("hold_job") == latest:  # a refused Render's reason stays visible
        out_panel = same
    else:
        seen["hold"] = False
        out_panel = same if view.html == seen.get("panel") else view.html
        seen["panel"] = view.html
    seen["job"] = latest
    prev = _live_preview(service, latest)
    out_preview = same
    if view.status == "running" and prev is not None and seen.get("preview") != (latest, prev.step):
        seen["preview"] = (latest, prev.step)
        out_preview = gr.update(value=prev.image(), visible=True,
                                label=f"Live preview: step {prev.step}/{prev.total} (clean estimate, low resolution)")
    elif view.status != "running" and seen.get("preview"):
        seen["preview"] = None
        out_preview = gr.update(value=None, visible=False)
    players = [same, same, same, same]
    if view.status in ("done", "failed", "cancelled") and seen.get("result") != latest:
        seen["result"] = latest
        if view.status == "done":
            players = [gr.update(value=view.video, visible=bool(view.video)),
                       gr.update(value=view.audio, visible=bool(view.audio)),
                       gr.update(value=view.picture, visible=bool(view.picture)), list(view.files)]
        else:  # a failed or cancelled render leaves no older result on screen to be mistaken for it
            players = [gr.update(value=None), gr.update(value=None), gr.update(value=None), None]
    return [out_queue, out_panel, out_preview, *players, seen]


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
