"""The rewrite guarantees (prompt_builder.rewrite): what a rewrite must keep, and the retry rule."""

from __future__ import annotations

import pytest

from prompt_builder.rewrite import (SYSTEM_PROMPT, RewriteError, Rewriter, binding_problems, check_rewrite,
                                    clean_output, load_system_prompt, strip_thinking)

ORIGINAL = ("A man on the left says <S>Hello there,  friend.<E> The woman on the right answers "
            "<S>你好。<E>")
SPEAKERS = ["man", "woman"]


def good(text: str = ORIGINAL) -> str:
    return "This warm, handheld video shows a quiet kitchen at dusk. " + text + " There is no music."


def test_a_faithful_rewrite_passes() -> None:
    assert check_rewrite(ORIGINAL, good(), speakers=SPEAKERS) == []


@pytest.mark.parametrize("candidate, expected", [
    (good().replace("friend.", "friend!"), "line 1 changed"),
    (good().replace("Hello there,  friend.", "Hello there, friend."), "line 1 changed"),  # one space less
    (good().replace(" <S>你好。<E>", ""), "1 spoken line(s) instead of 2"),
    (good() + " <S>Extra.<E>", "3 spoken line(s) instead of 2"),
    (good().replace("<S>你好。<E>", "<S>你好。"), "stray <S>/<E>"),
    (good() + " <extra_id_2>", "<extra_id_N>"),
    ("这是一个温暖的视频。" * 3 + ORIGINAL.split(" The woman")[0].replace("A man on the left says", "男人说")
     + " 女人说 <S>你好。<E>", "not written in English"),
    ("", "no text"),
    (good() + " and then" * 400, "over the text encoder"),
])
def test_each_broken_guarantee_is_named(candidate: str, expected: str) -> None:
    problems = check_rewrite(ORIGINAL, candidate, speakers=SPEAKERS)
    assert any(expected in p for p in problems), problems


def test_lines_swapped_between_speakers_are_refused() -> None:
    swapped = ("The woman on the right says <S>Hello there,  friend.<E> Then the man on the left answers "
               "<S>你好。<E>")
    problems = check_rewrite(ORIGINAL, swapped, speakers=SPEAKERS)
    assert any("given to 'woman' instead of 'man'" in p for p in problems), problems
    # the same text is fine when nobody says who speaks which line (the release's own rule)
    assert check_rewrite(ORIGINAL, swapped) == []


def test_binding_allows_a_speaker_who_keeps_talking_and_ignores_short_ids() -> None:
    text = "The man says <S>One.<E> and goes on: <S>Two.<E> The woman replies <S>Three.<E>"
    assert binding_problems(text, ["man", "man", "woman"]) == []
    assert binding_problems(text, ["A", "A", "B"]) == []  # one-letter ids would match articles
    assert binding_problems("The woman says <S>One.<E>", ["man", "woman"]) != []  # 'man' is not inside 'woman'
    # a name inside a longer name: the longer one is who is meant
    assert binding_problems("The man nods. The old man says <S>One.<E>", ["old man", "man"]) == []
    assert binding_problems("The old man nods. The man says <S>One.<E>", ["old man", "man"]) != []


def test_thinking_is_removed_in_every_form() -> None:
    assert strip_thinking("<think>plan <S>x<E></think>Answer.") == "Answer."
    assert strip_thinking("plan opened by the chat template</think>\n\nAnswer.") == "\n\nAnswer."
    assert strip_thinking("<reasoning>a</reasoning> A <thinking>b</thinking> B") == " A  B"
    assert strip_thinking("Answer. <think>cut off by max tokens") == "Answer. "


def test_clean_output_makes_one_paragraph_but_never_touches_a_line() -> None:
    raw = "<think>x</think>\n```\nRewritten prompt: A video.\n\nHe says <S>Two  spaces\nand a break<E>.\n```"
    assert clean_output(raw) == "A video. He says <S>Two  spaces\nand a break<E>."
    assert clean_output('"A video with <S>hi<E> in it."') == "A video with <S>hi<E> in it."


def test_a_list_is_not_a_paragraph() -> None:
    raw = "# Caption\n- a video\n- a man says <S>hi<E>"
    assert any("list" in p for p in check_rewrite("a man says <S>hi<E>", clean_output(raw), raw=raw))


class ScriptedBackend:
    """Answers from a fixed script and records what it was asked (a real backend's contract)."""

    def __init__(self, answers: list[object]) -> None:
        self.answers = list(answers)
        self.asked: list[list[dict[str, str]]] = []

    def complete(self, messages, *, attempt=0, cancel=None, on_text=None):  # noqa: ANN001, ANN201
        self.asked.append(messages)
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    def release_gpu(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_retry_tells_the_model_why_then_accepts() -> None:
    backend = ScriptedBackend([good().replace("friend.", "pal."), "<think>ok</think>" + good()])
    result = Rewriter(backend).rewrite(ORIGINAL, speakers=SPEAKERS)
    assert result.accepted and result.attempts == 2 and result.text == good()
    assert "line 1 changed" in backend.asked[1][1]["content"]
    assert "1. man: <S>Hello there,  friend.<E>" in backend.asked[0][1]["content"]


def test_bounded_retry_then_the_original_and_why() -> None:
    backend = ScriptedBackend([good().replace("friend.", "pal.")] * 3)
    result = Rewriter(backend, max_attempts=3).rewrite(ORIGINAL)
    assert not result.accepted and result.text == ORIGINAL and result.attempts == 3 and len(backend.asked) == 3
    assert result.message.startswith("kept the original prompt: 3 rewrite(s) did not pass the checks")


def test_transient_errors_are_retried_permanent_ones_stop_at_once() -> None:
    waits: list[float] = []
    backend = ScriptedBackend([RewriteError("rate_limit", "slow down", retry_after_s=2.0), good()])
    result = Rewriter(backend, retry_wait_s=waits.append).rewrite(ORIGINAL)
    assert result.accepted and result.attempts == 2 and waits == [2.0]
    backend = ScriptedBackend([RewriteError("auth", "the key was refused"), good()])
    result = Rewriter(backend).rewrite(ORIGINAL)
    assert not result.accepted and result.error_kind == "auth" and len(backend.asked) == 1
    assert result.message == "kept the original prompt: the key was refused"


def test_system_prompt_file_replaces_the_built_in_one(tmp_path) -> None:  # noqa: ANN001
    f = tmp_path / "release_template.txt"
    f.write_text("You are the release's rewriter.", encoding="utf-8")
    assert load_system_prompt(str(f)) == "You are the release's rewriter."
    assert load_system_prompt("") == SYSTEM_PROMPT
    with pytest.raises(RewriteError, match="cannot read the system prompt file"):
        load_system_prompt(tmp_path / "missing.txt")
    backend = ScriptedBackend([good()])
    Rewriter(backend, system_prompt=load_system_prompt(str(f))).rewrite(ORIGINAL)
    assert backend.asked[0][0] == {"role": "system", "content": "You are the release's rewriter."}
