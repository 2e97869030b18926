"""Gradio-facing handlers: turn component values into service calls and results into updates.

Kept apart from the layout so tests can call them directly with plain values.
"""

from __future__ import annotations

import html
import logging
import time
from typing import Any

import gradio as gr

from nava_core.config import GuidanceScales
from nava_core.request import RequestError

import prompt_builder as pb

from app import builder as B
from app import engine as E
from app.service import StudioService
from app.timeline_view import EditError, apply_edit, table_rows, timeline_html

log = logging.getLogger(__name__)

LINT_GROUPS = ("scene", "timeline", "cast", "camera", "audio", "duration", "prompt")


def values_dict(vals: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(B.FORM_KEYS, vals))


def state_of(vals: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
    """Form values + beats + cast, then (from the Studio page) every builder row field -> builder state.

    The row fields are laid over the beats/cast state (app.studio_rows.merge_rows): what the
    boxes say is what the state is, whatever the state last heard."""
    n = len(B.FORM_KEYS)
    beats, cast = list(vals[n] or []), list(vals[n + 1] or [])
    if len(vals) > n + 2:
        from app.studio_rows import merge_rows

        beats, cast = merge_rows(beats, cast, list(vals[n + 2:]))
    return B.state_from_form(values_dict(vals[:n]), beats, cast)


def lint_group(where: str) -> str:
    """Which section of the page a finding belongs next to."""
    w = where.lower()
    for key, group in (("timeline", "timeline"), ("line", "timeline"), ("beat", "timeline"), ("span", "timeline"),
                       ("cast", "cast"), ("voice", "cast"), ("speaker", "cast"), ("scene", "scene"),
                       ("subject", "scene"), ("camera", "camera"), ("audio", "audio"), ("second", "duration"),
                       ("duration", "duration")):
        if w.startswith(key):
            return group
    return "prompt"


def lint_markdown(findings: list[dict[str, str]]) -> dict[str, str]:
    """One HTML block of findings per page section."""
    groups: dict[str, list[str]] = {g: [] for g in LINT_GROUPS}
    icon = {"error": "⛔", "warning": "⚠️", "info": "ℹ️"}
    for f in findings:
        fix = f" — {html.escape(f['fix'])}" if f.get("fix") else ""
        groups[lint_group(f["where"])].append(
            f'<div class="nava-lint nava-lint-{html.escape(f["severity"])}">{icon.get(f["severity"], "•")} '
            f'<b>{html.escape(f["where"])}</b>: {html.escape(f["message"])}{fix}</div>')
    return {g: "".join(items) for g, items in groups.items()}


def compile_outputs(service: StudioService, vals: list[Any]) -> list[Any]:
    """Prompt box, lint blocks (one per section), duration note, voice binding and estimate."""
    try:
        state = state_of(vals)
        compiled, findings = service.compile(state)
    except (pb.SchemaError, ValueError, TypeError) as e:
        msg = f'<div class="nava-lint nava-lint-error">⛔ {html.escape(str(e))}</div>'
        return [gr.update(), *(msg if g == "prompt" else "" for g in LINT_GROUPS), "", "", "", ""]
    blocks = lint_markdown(findings)
    values = values_dict(vals[: len(B.FORM_KEYS)])
    prompt_update = gr.update() if compiled.manual else gr.update(value=compiled.text)
    note = B.duration_note(float(values.get("seconds") or 0), values.get("mode") or "audio_video")
    binding = voice_binding(compiled, state)
    estimate = request_estimate(service, state)
    return [prompt_update, *(blocks[g] for g in LINT_GROUPS), note, binding, estimate,
            B.guidance_form_note(state, compiled)]


def request_estimate(service: StudioService, state: dict[str, Any]) -> str:
    """VRAM and time the builder's request needs on the release model, labelled as an estimate.

    With the tiny engine the render itself runs at preview size on the CPU; the estimate still
    describes the full-size request on the release model, so a creator can plan the real render.
    """
    try:
        request = B.request_from_state(state)
    except (RequestError, ValueError, TypeError):
        return ""
    engine = service.engine
    text = E.memory_estimate(request, profile=E.canonical_profile(engine.memory_profile), gpus=engine.gpus)
    if text and engine.choice.is_tiny:
        text += " This is for the release model; the preview engine renders at preview size on the CPU."
    return text


def voice_binding(compiled: B.Compiled, state: dict[str, Any]) -> str:
    """Which voice each `<S>` span will get, in the release's binding order."""
    if not compiled.span_speakers:
        return "No spoken lines: NAVA renders ambience and effects only."
    names = {c["id"]: c.get("name") or c["id"] for c in state["project"]["cast"]}
    parts = []
    for i, (spk, voice) in enumerate(zip(compiled.span_speakers, compiled.voices), 1):
        v = "reference voice" if voice else "no reference (voice from the description)"
        parts.append(f"{i}. {names.get(spk, spk)}: {v}")
    return "Voice binding (span order): " + "; ".join(parts)


def form_updates(state: dict[str, Any]) -> list[Any]:
    """Values for every form field, then beats, cast and a bumped revision (used by reuse/preset)."""
    values, beats, cast = B.form_from_state(state)
    return [values[k] for k in B.FORM_KEYS] + [beats, cast]


def load_preset_state(name: str) -> dict[str, Any]:
    if not name or name == BUILTIN_PRESET:
        return B.default_state()
    project = pb.load_preset(name)
    return {"project": project.to_dict(), "settings": B.default_settings(project.mode)}


BUILTIN_PRESET = "Two friends at a cafe (built-in)"


def preset_choices() -> list[str]:
    try:
        return [BUILTIN_PRESET, *pb.list_presets()]
    except Exception as e:  # noqa: BLE001 - presets folder problems must not stop the studio
        log.warning("presets unavailable: %s", e)
        return [BUILTIN_PRESET]


def reset_guidance(mode: str) -> list[float]:
    g = GuidanceScales.audio_only() if mode == "audio" else GuidanceScales()
    return [getattr(g, k) for k in B.GUIDANCE_FIELDS]


def mode_visibility(mode: str) -> dict[str, bool]:
    video = mode != "audio"
    return {"camera": video, "image": video, "bucket": video, "guidance.video": video,
            "guidance.video_align": video, "result_video": video, "result_audio": not video,
            "result_picture": not video}


def timeline_outputs(vals: list[Any]) -> tuple[str, list[list[Any]]]:
    try:
        state = state_of(vals)
        return timeline_html(state["project"], B.effective_seconds(state)), table_rows(state["project"])
    except (pb.SchemaError, ValueError, TypeError) as e:
        return f'<div class="nava-lint-error">{html.escape(str(e))}</div>', []


def timeline_edit(edit_text: str, vals: list[Any]) -> tuple[list[dict[str, Any]], str, list[list[Any]], str, bool]:
    """A drag on the timeline (JSON edit, see timeline_view.apply_edit) applied to the builder state.

    Returns the beats, the timeline HTML, the table rows, a message and whether the edit applied. A
    refused edit keeps the beats exactly as given and says why; the timeline is re-drawn either way
    (with a fresh stamp), so a refused drag's block goes back where it was.
    """
    n = len(B.FORM_KEYS)
    beats = list(vals[n] or [])
    stamp = str(time.monotonic_ns())
    try:
        state = state_of(vals)
    except (pb.SchemaError, ValueError, TypeError) as e:
        return beats, f'<div class="nava-lint-error">{html.escape(str(e))}</div>', [], f"Timeline edit refused: {e}", False
    try:
        project = apply_edit(state["project"], edit_text)
    except (EditError, pb.SchemaError) as e:
        project, ok, message = state["project"], False, f"Timeline edit refused: {e}"
    else:
        ok, message = True, "Timeline edit applied: " + _describe_edit(state["project"], project)
    seconds = B.effective_seconds({**state, "project": project})
    return (project["timeline"] if ok else beats), timeline_html(project, seconds, stamp), table_rows(project), message, ok


def _describe_edit(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What changed, line by line, in the table's terms (line numbers, speakers, start times)."""
    old = {(t.text, t.speaker): t for t in pb.estimate_timeline(pb.Project.from_dict(before))}
    parts = []
    for t in pb.estimate_timeline(pb.Project.from_dict(after)):
        was = old.get((t.text, t.speaker))
        if was is None:
            parts.append(f"line {t.line_index + 1} now spoken by {t.speaker}, starts at {t.start:g} s")
        elif was.line_index != t.line_index:
            parts.append(f"line {was.line_index + 1} is now line {t.line_index + 1}, starts at {t.start:g} s")
        elif abs(was.start - t.start) > 1e-6:
            parts.append(f"line {t.line_index + 1} starts at {t.start:g} s")
    return "; ".join(parts) or "nothing changed."
