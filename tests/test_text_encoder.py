"""umT5 text encoder: loaders (release .pth and transformers folder), numerics, prompt preparation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nava_core.components.text_encoder import (
    RELEASE_T5_FILE,
    SPEAKER_TOKEN,
    PromptTooLongError,
    TextEncoder,
    TextEncoderLoadError,
    config_from_release_state_dict,
    load_release_state_dict,
    prepare_prompt,
    release_key_shapes,
    speech_spans,
    umt5_xxl_config,
    write_tiny_text_encoder,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return write_tiny_text_encoder(tmp_path_factory.mktemp("t5"), seed=0)


@pytest.fixture(scope="module")
def encoder(tiny) -> TextEncoder:
    return TextEncoder.from_release(tiny["text_encoder"], tiny["tokenizer"], dtype=torch.float32)


@pytest.fixture(scope="module")
def prompts(data_dir) -> list[str]:
    lines = (data_dir / "official_prompts.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["prompt"] for line in lines if line.strip()]


# ------------------------------------------------------------------------------ reference forward


def _bucket(rel: torch.Tensor, num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """Bidirectional T5 relative-position bucket, written from the paper's definition."""
    half = num_buckets // 2
    out = (rel > 0).long() * half
    n = rel.abs()
    exact = half // 2
    large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)).long()
    return out + torch.where(n < exact, n, large.clamp(max=half - 1))


def _reference_forward(sd: dict[str, torch.Tensor], ids: torch.Tensor, heads: int) -> torch.Tensor:
    """Wan's T5 encoder math on the release's key names (fp32): the thing the key map must preserve."""
    sd = {k: v.float() for k, v in sd.items()}

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))

    def gelu_tanh(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    x = sd["token_embedding.weight"][ids]
    n = ids.shape[0]
    rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(layers):
        p = f"blocks.{i}."
        h = rms(x, sd[p + "norm1.weight"])
        q, k, v = (h @ sd[p + f"attn.{c}.weight"].T for c in "qkv")
        q, k, v = (t.view(n, heads, -1).transpose(0, 1) for t in (q, k, v))
        bias = sd[p + "pos_embedding.embedding.weight"][_bucket(rel)].permute(2, 0, 1)
        attn = torch.softmax(q @ k.transpose(1, 2) + bias, dim=-1)  # T5: no 1/sqrt(d) scaling
        x = x + (attn @ v).transpose(0, 1).reshape(n, -1) @ sd[p + "attn.o.weight"].T
        h = rms(x, sd[p + "norm2.weight"])
        ff = gelu_tanh(h @ sd[p + "ffn.gate.0.weight"].T) * (h @ sd[p + "ffn.fc1.weight"].T)
        x = x + ff @ sd[p + "ffn.fc2.weight"].T
    return rms(x, sd["norm.weight"])


# ----------------------------------------------------------------------------------------- loading


def test_tiny_release_file_is_release_format(tiny, encoder) -> None:
    sd = load_release_state_dict(tiny["text_encoder"])
    assert tiny["text_encoder"].name == RELEASE_T5_FILE
    assert set(sd) == set(release_key_shapes(encoder.model.config))
    assert all(v.dtype == torch.bfloat16 for v in sd.values())
    assert sd["token_embedding.weight"].shape[1] == 4096  # the backbone's text_dim
    assert tiny["text_encoder"].stat().st_size < 16 * 2**20


def test_release_layout_loads_strictly_and_matches_reference_math(tiny, encoder, prompts) -> None:
    sd = load_release_state_dict(tiny["text_encoder"])
    tok = encoder.tokenize(prompts[2:3])[0]
    ids = torch.tensor(tok.input_ids)
    ref = _reference_forward(sd, ids, heads=encoder.model.config.num_heads)
    out = encoder.encode(prompts[2:3]).context[0]
    assert out.shape == (len(ids), 4096)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_converted_model_equals_transformers_model_with_same_weights(tiny, encoder, prompts) -> None:
    """A UMT5EncoderModel filled module by module from the release tensors gives the same rows."""
    from transformers import UMT5EncoderModel

    sd = {k: v.float() for k, v in load_release_state_dict(tiny["text_encoder"]).items()}
    ref = UMT5EncoderModel(encoder.model.config).eval()
    with torch.no_grad():
        ref.shared.weight.copy_(sd["token_embedding.weight"])
        ref.encoder.final_layer_norm.weight.copy_(sd["norm.weight"])
        for i, block in enumerate(ref.encoder.block):
            att, ffn = block.layer[0], block.layer[1]
            att.layer_norm.weight.copy_(sd[f"blocks.{i}.norm1.weight"])
            for c in "qkvo":
                getattr(att.SelfAttention, c).weight.copy_(sd[f"blocks.{i}.attn.{c}.weight"])
            att.SelfAttention.relative_attention_bias.weight.copy_(sd[f"blocks.{i}.pos_embedding.embedding.weight"])
            ffn.layer_norm.weight.copy_(sd[f"blocks.{i}.norm2.weight"])
            ffn.DenseReluDense.wi_0.weight.copy_(sd[f"blocks.{i}.ffn.gate.0.weight"])
            ffn.DenseReluDense.wi_1.weight.copy_(sd[f"blocks.{i}.ffn.fc1.weight"])
            ffn.DenseReluDense.wo.weight.copy_(sd[f"blocks.{i}.ffn.fc2.weight"])
    toks = encoder.tokenize(prompts[2:4])
    longest = max(t.num_tokens for t in toks)
    ids = torch.zeros(len(toks), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, t in enumerate(toks):
        ids[r, : t.num_tokens] = torch.tensor(t.input_ids)
        mask[r, : t.num_tokens] = 1
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    got = encoder.encode(prompts[2:4])
    for r, t in enumerate(toks):
        torch.testing.assert_close(got.context[r], expected[r, : t.num_tokens], atol=1e-5, rtol=1e-5)


def test_transformers_folder_loads_strictly_and_agrees(tiny, encoder, prompts, tmp_path) -> None:
    encoder.model.save_pretrained(tmp_path / "text_encoder")
    encoder.tokenizer.save_pretrained(tmp_path / "tokenizer")
    other = TextEncoder.from_pretrained(tmp_path, dtype=torch.float32)
    a, b = encoder.encode(prompts[:1]), other.encode(prompts[:1])
    assert a.input_ids == b.input_ids and a.speaker_positions == b.speaker_positions
    torch.testing.assert_close(a.context[0], b.context[0], atol=0, rtol=0)


def test_bf16_default_is_the_release_dtype(tiny) -> None:
    enc = TextEncoder.from_release(tiny["text_encoder"], tiny["tokenizer"])
    out = enc.encode(["A quiet room. <S>Hello.<E>"])
    assert enc.dtype == torch.bfloat16 and out.context[0].dtype == torch.bfloat16


def _save(sd: dict, path: Path) -> Path:
    torch.save(sd, path)
    return path


def test_truncated_file_names_file_and_problem(tiny, tmp_path) -> None:
    bad = tmp_path / RELEASE_T5_FILE
    data = tiny["text_encoder"].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(TextEncoderLoadError, match=r"models_t5_umt5-xxl-enc-bf16\.pth.*not a readable torch checkpoint"):
        TextEncoder.from_release(bad, tiny["tokenizer"])


def test_not_a_checkpoint_and_missing_file(tiny, tmp_path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(TextEncoderLoadError, match="notes.pth.*not a readable torch checkpoint"):
        TextEncoder.from_release(text, tiny["tokenizer"])
    with pytest.raises(TextEncoderLoadError, match="absent.pth: file not found"):
        TextEncoder.from_release(tmp_path / "absent.pth", tiny["tokenizer"])
    with pytest.raises(TextEncoderLoadError, match="other.pth: not a umT5 encoder state dict"):
        TextEncoder.from_release(_save({"w": torch.zeros(2)}, tmp_path / "other.pth"), tiny["tokenizer"])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda sd: sd.pop("blocks.1.ffn.fc1.weight"), r"1 missing keys: blocks\.1\.ffn\.fc1\.weight"),
        (lambda sd: sd.__setitem__("blocks.0.extra.weight", torch.zeros(1)), r"1 unexpected keys: blocks\.0\.extra"),
        (
            lambda sd: sd.__setitem__("blocks.1.attn.k.weight", torch.zeros(3, 4096)),
            r"1 keys with wrong shapes: blocks\.1\.attn\.k\.weight \(3, 4096\) != \(16, 4096\)",
        ),
    ],
)
def test_wrong_keys_or_shapes_name_file_and_keys(tiny, tmp_path, edit, expected) -> None:
    sd = dict(load_release_state_dict(tiny["text_encoder"]))
    edit(sd)
    path = _save(sd, tmp_path / "edited.pth")
    with pytest.raises(TextEncoderLoadError, match="edited.pth: not a valid umT5 encoder checkpoint: " + expected):
        TextEncoder.from_release(path, tiny["tokenizer"])


def test_release_size_file_missing_a_block_is_reported(tmp_path) -> None:
    """A real-size file is held to umT5-XXL (24 layers): dropping the last block is 'missing', not 23 layers."""
    shapes = release_key_shapes(umt5_xxl_config())
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items() if not k.startswith("blocks.23.")}
    cfg = config_from_release_state_dict(sd)
    assert cfg.num_layers == 24
    from nava_core.components.text_encoder import check_release_state_dict

    with pytest.raises(TextEncoderLoadError, match=r"x\.pth: .*10 missing keys: blocks\.23\."):
        check_release_state_dict(sd, cfg, "x.pth")


def test_umt5_xxl_config_matches_release_sizes() -> None:
    """t5.py umt5_xxl: vocab 256384, dim 4096, ffn 10240, 64 heads, 24 layers, 32 buckets -> 5.68 B params."""
    from transformers import UMT5EncoderModel

    cfg = umt5_xxl_config()
    assert (cfg.vocab_size, cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.d_kv, cfg.num_layers) == (
        256384, 4096, 10240, 64, 64, 24,
    )
    assert (cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance) == (32, 128)
    assert cfg.is_gated_act and cfg.dense_act_fn == "gelu_new"
    with torch.device("meta"):
        model = UMT5EncoderModel(cfg)
    n_model = sum(p.numel() for p in model.parameters())
    n_release = sum(math.prod(s) for s in release_key_shapes(cfg).values())
    assert n_model == n_release == 5_680_910_336


# ---------------------------------------------------------------------------------------- tokenizer


def test_tiny_tokenizer_behaves_like_umt5(tiny) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny["tokenizer"]))
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1  # sentinels reversed at the end
    assert tok.convert_tokens_to_ids(SPEAKER_TOKEN) == len(tok) - 3
    assert tok(SPEAKER_TOKEN)["input_ids"] == [len(tok) - 3, 1]
    padded = tok("A man says <S><extra_id_2>hello<E>", padding="max_length", max_length=512)["input_ids"]
    real = [i for i in padded if i != 0]
    assert len(padded) == 512 and real[-1] == 1 and padded[len(real):] == [0] * (512 - len(real))
    assert real.count(len(tok) - 3) == 1


def test_tiny_files_are_deterministic(tiny, tmp_path) -> None:
    again = write_tiny_text_encoder(tmp_path / "a", seed=0)
    other = write_tiny_text_encoder(tmp_path / "b", seed=1)
    assert again["text_encoder"].read_bytes() == tiny["text_encoder"].read_bytes()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (again["tokenizer"] / name).read_bytes() == (tiny["tokenizer"] / name).read_bytes()
    assert other["text_encoder"].read_bytes() != tiny["text_encoder"].read_bytes()


# ------------------------------------------------------------------------------- prompt preparation


def test_prepare_prompt_cleans_and_marks_speech_idempotently() -> None:
    raw = "  A  man\n says:\t<S>Hi &amp; bye<E>  then  <S><extra_id_2>ok<E> "
    once = prepare_prompt(raw)
    assert once == "A man says: <S><extra_id_2>Hi & bye<E> then <S><extra_id_2>ok<E>"
    assert prepare_prompt(once) == once


def test_official_prompts_speaker_positions(encoder, prompts) -> None:
    for prompt in prompts:
        (tok,) = encoder.tokenize([prompt])
        assert len(tok.speaker_positions) == len(speech_spans(prompt)) > 0
        assert all(tok.input_ids[p] == encoder.speaker_token_id for p in tok.speaker_positions)
        assert tok.input_ids[-1] == encoder.tokenizer.eos_token_id  # the EOS row is part of the context
        (twice,) = encoder.tokenize([prepare_prompt(prompt)])
        assert twice.input_ids == tok.input_ids


def test_encode_trims_and_batch_padding_changes_nothing(encoder, prompts) -> None:
    alone = encoder.encode(prompts[2:3])
    batch = encoder.encode([prompts[2], prompts[3]])
    assert [c.shape for c in batch.context] == [(n, 4096) for n in batch.num_tokens]
    assert batch.num_tokens[0] == alone.num_tokens[0] < batch.num_tokens[1]
    assert batch.speaker_positions[0] == alone.speaker_positions[0]
    torch.testing.assert_close(batch.context[0], alone.context[0], atol=1e-5, rtol=1e-5)


def test_over_long_prompt_reports_count_and_spans(encoder, prompts) -> None:
    long = " ".join([prompts[3], prompts[2], prompts[3]])
    with pytest.raises(PromptTooLongError) as info:
        encoder.encode([long])
    err = info.value
    (first_len,) = [t.num_tokens for t in encoder.tokenize(prompts[3:4])]
    assert err.num_tokens > 512 and err.max_tokens == 512
    assert f"{err.num_tokens} umT5 tokens" in str(err) and "Shorten" in str(err)
    # prompts[3] alone fits, so its two lines survive; the lines of the third copy (5 and 6) are lost
    assert first_len < 511
    beyond = [s.index for s in err.spans_beyond]
    assert beyond and beyond[-2:] == [4, 5]
    assert all(s.last_token >= 511 for s in err.spans_beyond)
    assert err.spans_beyond[-1].text == "Yes, in all kinds of complex scenes."
    assert "line 6 <S>Yes, in all kinds of complex scenes.<E> (entirely)" in str(err)


def test_transformers_folder_missing_key_names_folder_and_key(encoder, tmp_path) -> None:
    import safetensors.torch as st

    encoder.model.save_pretrained(tmp_path / "text_encoder")
    encoder.tokenizer.save_pretrained(tmp_path / "tokenizer")
    weights = tmp_path / "text_encoder" / "model.safetensors"
    sd = st.load_file(weights)
    sd.pop("encoder.block.1.layer.1.DenseReluDense.wo.weight")
    st.save_file(sd, weights, metadata={"format": "pt"})
    with pytest.raises(TextEncoderLoadError, match=r"text_encoder: not a valid umT5 encoder: 1 missing keys \(encoder\.block\.1"):
        TextEncoder.from_pretrained(tmp_path)


def test_reference_math_detects_a_swapped_gate(tiny, encoder, prompts) -> None:
    """Guards the reference test itself: swapping the gated FFN's two inputs changes the output."""
    sd = dict(load_release_state_dict(tiny["text_encoder"]))
    ids = torch.tensor(encoder.tokenize(prompts[2:3])[0].input_ids)
    good = _reference_forward(sd, ids, heads=encoder.model.config.num_heads)
    sd["blocks.0.ffn.gate.0.weight"], sd["blocks.0.ffn.fc1.weight"] = sd["blocks.0.ffn.fc1.weight"], sd["blocks.0.ffn.gate.0.weight"]
    swapped = _reference_forward(sd, ids, heads=encoder.model.config.num_heads)
    assert (good - swapped).abs().max() > 1e-3
