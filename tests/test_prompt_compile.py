"""Schema round trips, compiler determinism and goldens, and official-prompt import round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prompt_builder import (PROJECT_VERSION, Beat, CastMember, Delivery, Project, SchemaError, Subject,
                            compile_project, list_presets, load_preset, parse_prompt)
from prompt_builder.text import spans

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "prompt_golden"


def _official() -> list[dict]:
    return [json.loads(line) for line in (DATA / "official_prompts.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]


@pytest.mark.parametrize("case", _official(), ids=lambda c: c["source"][-30:])
def test_official_prompt_round_trip(case: dict) -> None:
    text = case["prompt"]
    voices = case.get("spk_wavs")
    project = parse_prompt(text, voices)
    again = Project.from_json(project.to_json())  # survives serialisation too
    compiled = compile_project(again)
    assert [b.text for b in again.lines()] == spans(text)
    assert spans(compiled.text) == spans(text)
    assert compiled.text == text
    n = len(spans(text))
    assert len(compiled.voices) == n and len(compiled.span_speakers) == n
    if voices is not None:
        assert compiled.voices == voices


def test_official_language_and_speakers() -> None:
    cases = _official()
    assert [parse_prompt(c["prompt"]).language for c in cases] == ["zh", "zh", "zh", "en"]
    assert parse_prompt(cases[3]["prompt"]).lines()[0].speaker == "left"
    assert parse_prompt(cases[3]["prompt"]).lines()[1].speaker == "right"


def test_parse_splits_speakers_when_voices_differ() -> None:
    text = "A man says: <S>One.<E> He says again: <S>Two.<E>"
    assert compile_project(parse_prompt(text)).span_speakers == ["speaker", "speaker"]
    project = parse_prompt(text, ["a.wav", "b.wav"])
    assert compile_project(project).voices == ["a.wav", "b.wav"]
    assert len({b.speaker for b in project.lines()}) == 2
    with pytest.raises(ValueError, match="1 voice"):
        parse_prompt(text, ["a.wav"])


def test_edited_import_substitutes_span_text() -> None:
    project = parse_prompt(_official()[3]["prompt"])
    project.timeline[0].text = "Can I pick any voice?"
    text = compile_project(project).text
    assert spans(text) == ["Can I pick any voice?", "Yes, in all kinds of complex scenes."]
    assert text.startswith("This realistic-style video")


def _dialogue() -> Project:
    return Project(
        subjects=[Subject("a", "a tall woman", "left"), Subject("b", "a short man", "right")],
        timeline=[Beat("line", "Hello.", "a", Delivery("warm")), Beat("line", "Hi.", "b"),
                  Beat("action", "They shake hands"), Beat("line", "Nice to meet you.", "a", pause=0.5)],
        cast=[CastMember("a", "woman", "bright", "voices/a.wav"), CastMember("b", "man", "deep", "")],
    )


def test_voices_follow_span_order_and_null_slot() -> None:
    compiled = compile_project(_dialogue())
    assert compiled.voices == ["voices/a.wav", None, "voices/a.wav"]
    assert compiled.span_speakers == ["a", "b", "a"]
    assert spans(compiled.text) == ["Hello.", "Hi.", "Nice to meet you."]
    assert "the woman on the left" in compiled.text and "bright voice" in compiled.text


def test_silent_clip_says_so_in_both_languages() -> None:
    silent = Project(timeline=[Beat("action", "A door slams")])
    assert "no dialogue" in compile_project(silent).text
    silent.language = "zh"
    assert "没有人物对白" in compile_project(silent).text
    assert "no dialogue" not in compile_project(_dialogue()).text


def test_schema_round_trip_and_refusals() -> None:
    project = _dialogue()
    assert Project.from_json(project.to_json()) == project
    data = project.to_dict()
    data["version"] = PROJECT_VERSION + 1
    with pytest.raises(SchemaError, match="unsupported project version"):
        Project.from_dict(data)
    with pytest.raises(SchemaError, match="unknown field"):
        Project.from_dict({**project.to_dict(), "colour": "red"})
    with pytest.raises(SchemaError, match="language"):
        Project.from_dict({**project.to_dict(), "language": "fr"})
    with pytest.raises(SchemaError, match="rate"):
        bad = project.to_dict()
        bad["timeline"][0]["delivery"]["rate"] = "warp"
        Project.from_dict(bad)


def test_compile_is_deterministic_across_processes() -> None:
    code = ("from prompt_builder import load_preset, compile_project;"
            "print(compile_project(load_preset('two_person_dialogue')).text)")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           cwd=Path(__file__).parent.parent, check=True).stdout.strip()
    assert other == compile_project(load_preset("two_person_dialogue")).text


def test_prompt_builder_does_not_import_torch() -> None:
    code = "import sys, prompt_builder; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, check=True).stdout.strip()
    assert out == "False False"


@pytest.mark.parametrize("name", list_presets())
def test_preset_compile_matches_golden(name: str) -> None:
    compiled = compile_project(load_preset(name))
    golden = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    assert compiled.text == golden["text"]
    assert compiled.voices == golden["voices"]
    assert compiled.span_speakers == golden["span_speakers"]


def test_goldens_cover_both_languages() -> None:
    langs = {load_preset(n).language for n in list_presets()}
    assert langs == {"en", "zh"}
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == list_presets()


def test_prose_grammar_and_rounding() -> None:
    """The sentences people reported: a place without a preposition, a shot size that already ends in
    'shot', a timeline pause with milliseconds in it, and a capitalised action after a connector."""
    from prompt_builder import Beat, Camera, CastMember, Project, Scene

    project = Project(
        scene=Scene(setting="a sunlit corner cafe"),
        camera=Camera(shot_size="medium two-shot", angle="slightly low angle"),
        cast=[CastMember("A", name="Mia")],
        timeline=[Beat("line", "Hello there.", speaker="A"), Beat("action", "A cup falls.", pause=0.483),
                  Beat("line", "Oops.", speaker="A", pause=1.04)],
    )
    text = compile_project(project).text
    assert "takes place in a sunlit corner cafe." in text
    assert "a medium two-shot from a slightly low angle" in text and "shot shot" not in text
    assert "after a pause of about 0.5 seconds, a cup falls." in text
    assert "after a pause of about 1 second, " in text and "0.483" not in text
    project.scene.setting = "on a rooftop at dusk"
    project.camera.shot_size = "extreme close-up"
    text = compile_project(project).text
    assert "takes place on a rooftop at dusk." in text and "in on a" not in text
    assert "frames an extreme close-up shot" in text
