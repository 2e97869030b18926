"""Estimated timing of every line and the edits the timeline UI offers (reorder, retime, reassign).

Times come from beat order, pauses and speaking rates, so the user sees before rendering whether the
dialogue fits the clip. Edit helpers return a new Project and never mutate the one given.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import RATES, Project
from .text import speech_seconds


@dataclass(frozen=True)
class TimedLine:
    """One spoken line on the clock: beat index in the timeline, span index, speaker, text, start/end (s)."""

    beat_index: int
    line_index: int
    speaker: str
    text: str
    start: float
    end: float


def estimate_timeline(project: Project) -> list[TimedLine]:
    """Start/end of every line; actions with `seconds` > 0 advance the clock, others overlap speech."""
    clock = 0.0
    out: list[TimedLine] = []
    for i, beat in enumerate(project.timeline):
        clock += beat.pause
        if beat.kind == "line":
            start = clock
            clock += speech_seconds(beat.text, beat.delivery.rate)
            out.append(TimedLine(i, len(out), beat.speaker, beat.text, round(start, 3), round(clock, 3)))
        else:
            clock += beat.seconds
    return out


def _check_index(project: Project, index: int) -> None:
    if not 0 <= index < len(project.timeline):
        raise IndexError(f"beat {index} does not exist (timeline has {len(project.timeline)} beats)")


def move_line(project: Project, src: int, dst: int) -> Project:
    """Move beat `src` to position `dst` (indices into the timeline); voices follow their lines."""
    _check_index(project, src)
    _check_index(project, dst)
    new = project.copy()
    beat = new.timeline.pop(src)
    new.timeline.insert(dst, beat)
    return new


def reassign_line(project: Project, index: int, speaker: str) -> Project:
    """Give line beat `index` to another speaker (must be in the cast)."""
    _check_index(project, index)
    if project.timeline[index].kind != "line":
        raise ValueError(f"beat {index} is an action, not a line")
    if project.cast_member(speaker) is None:
        raise ValueError(f"speaker {speaker!r} is not in the cast; add them first")
    new = project.copy()
    new.timeline[index].speaker = speaker
    return new


def retime_line(project: Project, index: int, *, start: float | None = None, pause: float | None = None,
                rate: str | None = None) -> Project:
    """Change a beat's pause, speaking rate, or move its start to `start` seconds (sets the pause)."""
    _check_index(project, index)
    if start is not None and pause is not None:
        raise ValueError("give either start or pause, not both")
    new = project.copy()
    beat = new.timeline[index]
    if rate is not None:
        if rate not in RATES:
            raise ValueError(f"rate must be one of {RATES}")
        beat.delivery.rate = rate
    if pause is not None:
        if pause < 0:
            raise ValueError("pause must be >= 0")
        beat.pause = float(pause)
    if start is not None:
        beat.pause = 0.0
        earliest = _clock_before(new, index)
        if start < earliest - 1e-9:
            raise ValueError(f"beat {index} cannot start before {earliest:.2f} s (the previous beat ends there); "
                             "move it earlier in the timeline instead")
        beat.pause = round(start - earliest, 3)
    return new


def _clock_before(project: Project, index: int) -> float:
    clock = 0.0
    for beat in project.timeline[:index]:
        clock += beat.pause
        clock += speech_seconds(beat.text, beat.delivery.rate) if beat.kind == "line" else beat.seconds
    return clock
