"""The Voice cast & timeline tab's picture: lines on a time axis, one lane per speaker (plain HTML).

gradio-vistimeline breaks Gradio 6, so the timeline is a `gr.HTML` kept in sync with a `gr.Dataframe`
(the table is where lines are reordered and reassigned). Timings are estimates from prompt_builder.
"""

from __future__ import annotations

import html
from typing import Any

import prompt_builder as pb

COLORS = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2")
TABLE_HEADERS = ["#", "start (s)", "end (s)", "speaker", "text"]


def timed_lines(project_dict: dict[str, Any]) -> list[Any]:
    return pb.estimate_timeline(pb.Project.from_dict(project_dict))


def table_rows(project_dict: dict[str, Any]) -> list[list[Any]]:
    """One row per spoken line: span number, estimated start/end, speaker id, text."""
    return [[t.line_index + 1, t.start, t.end, t.speaker, t.text] for t in timed_lines(project_dict)]


def timeline_html(project_dict: dict[str, Any], clip_seconds: float) -> str:
    lines = timed_lines(project_dict)
    speakers = [c["id"] for c in project_dict.get("cast", [])]
    for t in lines:
        if t.speaker not in speakers:
            speakers.append(t.speaker)
    end = max([clip_seconds] + [t.end for t in lines]) or 1.0
    lanes = []
    for si, spk in enumerate(speakers):
        color = COLORS[si % len(COLORS)]
        clips = []
        for t in lines:
            if t.speaker != spk:
                continue
            left, width = 100 * t.start / end, max(2.0, 100 * (t.end - t.start) / end)
            over = " nava-over" if t.end > clip_seconds + 1e-6 else ""
            title = f"line {t.line_index + 1}: {t.start:.2f}-{t.end:.2f} s"
            clips.append(
                f'<div class="nava-clip{over}" draggable="true" data-line="{t.line_index + 1}" title="{html.escape(title)}" '
                f'style="left:{left:.2f}%;width:{width:.2f}%;background:{color}">{t.line_index + 1}. {html.escape(t.text)}</div>'
            )
        lanes.append(f'<div class="nava-lane"><span class="nava-lane-label">{html.escape(spk or "?")}</span>{"".join(clips)}</div>')
    ticks = "".join(
        f'<span class="nava-tick" style="left:{100 * s / end:.2f}%">{s:g}s</span>' for s in range(0, int(end) + 1)
    )
    marker = f'<div class="nava-end" style="left:calc(70px + (100% - 70px) * {clip_seconds / end:.4f})" title="clip end"></div>'
    note = ""
    if any(t.end > clip_seconds + 1e-6 for t in lines):
        note = '<div class="nava-lint-error">Red-outlined lines run past the end of the clip: shorten them or lengthen the clip.</div>'
    if not lines:
        return '<div class="nava-timeline">No spoken lines yet: add lines on the Studio tab.</div>'
    return f'<div class="nava-timeline">{marker}{"".join(lanes)}<div class="nava-axis">{ticks}</div>{note}</div>'


def move_beat(beats: list[dict[str, Any]], line_no: int, delta: int) -> list[dict[str, Any]]:
    """Move the `line_no`-th spoken line (1-based) up or down among the spoken lines."""
    idx = [i for i, b in enumerate(beats) if b.get("kind") == "line"]
    if not 1 <= line_no <= len(idx):
        raise ValueError(f"there is no line {line_no}; lines are numbered 1 to {len(idx)}")
    target = line_no - 1 + delta
    if not 0 <= target < len(idx):
        return beats
    out = [dict(b) for b in beats]
    a, b = idx[line_no - 1], idx[target]
    out[a], out[b] = out[b], out[a]
    return out


def reassign_beat(beats: list[dict[str, Any]], line_no: int, speaker: str) -> list[dict[str, Any]]:
    idx = [i for i, b in enumerate(beats) if b.get("kind") == "line"]
    if not 1 <= line_no <= len(idx):
        raise ValueError(f"there is no line {line_no}; lines are numbered 1 to {len(idx)}")
    out = [dict(b) for b in beats]
    out[idx[line_no - 1]]["speaker"] = speaker
    return out
