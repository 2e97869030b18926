"""The builder's state and its translations: form values <-> prompt_builder Project <-> RenderRequest.

The studio keeps one JSON-serialisable *builder state* per render in the history:
`{"project": Project.to_dict(), "settings": {...}}`. Rebuilding the request from the same state
gives the same request, which is what makes "reuse settings" exact. Prompt text and voice binding
come only from prompt_builder (the studio never counts `<S>` spans for the user).
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass
from typing import Any

from nava_core.config import BUCKETS, DEFAULT_SEED, DEFAULT_STEPS, GuidanceScales, nearest_bucket, snap_seconds
from nava_core.request import MAX_VIDEO_SECONDS, RenderRequest

import prompt_builder as pb

SCENE_FIELDS = ("style", "setting", "lighting", "palette", "mood")
CAMERA_FIELDS = ("shot_size", "angle", "movement", "pacing", "cuts")
AUDIO_FIELDS = ("ambience", "effects", "music", "mix", "stereo")
GUIDANCE_FIELDS = ("video", "audio", "video_align", "audio_align", "timbre")
BUCKET_NAMES = tuple(b.name for b in BUCKETS)
MODE_LABELS = {
    "audio_video": "Audio + video",
    "image_audio_video": "Image + audio + video",
    "audio": "Audio only",
}
_FORMS = ("With a sync or timbre term active it adds g*(cond - neg) on top of the conditional (3 = classic CFG 4); "
          "without one (sync off, or audio only without a voice) it is classic CFG neg + g*(cond - neg) (1 = no guidance), "
          "as the release. 0 switches it off.")
GUIDANCE_HELP = {
    "video": "Video text guidance: how strongly the picture follows the prompt (release 3.0). " + _FORMS,
    "audio": "Audio text guidance: how strongly the sound follows the prompt (release 2.0). " + _FORMS,
    "video_align": "Video sync guidance: pushes the picture towards the sound, e.g. lips on words (release 3.0). 0 switches it off.",
    "audio_align": "Audio sync guidance: pushes the sound towards the picture (release 2.0; never used in audio-only mode). 0 switches it off.",
    "timbre": "Voice timbre guidance: how closely each line matches its reference voice (release 3.0). 0 switches it off.",
}

TRUNCATE_LABEL = "Render truncated, as the release does"

# The order of the builder's plain form fields; layout, handlers and history share it.
FORM_KEYS: tuple[str, ...] = (
    "title", "mode", "language",
    *(f"scene.{k}" for k in SCENE_FIELDS),
    "subjects",
    *(f"camera.{k}" for k in CAMERA_FIELDS),
    *(f"audio.{k}" for k in AUDIO_FIELDS),
    "image", "bucket", "seconds", "steps", "speedup", "seed", "audio_seed", "lock_seeds",
    *(f"guidance.{k}" for k in GUIDANCE_FIELDS),
    "prompt_manual", "prompt_text", "truncate_prompt",
)


def default_settings(mode: str = "audio_video") -> dict[str, Any]:
    g = GuidanceScales.audio_only() if mode == "audio" else GuidanceScales()
    return {"bucket": "landscape", "steps": DEFAULT_STEPS, "speedup": "exact", "seed": DEFAULT_SEED,
            "audio_seed": DEFAULT_SEED, "lock_seeds": True, "guidance": asdict(g), "prompt_manual": False,
            "prompt_text": "", "truncate_prompt": False}


def default_state() -> dict[str, Any]:
    """A small two-speaker scene so a first-time user sees every part of the builder filled in."""
    project = pb.Project(
        title="Two friends at a cafe",
        scene=pb.Scene(style="cinematic realistic", setting="a sunlit corner cafe", lighting="warm morning light",
                       mood="relaxed"),
        subjects=[pb.Subject("A", "a young woman with short black hair in a denim jacket", "left"),
                  pb.Subject("B", "a bearded man in a grey sweater", "right")],
        timeline=[
            pb.Beat("line", "Did you hear the news this morning?", "A", pb.Delivery("curious")),
            pb.Beat("line", "I did, and I still can't believe it.", "B", pb.Delivery("amused")),
        ],
        camera=pb.Camera(shot_size="medium two-shot", movement="slow push-in", cuts="none"),
        audio=pb.AudioDesign(ambience="soft cafe chatter and clinking cups", music=""),
        cast=[pb.CastMember("A", "Mia", "bright, friendly female"),
              pb.CastMember("B", "Tom", "warm, low male")],
    )
    return {"project": project.to_dict(), "settings": default_settings()}


# ---- form <-> state ------------------------------------------------------------------------------


def state_from_form(values: dict[str, Any], beats: list[dict[str, Any]], cast: list[dict[str, Any]]) -> dict[str, Any]:
    """Collect the form's values and the dynamic beat/cast lists into one builder state."""
    mode = values.get("mode") or "audio_video"
    subjects = []
    for row in _rows(values.get("subjects")):
        sid = str(row[0] or "").strip() if len(row) > 0 else ""
        if not sid:
            continue
        subjects.append({"id": sid, "description": str(row[1] or "") if len(row) > 1 else "",
                         "position": str(row[2] or "") if len(row) > 2 else ""})
    bucket = values.get("bucket") or "landscape"
    res = next((b for b in BUCKETS if b.name == bucket), BUCKETS[0])
    project = {
        "language": values.get("language") or "en",
        "title": values.get("title") or "",
        "mode": mode,
        "seconds": float(values.get("seconds") or 6.0),
        "width": res.width,
        "height": res.height,
        "image": values.get("image") or "",
        "scene": {k: values.get(f"scene.{k}") or "" for k in SCENE_FIELDS},
        "subjects": subjects,
        "timeline": copy.deepcopy(beats or []),
        "camera": {k: values.get(f"camera.{k}") or "" for k in CAMERA_FIELDS},
        "audio": {k: values.get(f"audio.{k}") or "" for k in AUDIO_FIELDS},
        "cast": copy.deepcopy(cast or []),
        "raw": None,
        "version": pb.PROJECT_VERSION,
    }
    seed = int(values.get("seed") if values.get("seed") is not None else DEFAULT_SEED)
    lock = bool(values.get("lock_seeds", True))
    audio_seed = seed if lock or values.get("audio_seed") is None else int(values["audio_seed"])
    settings = {
        "bucket": bucket,
        "steps": int(values.get("steps") or DEFAULT_STEPS),
        "speedup": values.get("speedup") or "exact",
        "seed": seed,
        "audio_seed": audio_seed,
        "lock_seeds": lock,
        "guidance": {k: float(values.get(f"guidance.{k}", getattr(GuidanceScales(), k))) for k in GUIDANCE_FIELDS},
        "prompt_manual": bool(values.get("prompt_manual")),
        "prompt_text": values.get("prompt_text") or "",
        "truncate_prompt": bool(values.get("truncate_prompt")),
    }
    return {"project": project, "settings": settings}


def form_from_state(state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The inverse of `state_from_form`: values for every FORM_KEYS field, the beats and the cast."""
    project = pb.Project.from_dict(state["project"]).to_dict()  # validates + fills defaults
    settings = {**default_settings(project["mode"]), **(state.get("settings") or {})}
    values: dict[str, Any] = {
        "title": project["title"], "mode": project["mode"], "language": project["language"],
        "subjects": [[s["id"], s["description"], s["position"]] for s in project["subjects"]],
        "image": project["image"] or None, "bucket": settings["bucket"], "seconds": project["seconds"],
        "steps": settings["steps"], "speedup": settings.get("speedup") or "exact", "seed": settings["seed"],
        "audio_seed": settings["audio_seed"], "lock_seeds": settings["lock_seeds"],
        "prompt_manual": settings["prompt_manual"],
        "prompt_text": settings["prompt_text"], "truncate_prompt": bool(settings.get("truncate_prompt")),
    }
    for group, names in (("scene", SCENE_FIELDS), ("camera", CAMERA_FIELDS), ("audio", AUDIO_FIELDS)):
        for k in names:
            values[f"{group}.{k}"] = project[group][k]
    for k in GUIDANCE_FIELDS:
        values[f"guidance.{k}"] = settings["guidance"][k]
    return values, project["timeline"], project["cast"]


def _rows(value: Any) -> list[list[Any]]:
    """Dataframe values arrive as a list of rows, a pandas DataFrame or a {'data': ...} dict."""
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):
        return value.values.tolist()
    if isinstance(value, dict):
        return list(value.get("data") or [])
    return [list(r) for r in value]


# ---- state -> prompt, findings, request ----------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    text: str
    voices: list[str | None]
    span_speakers: list[str]
    manual: bool


def project_of(state: dict[str, Any]) -> "pb.Project":
    return pb.Project.from_dict(state["project"])


def compile_state(state: dict[str, Any]) -> Compiled:
    """The prompt NAVA will see: compiled from the project, or the user's hand-edited text."""
    project = project_of(state)
    compiled = pb.compile_project(project)
    settings = state.get("settings") or {}
    if settings.get("prompt_manual") and (settings.get("prompt_text") or "").strip():
        text = settings["prompt_text"]
        n = len(re.findall(r"<S>", text))
        voices = (list(compiled.voices) + [None] * n)[:n]
        speakers = (list(compiled.span_speakers) + ["?"] * n)[:n]
        return Compiled(text, voices, speakers, True)
    return Compiled(compiled.text, list(compiled.voices), list(compiled.span_speakers), False)


def lint_state(state: dict[str, Any]) -> list[dict[str, str]]:
    """Findings as plain dicts (severity, where, message, fix)."""
    project = project_of(state)
    seconds = effective_seconds(state)
    settings = state.get("settings") or {}
    if settings.get("prompt_manual") and (settings.get("prompt_text") or "").strip():
        return _finding_dicts(pb.lint_text(settings["prompt_text"], seconds), bool(settings.get("truncate_prompt")))
    return _finding_dicts(pb.lint_project(project, seconds), bool(settings.get("truncate_prompt")))


def _finding_dicts(findings: list[Any], truncate_prompt: bool = False) -> list[dict[str, str]]:
    out = []
    for f in findings:
        item = {"severity": str(f.severity), "where": str(f.where), "message": str(f.message), "fix": str(f.fix or "")}
        if getattr(f, "code", "") == "too-long":
            # Over 512 tokens blocks the render unless the user chose the release's behaviour (truncate).
            if truncate_prompt:
                item["severity"] = "warning"
                item["message"] += "; it will be rendered truncated, as the release does"
            else:
                item["severity"] = "error"
                item["fix"] += f"; or tick '{TRUNCATE_LABEL}'"
        out.append(item)
    return out


def lint_request(request: RenderRequest) -> list[dict[str, str]]:
    """The same lint as the builder, for a request of any origin (studio, API, batch): its project
    when the prompt is that project's compiled text, else the prompt text itself (nava_core.preflight,
    which `nava-render batch` uses too)."""
    from nava_core.preflight import lint_findings

    return _finding_dicts(lint_findings(request), request.truncate_prompt)


def guidance_form_note(state: dict[str, Any], compiled: Any) -> str:
    """How this render's scales combine, per stream, as the release combines them (NAVA_SPEC.md 5)."""
    from app.engine import guidance_stream_form as stream_form

    settings = {**default_settings(state["project"].get("mode", "audio_video")), **(state.get("settings") or {})}
    try:
        g = GuidanceScales(**{k: float(v) for k, v in settings["guidance"].items()})
    except (TypeError, ValueError):
        return ""
    has_video = state["project"].get("mode", "audio_video") != "audio"
    voices = any(getattr(compiled, "voices", None) or [])
    parts = []
    for stream, scale, extra in (("video", g.video, "video_align"), ("audio", g.audio, "audio_align")):
        if stream == "video" and not has_video:
            continue
        form = stream_form(g, stream, has_video, True, voices)
        if form == "anchored":
            parts.append(f"**{stream}**: cond + {scale:g}·(cond − neg) + sync/timbre terms "
                         f"(anchored; like classic CFG {scale + 1:g})")
        else:
            parts.append(f"**{stream}**: neg + {scale:g}·(cond − neg) (classic CFG {scale:g}; no sync or timbre term)")
    return "How these scales combine now, as the release: " + "; ".join(parts) + "."


def effective_seconds(state: dict[str, Any]) -> float:
    """What NAVA will render: video durations snap to whole latent frames; audio is capped at 40.96 s."""
    seconds = float(state["project"].get("seconds") or 6.0)
    if state["project"].get("mode") == "audio":
        return seconds
    return snap_seconds(min(seconds, MAX_VIDEO_SECONDS))


def duration_note(seconds: float, mode: str) -> str:
    """A visible note when the requested duration is not what NAVA will produce."""
    if not seconds or seconds <= 0:
        return "Enter a duration above 0 s."
    if mode == "audio":
        from nava_core.config import audio_tokens_for_seconds, max_audio_seconds

        if seconds > max_audio_seconds():
            return f"Audio-only clips are at most {max_audio_seconds():g} s."
        tokens = audio_tokens_for_seconds(seconds)
        return f"{tokens} audio tokens ({tokens / 25:.2f} s)."
    if seconds > MAX_VIDEO_SECONDS:
        return f"Video clips are at most {MAX_VIDEO_SECONDS:g} s; shorten the duration."
    snapped = snap_seconds(seconds)
    from nava_core.config import latent_frames_for_seconds, pixel_frames

    frames = pixel_frames(latent_frames_for_seconds(seconds))
    if abs(snapped - seconds) > 1e-6:
        return f"Snapped to {snapped:.3f} s ({frames} frames at 24 fps): NAVA renders whole groups of 4 frames."
    return f"{frames} frames at 24 fps."


# Facts the request itself states (mode, duration, frame size, first-frame image): the project it carries
# leaves them out, so the sidecar and History hold each once; state_from_request puts them back.
REQUEST_OWNED = ("mode", "seconds", "width", "height", "image")


def request_from_state(state: dict[str, Any]) -> RenderRequest:
    """The RenderRequest for a builder state (deterministic: same state -> same request)."""
    project = state["project"]
    settings = {**default_settings(project.get("mode", "audio_video")), **(state.get("settings") or {})}
    compiled = compile_state(state)
    mode = project.get("mode") or "audio_video"
    bucket = next((b for b in BUCKETS if b.name == settings["bucket"]), BUCKETS[0])
    seed = int(settings["seed"])
    audio_seed = None if settings.get("lock_seeds", True) else int(settings["audio_seed"])
    return RenderRequest(
        prompt=compiled.text,
        mode=mode,
        speaker_wavs=tuple(v or None for v in compiled.voices),
        image=(project.get("image") or None) if mode == "image_audio_video" else None,
        width=bucket.width,
        height=bucket.height,
        seconds=effective_seconds(state),
        steps=int(settings["steps"]),
        speedup=settings.get("speedup") or "exact",
        guidance=GuidanceScales(**{k: float(v) for k, v in settings["guidance"].items()}),
        seed=seed,
        audio_seed=audio_seed if audio_seed != seed else None,
        project={k: v for k, v in project.items() if k not in REQUEST_OWNED},
        title=project.get("title") or "",
        truncate_prompt=bool(settings.get("truncate_prompt")),
    )


def state_from_request(request: RenderRequest) -> dict[str, Any]:
    """Best-effort builder state for a request made outside the builder (API, CLI, MP4 metadata)."""
    if request.project:
        project = pb.Project.from_dict(request.project).to_dict()
    else:
        project = pb.parse_prompt(request.prompt).to_dict()
    project["mode"] = request.mode
    kept = float(project.get("seconds") or 0)
    same = kept > 0 and (kept == request.seconds or (request.mode != "audio" and snap_seconds(kept) == request.seconds))
    if not same:
        project["seconds"] = request.seconds
    project["image"] = request.image or ""
    bucket = next((b.name for b in BUCKETS if (b.width, b.height) == (request.width, request.height)),
                  nearest_bucket(request.width, request.height).name)
    compiled_text = pb.compile_project(pb.Project.from_dict(project)).text
    manual = compiled_text.strip() != request.prompt.strip()
    settings = {
        "bucket": bucket, "steps": request.steps, "speedup": request.speedup, "seed": request.seed,
        "audio_seed": request.effective_audio_seed,
        "lock_seeds": request.audio_seed is None, "guidance": asdict(request.guidance),
        "prompt_manual": manual, "prompt_text": request.prompt if manual else "", "truncate_prompt": request.truncate_prompt,
    }
    return {"project": project, "settings": settings}
