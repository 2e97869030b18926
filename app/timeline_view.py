"""The Voice cast & timeline tab's picture: lines on a time axis, one lane per speaker, and its edits.

gradio-vistimeline breaks Gradio 6, so the timeline is a `gr.HTML` kept in sync with a `gr.Dataframe`.
Its blocks are dragged with pointer events (`DRAG_JS`, the gr.HTML's `js_on_load`): sideways retimes a
line, onto another lane reassigns it, past another block reorders. The script writes one JSON edit
(or a list applied together) into a hidden textbox; `apply_edit` turns it into prompt_builder's pure
edits (move_line, retime_line, reassign_line). Timings are estimates from prompt_builder.
"""

from __future__ import annotations

import html
import json
from typing import Any

import prompt_builder as pb

COLORS = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2")
TABLE_HEADERS = ["#", "start (s)", "end (s)", "speaker", "text"]
HINT = ("Drag a line sideways to retime it (0.1 s steps), onto another speaker's lane to reassign it, or past "
        "another line to reorder; the buttons below do the same from the keyboard.")
SNAP_SECONDS = 0.1
OPS = ("retime", "reassign", "move")
MAX_EDITS = 8


def timed_lines(project_dict: dict[str, Any]) -> list[Any]:
    return pb.estimate_timeline(pb.Project.from_dict(project_dict))


def table_rows(project_dict: dict[str, Any]) -> list[list[Any]]:
    """One row per spoken line: span number, estimated start/end, speaker id, text."""
    return [[t.line_index + 1, t.start, t.end, t.speaker, t.text] for t in timed_lines(project_dict)]


def timeline_html(project_dict: dict[str, Any], clip_seconds: float, stamp: str = "") -> str:
    """The timeline picture; `stamp` makes a re-render after a refused drag differ, so the block snaps back."""
    lines = timed_lines(project_dict)
    speakers = [c["id"] for c in project_dict.get("cast", [])]
    names = {c["id"]: (c.get("name") or "").strip() for c in project_dict.get("cast", [])}
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
                f'<div class="nava-clip{over}" data-line="{t.line_index + 1}" data-beat="{t.beat_index}" '
                f'data-speaker="{html.escape(t.speaker)}" data-start="{t.start}" data-end="{t.end}" '
                f'title="{html.escape(title)}" '
                f'style="left:{left:.2f}%;width:{width:.2f}%;background:{color}">{t.line_index + 1}. {html.escape(t.text)}</div>'
            )
        label = names.get(spk) or spk or "?"  # the cast name a person gave; the id when there is none
        lanes.append(f'<div class="nava-lane" data-speaker="{html.escape(spk)}"><span class="nava-lane-label" '
                     f'title="{html.escape(label)} (speaker {html.escape(spk)})">'
                     f'{html.escape(label)}</span>{"".join(clips)}</div>')
    ticks = "".join(
        f'<span class="nava-tick" style="left:{100 * s / end:.2f}%">{s:g}s</span>' for s in range(0, int(end) + 1)
    )
    marker = f'<div class="nava-end" style="left:calc(70px + (100% - 70px) * {clip_seconds / end:.4f})" title="clip end"></div>'
    note = ""
    if any(t.end > clip_seconds + 1e-6 for t in lines):
        note = '<div class="nava-lint-error">Red-outlined lines run past the end of the clip: shorten them or lengthen the clip.</div>'
    if not lines:
        return '<div class="nava-timeline">No spoken lines yet: add lines on the Studio tab.</div>'
    return (f'<div class="nava-timeline" data-end="{end:.4f}" data-stamp="{html.escape(stamp)}">{marker}{"".join(lanes)}'
            f'<div class="nava-axis">{ticks}</div>{note}</div><div class="nava-tl-hint">{HINT}</div>')


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


# ---- direct manipulation: JSON edits from the drag script ------------------------------------------


class EditError(ValueError):
    """A timeline edit that cannot be applied; the message says why, the project is left as it was."""


def apply_edit(project_dict: dict[str, Any], edit_text: Any) -> dict[str, Any]:
    """Apply one timeline edit, or a list applied together (all or none), and return the new project dict.

    Each edit is `{"op": "retime", "index": i, "start": s}` (or `"pause": p`), `{"op": "reassign",
    "index": i, "speaker": "B"}` or `{"op": "move", "index": i, "to": j}`; `index`/`to` are beat indices
    into the project's timeline (as prompt_builder's edits take them). A drag start is snapped to
    0.1 s and never placed before the previous beat ends. Extra keys (the script's `seq`) are ignored.
    """
    edits = parse_edits(edit_text)
    project = pb.Project.from_dict(project_dict)
    for n, edit in enumerate(edits):
        where = f"edit {n + 1} ({edit.get('op')})" if len(edits) > 1 else str(edit.get("op"))
        try:
            project = _apply_one(project, edit)
        except EditError as e:
            raise EditError(f"{where}: {e}") from None
        except (IndexError, ValueError) as e:  # prompt_builder's own refusals
            raise EditError(f"{where}: {e}") from None
    return project.to_dict()


def parse_edits(edit_text: Any) -> list[dict[str, Any]]:
    if not isinstance(edit_text, str) or not edit_text.strip():
        raise EditError("no edit given")
    if len(edit_text) > 4000:
        raise EditError("the edit is too long (at most 4000 characters)")
    try:
        data = json.loads(edit_text)
    except json.JSONDecodeError as e:
        raise EditError(f"the edit is not valid JSON ({e.msg} at character {e.pos})") from None
    if isinstance(data, dict) and "edits" in data:  # the drag script's {"edits": [...], "seq": n}
        data = data["edits"]
    edits = data if isinstance(data, list) else [data]
    if not edits or len(edits) > MAX_EDITS:
        raise EditError(f"give 1 to {MAX_EDITS} edits")
    for edit in edits:
        if not isinstance(edit, dict):
            raise EditError('each edit must be a JSON object like {"op": "move", "index": 1, "to": 0}')
        if edit.get("op") not in OPS:
            raise EditError(f"unknown op {edit.get('op')!r}; use one of {', '.join(OPS)}")
    return edits


def _int(edit: dict[str, Any], key: str) -> int:
    value = edit.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditError(f"{key!r} must be a whole number (a beat index), got {value!r}")
    return value


def _seconds(edit: dict[str, Any], key: str) -> float:
    value = edit.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise EditError(f"{key!r} must be a number of seconds from 0 to 3600, got {value!r}")
    return float(value)


def _line_index(project: "pb.Project", edit: dict[str, Any]) -> int:
    i = _int(edit, "index")
    n = len(project.timeline)
    if not 0 <= i < n:
        raise EditError(f"there is no beat {i}; the timeline has {n} beats (0 to {n - 1})")
    if project.timeline[i].kind != "line":
        raise EditError(f"beat {i} is an action, not a spoken line")
    return i


def _apply_one(project: "pb.Project", edit: dict[str, Any]) -> "pb.Project":
    i = _line_index(project, edit)
    op = edit["op"]
    if op == "reassign":
        speaker = edit.get("speaker")
        if not isinstance(speaker, str) or not speaker.strip():
            raise EditError("'speaker' must be a speaker id from the cast")
        return pb.reassign_line(project, i, speaker.strip())
    if op == "move":
        j = _int(edit, "to")
        if not 0 <= j < len(project.timeline):
            raise EditError(f"cannot move to beat {j}; the timeline has {len(project.timeline)} beats")
        return pb.move_line(project, i, j)
    # retime
    if ("start" in edit) == ("pause" in edit):
        raise EditError("give either 'start' or 'pause' (seconds)")
    if "pause" in edit:
        return pb.retime_line(project, i, pause=round(_seconds(edit, "pause") / SNAP_SECONDS) * SNAP_SECONDS)
    start = round(round(_seconds(edit, "start") / SNAP_SECONDS) * SNAP_SECONDS, 3)
    earliest = earliest_start(project, i)
    if start <= earliest + 1e-6:  # never before the previous beat ends: butt up against it
        return pb.retime_line(project, i, pause=0.0)
    return pb.retime_line(project, i, start=start)


def earliest_start(project: "pb.Project", index: int) -> float:
    """Where beat `index` would start with no pause (the end of the beat before it)."""
    flush = pb.retime_line(project, index, pause=0.0)
    return next(t.start for t in pb.estimate_timeline(flush) if t.beat_index == index)


# Runs once when the gr.HTML mounts (`element` is the component; its content is replaced on every
# render, so the listeners are delegated). Pointer events, not HTML5 drag-and-drop: they follow the
# mouse, pen and touch alike and let the block move under the pointer while dragging.
DRAG_JS = r"""
const box = () => document.querySelector('#timeline-edit textarea, #timeline-edit input');
let drag = null;
const clear = () => {
  if (!drag) return;
  drag.tl.querySelectorAll('.nava-drop-target').forEach(l => l.classList.remove('nava-drop-target'));
  drag.clip.classList.remove('nava-dragging');
  drag = null;
};
const laneAt = (tl, y) => {
  let best = null, dist = Infinity;
  tl.querySelectorAll('.nava-lane').forEach(l => {
    const r = l.getBoundingClientRect();
    const d = y < r.top ? r.top - y : y > r.bottom ? y - r.bottom : 0;
    if (d < dist) { dist = d; best = l; }
  });
  return dist <= 20 ? best : null;
};
element.addEventListener('pointerdown', e => {
  const clip = e.target.closest('.nava-clip');
  if (!clip || e.button !== 0) return;
  e.preventDefault();
  clip.setPointerCapture(e.pointerId);
  const tl = clip.closest('.nava-timeline');
  drag = {clip, tl, lane: clip.closest('.nava-lane'), x0: e.clientX, y0: e.clientY, dx: 0, dy: 0};
  clip.classList.add('nava-dragging');
});
element.addEventListener('pointermove', e => {
  if (!drag) return;
  drag.dx = e.clientX - drag.x0; drag.dy = e.clientY - drag.y0;
  drag.clip.style.transform = `translate(${drag.dx}px, ${drag.dy}px)`;
  const lane = laneAt(drag.tl, e.clientY);
  drag.tl.querySelectorAll('.nava-lane').forEach(l => l.classList.toggle('nava-drop-target', l === lane && l !== drag.lane));
});
element.addEventListener('lostpointercapture', e => {
  if (drag && e.target === drag.clip && !drag.dropped) { drag.clip.style.transform = ''; clear(); }
});
element.addEventListener('pointerup', e => {
  if (!drag) return;
  const d = drag; d.dropped = true;
  const clip = d.clip, tl = d.tl;
  const end = parseFloat(tl.dataset.end), width = d.lane.getBoundingClientRect().width;
  const beat = parseInt(clip.dataset.beat), start0 = parseFloat(clip.dataset.start);
  const dur = parseFloat(clip.dataset.end) - start0;
  const t = Math.max(0, start0 + d.dx / width * end);
  const edits = [];
  const lane = laneAt(tl, e.clientY);
  if (lane && lane !== d.lane && lane.dataset.speaker) edits.push({op: 'reassign', index: beat, speaker: lane.dataset.speaker});
  // reorder when the block's middle passes another line's middle (lines play one after another)
  const lines = [...tl.querySelectorAll('.nava-clip')].filter(c => c !== clip)
    .map(c => ({beat: parseInt(c.dataset.beat), mid: (parseFloat(c.dataset.start) + parseFloat(c.dataset.end)) / 2}))
    .sort((a, b) => a.beat - b.beat);
  const mid = t + dur / 2;
  const rank0 = lines.filter(o => o.beat < beat).length, rank = lines.filter(o => o.mid <= mid).length;
  let at = beat;
  if (rank < rank0) at = lines[rank].beat;  // now before that line
  else if (rank > rank0) at = lines[rank - 1].beat;  // now after that line
  if (at !== beat) edits.push({op: 'move', index: beat, to: at});
  if (Math.abs(d.dx) >= 4 || at !== beat) edits.push({op: 'retime', index: at, start: Math.round(t * 10) / 10});
  const b = box();
  if (!edits.length || !b) { clip.style.transform = ''; clear(); return; }
  clip.classList.add('nava-pending');
  clear();
  b.value = JSON.stringify({edits, seq: Date.now()});
  b.dispatchEvent(new Event('input', {bubbles: true}));
});
element.addEventListener('pointercancel', () => { if (drag) { drag.clip.style.transform = ''; clear(); } });
"""

DRAG_CSS = """
.nava-clip {touch-action: none; user-select: none;}
.nava-clip.nava-dragging {cursor: grabbing; opacity: .85; z-index: 5; box-shadow: 0 4px 12px rgba(0,0,0,.3);}
.nava-clip.nava-pending {opacity: .6;}
.nava-lane.nava-drop-target {background: #dbeafe; outline: 2px dashed #2563eb;}
.nava-tl-hint {font-size: 12px; color: #6b7280; margin-top: 4px;}
"""
