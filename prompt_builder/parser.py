"""Release-format prompt (free text with `<S>...<E>` spans) -> editable Project.

The surrounding text is kept verbatim in `Project.raw`, so importing and re-compiling an existing
prompt changes nothing until the user edits it. Speakers are guessed from the screen position
mentioned just before each span (left / right / center); the user can reassign them afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .schema import Beat, CastMember, Delivery, Project, Subject
from .text import detect_language, split_spans

_SENTENCE_END = re.compile(r"[.!?。！？](?=[^.!?。！？]*\S)")
_POS_EN = [("left", re.compile(r"\bleft\b", re.I)), ("right", re.compile(r"\bright\b", re.I)),
           ("center", re.compile(r"\b(cent(?:er|re)|middle)\b", re.I))]
_POS_ZH = [("left", re.compile(r"左")), ("right", re.compile(r"右")), ("center", re.compile(r"中央|中间"))]
_SLOW = re.compile(r"\bslow(?:ly)?\b|缓慢|慢慢|语速慢", re.I)
_FAST = re.compile(r"\b(?:quick(?:ly)?|fast|rapid(?:ly)?)\b|语速(?:较|很)?快|飞快|急促", re.I)
_NAMES = {"en": {"left": "speaker on the left", "right": "speaker on the right",
                 "center": "speaker in the center", "speaker": "speaker"},
          "zh": {"left": "左侧说话人", "right": "右侧说话人", "center": "中间说话人", "speaker": "说话人"}}


def _last_sentence(text: str) -> str:
    """The clause that introduces the next span: text after the last sentence end."""
    cut = 0
    for match in _SENTENCE_END.finditer(text):
        cut = match.end()
    return text[cut:]


def _position(intro: str, language: str) -> str:
    patterns = _POS_ZH if language == "zh" else _POS_EN
    best: tuple[int, str] | None = None
    for name, pattern in patterns:
        m = pattern.search(intro)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), name)
    return best[1] if best else ""


def _rate(intro: str) -> str:
    if _SLOW.search(intro):
        return "slow"
    if _FAST.search(intro):
        return "fast"
    return "normal"


def parse_prompt(text: str, voices: Sequence[str | None] | None = None,
                 language: str | None = None) -> Project:
    """Import a prompt; `voices` (one per span, as in the release's `spk_wavs`) fills the cast.

    Two spans guessed to be the same speaker but given different voice files become two
    speakers, so the compiled voice list always equals the one given.
    """
    segments, span_texts = split_spans(text)
    if voices is not None and len(voices) != len(span_texts):
        raise ValueError(f"{len(voices)} voice(s) given for {len(span_texts)} span(s); "
                         "the release binds one voice per <S>...<E> span, in order")
    lang = language or detect_language(text)
    names = _NAMES[lang]
    cast: list[CastMember] = []
    subjects: list[Subject] = []
    beats: list[Beat] = []
    for i, span in enumerate(span_texts):
        intro = _last_sentence(segments[i])
        position = _position(intro, lang)
        base = position or "speaker"
        voice = (voices[i] if voices is not None else None) or ""
        speaker = base
        n = 1
        while True:
            member = next((c for c in cast if c.id == speaker), None)
            if member is None or voices is None or member.voice_file == voice:
                break
            n += 1
            speaker = f"{base}_{n}"
        if member is None:
            display = names[base] if n == 1 else f"{names[base]} {n}"
            cast.append(CastMember(id=speaker, name=display, voice="", voice_file=voice))
            if position:
                subjects.append(Subject(id=speaker, description="", position=position))
        beats.append(Beat(kind="line", text=span, speaker=speaker, delivery=Delivery(rate=_rate(intro))))
    return Project(language=lang, subjects=subjects, timeline=beats, cast=cast, raw=segments)
