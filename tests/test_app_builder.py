"""Builder state <-> form <-> request: deterministic, exact round trips, visible snapping, lint placement."""

from __future__ import annotations

import copy

import pytest

from nava_core.config import GuidanceScales, snap_seconds

from app import builder as B
from app import handlers as H


def test_form_round_trip_gives_the_same_request():
    state = B.default_state()
    values, beats, cast = B.form_from_state(state)
    again = B.state_from_form(values, beats, cast)
    assert B.request_from_state(again) == B.request_from_state(state)
    assert again["project"] == B.project_of(state).to_dict()


def test_request_carries_project_voices_in_span_order_and_snapped_seconds(tmp_path):
    state = B.default_state()
    voice_b = str(tmp_path / "b.wav")
    state["project"]["cast"][1]["voice_file"] = voice_b
    state["project"]["seconds"] = 5.1
    req = B.request_from_state(state)
    assert req.speaker_wavs == (None, voice_b)  # line 1 is A (no voice), line 2 is B
    assert req.prompt.count("<S>") == 2
    assert req.seconds == pytest.approx(snap_seconds(5.1))
    assert req.project["title"] == state["project"]["title"]
    note = B.duration_note(5.1, "audio_video")
    assert note.startswith("Snapped to 5.208 s")


def test_unlocked_audio_seed_and_manual_prompt():
    state = B.default_state()
    state["settings"].update(lock_seeds=False, seed=7, audio_seed=9, prompt_manual=True,
                             prompt_text="A man says <S>hello<E> quietly.")
    req = B.request_from_state(state)
    assert (req.seed, req.audio_seed) == (7, 9)
    assert req.prompt == "A man says <S>hello<E> quietly."
    assert len(req.speaker_wavs) == 1


def test_audio_mode_guidance_reset_and_visibility():
    assert H.reset_guidance("audio") == [getattr(GuidanceScales.audio_only(), k) for k in B.GUIDANCE_FIELDS]
    assert H.reset_guidance("audio_video") == [3.0, 2.0, 3.0, 2.0, 3.0]
    vis = H.mode_visibility("audio")
    assert not vis["camera"] and not vis["result_video"] and vis["result_picture"]


def test_over_long_dialogue_is_flagged_next_to_the_timeline_and_blocks_render():
    state = B.default_state()
    state["project"]["seconds"] = 2.0
    state["project"]["timeline"][0]["text"] = "word " * 60
    findings = B.lint_state(state)
    errors = [f for f in findings if f["severity"] == "error"]
    assert errors and "cannot fit" in errors[0]["message"]
    blocks = H.lint_markdown(findings)
    assert "cannot fit" in blocks["timeline"] and "cannot fit" not in blocks["prompt"]


def test_state_from_request_restores_builder_for_api_requests():
    state = B.default_state()
    req = B.request_from_state(state)
    restored = B.state_from_request(req)
    assert B.request_from_state(restored) == req
    edited = copy.deepcopy(state)
    edited["settings"].update(prompt_manual=True, prompt_text="Rain on a tin roof.")
    req2 = B.request_from_state(edited)
    assert B.request_from_state(B.state_from_request(req2)) == req2
