"""The Studio tab's render panel: Render and Cancel, the progress panel and the result players.

A click submits the builder state as a job (`StudioService.submit`) and follows it in the one job store
(`StudioService.follow`) until it is done, failed or cancelled; Cancel stops this browser session's jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app import handlers as H
from app.service import RenderView, StudioError, StudioService, panel


@dataclass
class RenderPanel:
    render_btn: gr.Button
    cancel_btn: gr.Button
    progress: gr.HTML
    video: gr.Video
    audio: gr.Audio  # audio mode: the browser's own <audio controls>
    picture: gr.Image  # audio mode: waveform and spectrogram
    files: gr.File

    @property
    def outputs(self) -> list[Any]:
        return [self.progress, self.video, self.audio, self.picture, self.files]


def build_render_panel() -> RenderPanel:
    """Create the panel's components where the caller is laying out."""
    with gr.Row():
        render_btn = gr.Button("Render", variant="primary", elem_id="render-btn")
        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
    progress = gr.HTML('<div class="nava-progress" data-status="idle">Ready.</div>', elem_id="render-progress")
    video = gr.Video(label="Result", interactive=False, elem_id="result-video")
    # the browser's own <audio controls> (seekable, plays stereo WAV); the waveform and spectrogram
    # picture below replaces Gradio's waveform view
    audio = gr.Audio(label="Result (audio only)", type="filepath", interactive=False, visible=False,
                     elem_id="result-audio", waveform_options=gr.WaveformOptions(show_recording_waveform=False))
    picture = gr.Image(label="Waveform and spectrogram", visible=False, interactive=False, elem_id="result-picture")
    files = gr.File(label="Downloads: MP4, stereo WAV, SRT, request JSON", file_count="multiple",
                    interactive=False, elem_id="result-files")
    return RenderPanel(render_btn, cancel_btn, progress, video, audio, picture, files)


def view_updates(view: RenderView | None, error: str = "") -> list[Any]:
    """The panel's outputs for one view of a job (None: refused before it was queued)."""
    if view is None:
        return [panel("failed", error, 0.0), gr.update(), gr.update(), gr.update(), gr.update()]
    if view.status == "done":
        # show the players the result has, whatever the mode radio says (a preset may have changed it)
        return [view.html, gr.update(value=view.video, visible=bool(view.video)),
                gr.update(value=view.audio, visible=bool(view.audio)),
                gr.update(value=view.picture, visible=bool(view.picture)), list(view.files)]
    return [view.html, gr.update(), gr.update(), gr.update(), gr.update()]


def wire_render_panel(service: StudioService, p: RenderPanel, inputs: list[Any]) -> Any:
    """Connect Render (the builder's `inputs` -> a job, followed to the end) and Cancel; returns the
    render event so the page can refresh History after it."""

    async def _render(data: dict[Any, Any], request: gr.Request):
        # inputs given as a set arrive as one dict, which leaves room for the gr.Request argument.
        # Async: the checks and the enqueue run in a worker thread, the wait on the event loop, so a
        # render waiting in the queue holds no thread (the page and the API stay responsive).
        import anyio

        from app.api import client_id

        owner = client_id(request)
        state = H.state_of([data[c] for c in inputs])
        try:
            job = await anyio.to_thread.run_sync(lambda: service.submit(state, owner=owner))
        except StudioError as e:
            gr.Warning(str(e))
            yield view_updates(None, str(e))
            return
        async for view in service.follow_async(job.id):
            yield view_updates(view)

    def _cancel(request: gr.Request) -> None:
        from app.api import client_id

        gr.Info(service.cancel(client_id(request)))

    event = p.render_btn.click(_render, set(inputs), p.outputs, concurrency_limit=None, api_visibility="private",
                               show_progress="hidden")
    p.cancel_btn.click(_cancel, None, None, api_visibility="private", queue=False)
    return event


__all__ = ["RenderPanel", "build_render_panel", "view_updates", "wire_render_panel"]
