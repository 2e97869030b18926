"""The studio's back end, independent of Gradio: builder checks, voice uploads, the render queue,
history and the model settings. Every UI handler and API endpoint is a thin call into this class, so
tests exercise the same code paths as the page without a browser.
"""

from __future__ import annotations

import hashlib
import html
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nava_core.config import nearest_bucket
from nava_core.progress import PHASE_LABELS, ProgressEvent, RenderCancelled
from nava_core.request import RenderRequest, RequestError

from app import builder as B
from app import engine as E
from app.errors import explain
from app.history import HistoryView
from app.migrate import migrate_data_folder
from app.paths import StudioPaths
from prompt_builder.presets import PRESETS_DIR as _PRESETS_DIR
from nava_core.jobs import Job, JobQueue, RenderFailed, Worker
from nava_core.outputs import RenderOutputs

log = logging.getLogger(__name__)

VOICE_EXTS = {".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4"}


class StudioError(ValueError):
    """A user mistake the page reports as a message (what is wrong and what to do)."""


class QueueFull(StudioError):
    """The render queue is at its limit for this client or in total; nothing was queued."""


@dataclass(frozen=True)
class QueueLimits:
    """How much waiting work the studio accepts from studio and API clients: per client (browser
    session, API client or login) and in total. A render over either limit is refused before it is
    recorded, so no client can make the server queue unbounded work."""

    per_client: int = 10
    total: int = 100
    batch_jobs: int = 1000  # batch jobs waiting or running, all batches together (one batch is at most 1,000)


@dataclass(frozen=True)
class VoiceUpload:
    path: str  # persistent copy in the data folder (what the request references)
    preview: str  # 16-bit WAV every browser can play
    duration_s: float
    note: str


@dataclass(frozen=True)
class RenderView:
    """One UI update while a render is queued, running or finished."""

    job_id: int
    status: str
    html: str
    video: str | None = None
    audio: str | None = None
    picture: str | None = None
    files: tuple[str, ...] = ()
    error: str = ""


def limit_key(owner: str) -> str:
    """Who a job counts against for the per-client limit. The Studio tab records its jobs as
    'CLIENT#BROWSER' (the server's `app.api.client_id`, then the page's own id that survives a reload):
    the limit follows the server's part, which a browser cannot choose."""
    return (owner or "").split("#", 1)[0]


class StudioService:
    """One running studio: its data folder, its engine, and the one job store every render goes through.

    Studio clicks, API calls and Batch-tab jobs are all rows of one `JobQueue` (`<home>/jobs.sqlite`;
    batch jobs carry a `batch_id`), admitted by one method (`_admit`: lint, validation, the request
    finalised for this engine) and rendered by one `Worker` thread through `Engine.render` (ZeroGPU
    wrapper and the GPU lock included). History is a view of that store (`app.history`). Data folders
    of earlier versions (queue.sqlite + history.sqlite + batch/queue.sqlite) are migrated on the first
    start (`app.migrate`).
    """

    def __init__(self, paths: StudioPaths, engine: E.Engine, allowed_roots: tuple[str | Path, ...] = (),
                 limits: QueueLimits | None = None) -> None:
        from nava_core.validation import PathBoundary

        from app.access import AdminPolicy, FolderBoundary

        self.paths = paths
        self.engine = engine
        # request paths must lie in the uploads folder or a folder the operator allowed (--allow-path);
        # Batch-tab items may also name the media shipped with the presets
        self.boundary = PathBoundary.of(paths.uploads, *allowed_roots)
        shipped = Path(_PRESETS_DIR).resolve().parent
        self.batch_boundary = PathBoundary.of(paths.uploads, *allowed_roots, shipped / "assets", shipped / "presets",
                                              start=shipped)  # presets name their media relative to it
        self.limits = limits or QueueLimits()
        self._admit_lock = threading.Lock()
        self.admin = AdminPolicy()  # local-only admin actions unless create_app says otherwise
        # weights folders the UI may pick: the data folder, allowed roots, and the one the operator started with
        self.weights_boundary = FolderBoundary.of(paths.home, *allowed_roots,
                                                  None if engine.choice.folder == "tiny" else engine.choice.folder,
                                                  engine.choice.suggested or None)
        migrate_data_folder(paths)
        self.jobs = JobQueue(paths.jobs_db)
        self.history = HistoryView(self.jobs)
        self.live_preview: tuple[int, Any] | None = None  # (job id, nava_core.preview.Preview) while it denoises
        self.worker = Worker(self.jobs, self._render, paths.outputs, on_progress=self._keep_preview)
        resumed = self.jobs.counts()["queued"]
        if resumed:
            log.info("resuming %d queued render(s) from the previous run", resumed)
        self.worker.start()

    def _keep_preview(self, ev: ProgressEvent) -> None:
        """The running job's latest live preview (the worker keeps only its latest event)."""
        if ev.preview is not None and self.worker.current is not None:
            self.live_preview = (self.worker.current, ev.preview)

    @property
    def gpu_lock(self) -> threading.RLock:
        """The engine's lock, held by `Engine.render` for a whole render (the only place it is taken)."""
        return self.engine.gpu_lock

    def pending(self) -> list[Job]:
        """Unfinished jobs of every origin: the running one first, then the waiting ones in order."""
        jobs = self.jobs.list(states=("running", "queued"))
        return sorted(jobs, key=lambda j: (j.state != "running", j.id))

    def close(self) -> None:
        """Stop the worker (a render in progress is put back in line) and close the store."""
        if self.worker.stop():
            self.jobs.close()

    # ---- builder -------------------------------------------------------------------------------

    def compile(self, state: dict[str, Any]) -> tuple[B.Compiled, list[dict[str, str]]]:
        return B.compile_state(state), B.lint_state(state)

    def build_request(self, state: dict[str, Any]) -> RenderRequest:
        """The request exactly as the engine in use will render it (finalised: size, profile, tiling)."""
        try:
            request = B.request_from_state(state)
        except RequestError as e:
            raise StudioError(explain(e)) from e
        except (ValueError, TypeError) as e:
            raise StudioError(f"The builder has an invalid value: {e}") from e
        return self.engine.finalize(request)

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
        from nava_core.validation import VOICE_MAX_SECONDS, InputError, check_audio_file

        src = Path(upload)
        if src.suffix.lower() not in VOICE_EXTS:
            raise StudioError(f"{src.name} is not an audio file NAVA Studio reads; upload wav, mp3, flac, ogg, opus or m4a.")
        try:  # content and declared length first: nothing is decoded past what a voice uses
            check_audio_file(src, max_seconds=VOICE_MAX_SECONDS, what=f"voice {src.name}")
        except InputError as e:
            raise StudioError(explain(e)) from e
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
            E.voice_preview_wav(voice, preview)
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
        pending = self.pending()
        if any(j.batch_id for j in pending):
            raise StudioError("Batch jobs are running or queued; switch weights when the batch is finished "
                              "or cancelled (Batch tab).")
        if pending:
            raise StudioError("A render is running or queued; switch weights when the queue is empty.")
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
        from nava_core.validation import InputError, check_image_file

        try:  # pixel count from the header before any decode (bombs), then a full decode; same check as /render
            checked = check_image_file(upload, what=f"image {Path(upload).name}")
        except InputError as e:
            raise StudioError(explain(e)) from e
        return str(self._store(upload, self.paths.images)), nearest_bucket(checked.width, checked.height).name

    # ---- rendering: the one way into the store ---------------------------------------------------

    def _admit(self, request: RenderRequest, boundary: Any = None,
               files_checked: set[tuple[Any, ...]] | None = None) -> RenderRequest:
        """Every job's checks, whatever queued it: the input checks (fields, voice and image paths inside
        the boundary and files by content), the prompt's lint errors, then the request finalised for this
        engine. Raises StudioError saying what to change; nothing is stored before this passes.
        `files_checked` (a batch) skips decoding the same voice/image files again for each of its jobs."""
        from nava_core.validation import InputError, check_request_dict

        files = (request.speaker_wavs, request.image)
        check_files = files_checked is None or files not in files_checked
        try:
            # the page's state and API requests are client data: their paths must lie inside the boundary
            checked = check_request_dict(request.to_dict(), check_files=check_files,
                                         boundary=boundary or self.boundary)
        except (InputError, RequestError, ValueError) as e:
            raise StudioError(f"invalid render request: {' '.join(str(e).split())}") from e
        if files_checked is not None:
            files_checked.add(files)
        errors = [f"{f['where']}: {f['message']}" + (f" ({f['fix']})" if f["fix"] else "")
                  for f in B.lint_request(checked) if f["severity"] == "error"]
        if errors:
            raise StudioError("Fix these before rendering: " + "; ".join(errors))
        return self.engine.finalize(checked)

    def submit(self, state: dict[str, Any] | None, owner: str = "", request: RenderRequest | None = None,
               source: str = "studio") -> Job:
        """Queue a render of the builder state (or of a ready request, for the API); returns its job."""
        if request is None:
            if state is None:
                raise StudioError("nothing to render")
            problems = self.preflight(state)
            if problems:
                raise StudioError("Fix these before rendering: " + "; ".join(problems))
            request = self.build_request(state)
        final = self._admit(request)
        builder_state = state if state is not None else _safe_state_from_request(final)
        with self._admit_lock:  # count and enqueue together: concurrent clients cannot overshoot the limits
            self._check_limits(owner)
            job_id = self.jobs.enqueue(final, source=source, owner=owner, engine=self.engine.label,
                                       builder=builder_state)
        self.worker.wake()
        return self.jobs.get(job_id)  # type: ignore[return-value]

    def _check_limits(self, owner: str) -> None:
        waiting = [j for j in self.pending() if not j.batch_id]
        if len(waiting) >= self.limits.total:
            raise QueueFull(f"The render queue is full ({len(waiting)} renders waiting or running, the limit is "
                            f"{self.limits.total}); nothing was queued. What to do: try again when some have finished.")
        mine = sum(1 for j in waiting if limit_key(j.owner) == limit_key(owner))
        if mine >= self.limits.per_client:
            raise QueueFull(f"The render queue is full for you: {mine} of your renders are waiting or running (the "
                            f"limit per client is {self.limits.per_client}); nothing was queued. What to do: wait "
                            "for one to finish or cancel one.")

    def submit_batch(self, planned: list[Any], batch_id: str, engine: str | None = None) -> list[int]:
        """Queue a batch's planned jobs (all or nothing) through the same checks as a single render.

        `engine` "cluster:ADDRESS" reserves them for a render farm (the Batch tab's "Run on cluster")."""
        with self._admit_lock:  # count and enqueue together, as for single renders
            waiting = sum(1 for j in self.pending() if j.batch_id)
            if waiting + len(planned) > self.limits.batch_jobs:
                raise QueueFull(f"The batch queue is full: {waiting} batch renders are waiting or running and this batch "
                                f"adds {len(planned)} (the limit is {self.limits.batch_jobs}); nothing was queued. What to "
                                "do: wait for the queued batches to finish, cancel one, or queue fewer renders.")
            seen: set[tuple[Any, ...]] = set()
            finals = [self._admit(p.request, self.batch_boundary, seen) for p in planned]
            ids = self.jobs.enqueue_many(finals, batch_id=batch_id, labels=[p.label for p in planned],
                                         source="batch", engine=engine or self.engine.label)
        self.worker.wake()
        return ids

    def _render(self, request: RenderRequest, out_dir: Path, progress: Any, cancel: Any) -> RenderOutputs:
        """The worker's render function: the engine call, into the job's temporary folder; an error is
        stored as the message the page shows (what went wrong and what to do)."""
        try:
            return self.engine.render(request, out_dir, progress=progress, cancel=cancel)
        except RenderCancelled:
            raise
        except Exception as e:
            log.exception("render failed")
            raise RenderFailed(explain(e)) from e

    def cancel(self, owner: str) -> str:
        """The Cancel button: every unfinished studio job of this browser session."""
        n = sum(self.worker.cancel(j.id) for j in self.pending() if j.owner == owner and not j.batch_id)
        return "Cancelling: the render stops at its next step." if n else "Nothing to cancel."

    def jobs_ahead(self, job_id: int) -> int:
        """How many renders run before this one starts (the running one included)."""
        return sum(1 for j in self.pending() if j.id < job_id or j.state == "running")

    def view(self, job_id: int) -> RenderView:
        """What the page shows for a job right now."""
        job = self.jobs.get(job_id)
        if job is None:
            return RenderView(job_id, "failed", panel("failed", "this render is not in the store", 0.0))
        if job.state == "queued":
            ahead = self.jobs_ahead(job_id)
            msg = f"Queued: {ahead} render{'s' if ahead != 1 else ''} ahead of this one (position {ahead + 1})."
            return RenderView(job_id, "queued", panel("queued", msg, 0.0))
        if job.state == "running":
            ev = (self.worker.event if self.worker.current == job_id else None) or ProgressEvent("loading", message="starting")
            return RenderView(job_id, "running", panel("running", ev.describe(), _overall(ev), ev.phase))
        result = job.result
        if result is not None:
            t = job.timings.get("total_s")
            msg = f"Done in {t:.1f} s." if t else "Done."
            files = tuple(str(p) for p in (result.mp4, result.wav, result.srt, result.sidecar) if p)
            return RenderView(job_id, "done", panel("done", msg, 1.0), video=_opt(result.mp4),
                              audio=None if result.mp4 else _opt(result.wav),
                              picture=None if result.mp4 else _opt(result.thumbnail), files=files)
        error = _job_error(job)
        return RenderView(job_id, job.state, panel(job.state, error, 0.0), error=error)

    def render_blocking(self, request: RenderRequest, timeout: float | None = None, owner: str = "api") -> Job:
        job = self.submit(None, owner=owner, request=request, source="api")
        return self.worker.wait(job.id, timeout)  # type: ignore[return-value]

    # ---- history -------------------------------------------------------------------------------

    def reuse(self, job_id: int | str) -> dict[str, Any]:
        job = self.history.get(job_id)
        if job is None:
            raise StudioError(f"render {job_id} is not in the history")
        if job.builder:
            return job.builder
        return _safe_state_from_request(job.request)


def _opt(p: Any) -> str | None:
    return str(p) if p else None


def _job_error(job: Job) -> str:
    """The message a failed or cancelled job shows: the engine's error explained, or why it stopped."""
    if job.state == "cancelled":
        return "cancelled; nothing was written" if job.error in (None, "", "cancelled") else job.error
    return job.error or "the render failed"


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


def panel(status: str, message: str, fraction: float, phase: str | None = None) -> str:
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
