"""The enhancer's retry rule with a real (tiny, random) causal LM built offline."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")  # the enhancer is optional; torch ships in the dev venv
transformers = pytest.importorskip("transformers")

from prompt_builder import PromptEnhancer, count_spans  # noqa: E402
from prompt_builder.enhancer import clean_output  # noqa: E402


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 with random weights and a word-level tokenizer, saved to disk like a real model."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<unk>", "<eos>", "a", "man", "says", "hello", "quiet", "room", "camera", "light", "no", "music",
             ".", ",", ":", "the", "video", "rain", "street", "woman"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>",
                                                pad_token="<eos>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(words), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=1, eos_token_id=1)
    model = transformers.GPT2LMHeadModel(config)
    out = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


class CountingEnhancer(PromptEnhancer):
    """Counts real model calls."""

    calls = 0

    def generate_once(self, idea: str, attempt: int = 0) -> str:
        type(self).calls += 1
        return super().generate_once(idea, attempt)


def _enhancer(path: Path) -> CountingEnhancer:
    CountingEnhancer.calls = 0
    return CountingEnhancer(str(path), max_new_tokens=12,
                            generation_kwargs={"do_sample": False, "min_new_tokens": 4,
                                                               "suppress_tokens": [0]})


def test_accepts_rewrite_with_same_span_count(tiny_lm: Path) -> None:
    enhancer = _enhancer(tiny_lm)
    result = enhancer.enhance("a man in the rain")  # no spans; the word vocabulary cannot emit <S>
    assert result.accepted and result.attempts == 1 and CountingEnhancer.calls == 1
    assert result.text and result.text != "a man in the rain"
    assert count_spans(result.text) == 0


def test_falls_back_after_five_attempts(tiny_lm: Path) -> None:
    enhancer = _enhancer(tiny_lm)
    idea = "a man says <S>hello<E> in a quiet room"
    result = enhancer.enhance(idea)
    assert not result.accepted
    assert result.attempts == 5 and CountingEnhancer.calls == 5
    assert result.text == idea
    assert "kept the original" in result.message


def test_clean_output_drops_reasoning() -> None:
    assert clean_output("<think>plan\nthings</think>\nA  video.\nNo music.") == "A video. No music."
    assert count_spans("x <S>a<E> y <S>b<E>") == 2
