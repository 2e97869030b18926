"""Lint: every malformed case gets its own finding; clean presets get none."""

from __future__ import annotations

import pytest

from prompt_builder import Beat, CastMember, Delivery, Project, compile_project, lint_project, lint_text
from prompt_builder import list_presets, load_preset

OK = "A woman on the left says in a calm voice: <S>Hello there.<E> Quiet room, no music."


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def test_clean_text_has_no_findings() -> None:
    assert lint_text(OK, 6) == []


@pytest.mark.parametrize("text,code", [
    ("He says: <S>Hi.</S>", "malformed-tag"),
    ("He says: <s>Hi.<e>", "malformed-tag"),
    ("He says: <S>Hi <S>there.<E>", "nested-span"),
    ("He says: Hi.<E>", "unbalanced-close"),
    ("He says: <S>Hi.", "unbalanced-open"),
    ("He says: <S><extra_id_2>Hi.<E>", "stray-extra-id"),
    ('The man says: "Get out of here." The door closes.', "speech-outside-span"),
    ("She whispers “come closer” and smiles.", "speech-outside-span"),
    ("男子低声说道：“我们走吧。”", "speech-outside-span"),
    ("He says: <S><E>", "empty-span"),
])
def test_malformed_text(text: str, code: str) -> None:
    found = lint_text(text, 6)
    assert code in codes(found), found
    assert all(f.severity in ("error", "warning", "info") and f.message and f.fix for f in found)


def test_each_case_has_its_own_message() -> None:
    cases = ["<S>a</S>", "<S>a<S>b<E>", "a<E>", "<S>a", "<extra_id_0>", 'He says "go"']
    first = [lint_text(t, 6)[0] for t in cases]
    assert len({f.message for f in first}) == len(cases)
    assert len({f.code for f in first}) == len(cases)


def test_dialogue_too_long_for_duration_text() -> None:
    long_line = "<S>" + " ".join(["word"] * 30) + "<E>"
    assert "dialogue-too-long" in codes(lint_text(long_line, 6))
    assert "dialogue-too-long" not in codes(lint_text(long_line, 12))
    zh = "<S>" + "我" * 40 + "<E>"  # 40 characters at 4.5/s ~ 9 s
    assert "dialogue-too-long" in codes(lint_text(zh, 6))
    assert "dialogue-too-long" not in codes(lint_text(zh, 10))


def test_over_long_prompt() -> None:
    filler = "The quiet street is lit by soft lamps and long shadows. " * 60
    assert "too-long" in codes(lint_text(filler, 6))
    # a span beyond the budget would be cut: that is an error
    found = lint_text(filler + "He says: <S>Go.<E>", 6)
    assert [f.severity for f in found if f.code == "too-long"] == ["error"]


def _project() -> Project:
    return Project(
        seconds=6.0,
        timeline=[Beat("line", "Hello.", "a"), Beat("line", "Hi.", "b")],
        cast=[CastMember("a", "woman", "bright", "a.wav"), CastMember("b", "man", "deep", "b.wav")],
    )


def test_project_findings() -> None:
    assert lint_project(_project()) == []
    p = _project()
    p.timeline[1].speaker = ""
    assert "no-speaker" in codes(lint_project(p))
    p = _project()
    p.timeline[1].speaker = "ghost"
    assert "no-speaker" in codes(lint_project(p))
    p = _project()
    p.cast[1].voice_file = ""
    assert codes(lint_project(p)) == ["no-voice"]
    p = _project()
    p.timeline[0].text = "Hello <S>there"
    assert "tag-in-text" in codes(lint_project(p))
    p = _project()
    p.timeline[0].delivery = Delivery(rate="slow")
    p.timeline[0].text = " ".join(["word"] * 14)
    assert "dialogue-too-long" in codes(lint_project(p))
    p.timeline[0].delivery.rate = "fast"
    assert "dialogue-too-long" not in codes(lint_project(p))  # 14 words fast fits in 6 s


def test_too_many_speakers() -> None:
    p = Project(seconds=10.0)
    for sid in "abcd":
        p.cast.append(CastMember(sid, sid, "", f"{sid}.wav"))
        p.timeline.append(Beat("line", "Yes.", sid))
    assert "too-many-speakers" in codes(lint_project(p))
    p.timeline.pop()
    assert "too-many-speakers" not in codes(lint_project(p))


@pytest.mark.parametrize("name", list_presets())
def test_clean_preset_has_no_findings(name: str) -> None:
    project = load_preset(name)
    # shipped presets leave voice slots empty (no files ship); that is the only finding allowed
    assert {f.code for f in lint_project(project)} <= {"no-voice"}
    for member in project.cast:
        member.voice_file = f"voices/{member.id}.wav"
    assert lint_project(project) == []
    assert lint_text(compile_project(project).text, project.seconds) == []


def test_clip_length_is_rounded_in_messages() -> None:
    """A 49-frame clip is 2.041666... s: the message says 2.04, and the need never reads as shorter."""
    text = "A man says <S>" + "word " * 12 + "<E>"
    (finding,) = [f for f in lint_text(text, 49 / 24) if f.code == "dialogue-too-long"]
    assert "the clip is 2.04 s" in finding.message and "2.04167" not in finding.message
