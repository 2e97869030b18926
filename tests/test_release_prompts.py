"""Prompt preparation in the release's order and over-long prompts (NAVA_SPEC.md 4, 7; issue 17 item 6)."""

from __future__ import annotations

import json

import pytest
import torch

from nava_core.components.text_encoder import PromptTooLongError, TextEncoder, prepare_prompt, write_tiny_text_encoder
from nava_core.cli import _overrides, build_parser, requests_from_file
from nava_core.request import RenderRequest


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TextEncoder:
    tiny = write_tiny_text_encoder(tmp_path_factory.mktemp("t5"), seed=0)
    return TextEncoder.from_release(tiny["text_encoder"], tiny["tokenizer"], dtype=torch.float32)


def _long_prompt(data_dir) -> str:
    lines = (data_dir / "official_prompts.jsonl").read_text(encoding="utf-8").splitlines()
    prompts = [json.loads(x)["prompt"] for x in lines if x.strip()]
    return " ".join([prompts[3], prompts[2], prompts[3]])


def test_speech_is_marked_before_the_text_is_cleaned():
    # An escaped tag only becomes "<S>" during cleaning, after marking: no speaker slot, as in the release.
    assert prepare_prompt("A says &lt;S&gt;hi&lt;E&gt; then <S>  ok<E>") == "A says <S>hi<E> then <S><extra_id_2> ok<E>"
    # Whitespace inside a span is collapsed after the marker went in (release order), not before.
    assert prepare_prompt("<S>\n\tYes.<E>") == "<S><extra_id_2> Yes.<E>"


def test_escaped_tag_gets_no_speaker_position(encoder):
    (tok,) = encoder.tokenize(["A says &lt;S&gt;hi&lt;E&gt; and B says <S>ok<E>"])
    assert len(tok.speaker_positions) == 1


def test_truncation_cuts_as_the_release_and_says_what_is_lost(encoder, data_dir):
    long = _long_prompt(data_dir)
    with pytest.raises(PromptTooLongError):
        encoder.tokenize([long])
    (full,) = encoder.tokenize([long[: len(long) // 3]])
    (tok,) = encoder.tokenize([long], truncate=True)
    assert tok.num_tokens == 512 and tok.input_ids[-1] == encoder.tokenizer.eos_token_id
    err = tok.truncated
    assert err is not None and err.num_tokens > 512
    assert all(p < 511 for p in tok.speaker_positions)
    assert len(tok.speaker_positions) == 6 - len([s for s in err.spans_beyond if s.fully_beyond])
    msg = err.truncation_warning()
    assert f"{err.num_tokens} umT5 tokens" in msg and "line 6 <S>Yes, in all kinds of complex scenes.<E>" in msg
    assert "truncated as the release does" in msg
    enc = encoder.encode([long], truncate=True)
    assert enc.context[0].shape == (512, 4096) and enc.truncated[0] is not None
    assert full.truncated is None


def test_pipeline_renders_truncated_with_a_warning_or_refuses(tiny_pipe, data_dir):
    long = _long_prompt(data_dir)
    req = RenderRequest(prompt=long, width=64, height=64, seconds=0.5, steps=1)
    with pytest.raises(PromptTooLongError):
        tiny_pipe.encode_conditions(req)
    cond = tiny_pipe.encode_conditions(req.replace(truncate_prompt=True))
    assert cond.context.shape[0] == 512
    assert any("umT5 tokens" in w and "truncated as the release does" in w for w in cond.warnings)


def test_cli_truncates_by_default_and_can_refuse(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "A cat. No music."}) + "\n")
    (req,) = requests_from_file(f, _overrides(build_parser().parse_args([str(f)])))
    assert req.truncate_prompt is True
    (req,) = requests_from_file(f, _overrides(build_parser().parse_args([str(f), "--refuse-long-prompts"])))
    assert req.truncate_prompt is False
    f.write_text(json.dumps({"prompt": "A cat. No music.", "truncate_prompt": False}))
    f = f.rename(tmp_path / "r.json")
    (req,) = requests_from_file(f, _overrides(build_parser().parse_args([str(f)])))
    assert req.truncate_prompt is False  # the request file's own choice wins


def test_studio_lint_blocks_and_offers_truncation(data_dir):
    from app import builder as B

    state = {"project": B.state_from_form({"mode": "audio_video", "seconds": 6.0}, [], [])["project"],
             "settings": {**B.default_settings(), "prompt_manual": True, "prompt_text": _long_prompt(data_dir)}}
    too_long = [f for f in B.lint_state(state) if "too long" in f["message"]]
    assert too_long and too_long[0]["severity"] == "error" and B.TRUNCATE_LABEL in too_long[0]["fix"]
    state["settings"]["truncate_prompt"] = True
    too_long = [f for f in B.lint_state(state) if "too long" in f["message"]]
    assert too_long[0]["severity"] == "warning" and "truncated, as the release does" in too_long[0]["message"]
    assert B.request_from_state(state).truncate_prompt is True


def test_api_and_batch_lint_of_a_request_honours_truncate_prompt(data_dir):
    from app import builder as B

    req = RenderRequest(prompt=_long_prompt(data_dir), width=160, height=96, seconds=6.0)
    sev = [f["severity"] for f in B.lint_request(req) if "too long" in f["message"]]
    assert sev == ["error"]
    sev = [f["severity"] for f in B.lint_request(req.replace(truncate_prompt=True)) if "too long" in f["message"]]
    assert sev == ["warning"]
