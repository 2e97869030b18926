"""Rewrite backend that runs a transformers causal LM in this process (e.g. Qwen3-4B-Thinking-2507).

It lives in nava_core, not prompt_builder, because it needs torch. The model is loaded on the first
rewrite, not at start-up, and `release_gpu()` moves it to the CPU before NAVA renders (the studio's
render worker and `nava-render --rewrite` call it), so a 4B rewriter and the 6.3B NAVA never have to
share an accelerator; the next rewrite moves it back.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator

from prompt_builder.rewrite import CancelLike, Message, RewriteError, TextCallback

log = logging.getLogger(__name__)

_THINK_TAG_RE = re.compile(r"</?(think|thinking|reasoning|analysis)>", re.IGNORECASE)

# The release's sampling for its rewriter (temperature 0.3, top-p 0.75, top-k 20).
RELEASE_SAMPLING = {"do_sample": True, "temperature": 0.3, "top_p": 0.75, "top_k": 20, "repetition_penalty": 1.05}


@dataclass
class LocalBackend:
    """`model` is a local folder or a Hub id (a local folder in offline mode), or loaded objects.

    `device` "auto" means CUDA when present, else CPU. Each attempt reseeds with `seed + attempt`, so
    retries differ while staying reproducible. One generation at a time (a lock): concurrent callers
    queue instead of fighting over the model."""

    serial: ClassVar[bool] = True  # one generation at a time: batch callers need not send more

    model: str | Any
    tokenizer: Any = None
    device: str = "auto"
    max_new_tokens: int = 2048
    generation_kwargs: dict[str, Any] = field(default_factory=lambda: dict(RELEASE_SAMPLING))
    seed: int = 42
    dtype: str = "auto"
    # the lock a NAVA render holds for its whole length: the LM uses the GPU only while holding it too,
    # and generates on the CPU when a render has it (so the two never share the accelerator)
    gpu_lock: Any = None
    _model: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            self._model = self.model
        elif not self.model.strip():
            raise RewriteError("config", "no local rewrite model given: name a folder or a Hub id")

    # ---- loading and placement ---------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._model is not None and self.tokenizer is not None

    def _wanted_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def load(self, device: str | None = None) -> None:
        """Load the tokenizer and model (once), and put the model on `device` (default: its own)."""
        if self._model is None or self.tokenizer is None:
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError:
                raise RewriteError("config", "the local rewriter needs transformers: pip install transformers") from None
            ref = str(self.model)
            log.info("loading the local rewrite model %s", ref)
            try:
                if self.tokenizer is None:
                    self.tokenizer = AutoTokenizer.from_pretrained(ref)
                if self._model is None:
                    self._model = AutoModelForCausalLM.from_pretrained(ref, dtype=self.dtype).eval()
            except (OSError, ValueError) as e:
                raise RewriteError("model_not_found", f"cannot load the local rewrite model {ref!r}: "
                                   f"{str(e).splitlines()[0]}; give a folder with config.json and weights, "
                                   "or a Hub id that is downloaded (offline mode needs it in the cache)") from None
        target = device or self._wanted_device()
        if str(self._model.device).split(":")[0] != target.split(":")[0]:
            self._model.to(target)

    def release_gpu(self) -> None:
        """Move the model to the CPU and return its accelerator memory (NAVA is about to render).

        Called with the render's `gpu_lock` held: the model cannot be moving onto the GPU meanwhile, and
        when it is already on the CPU this returns at once, even while a CPU rewrite is generating."""
        if self._model is None or str(self._model.device) == "cpu":
            return
        with self._lock:
            self._to_cpu()

    def close(self) -> None:
        """Drop the model (memory back to the system)."""
        with self._lock:
            self._to_cpu()
            self._model = None

    def _to_cpu(self) -> None:
        if self._model is None or str(self._model.device) == "cpu":
            return
        import torch

        self._model.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.info("local rewrite model moved to the CPU")

    @contextmanager
    def _device_for_now(self) -> Iterator[str]:
        """The GPU (held against renders for this generation) when free, else the CPU."""
        device = self._wanted_device()
        if device == "cpu" or self.gpu_lock is None:
            yield device
            return
        if not self.gpu_lock.acquire(blocking=False):
            log.info("NAVA is rendering: the local rewrite model runs on the CPU meanwhile")
            self._to_cpu()
            yield "cpu"
            return
        try:
            yield device
        finally:
            self.gpu_lock.release()

    # ---- ChatBackend ---------------------------------------------------------------------------------

    def _prompt_text(self, messages: list[Message]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages) + "\n\nAssistant:"

    def complete(self, messages: list[Message], *, attempt: int = 0, cancel: CancelLike | None = None,
                 on_text: TextCallback | None = None) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        with self._lock, self._device_for_now() as device:
            self.load(device)
            tok, model = self.tokenizer, self._model
            prompt = self._prompt_text(messages)
            inputs = tok(prompt, return_tensors="pt").to(model.device)
            n_in = inputs["input_ids"].shape[1]
            backend = self

            class _Watch(StoppingCriteria):
                """Stops at a cancel, and reports the text so far (the rewriter's progress)."""

                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                    stop = bool(cancel is not None and cancel.cancelled)
                    if on_text is not None and not stop:
                        on_text(tok.decode(input_ids[0, n_in:], skip_special_tokens=True))
                    return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            torch.manual_seed(backend.seed + attempt)
            try:
                with torch.no_grad():
                    out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, pad_token_id=pad,
                                         stopping_criteria=StoppingCriteriaList([_Watch()]),
                                         **self.generation_kwargs)
            except torch.cuda.OutOfMemoryError:
                raise RewriteError("config", "the local rewrite model does not fit in GPU memory next to NAVA; "
                                             "use a smaller model, device cpu, or an endpoint") from None
            if cancel is not None and cancel.cancelled:
                raise RewriteError("cancelled", "rewrite cancelled")
            text = _decode_keeping_thinking(tok, out[0][n_in:])
            if _opens_thinking(prompt):  # the template opened the trace: an answer without `</think>` is all thinking
                text = "<think>" + text
            return text


def _opens_thinking(prompt: str) -> bool:
    """Whether the chat template ends the prompt inside an open thinking block (Qwen3-Thinking does)."""
    tags = list(_THINK_TAG_RE.finditer(prompt))
    return bool(tags) and not tags[-1].group(0).startswith("</")


def _decode_keeping_thinking(tok: Any, ids: Any) -> str:
    """Decode without special tokens, except thinking tags: some tokenizers mark `</think>` special, and the
    trace remover must see where the thinking ended."""
    text = tok.decode(ids, skip_special_tokens=False)
    for special in sorted(set(getattr(tok, "all_special_tokens", []) or []), key=len, reverse=True):
        if special and not _THINK_TAG_RE.fullmatch(special):
            text = text.replace(special, "")
    return text
