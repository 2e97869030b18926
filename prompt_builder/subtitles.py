"""SRT and WebVTT export of the estimated timeline (preview captions, editors' rough cut)."""

from __future__ import annotations

from .schema import Project
from .timeline import TimedLine, estimate_timeline


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _label(project: Project, line: TimedLine) -> str:
    member = project.cast_member(line.speaker)
    name = member.name if member and member.name else line.speaker
    return f"{name}: {line.text}" if name else line.text


def _cues(project: Project, seconds: float | None) -> list[tuple[float, float, str]]:
    """Cues within the clip: a line that would start after the clip ends is left out, one that runs
    past the end ends with the clip (a player shows nothing after the last frame anyway, and a cue
    past it is a lie about the video). `seconds=None` uses the project's own duration."""
    limit = project.seconds if seconds is None else seconds
    cues = []
    for line in estimate_timeline(project):
        if line.start >= limit - 0.001:
            continue
        end = min(max(line.end, line.start + 0.001), limit)
        cues.append((line.start, end, " ".join(_label(project, line).split())))
    return cues


def to_srt(project: Project, seconds: float | None = None) -> str:
    """SubRip text, one cue per line, speaker name first, no cue past `seconds` (default: the project's)."""
    blocks = [f"{i}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{text}\n"
              for i, (a, b, text) in enumerate(_cues(project, seconds), 1)]
    return "\n".join(blocks)


def to_vtt(project: Project, seconds: float | None = None) -> str:
    """WebVTT text, one cue per line, speaker name first, no cue past `seconds` (default: the project's)."""
    blocks = ["WEBVTT\n"]
    blocks += [f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{text}\n" for a, b, text in _cues(project, seconds)]
    return "\n".join(blocks)
