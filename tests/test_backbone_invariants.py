"""Invariances that must hold exactly in fp32: no-align == separate streams, padding changes nothing,
speaker injection replaces the right context rows."""

from __future__ import annotations

import pytest
import torch

from nava_core.config import NAVAConfig
from nava_core.model import WanAVModel
from nava_core.weights.tiny import init_golden_weights


@pytest.fixture(scope="module")
def model() -> WanAVModel:
    cfg = NAVAConfig.tiny("fp32")
    m = WanAVModel(cfg).eval()
    m.load_state_dict(init_golden_weights(cfg, seed=3), strict=True)
    return m


def _sample(seed: int, frames: int = 2, h: int = 4, w: int = 6, audio_len: int = 11, text: int = 9):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(48, frames, h, w, generator=g),
        torch.randn(audio_len, 128, generator=g),
        torch.randn(text, 4096, generator=g),
    )


@torch.no_grad()
def test_no_align_equals_separate_streams(model):
    v, a, c = _sample(0)
    t = torch.tensor([600])
    (v_joint,), (a_joint,) = model([v], [a], t, [c], masking_modality=True)
    (v_only,), none_a = model([v], None, t, [c])
    none_v, (a_only,) = model(None, [a], t, [c])
    assert none_a is None and none_v is None
    assert torch.equal(v_joint, v_only)
    assert torch.equal(a_joint, a_only)
    # and the joint pass really mixes the modalities
    (v_align,), (a_align,) = model([v], [a], t, [c])
    assert (v_align - v_only).abs().max() > 1e-4 and (a_align - a_only).abs().max() > 1e-4


@pytest.mark.parametrize("masking_modality", [False, True])
@pytest.mark.parametrize("first_frame_is_clean", [False, True])
@torch.no_grad()
def test_sample_alone_equals_sample_in_padded_batch(model, masking_modality, first_frame_is_clean):
    v0, a0, c0 = _sample(1, frames=2, h=4, w=4, audio_len=7, text=5)
    v1, a1, c1 = _sample(2, frames=3, h=6, w=6, audio_len=15, text=12)
    kw = dict(masking_modality=masking_modality, first_frame_is_clean=first_frame_is_clean)
    (va,), (aa,) = model([v0], [a0], torch.tensor([500]), [c0], **kw)
    (vb, vb1), (ab, ab1) = model([v0, v1], [a0, a1], torch.tensor([500, 900]), [c0, c1], **kw)
    assert vb.shape == va.shape and ab.shape == aa.shape and vb1.shape == v1.shape and ab1.shape == a1.shape
    assert (va - vb).abs().max() <= 1e-5
    assert (aa - ab).abs().max() <= 1e-5


@torch.no_grad()
def test_speaker_rows_replace_context_rows(model):
    _, _, c = _sample(4, text=20)
    spk = torch.randn(2, 192, generator=torch.Generator().manual_seed(5))
    plain = model._embed_text([c], None, None)
    injected = model._embed_text([c], [spk], [[3, 11]])
    expected = model.speaker_embedding(spk)
    assert torch.equal(injected[0, 3], expected[0]) and torch.equal(injected[0, 11], expected[1])
    keep = [i for i in range(512) if i not in (3, 11)]
    assert torch.equal(injected[0, keep], plain[0, keep])


@torch.no_grad()
def test_zero_speaker_embedding_yields_null_token(model):
    spk = torch.zeros(1, 192)
    out = model.speaker_embedding(torch.cat([spk, torch.randn(1, 192)]))
    assert torch.equal(out[0], model.speaker_embedding.null_token[0])
    assert not torch.equal(out[1], model.speaker_embedding.null_token[0])


@torch.no_grad()
def test_changing_a_speaker_changes_the_audio(model):
    v, a, c = _sample(6, text=16)
    t = torch.tensor([700])
    g = torch.Generator().manual_seed(7)
    s1, s2 = torch.randn(1, 192, generator=g), torch.randn(1, 192, generator=g)
    _, (a1,) = model([v], [a], t, [c], speaker_embeddings=[s1], speaker_positions=[[4]])
    _, (a2,) = model([v], [a], t, [c], speaker_embeddings=[s2], speaker_positions=[[4]])
    _, (a_plain,) = model([v], [a], t, [c])
    assert (a1 - a2).abs().max() > 1e-4
    assert (a1 - a_plain).abs().max() > 1e-4
    # embeddings without positions inject nothing (the release's no-align branch relies on it)
    _, (a_nopos,) = model([v], [a], t, [c], speaker_embeddings=[s1], speaker_positions=None)
    assert torch.equal(a_nopos, a_plain)


def test_speaker_count_mismatch_is_refused(model):
    v, a, c = _sample(8)
    with pytest.raises(ValueError, match="speaker positions"):
        model([v], [a], torch.tensor([700]), [c], speaker_embeddings=[torch.randn(1, 192)],
              speaker_positions=[[2, 3]])


def test_overlong_context_is_refused(model):
    v, a, _ = _sample(9)
    with pytest.raises(ValueError, match="at most 512"):
        model([v], [a], torch.tensor([700]), [torch.randn(513, 4096)])
