"""Voices vs spans as the release binds them (NAVA_SPEC.md 5, "Voices and spans"), on the tiny weights."""

from __future__ import annotations

import pytest
import torch

from nava_core.request import RenderRequest, RequestError, count_spans, voices_for_spans
from nava_core.validation import InputError, check_request_dict

THREE = ("A man says <S>One.<E> A woman says <S>Two.<E> The man adds <S>Three.<E> Quiet room, no music.")


def test_rule_table():
    assert count_spans(THREE) == 3
    assert voices_for_spans((), 3) == []
    assert voices_for_spans((None, ""), 3) == []  # only empty slots: no voice at all
    assert voices_for_spans(("a",), 3) == ["a", "a", "a"]  # one voice: broadcast, as the release
    assert voices_for_spans(("a", None, "c"), 3) == ["a", None, "c"]
    assert voices_for_spans(("a", "b", "c", "d"), 3) == ["a", "b", "c"]  # more voices: the first ones
    assert voices_for_spans(("a", "b"), 0) == []


def test_two_voices_for_three_spans_is_refused_with_counts():
    with pytest.raises(RequestError) as e:
        voices_for_spans(("a", "b"), 3)
    msg = str(e.value)
    assert "3 <S>...<E> spans" in msg and "2 reference voices" in msg and "single voice" in msg


def test_request_file_with_too_few_voices_is_refused_before_queueing(voices):
    d = {"prompt": THREE, "speaker_wavs": [str(voices[0]), str(voices[1])], "width": 160, "height": 96}
    with pytest.raises(InputError, match=r"3 <S>\.\.\.<E> spans but 2 reference voices"):
        check_request_dict(d)
    d["speaker_wavs"] = [str(voices[0])]
    assert check_request_dict(d).speaker_wavs == (str(voices[0]),)


def _positions_and_embeddings(pipe, req):
    cond = pipe.encode_conditions(req)
    return cond.speaker_positions, cond.speaker_embeddings


def test_one_voice_is_broadcast_to_every_span(tiny_pipe, voices):
    req = RenderRequest(prompt=THREE, width=160, height=96, seconds=0.5, steps=1, speaker_wavs=(str(voices[0]),))
    positions, emb = _positions_and_embeddings(tiny_pipe, req)
    assert len(positions) == 3 and emb.shape == (3, 192)
    one = tiny_pipe._speaker_embedding(str(voices[0])).to(emb)
    for row in emb:
        torch.testing.assert_close(row, one)
    assert one.abs().sum() > 0


def test_more_voices_than_spans_uses_the_first(tiny_pipe, voices):
    two_spans = "A says <S>Hi.<E> B says <S>Hello.<E> No music."
    req = RenderRequest(prompt=two_spans, width=160, height=96, seconds=0.5, steps=1,
                        speaker_wavs=(str(voices[1]), str(voices[0]), str(voices[0])))
    cond = tiny_pipe.encode_conditions(req)
    assert cond.speaker_embeddings.shape == (2, 192)
    torch.testing.assert_close(cond.speaker_embeddings[0], tiny_pipe._speaker_embedding(str(voices[1])))
    torch.testing.assert_close(cond.speaker_embeddings[1], tiny_pipe._speaker_embedding(str(voices[0])))
    assert any("not used" in w for w in cond.warnings)


def test_pipeline_refuses_the_crashing_case(tiny_pipe, voices):
    req = RenderRequest(prompt=THREE, width=160, height=96, seconds=0.5, steps=1,
                        speaker_wavs=(str(voices[0]), str(voices[1])))
    with pytest.raises(RequestError, match="3 <S>...<E> spans but 2"):
        tiny_pipe.encode_conditions(req)
