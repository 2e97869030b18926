"""Low-level text facts shared by compiler, parser, lint and timeline: spans, tags, units, tokens.

Kept in one place so every module agrees on what a span is and how long a line takes to say.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<S>", "<E>"
SPAN_RE = re.compile(r"<S>(.*?)<E>", re.DOTALL)
# Anything that looks like a span tag, well-formed or not: <S>, </S>, < s >, <E/>, ...
TAG_LIKE_RE = re.compile(r"<\s*/?\s*[SsEe]\s*/?\s*>")
EXTRA_ID_RE = re.compile(r"<extra_id_\d+>")
CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")

# Speaking rates: English in words per second, Chinese in characters per second.
WORDS_PER_SECOND = {"slow": 2.2, "normal": 3.0, "fast": 3.8}
CHARS_PER_SECOND = {"slow": 3.5, "normal": 4.5, "fast": 5.5}
LINE_OVERHEAD_S = 0.25  # breath / onset per line

TOKEN_BUDGET = 512  # umT5 text_len of the release


def detect_language(text: str) -> str:
    """'zh' when CJK characters dominate the non-space letters, else 'en'."""
    cjk = len(CJK_RE.findall(text))
    latin = sum(len(w) for w in WORD_RE.findall(text))
    return "zh" if cjk and cjk * 2 >= latin else "en"


def spans(text: str) -> list[str]:
    """Texts inside well-formed `<S>...<E>` pairs, in order."""
    return SPAN_RE.findall(text)


def split_spans(text: str) -> tuple[list[str], list[str]]:
    """(surrounding segments, span texts); len(segments) == len(spans) + 1."""
    segments: list[str] = []
    found: list[str] = []
    pos = 0
    for match in SPAN_RE.finditer(text):
        segments.append(text[pos:match.start()])
        found.append(match.group(1))
        pos = match.end()
    segments.append(text[pos:])
    return segments, found


def speech_seconds(text: str, rate: str = "normal") -> float:
    """Estimated time to say `text`: CJK characters at the Chinese rate plus words at the English rate."""
    cjk = len(CJK_RE.findall(text))
    words = len(WORD_RE.findall(CJK_RE.sub(" ", text)))
    rate = rate if rate in WORDS_PER_SECOND else "normal"
    if cjk == 0 and words == 0:
        return 0.0
    return cjk / CHARS_PER_SECOND[rate] + words / WORDS_PER_SECOND[rate] + LINE_OVERHEAD_S


def estimate_tokens(text: str) -> int:
    """Conservative (over-)estimate of umT5 tokens; the engine does the exact count.

    One token per CJK character, 1.5 per Latin word, one per other symbol, plus the
    `<extra_id_2>` the engine inserts after each `<S>` and the end-of-sequence token.
    """
    n_spans = text.count(OPEN)
    rest = CJK_RE.sub(" ", text)
    cjk = len(CJK_RE.findall(text))
    words = len(WORD_RE.findall(rest))
    symbols = len(re.findall(r"[^\sA-Za-z0-9'’]", WORD_RE.sub(" ", rest)))
    return int(cjk + 1.5 * words + 0.5 + symbols + n_spans + 1)
