"""Prompt rewriting with any LLM: the guarantees, the retry rule and the backend interface.

NAVA was trained on long, dense captions, so a short idea renders better once an LLM has expanded it.
An LLM is also free to paraphrase what people say, which would change the audio and break the voice
binding (the i-th reference voice goes to the i-th `<S>` span). So a rewrite is accepted only when
every spoken line comes back byte-for-byte and in order, each line is still introduced by its own
speaker, thinking traces are gone, and the text is one paragraph in the requested language. Otherwise
the rewriter asks again (a bounded number of times) and then keeps the original, saying why.

Pure Python: the backends (an OpenAI-compatible endpoint in `rewrite_endpoint`, a local transformers
model in `nava_core.rewrite_local`) plug in through the `ChatBackend` protocol.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

from .text import EXTRA_ID_RE, SPAN_RE, TAG_LIKE_RE, TOKEN_BUDGET, detect_language, estimate_tokens, split_spans

log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 3
MAX_ATTEMPTS = 10
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (简体中文)"}

SYSTEM_PROMPT = """\
You rewrite short video ideas into the dense caption an audio-video generator was trained on.

Write ONE paragraph of continuous prose in the language you are asked for. Cover, in this order: the
visual style and the setting; each subject with their appearance and where they are on screen; a
timeline of what happens, in order; the camera (shot size, angle, movement) and composition; then the
sound: each voice (who, where on screen, what kind of voice), the ambience, sound effects, music or
explicitly no music, and the mix.

Spoken lines are sacred. Every line appears in the input as <S>line<E>. Copy each one exactly,
character for character, untranslated, still wrapped as <S>line<E>, in the same order. Never add,
drop, merge, split, reword, translate or re-punctuate a line. Right before each line, name its speaker
with exactly the name you were given, so nobody can mistake who says it. If the input has no lines,
write no <S> or <E> at all and say plainly that there is no dialogue and no narration.

Output only the paragraph: no title, no list, no markdown, no quotes around it, no notes, no reasoning.
"""


class RewriteError(Exception):
    """A backend could not produce text. `kind` is one of KINDS; the message is meant for people."""

    KINDS = ("unreachable", "model_not_found", "auth", "timeout", "rate_limit", "bad_response", "cancelled",
             "config", "server")
    TRANSIENT = ("timeout", "rate_limit", "server", "bad_response")

    def __init__(self, kind: str, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind if kind in self.KINDS else "bad_response"
        self.retry_after_s = retry_after_s

    @property
    def transient(self) -> bool:
        """Worth another attempt (the same request may work a moment later)."""
        return self.kind in self.TRANSIENT


Message = dict[str, str]
TextCallback = Callable[[str], None]


class CancelLike(Protocol):
    @property
    def cancelled(self) -> bool: ...


class ChatBackend(Protocol):
    """Something that answers a chat. Implementations: EndpointBackend, nava_core.rewrite_local.LocalBackend."""

    def complete(self, messages: list[Message], *, attempt: int = 0, cancel: CancelLike | None = None,
                 on_text: TextCallback | None = None) -> str:
        """The assistant's reply (raw; may contain thinking). Raises RewriteError in plain words."""
        ...

    def release_gpu(self) -> None:
        """Give the accelerator back (NAVA is about to render); the next `complete` reclaims it."""
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class RewriteResult:
    """What to use (`text`), whether it is the rewrite, how many attempts it took and why, in words."""

    text: str
    original: str
    accepted: bool
    attempts: int
    message: str
    problems: tuple[str, ...] = ()
    error_kind: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "accepted": self.accepted, "attempts": self.attempts, "message": self.message,
                "problems": list(self.problems), "error_kind": self.error_kind}


# ---- cleaning and checking ---------------------------------------------------------------------------

_TRACE_BLOCK_RE = re.compile(r"<(think|thinking|reasoning|analysis)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_TRACE_CLOSE_RE = re.compile(r"</(think|thinking|reasoning|analysis)>", re.IGNORECASE)
_TRACE_OPEN_RE = re.compile(r"<(think|thinking|reasoning|analysis)>", re.IGNORECASE)
_FENCE_RE = re.compile(r"^```[a-zA-Z]*\s*\n?|\n?```\s*$")
_PREAMBLE_RE = re.compile(r"^\s*(?:\*\*)?(?:rewritten prompt|rewrite|prompt|caption|改写后的提示词|改写)(?:\*\*)?\s*[:：]\s*",
                          re.IGNORECASE)
_LIST_LINE_RE = re.compile(r"^\s*(?:[-*•]\s|#{1,6}\s|\d+[.)]\s)")


def strip_thinking(text: str) -> str:
    """Remove reasoning: whole `<think>...</think>` blocks, and everything up to a lone closing tag
    (chat templates such as Qwen3-Thinking open the block in the prompt, so only `</think>` comes back)."""
    text = _TRACE_BLOCK_RE.sub("", text)
    closes = list(_TRACE_CLOSE_RE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opened = _TRACE_OPEN_RE.search(text)
    if opened:  # a trace that never closed (cut off): nothing after it is the answer
        text = text[:opened.start()]
    return text


def clean_output(text: str) -> str:
    """The answer without thinking, code fences or a 'Rewritten prompt:' label, as one paragraph.

    Whitespace is collapsed only outside `<S>...<E>` spans, so lines stay byte-for-byte.
    """
    text = strip_thinking(text).strip()
    text = _FENCE_RE.sub("", text).strip()
    text = _PREAMBLE_RE.sub("", text, count=1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    segments, lines = split_spans(text)
    out = [_one_line(segments[0])]
    for line, seg in zip(lines, segments[1:]):
        out.append(f"<S>{line}<E>{_one_line(seg)}")
    return "".join(out).strip()


def _one_line(prose: str) -> str:
    """Collapse whitespace, keeping one space where the prose touched a span with a space."""
    if not prose.strip():
        return " " if prose else ""
    return (" " if prose[0].isspace() else "") + " ".join(prose.split()) + (" " if prose[-1].isspace() else "")


def _is_list(raw: str) -> bool:
    lines = [ln for ln in strip_thinking(raw).strip().splitlines() if ln.strip()]
    return len(lines) > 1 and sum(bool(_LIST_LINE_RE.match(ln)) for ln in lines) >= 2


def prose_of(text: str) -> str:
    """The text outside the spoken lines (what the language check looks at)."""
    return " ".join(split_spans(text)[0])


def resolve_language(language: str, original: str) -> str:
    """'auto' means the language the original is written in (outside its spoken lines)."""
    if language in LANGUAGE_NAMES:
        return language
    if language not in ("", "auto"):
        raise RewriteError("config", f"language must be auto, {', '.join(LANGUAGE_NAMES)}; got {language!r}")
    prose = prose_of(original)
    return detect_language(prose if prose.strip() else original)


def _name_pattern(name: str) -> re.Pattern[str]:
    esc = re.escape(name.strip())
    return re.compile(esc if re.search(r"[^\x00-\x7f]", name) else rf"(?<![A-Za-z]){esc}(?![A-Za-z])", re.IGNORECASE)


def binding_problems(text: str, speakers: Sequence[str]) -> list[str]:
    """Each line must be introduced by its own speaker: the last speaker named between the previous line
    and this one is this line's speaker (no name needed when the same person keeps talking).

    Checked only when at least two different speakers have usable names (three characters or more,
    so a one-letter id cannot match an article)."""
    names = [s.strip() for s in speakers]
    distinct = {n.lower() for n in names if len(n) >= 3}
    if len(distinct) < 2:
        return []
    patterns = {n.lower(): _name_pattern(n) for n in names if len(n) >= 3}
    segments, lines = split_spans(text)
    problems: list[str] = []
    for i, line in enumerate(lines):
        want = names[i].lower() if i < len(names) else ""
        if want not in patterns:
            continue
        seg = segments[i]
        last: tuple[int, int, str] | None = None  # (end, length, name): the latest, then the longest
        for key, pattern in patterns.items():
            for m in pattern.finditer(seg):
                cand = (m.end(), m.end() - m.start(), key)
                if last is None or cand[:2] > last[:2]:
                    last = cand
        if last is None:
            if i > 0 and names[i - 1].lower() == want:
                continue
            problems.append(f"line {i + 1} ({_short(line)}) is not introduced by its speaker {names[i]!r}")
        elif last[2] != want:
            problems.append(f"line {i + 1} ({_short(line)}) is given to {last[2]!r} instead of {names[i]!r}")
    return problems


def _short(line: str, n: int = 30) -> str:
    return repr(line if len(line) <= n else line[: n - 1] + "…")


def check_rewrite(original: str, candidate: str, *, language: str = "auto",
                  speakers: Sequence[str] | None = None, raw: str | None = None) -> list[str]:
    """Why `candidate` (already cleaned) may not replace `original`; empty when it may."""
    problems: list[str] = []
    if not candidate.strip():
        return ["the model returned no text"]
    if raw is not None and _is_list(raw):
        problems.append("it is a list or has headings, not one paragraph")
    want, got = SPAN_RE.findall(original), SPAN_RE.findall(candidate)
    if want != got:
        if len(want) != len(got):
            problems.append(f"it has {len(got)} spoken line(s) instead of {len(want)}")
        for i, (a, b) in enumerate(zip(want, got)):
            if a != b:
                problems.append(f"line {i + 1} changed: {_short(a)} became {_short(b)}")
                break
    stray = len(TAG_LIKE_RE.findall(candidate)) - 2 * len(got)
    if stray:
        problems.append(f"it has {stray} stray <S>/<E> tag(s) outside well-formed lines")
    if EXTRA_ID_RE.search(candidate):
        problems.append("it contains <extra_id_N> tokens, which the text encoder reserves")
    if speakers:
        problems.extend(binding_problems(candidate, speakers))
    lang = resolve_language(language, original)
    prose = prose_of(candidate)
    if prose.strip() and detect_language(prose) != lang:
        problems.append(f"it is not written in {LANGUAGE_NAMES[lang]}")
    tokens = estimate_tokens(candidate)
    if tokens > TOKEN_BUDGET:
        problems.append(f"it is about {tokens} tokens, over the text encoder's {TOKEN_BUDGET}")
    return problems


# ---- the rewriter ---------------------------------------------------------------------------------------


def load_system_prompt(path: str | Path | None) -> str:
    """The project's system prompt, or the text of `path` (e.g. the release's template) when given."""
    if not path:
        return SYSTEM_PROMPT
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RewriteError("config", f"cannot read the system prompt file {p}: {e.strerror or e}; "
                                     "fix the path or leave it empty to use the built-in prompt") from None
    if not text.strip():
        raise RewriteError("config", f"the system prompt file {p} is empty")
    return text


def user_message(text: str, language: str, speakers: Sequence[str] | None = None,
                 problems: Sequence[str] = ()) -> str:
    """The request the model sees: the target language, who says each line, and why the last try failed."""
    parts = [f"Write the paragraph in {LANGUAGE_NAMES[language]}."]
    lines = SPAN_RE.findall(text)
    if lines:
        who = [f"{i + 1}. {speakers[i] if speakers and i < len(speakers) and speakers[i] else 'speaker'}: <S>{ln}<E>"
               for i, ln in enumerate(lines)]
        parts.append(f"Keep these {len(lines)} line(s) exactly, in this order, each after its speaker's name:\n"
                     + "\n".join(who))
    else:
        parts.append("There are no spoken lines: write no <S> or <E> tags.")
    if problems:
        parts.append("Your previous answer was refused because " + "; ".join(problems) + ". Fix that.")
    parts.append("Input:\n" + text)
    return "\n\n".join(parts)


@dataclass
class Rewriter:
    """One backend, the guarantees and the retry rule. Thread-safe if the backend is."""

    backend: ChatBackend
    max_attempts: int = DEFAULT_ATTEMPTS
    system_prompt: str = SYSTEM_PROMPT
    language: str = "auto"
    retry_wait_s: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= int(self.max_attempts) <= MAX_ATTEMPTS:
            raise RewriteError("config", f"attempts must be from 1 to {MAX_ATTEMPTS}; got {self.max_attempts!r}")

    def rewrite(self, text: str, *, language: str | None = None, speakers: Sequence[str] | None = None,
                cancel: CancelLike | None = None, on_text: TextCallback | None = None) -> RewriteResult:
        """Rewrite `text`; on failure return it unchanged with the reason. Raises RewriteError only for
        'cancelled' (the caller asked to stop) and 'config' (nothing can work until a setting changes)."""
        if not text.strip():
            raise RewriteError("config", "there is nothing to rewrite: the prompt is empty")
        lang = resolve_language(language or self.language, text)
        problems: list[str] = []
        last_error: RewriteError | None = None
        for attempt in range(1, self.max_attempts + 1):
            if cancel is not None and cancel.cancelled:
                raise RewriteError("cancelled", "rewrite cancelled")
            messages = [{"role": "system", "content": self.system_prompt},
                        {"role": "user", "content": user_message(text, lang, speakers, problems)}]
            try:
                raw = self.backend.complete(messages, attempt=attempt - 1, cancel=cancel, on_text=on_text)
            except RewriteError as e:
                if e.kind in ("cancelled", "config"):
                    raise
                last_error = e
                log.info("rewrite attempt %d failed: %s", attempt, e)
                if not e.transient:
                    return self._kept(text, attempt, f"kept the original prompt: {e}", (), e.kind)
                if e.retry_after_s and attempt < self.max_attempts:
                    self.retry_wait_s(min(e.retry_after_s, 30.0))
                continue
            last_error = None
            candidate = clean_output(raw)
            problems = check_rewrite(text, candidate, language=lang, speakers=speakers, raw=raw)
            if not problems:
                return RewriteResult(candidate, text, True, attempt, f"rewrite accepted on attempt {attempt}")
            log.info("rewrite attempt %d refused: %s", attempt, "; ".join(problems))
        if last_error is not None:
            return self._kept(text, self.max_attempts, f"kept the original prompt: {last_error}", (),
                              last_error.kind)
        return self._kept(text, self.max_attempts,
                          f"kept the original prompt: {self.max_attempts} rewrite(s) did not pass the checks "
                          f"(last: {'; '.join(problems)})", tuple(problems), "")

    @staticmethod
    def _kept(text: str, attempts: int, message: str, problems: tuple[str, ...], kind: str) -> RewriteResult:
        return RewriteResult(text, text, False, attempts, message, problems, kind)
