"""The studio's back end, independent of Gradio: builder checks, voice uploads, the render queue,
history and the model settings. Every UI handler and API endpoint is a thin call into this class, so
tests exercise the same code paths as the page without a browser.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from nava_core.config import nearest_bucket
from nava_core.progress import PHASE_LABELS, ProgressEvent
from nava_core.request import RenderRequest, RequestError

from app import builder as B
from app import engine as E
from app.errors import explain
from app.history import HistoryStore
from app.media import audio_picture, video_thumbnail, write_preview_wav
from app.paths import StudioPaths
from app.render_queue import SINGLE_BATCH, RenderJob, RenderQueue

log = logging.getLogger(__name__)

VOICE_EXTS = {".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4", ".wma", ".aiff", ".aif"}


class StudioError(ValueError):
    """A user mistake the page reports as a message (what is wrong and what to do)."""


@dataclass(frozen=True)
class VoiceUpload:
    path: str  # persistent copy in the data folder (what the request references)
    preview: str  # 16-bit WAV every browser can play
    duration_s: float
    note: str


@dataclass(frozen=True)
class RenderView:
    """One UI update while a render is queued, running or finished."""

    job_id: str
    status: str
    html: str
    video: str | None = None
    audio: str | None = None
    picture: str | None = None
    files: tuple[str, ...] = ()
    error: str = ""


class StudioService:
    """Owns the render queue, history and engine for one running studio.

    `gpu_lock` is the one lock every GPU render holds for its whole duration: `Engine.render` takes
    it, and so does the Batch tab's worker (it looks for `service.gpu_lock`), so a single render and a
    batch job never share the GPU.
    """

    def __init__(self, paths: StudioPaths, engine: E.Engine) -> None:
        self.paths = paths
        self.engine = engine
        self.gpu_lock: threading.RLock = engine.gpu_lock
        self.batch: Any = None  # the Batch tab's runner, once mounted (attach_batch)
        self.history = HistoryStore(paths.history_db)
        self.queue = RenderQueue(paths.render_queue_db, paths.outputs, self._run_job, self._on_job_change,
                                 explain=explain, start=False)
        self._reconcile_history()
        self.queue.start()

    def _reconcile_history(self) -> None:
        """After a restart, make each unfinished history row agree with the queue file.

        Resumed renders stay queued; renders the queue adopted as finished get their files; the
        rest (no queue row, or failed past the retry limit) say they were interrupted.
        """
        rows = {j.label: j for j in self.queue.db.list(batch_id=SINGLE_BATCH)}
        for entry in self.history.list(limit=100_000):
            if entry.status not in ("queued", "running"):
                continue
            job = rows.get(entry.id)
            if job is not None and job.state == "queued":
                self.history.update(entry.id, status="queued")
            elif job is not None and job.state == "done":
                outputs = dict(job.outputs)
                if job.final_dir:
                    outputs["folder"] = job.final_dir
                self.history.update(entry.id, status="done", outputs=outputs, timings=dict(job.timings))
            else:
                self.history.mark_interrupted(entry.id, job.error if job is not None else None)
        resumed = self.queue.resumed()
        if resumed:
            log.info("resuming %d queued render(s) from the previous run", len(resumed))

    def attach_batch(self, runner: Any) -> None:
        """The Batch tab's runner: switching weights waits for it, and closing the studio closes it."""
        self.batch = runner

    def batch_busy(self) -> bool:
        if self.batch is None:
            return False
        counts = self.batch.queue.counts()
        return bool(counts.get("queued") or counts.get("running"))

    def close(self) -> None:
        if self.batch is not None:
            self.batch.close()
            self.batch = None
        self.queue.shutdown()

    # ---- builder -------------------------------------------------------------------------------

    def compile(self, state: dict[str, Any]) -> tuple[B.Compiled, list[dict[str, str]]]:
        return B.compile_state(state), B.lint_state(state)

    def build_request(self, state: dict[str, Any]) -> RenderRequest:
        """The request exactly as the engine in use will render it (tiny: preview frame size)."""
        try:
            request = B.request_from_state(state)
        except RequestError as e:
            raise StudioError(explain(e)) from e
        except (ValueError, TypeError) as e:
            raise StudioError(f"The builder has an invalid value: {e}") from e
        return self._for_engine(request)

    def _for_engine(self, request: RenderRequest) -> RenderRequest:
        """The request as this engine renders it: preview size on tiny weights, and the memory profile
        and GPU count in use recorded in it (so the MP4 says how it was made)."""
        request = E.adapt_for_engine(request, self.engine.choice)
        return request.replace(memory_profile=E.canonical_profile(self.engine.memory_profile), gpus=self.engine.gpus)

    def preflight(self, state: dict[str, Any]) -> list[str]:
        """Blocking problems (errors) that must be fixed before rendering."""
        problems = [f"{f['where']}: {f['message']}" + (f" ({f['fix']})" if f["fix"] else "")
                    for f in B.lint_state(state) if f["severity"] == "error"]
        settings = state.get("settings") or {}
        if settings.get("prompt_manual") and not (settings.get("prompt_text") or "").strip():
            problems.append("prompt: the hand-edited prompt is empty; type the prompt, or untick "
                            "'Edit the prompt by hand' to render the builder's prompt")
        for i, beat in enumerate(state["project"]["timeline"]):
            if beat.get("kind") == "line" and not (beat.get("text") or "").strip():
                problems.append(f"line {i + 1}: the text is empty; type what the speaker says or remove the line")
        return problems

    # ---- uploads -------------------------------------------------------------------------------

    def _store(self, src: str | Path, folder: Path) -> Path:
        """Content-addressed copy into the data folder: survives Gradio's temp clean-up, never overwritten.

        Stored as `<digest>/<the file's own name>` so the page shows voices and images by the names a
        person gave them (`mia.wav`, not `8f67a8c4f34210d5.wav`)."""
        src = Path(src)
        digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
        name = "".join(c if c.isalnum() or c in "-_. " else "_" for c in src.name).strip(" .") or f"file{src.suffix}"
        dst = folder / digest / name
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        return dst

    def adopt_media(self, state: dict[str, Any]) -> dict[str, Any]:
        """Copy a loaded preset's voice files and image into the data folder and point the state at the
        copies: the page may only serve the data folder, and shipped assets may sit in a read-only
        install. Missing files are left as they are (lint reports them)."""
        project = state.get("project") or {}
        for member in project.get("cast") or []:
            src = member.get("voice_file")
            if src and Path(src).is_file():
                member["voice_file"] = str(self._store(src, self.paths.voices))
        image = project.get("image")
        if image and Path(image).is_file():
            project["image"] = str(self._store(image, self.paths.images))
        return state

    def add_voice(self, upload: str | Path) -> VoiceUpload:
        """Check a voice upload (any format) and keep a copy; raises StudioError saying what to do."""
        src = Path(upload)
        if src.suffix.lower() not in VOICE_EXTS:
            raise StudioError(f"{src.name} is not an audio file NAVA Studio reads; upload wav, mp3, flac, ogg, opus or m4a.")
        try:
            info = E.probe_voice(src)
        except E.VoiceError as e:
            raise StudioError(f"{e}. What to do: upload 3-10 s of clear speech by this speaker.") from e
        stored = self._store(src, self.paths.voices)
        preview = self._preview_for(stored)
        note = f"{info.duration_s:.1f} s"
        if info.duration_s < 3:
            note += " (short: 3-10 s of speech clones a voice better)"
        if info.warnings:
            note += " — " + "; ".join(info.warnings)
        return VoiceUpload(str(stored), str(preview), info.duration_s, note)

    def _preview_for(self, voice: Path) -> Path:
        """A browser-playable WAV of `voice` in the uploads folder (served by the page, and writable even
        when the voice is a shipped asset in a read-only install), named by content: made once."""
        digest = hashlib.sha256(voice.read_bytes()).hexdigest()[:16]
        preview = self.paths.uploads / "previews" / f"{digest}.wav"
        if not preview.exists():
            preview.parent.mkdir(parents=True, exist_ok=True)
            write_preview_wav(voice, preview)
        return preview

    def voice_preview(self, stored: str) -> tuple[str | None, str]:
        """(playable preview, note) for a voice already in the data folder; used when rows re-render."""
        if not stored:
            return None, "No reference voice: NAVA uses the voice description."
        path = Path(stored)
        if not path.exists():
            return None, f"⛔ the voice file {path.name} is gone; upload it again."
        try:
            preview = self._preview_for(path)
            info = E.probe_voice(path)
        except Exception as e:  # noqa: BLE001
            return None, f"⛔ {e}"
        return str(preview), f"Voice: {info.duration_s:.1f} s"

    def export_subtitles(self, state: dict[str, Any], kind: str = "srt") -> str:
        """Write the builder's lines as SRT or VTT into the uploads folder and return the path."""
        import prompt_builder as pb

        project = B.project_of(state)
        text = pb.to_srt(project) if kind == "srt" else pb.to_vtt(project)
        name = (project.title or "subtitles").strip().replace("/", "-")[:40] or "subtitles"
        out = self.paths.uploads / "subtitles"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.{kind}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def export_bundle(self, state: dict[str, Any]) -> str:
        """The builder's project with its voice files and image as one `.nava.zip` (uploads/bundles/)."""
        import prompt_builder as pb

        project = B.project_of(state)
        name = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in (project.title or "project"))[:40].strip("-")
        out = self.paths.uploads / "bundles"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name or 'project'}-{time.strftime('%Y%m%d-%H%M%S')}.nava.zip"
        try:
            return str(pb.save_bundle(project, path, base_dir=self.paths.home))
        except pb.BundleError as e:
            raise StudioError(f"The project cannot be exported: {e}. What to do: upload the missing voice or image again.") from e

    def import_bundle(self, upload: str | Path) -> dict[str, Any]:
        """A builder state from an uploaded `.nava.zip`, checked as untrusted input before extracting."""
        import uuid

        import prompt_builder as pb
        from nava_core.validation import InputError, check_zip_bundle

        try:
            check_zip_bundle(upload, what="project bundle")
        except InputError as e:
            raise StudioError(explain(e)) from e
        dest = self.paths.uploads / "bundles" / f"import-{uuid.uuid4().hex[:10]}"
        try:
            project = pb.load_bundle(upload, dest)
        except (pb.BundleError, pb.SchemaError, ValueError) as e:
            shutil.rmtree(dest, ignore_errors=True)
            raise StudioError(f"That bundle cannot be loaded: {e}. What to do: export it again from NAVA Studio.") from e
        return {"project": project.to_dict(), "settings": B.default_settings(project.mode)}

    def switch_weights(self, arg: str, memory_profile: str | None = None, precision: str | None = None,
                       gpus: int | None = None) -> E.WeightChoice:
        """Use another weights folder (or 'tiny'); refused while a single render or a batch job runs or waits."""
        if self.queue.snapshot():
            raise StudioError("A render is running or queued; switch weights when the queue is empty.")
        if self.batch_busy():
            raise StudioError("Batch jobs are running or queued; switch weights when the batch is finished "
                              "or cancelled (Batch tab).")
        if not self.gpu_lock.acquire(blocking=False):
            raise StudioError("A render is using the GPU; switch weights when it has finished.")
        try:
            choice = E.choose_weights(arg or None, self.paths.weights)
            self.engine = E.Engine(choice, memory_profile or self.engine.memory_profile,
                                   precision if precision is not None else self.engine.precision,
                                   gpus or self.engine.gpus, gpu_lock=self.gpu_lock)
        finally:
            self.gpu_lock.release()
        return choice

    def add_image(self, upload: str | Path) -> tuple[str, str]:
        """Keep a first-frame image; returns (stored path, proposed aspect bucket name)."""
        from PIL import Image

        try:
            with Image.open(upload) as im:
                w, h = im.size
        except Exception as e:  # noqa: BLE001
            raise StudioError(f"{Path(upload).name} is not an image NAVA Studio can read ({e}); upload a PNG or JPEG.") from e
        return str(self._store(upload, self.paths.images)), nearest_bucket(w, h).name

    # ---- rendering -----------------------------------------------------------------------------

    def submit(self, state: dict[str, Any] | None, owner: str = "", request: RenderRequest | None = None) -> RenderJob:
        """Queue a render of the builder state (or of a ready request, for the API)."""
        if request is None:
            if state is None:
                raise StudioError("nothing to render")
            problems = self.preflight(state)
            if problems:
                raise StudioError("Fix these before rendering: " + "; ".join(problems))
            request = self.build_request(state)
        else:
            request = self._for_engine(request)
        builder_state = state if state is not None else _safe_state_from_request(request)
        job = RenderJob(request=request)
        self.history.add(job.id, request.to_json(), builder_state, title=request.title, engine=self.engine.label)
        return self.queue.submit(request, builder_state, owner, job_id=job.id)

    def _run_job(self, job: RenderJob, out_dir: Path, progress: Any, cancel: Any) -> dict[str, Any]:
        """Render into the queue's temporary folder; every output named here must lie inside it."""
        with self.gpu_lock:  # held here too, in this process, when Engine.render runs in a ZeroGPU worker
            files = self.engine.render(job.request, out_dir, progress=progress, cancel=cancel)
        outputs = {"request": files.request_json}
        if files.mp4:
            outputs["mp4"] = files.mp4
            thumb = video_thumbnail(files.mp4, out_dir / "thumbnail.png")
            if thumb:
                outputs["thumbnail"] = str(thumb)
        if files.wav:
            outputs["wav"] = files.wav
            if not files.mp4:
                outputs["picture"] = str(audio_picture(files.wav, out_dir / "waveform.png"))
                outputs["thumbnail"] = outputs["picture"]
        if files.srt:
            outputs["srt"] = files.srt
        return {"outputs": outputs, "timings": files.timings}

    def _on_job_change(self, job: RenderJob) -> None:
        if job.status == "queued":
            return
        self.history.update(job.id, status=job.status, outputs=job.outputs or None,
                            timings=job.timings or None, error=job.error or None)

    def cancel(self, owner: str) -> str:
        n = self.queue.cancel_owner(owner)
        return "Cancelling: the render stops at its next step." if n else "Nothing to cancel."

    def view(self, job: RenderJob) -> RenderView:
        """What the page shows for a job right now."""
        if job.status == "queued":
            ahead = self.queue.jobs_ahead(job.id)
            msg = f"Queued: {ahead} render{'s' if ahead != 1 else ''} ahead of this one (position {ahead + 1})."
            return RenderView(job.id, "queued", _panel("queued", msg, 0.0))
        if job.status == "running":
            ev = job.event or ProgressEvent("loading", message="starting")
            return RenderView(job.id, "running", _panel("running", ev.describe(), _overall(ev), ev.phase))
        if job.status == "done":
            o = job.outputs
            t = job.timings.get("total_s")
            msg = f"Done in {t:.1f} s." if t else "Done."
            files = tuple(o[k] for k in ("mp4", "wav", "srt", "request") if o.get(k))
            return RenderView(job.id, "done", _panel("done", msg, 1.0), video=o.get("mp4"),
                              audio=o.get("wav") if not o.get("mp4") else None, picture=o.get("picture"), files=files)
        return RenderView(job.id, job.status, _panel(job.status, job.error or job.status, 0.0), error=job.error)

    def follow(self, job: RenderJob, interval: float = 0.25) -> Iterator[RenderView]:
        """Views of a job until it finishes (the page's render handler yields these)."""
        last = None
        while True:
            finished = job.done_event.wait(interval)
            v = self.view(job)
            if v != last:
                yield v
                last = v
            if finished:
                return

    def render_blocking(self, request: RenderRequest, timeout: float | None = None) -> RenderJob:
        job = self.submit(None, owner="api", request=request)
        return self.queue.wait(job.id, timeout)

    # ---- history -------------------------------------------------------------------------------

    def reuse(self, render_id: str) -> dict[str, Any]:
        entry = self.history.get(render_id)
        if entry is None:
            raise StudioError(f"render {render_id} is not in the history")
        if entry.builder:
            return entry.builder
        return _safe_state_from_request(RenderRequest.from_json(entry.request_json))


def _safe_state_from_request(request: RenderRequest) -> dict[str, Any] | None:
    try:
        return B.state_from_request(request)
    except Exception as e:  # noqa: BLE001 - a request without a parsable project still renders
        log.info("no builder state for request: %s", e)
        return None


PHASES = ("loading", "encoding", "denoising", "decoding_video", "decoding_audio", "writing", "done")
_PHASE_SPAN = {"loading": (0, 5), "encoding": (5, 10), "denoising": (10, 85), "decoding_video": (85, 92),
               "decoding_audio": (92, 96), "writing": (96, 100), "done": (100, 100)}


def _overall(ev: ProgressEvent) -> float:
    lo, hi = _PHASE_SPAN.get(ev.phase, (0, 0))
    return (lo + (hi - lo) * ev.fraction) / 100


def _panel(status: str, message: str, fraction: float, phase: str | None = None) -> str:
    """The progress panel: phase chips, a bar and one line of text (plain HTML, no script)."""
    chips = []
    current = PHASES.index(phase) if phase in PHASES else (len(PHASES) if status == "done" else -1)
    for i, p in enumerate(PHASES[:-1]):
        cls = "done" if i < current else ("now" if i == current else "todo")
        chips.append(f'<span class="nava-chip nava-{cls}">{html.escape(PHASE_LABELS[p])}</span>')
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div class="nava-progress nava-status-{status}" data-status="{status}">'
        f'<div class="nava-chips">{"".join(chips)}</div>'
        f'<div class="nava-bar"><div class="nava-fill" style="width:{pct:.0f}%"></div></div>'
        f'<div class="nava-msg">{html.escape(message)}</div></div>'
    )
