"""Optional prompt enhancer: a causal LM expands a short idea into NAVA's dense form.

It follows the release's rule: the rewrite must keep the same number of `<S>...<E>` spans (spans
are the user's exact lines and bind voices by order); retry up to `max_attempts` times, then keep the
original and say so. torch/transformers are imported only when the enhancer is actually used.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from .text import SPAN_RE

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "Rewrite the user's short video idea as one dense paragraph for an audio-video generator, in the "
    "user's language. Cover, in order: style and scene, subjects with their screen positions, a timeline "
    "of actions, camera and composition, then the audio design (voices, ambience, effects, music or no "
    "music, mix). Keep every spoken line verbatim, untranslated, wrapped as <S>line<E>, one pair per "
    "continuous line; never add, merge or split spans. Introduce each speaker before their line (who, "
    "where on screen, voice). If there are no lines, state explicitly that there is no dialogue and no "
    "narration. Output only the paragraph: no title, list, markdown or explanation."
)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


@dataclass(frozen=True)
class EnhanceResult:
    """Outcome: the text to use, whether the rewrite was accepted, attempts made, and a message."""

    text: str
    accepted: bool
    attempts: int
    message: str


def count_spans(text: str) -> int:
    """Number of well-formed `<S>...<E>` pairs."""
    return len(SPAN_RE.findall(text))


def clean_output(text: str) -> str:
    """Drop reasoning blocks and line breaks; the model must return a single paragraph."""
    text = _THINK_RE.sub("", text)
    if "</think>" in text:
        text = text.split("</think>", 1)[1]
    return " ".join(text.split())


class PromptEnhancer:
    """Wraps a transformers causal LM given as a local path / hub id, or as loaded objects.

    `generation_kwargs` are passed to `generate` (default: sampling as in the release); each attempt
    reseeds with `seed + attempt` so retries differ while staying reproducible.
    """

    def __init__(self, model: str | Any = "", tokenizer: Any = None, *, max_attempts: int = 5,
                 max_new_tokens: int = 1024, generation_kwargs: dict[str, Any] | None = None,
                 seed: int = 42, device: str = "cpu", system_prompt: str = SYSTEM_PROMPT) -> None:
        self._model_ref = model
        self._model = None if isinstance(model, str) else model
        self._tokenizer = tokenizer
        self.max_attempts = max_attempts
        self.max_new_tokens = max_new_tokens
        self.generation_kwargs = dict(generation_kwargs) if generation_kwargs is not None else {
            "do_sample": True, "temperature": 0.3, "top_p": 0.75, "top_k": 20, "repetition_penalty": 1.05}
        self.seed = seed
        self.device = device
        self.system_prompt = system_prompt

    def _load(self) -> None:
        if self._model is not None and self._tokenizer is not None:
            return
        if not self._model_ref:
            raise RuntimeError("no enhancer model configured; the studio works without one")
        from transformers import AutoModelForCausalLM, AutoTokenizer  # lazy: optional feature

        log.info("loading prompt enhancer %s", self._model_ref)
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self._model_ref)
        if self._model is None:
            self._model = AutoModelForCausalLM.from_pretrained(self._model_ref).to(self.device).eval()

    def _chat_text(self, idea: str) -> str:
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": idea}]
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{self.system_prompt}\n\nUser: {idea}\n\nRewrite:"

    def generate_once(self, idea: str, attempt: int = 0) -> str:
        """One rewrite (no checks). Seeded with transformers' `set_seed`; `generate` runs without gradients
        itself, so prompt_builder never imports torch."""
        from transformers import set_seed  # lazy: optional feature

        self._load()
        inputs = self._tokenizer(self._chat_text(idea), return_tensors="pt").to(self._model.device)
        set_seed(self.seed + attempt)
        kwargs = dict(self.generation_kwargs)
        pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self._tokenizer.eos_token_id
        out = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, pad_token_id=pad, **kwargs)
        new_tokens = out[0][inputs["input_ids"].shape[1]:]
        return clean_output(self._tokenizer.decode(new_tokens, skip_special_tokens=True))

    def enhance(self, idea: str) -> EnhanceResult:
        """Rewrite `idea`; accept only a non-empty rewrite with the same span count, else keep `idea`."""
        want = count_spans(idea)
        for attempt in range(1, self.max_attempts + 1):
            text = self.generate_once(idea, attempt - 1)
            got = count_spans(text)
            if text and got == want:
                return EnhanceResult(text, True, attempt, f"rewrite accepted on attempt {attempt}")
            log.info("enhancer attempt %d: %d span(s) instead of %d, retrying", attempt, got, want)
        return EnhanceResult(idea, False, self.max_attempts,
                             f"kept the original prompt: {self.max_attempts} rewrites did not keep its {want} "
                             "<S>...<E> span(s)")
