"""Structured findings for prompts and projects, caught before any GPU time is spent.

Each check has its own `code` so the studio can highlight the right control and tests can tell
the findings apart; `fix` says what to do in plain words.
"""

from __future__ import annotations

import math

import re
from dataclasses import dataclass

from .compiler import compile_project
from .schema import Project
from .text import (CHARS_PER_SECOND, CLOSE, EXTRA_ID_RE, OPEN, SPAN_RE, TAG_LIKE_RE, TOKEN_BUDGET,
                   WORDS_PER_SECOND, estimate_tokens, speech_seconds)
from .timeline import estimate_timeline

MAX_SPEAKERS = 3  # the release's multi-speaker demos use two; beyond three voices get confused
TOKEN_WARN = int(TOKEN_BUDGET * 0.9)

_SAY_EN = (r"(?:says?|said|saying|asks?|asked|answers?|answered|repl(?:y|ies|ied)|shouts?|shouted|"
           r"whispers?|whispered|yells?|yelled|responds?|responded|adds?|added|continues?|exclaims?|"
           r"calls? out|murmurs?|tells?)")
_QUOTE_OPEN = "\"“「『‘"
QUOTED_SPEECH_RE = re.compile(
    rf"(?:\b{_SAY_EN}\b[^\"“「『‘<>.!?。]{{0,40}}?[:：,，]?\s*[{_QUOTE_OPEN}])"
    rf"|(?:(?:说道|说|问道|问|回答道?|回应道?|喊道|大喊|低声道|开口|答道|道)\s*[:：，,]?\s*[{_QUOTE_OPEN}])"
    rf"|(?:[:：]\s*[{_QUOTE_OPEN}])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Finding:
    """One problem: severity 'error' | 'warning' | 'info', where it is, what is wrong, how to fix it."""

    severity: str
    where: str
    message: str
    fix: str
    code: str = ""


def _outside_spans(text: str) -> list[tuple[int, str]]:
    """(offset, text) pieces outside well-formed spans."""
    out, pos = [], 0
    for m in SPAN_RE.finditer(text):
        out.append((pos, text[pos:m.start()]))
        pos = m.end()
    out.append((pos, text[pos:]))
    return out


def _tag_findings(text: str) -> list[Finding]:
    found: list[Finding] = []
    for m in EXTRA_ID_RE.finditer(text):
        found.append(Finding("error", f"char {m.start()}", f"stray sentinel token {m.group(0)} in the prompt",
                             "remove it: the engine inserts <extra_id_2> after each <S> itself", "stray-extra-id"))
    depth = 0
    open_at = -1
    for m in TAG_LIKE_RE.finditer(text):
        tag = m.group(0)
        where = f"char {m.start()}"
        if tag not in (OPEN, CLOSE):
            found.append(Finding("error", where, f"malformed span tag {tag!r}",
                                 "write spans exactly as <S>line<E> (capital S and E, no slash, no spaces)",
                                 "malformed-tag"))
            continue
        if tag == OPEN:
            if depth:
                found.append(Finding("error", where, f"nested span: <S> opened again before the <S> at char "
                                     f"{open_at} was closed", "close each line with <E> before the next <S>",
                                     "nested-span"))
                continue
            depth += 1
            open_at = m.start()
        else:
            if depth == 0:
                found.append(Finding("error", where, "unbalanced tags: <E> without an opening <S>",
                                     "add <S> before the spoken text or remove the extra <E>", "unbalanced-close"))
            else:
                depth -= 1
    if depth:
        found.append(Finding("error", f"char {open_at}", "unbalanced tags: <S> is never closed with <E>",
                             "end the spoken line with <E>", "unbalanced-open"))
    for i, span in enumerate(SPAN_RE.findall(text)):
        if not span.strip():
            found.append(Finding("warning", f"span {i + 1}", "empty span <S><E>",
                                 "put the spoken words inside, or remove the span", "empty-span"))
    return found


def _quoted_speech(text: str) -> list[Finding]:
    found = []
    for offset, piece in _outside_spans(text):
        for m in QUOTED_SPEECH_RE.finditer(piece):
            found.append(Finding("error", f"char {offset + m.start()}",
                                 "spoken text outside spans: quoted speech after a say-verb is not wrapped in "
                                 "<S>...<E>, so it will not be voiced (or the description gets read aloud)",
                                 "replace the quotes with <S>...<E> around the exact words", "speech-outside-span"))
    return found


def _token_findings(text: str) -> list[Finding]:
    tokens = estimate_tokens(text)
    if tokens > TOKEN_BUDGET:
        cut = next((i for i in range(0, len(text), 8) if estimate_tokens(text[:i]) > TOKEN_BUDGET), len(text))
        last_span_end = text.rfind(CLOSE)
        severity = "error" if 0 <= cut <= last_span_end else "warning"
        return [Finding(severity, "prompt", f"prompt too long: about {tokens} tokens (conservative estimate) "
                        f"for umT5's {TOKEN_BUDGET}-token budget; text after about char {cut} may be cut"
                        + (", including dialogue" if severity == "error" else ""),
                        "shorten descriptions (keep the spoken lines); the engine reports the exact count",
                        "too-long")]
    if tokens > TOKEN_WARN:
        return [Finding("info", "prompt", f"prompt is close to the budget: about {tokens} of {TOKEN_BUDGET} tokens",
                        "keep additions short", "near-budget")]
    return []


def _secs(seconds: float) -> str:
    """A clip length as a person reads it: 2.04167 -> '2.04'."""
    return f"{round(seconds, 2):g}"


def _over(seconds: float) -> str:
    """A time that overruns the clip, rounded up so it never reads as shorter than the clip: 2.041 -> '2.1'."""
    return f"{math.ceil(seconds * 10 - 1e-9) / 10:.1f}"


def _fit_finding(needed: float, seconds: float, where: str, rate_note: str) -> list[Finding]:
    if needed > seconds + 1e-6:
        return [Finding("error", where, f"dialogue cannot fit: it needs about {_over(needed)} s {rate_note} "
                        f"but the clip is {_secs(seconds)} s", "shorten or cut lines, speak faster, or make the clip longer",
                        "dialogue-too-long")]
    return []


def lint_text(text: str, seconds: float) -> list[Finding]:
    """Check a raw prompt: tags, speech outside spans, length vs clip duration, token budget."""
    found = _tag_findings(text) + _quoted_speech(text)
    needed = sum(speech_seconds(s) for s in SPAN_RE.findall(text))
    rate_note = (f"at a normal speaking rate ({WORDS_PER_SECOND['normal']} words/s, "
                 f"{CHARS_PER_SECOND['normal']} Chinese characters/s)")
    found += _fit_finding(needed, seconds, "dialogue", rate_note)
    found += _token_findings(text)
    return found


def lint_project(project: Project, seconds: float | None = None) -> list[Finding]:
    """Check a project (and its compiled text): speakers, voices, timing, tags typed into lines."""
    seconds = project.seconds if seconds is None else seconds
    found: list[Finding] = []
    lines = project.lines()
    for i, beat in enumerate(project.timeline):
        where = f"beat {i + 1}"
        if TAG_LIKE_RE.search(beat.text) or EXTRA_ID_RE.search(beat.text):
            found.append(Finding("error", where, "tag inside the beat text; the compiler adds <S>...<E> itself",
                                 "remove <S>, <E> and similar tags from the text", "tag-in-text"))
        if beat.kind != "line":
            continue
        if not beat.speaker:
            found.append(Finding("error", where, "span with no speaker: this line is not assigned to anyone",
                                 "pick a speaker from the cast", "no-speaker"))
        elif project.cast_member(beat.speaker) is None:
            found.append(Finding("error", where, f"span with no speaker: {beat.speaker!r} is not in the cast",
                                 "add them to the cast or reassign the line", "no-speaker"))
        if not beat.text.strip():
            found.append(Finding("warning", where, "empty line", "type the words or delete the line", "empty-span"))
    speakers = list(dict.fromkeys(b.speaker for b in lines if b.speaker))
    for sid in speakers:
        member = project.cast_member(sid)
        if member is not None and not member.voice_file:
            found.append(Finding("warning", f"cast {sid}", f"speaker {member.name or sid!r} has lines but no "
                                 "reference voice; NAVA will pick a voice from the description alone",
                                 "add a reference voice file, or accept an unconditioned voice", "no-voice"))
    if len(speakers) > MAX_SPEAKERS:
        found.append(Finding("warning", "cast", f"too many speakers for one clip: {len(speakers)} "
                             f"(at most {MAX_SPEAKERS} stay distinct)", "split the scene into several clips",
                             "too-many-speakers"))
    timed = estimate_timeline(project)
    if timed and timed[-1].end > seconds + 1e-6:
        worst = next(t for t in timed if t.end > seconds + 1e-6)
        found += [Finding("error", f"beat {worst.beat_index + 1}",
                          f"dialogue cannot fit: line {worst.line_index + 1} ends at about {_over(worst.end)} s at the "
                          f"stated speaking rate, but the clip is {_secs(seconds)} s",
                          "shorten lines or pauses, speak faster, or make the clip longer", "dialogue-too-long")]
    if project.raw is not None and len(project.raw) - 1 != len(lines):
        found.append(Finding("warning", "raw text", f"imported text has {len(project.raw) - 1} span slot(s) but "
                             f"the timeline has {len(lines)} line(s); extra lines are appended after the last span",
                             "check the compiled prompt reads naturally", "raw-mismatch"))
    text = compile_project(project).text
    found += [f for f in _tag_findings(text) + _quoted_speech(text) + _token_findings(text)
              if not any(f.code == g.code for g in found if g.code == "tag-in-text")]
    return found
