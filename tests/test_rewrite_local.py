"""The local-model backend with a real (tiny, random) causal LM and tokenizer built offline: load on demand,
rewrite, retry with the reason, fallback, cancel, release."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from nava_core.progress import CancelToken  # noqa: E402
from nava_core.rewrite_local import RELEASE_SAMPLING, LocalBackend  # noqa: E402
from nava_core.rewriting import config_from_env, make_rewriter  # noqa: E402
from prompt_builder.rewrite import RewriteError, Rewriter  # noqa: E402

WORDS = ["<unk>", "<eos>", "a", "man", "says", "hello", "quiet", "room", "camera", "light", "no", "music",
         ".", ",", "the", "video", "rain", "street", "woman", "slowly"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 with random weights and a word-level tokenizer, saved like a real model.

    Its vocabulary has no '<S>', so it can expand a scene without lines but can never reproduce a line."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>",
                                                pad_token="<eos>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(WORDS), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=1, eos_token_id=1)
    out = tmp_path_factory.mktemp("tiny_lm")
    transformers.GPT2LMHeadModel(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


class Recording(LocalBackend):
    """The real backend; remembers each prompt and reply."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.calls: list[tuple[list[dict[str, str]], str]] = []

    def complete(self, messages, **kw):  # noqa: ANN001, ANN003, ANN201
        reply = super().complete(messages, **kw)
        self.calls.append((messages, reply))
        return reply


def backend(path: Path) -> Recording:
    return Recording(str(path), device="cpu", max_new_tokens=12,
                     generation_kwargs={**RELEASE_SAMPLING, "min_new_tokens": 12, "suppress_tokens": [0, 1]})


def test_loads_on_first_use_and_rewrites(tiny_lm: Path) -> None:
    b = backend(tiny_lm)
    assert not b.loaded  # nothing loaded at start-up
    result = Rewriter(b).rewrite("a man in the rain")
    assert b.loaded and len(b.calls) == 1
    assert result.accepted and result.attempts == 1
    assert result.text == " ".join(b.calls[0][1].split()) and len(result.text.split()) == 12


def test_retries_with_the_reason_then_keeps_the_original(tiny_lm: Path) -> None:
    b = backend(tiny_lm)
    idea = "a man says <S>hello<E> in a quiet room"
    result = Rewriter(b, max_attempts=3).rewrite(idea)
    assert not result.accepted and result.text == idea and result.attempts == 3 and len(b.calls) == 3
    assert "0 spoken line(s) instead of 1" in result.message
    replies = [reply for _, reply in b.calls]
    assert len(set(replies)) == 3  # each attempt is reseeded, so retries really differ
    assert "previous answer was refused because it has 0 spoken line(s)" in b.calls[1][0][1]["content"]


def test_cancel_stops_generation_at_the_next_token(tiny_lm: Path) -> None:
    b = backend(tiny_lm)
    b.max_new_tokens = b.generation_kwargs["min_new_tokens"] = 50
    cancel, seen = CancelToken(), []

    def on_text(text: str) -> None:
        seen.append(text)
        if len(seen) == 2:
            cancel.cancel()

    with pytest.raises(RewriteError) as err:
        Rewriter(b).rewrite("a man in the rain", cancel=cancel, on_text=on_text)
    assert err.value.kind == "cancelled" and len(seen) == 2


def test_release_and_close_then_reload_on_demand(tiny_lm: Path) -> None:
    b = backend(tiny_lm)
    r = Rewriter(b)
    assert r.rewrite("the video of a street").accepted
    b.release_gpu()  # NAVA is about to render: the LM leaves the accelerator (here: already on the CPU)
    assert str(b._model.device) == "cpu"
    b.close()
    assert not b.loaded
    assert r.rewrite("the video of a street").accepted and b.loaded


def test_factory_and_a_missing_model_in_plain_words(tiny_lm: Path, tmp_path: Path) -> None:
    r = make_rewriter(config_from_env({}, local_model=str(tiny_lm), device="cpu", max_tokens=8))
    assert type(r.backend).__name__ == "LocalBackend" and r.backend.max_new_tokens == 8
    missing = make_rewriter(config_from_env({}, local_model=str(tmp_path / "nowhere")))
    result = missing.rewrite("a man in the rain")
    assert not result.accepted and result.error_kind == "model_not_found"
    assert "cannot load the local rewrite model" in result.message


def test_nava_rewrite_with_a_local_model(tiny_lm: Path, tmp_path: Path) -> None:
    import json

    from nava_core.rewrite_cli import main

    src, out = tmp_path / "ideas.txt", tmp_path / "out.jsonl"
    src.write_text("a man in the rain\nthe quiet room\na man says <S>hello<E>\n", encoding="utf-8")
    rc = main([str(src), "-o", str(out), "--local-model", str(tiny_lm), "--device", "cpu", "--max-tokens", "6",
               "--concurrency", "4", "--attempts", "2", "-q"])
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert rc == 1  # the third idea has a line this model cannot reproduce
    assert [r["rewrite_status"] for r in rows] == ["ok", "ok", "failed"]
    assert rows[2]["prompt"] == "a man says <S>hello<E>" and rows[2]["rewrite_attempts"] == 2


def test_a_template_that_opens_thinking_makes_an_unfinished_reply_empty(tiny_lm: Path) -> None:
    b = backend(tiny_lm)
    b.load()
    b.tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                                 "assistant: <think>\n")
    result = Rewriter(b, max_attempts=1).rewrite("a man in the rain")  # 12 words, never a </think>
    assert not result.accepted and "no text" in result.message
    reply = b.calls[0][1]
    assert reply.startswith("<think>") and len(reply.split()) == 12  # the 12 generated words, marked as thinking


def test_decode_keeps_a_special_think_tag_for_the_trace_remover() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    from nava_core.rewrite_local import _decode_keeping_thinking
    from prompt_builder.rewrite import clean_output

    vocab = ["<unk>", "<eos>", "</think>", "plan", "a", "video", "."]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>",
                                                additional_special_tokens=["</think>"])
    ids = fast("plan </think> a video . <eos>")["input_ids"]
    assert fast.decode(ids, skip_special_tokens=True).split() == ["plan", "a", "video", "."]  # the tag would be lost
    assert clean_output(_decode_keeping_thinking(fast, ids)) == "a video ."


def _hold(lock, until):  # noqa: ANN001, ANN202 - a render holding the GPU lock in its own thread
    held = threading.Event()

    def run() -> None:
        with lock:
            held.set()
            until.wait(10)

    t = threading.Thread(target=run)
    t.start()
    held.wait(10)
    return t


def test_while_a_render_holds_the_gpu_the_lm_generates_on_the_cpu(tiny_lm: Path) -> None:
    b = backend(tiny_lm)
    b.device = "cuda"  # it would use the GPU, but a render has it (and this machine has none: any GPU use fails)
    b.gpu_lock, done = threading.RLock(), threading.Event()
    render = _hold(b.gpu_lock, done)
    try:
        assert Rewriter(b).rewrite("a man in the rain").accepted
        assert str(b._model.device) == "cpu"
    finally:
        done.set()
        render.join()


def test_release_gpu_never_waits_for_a_cpu_rewrite(tiny_lm: Path) -> None:
    b = backend(tiny_lm)
    b.load()
    generating, go_on = threading.Event(), threading.Event()

    def on_text(text: str) -> None:
        generating.set()
        go_on.wait(10)  # a long CPU generation, paused mid-way

    rewrite = threading.Thread(target=lambda: Rewriter(b).rewrite("a man in the rain", on_text=on_text))
    rewrite.start()
    generating.wait(10)
    release = threading.Thread(target=b.release_gpu)  # what the engine calls when a render starts
    release.start()
    release.join(5)
    try:
        assert not release.is_alive() and rewrite.is_alive()  # the render went ahead; the rewrite still runs
    finally:
        go_on.set()
        rewrite.join()
