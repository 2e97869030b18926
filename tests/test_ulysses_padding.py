"""Ulysses padding (issue 17 item 7): the joint [video; audio] sequence is padded at its end, so every
rank's gathered key mask is a prefix (what flash-attn's varlen path assumes), and degrees 2, 3, 4, 6
give the degree-1 outputs exactly (gloo, fp32)."""

from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from nava_core.config import BUCKETS, NAVAConfig, token_counts
from nava_core.model.blocks import StreamState
from nava_core.ulysses import JointLayout, UlyssesContext, enable_ulysses
from nava_core.workers import _free_port

VIDEO_720P, AUDIO_6S = 32_560, 152  # the release's 704x1280, 37 latent frames (NAVA_SPEC.md 8)


def _state(length: int, mask: torch.Tensor | None = None) -> StreamState:
    return StreamState(rotations=torch.ones(1, length, 1, 2, dtype=torch.complex128), key_mask=mask,
                       time_index=None, e0=torch.zeros(1, 1, 6, 4))


def _gathered_mask(video: int, audio: int, world: int) -> torch.Tensor:
    """Shard a forward on every rank (no communication) and join the local key masks in rank order,
    as the all-to-all joins the keys."""
    streams = [torch.zeros(1, video, 4) if video else None, torch.zeros(1, audio, 4) if audio else None]
    states = [_state(video) if video else None, _state(audio) if audio else None]
    parts = []
    for rank in range(world):
        local, local_states, _ = UlyssesContext(world, rank).shard(streams, states)
        lens = [x.shape[1] for x in local if x is not None]
        assert sum(lens) == JointLayout(video, audio, world).chunk  # equal chunks: all-to-all fits
        parts.append(torch.cat([st.key_mask for st in local_states if st is not None], dim=1))
    return torch.cat(parts, dim=1)[0]


def _is_prefix(mask: torch.Tensor) -> bool:
    n = int(mask.sum())
    return bool(mask[:n].all()) and not bool(mask[n:].any())


@pytest.mark.parametrize("world", range(1, 9))
def test_gathered_key_mask_is_a_prefix_at_720p(world):
    assert token_counts(BUCKETS[0], 37).video_tokens == VIDEO_720P
    mask = _gathered_mask(VIDEO_720P, AUDIO_6S, world)
    assert _is_prefix(mask) and int(mask.sum()) == VIDEO_720P + AUDIO_6S
    assert mask.numel() % world == 0 and mask.numel() - int(mask.sum()) < world


@pytest.mark.parametrize("world", range(1, 9))
@pytest.mark.parametrize("video,audio", [(45, 13), (0, 25), (12, 0), (880 * 37, 152), (891 * 25, 102)])
def test_gathered_key_mask_is_a_prefix_for_other_shapes(world, video, audio):
    mask = _gathered_mask(video, audio, world)
    assert _is_prefix(mask) and int(mask.sum()) == video + audio


def test_layout_covers_every_token_once_and_matches_the_mask():
    lay = JointLayout(VIDEO_720P, AUDIO_6S, 3)
    assert (lay.pad, lay.chunk) == (0, 10904)
    lay = JointLayout(VIDEO_720P, AUDIO_6S, 5)
    vids, auds = zip(*(lay.local_slices(r) for r in range(5)))
    assert sum(s.stop - s.start for s in vids) == VIDEO_720P
    assert sum(s.stop - s.start for s in auds) == AUDIO_6S + lay.pad
    assert [s.stop for s in vids][-1] == VIDEO_720P and auds[0] == slice(0, 0)
    full = lay.key_mask(None, None, 1, torch.device("cpu"))[0]
    assert torch.equal(full, _gathered_mask(VIDEO_720P, AUDIO_6S, 5))


def test_joint_mask_is_built_once_per_render():
    ctx = UlyssesContext(3, 1)
    streams, states = [torch.zeros(1, 45, 4), torch.zeros(1, 13, 4)], [_state(45), _state(13)]
    ctx.shard(streams, states)
    first = ctx._current[0]
    for _ in range(3):  # later steps and blocks of the same render reuse it
        ctx.shard(streams, states)
        assert ctx._current[0] is first


# ---- parity with one process --------------------------------------------------------------------

CFG = NAVAConfig(dim=384, ffn_dim=256, num_heads=12, num_double_layers=1, num_single_layers=1, precision="fp32")


def _model():
    from nava_core.model import WanAVModel
    from nava_core.weights.tiny import init_golden_weights

    model = WanAVModel(CFG)
    model.load_state_dict(init_golden_weights(CFG, seed=0))
    return model.eval()


def _cases() -> list[dict]:
    g = torch.Generator().manual_seed(5)
    ctx = [torch.randn(7, CFG.text_dim, generator=g)]
    video = [torch.randn(48, 3, 6, 10, generator=g)]  # 45 tokens
    audio = [torch.randn(13, 128, generator=g)]
    return [
        dict(video=video, audio=audio, t=torch.tensor([700]), context=ctx),
        dict(video=video, audio=audio, t=torch.tensor([300]), context=ctx, masking_modality=True),
        dict(video=video, audio=audio, t=torch.tensor([500]), context=ctx, first_frame_is_clean=True,
             speaker_embeddings=[torch.randn(1, 192, generator=g)], speaker_positions=[[3]]),
        dict(video=None, audio=audio, t=torch.tensor([900]), context=ctx),
        dict(video=video, audio=None, t=torch.tensor([900]), context=ctx),
    ]


DEGREES = (2, 3, 4, 6)


def _rank(rank: int, world: int, port: int, out: str) -> None:
    """One process of a 6-process gloo world; each degree N runs on a sub-group of ranks 0..N-1."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    model = _model()
    for degree in DEGREES:
        group = dist.new_group(list(range(degree)))  # every rank takes part in creating every group
        if rank < degree:
            enable_ulysses(model, UlyssesContext(degree, rank, group=group))
            with torch.no_grad():
                outs = [model(**c) for c in _cases()]
            if rank == degree - 1:
                torch.save(outs, Path(out) / f"degree{degree}.pt")
        dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_degrees_2_3_4_6_equal_degree_1_fp32(tmp_path):
    torch.set_num_threads(1)
    with torch.no_grad():
        reference = [_model()(**c) for c in _cases()]
    world = max(DEGREES)
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, str(tmp_path))) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    for degree in DEGREES:
        outs = torch.load(tmp_path / f"degree{degree}.pt", weights_only=True)
        worst = 0.0
        for (v, a), (rv, ra) in zip(outs, reference):
            for xs, ys in ((v, rv), (a, ra)):
                assert (xs is None) == (ys is None)
                for x, y in zip(xs or [], ys or []):
                    assert x.shape == y.shape
                    worst = max(worst, (x - y).abs().max().item())
        print(f"degree {degree}: max |diff| vs degree 1 = {worst:.2e}")
        assert worst <= 1e-5, (degree, worst)
