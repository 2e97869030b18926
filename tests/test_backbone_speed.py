"""The exact speed switches of the backbone give the unoptimised path's outputs.

Each switch is compared with the same model run without it, on the golden weights and batches that
cover padding, image-to-video time rows, speakers, the no-align pass and single-stream inputs:
cached text K/V, frame-0 modulation slices, bf16 block storage (bitwise: autocast casts to bf16
anyway), attention backend choice, and per-block torch.compile (traced with fullgraph, i.e. no graph
break). The one rounding-level change (float32 RoPE under bf16) is measured and bounded.
"""

from __future__ import annotations

import pytest
import torch

from nava_core.config import NAVAConfig
from nava_core.model import WanAVModel
from nava_core.model.backends import AttentionBackendError, choose_attention, probe
from nava_core.model.blocks import StreamState, TokenModulation
from nava_core.weights.tiny import init_golden_weights


def _model(precision: str) -> WanAVModel:
    cfg = NAVAConfig.tiny(precision)
    model = WanAVModel(cfg)
    model.load_state_dict(init_golden_weights(cfg, seed=0))
    return model.eval()


def _cases(seed: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    cfg = NAVAConfig.tiny()
    ctx = [torch.randn(7, cfg.text_dim, generator=g), torch.randn(12, cfg.text_dim, generator=g)]
    video = [torch.randn(48, 3, 6, 10, generator=g), torch.randn(48, 2, 4, 6, generator=g)]
    audio = [torch.randn(13, 128, generator=g), torch.randn(9, 128, generator=g)]
    same_video = [video[0], video[0].flip(-1)]
    spk = [torch.randn(1, 192, generator=g), torch.zeros(0, 192)]
    return [
        dict(video=video, audio=audio, t=torch.tensor([700, 700]), context=ctx),
        dict(video=video, audio=audio, t=torch.tensor([300, 300]), context=ctx, masking_modality=True),
        dict(video=same_video, audio=[audio[0], audio[0]], t=torch.tensor([500, 500]), context=ctx,
             first_frame_is_clean=True, speaker_embeddings=spk, speaker_positions=[[3], []]),
        dict(video=video, audio=audio, t=torch.tensor([500, 500]), context=ctx, first_frame_is_clean=True),
        dict(video=None, audio=[audio[0]], t=torch.tensor([900]), context=ctx[:1]),
        dict(video=[video[0]], audio=None, t=torch.tensor([900]), context=ctx[:1]),
    ]


def _run(model: WanAVModel, cases: list[dict], repeat: int = 1) -> list:
    with torch.no_grad():
        out = None
        for _ in range(repeat):
            out = [model(**c) for c in cases]
        return out


def _flat(outs: list) -> list[torch.Tensor]:
    return [t for v, a in outs for xs in (v, a) for t in (xs or [])]


def _max_diff(a: list, b: list) -> float:
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb)
    return max((x - y).abs().max().item() for x, y in zip(fa, fb))


@pytest.mark.parametrize("precision", ["nava", "fp32"])
def test_cached_text_kv_equals_recomputing(precision: str) -> None:
    cases = _cases()
    plain = _model(precision)
    plain.text_kv_cache = None
    want = _run(plain, cases)
    cached = _model(precision)
    got = _run(cached, cases, repeat=2)  # second round: every text k/v comes from the cache
    assert cached.text_kv_cache.hits >= len(cases)
    assert _max_diff(got, want) == 0.0


def test_text_kv_cache_misses_when_context_or_weights_change() -> None:
    model = _model("fp32")
    case = _cases()[4]
    first = _run(model, [case])
    case["context"][0].mul_(2)  # same tensor object, new content: must not hit
    changed = _run(model, [case])
    assert _max_diff(first, changed) > 0
    fresh = _model("fp32")
    fresh.text_kv_cache = None
    assert _max_diff(changed, _run(fresh, [case])) == 0.0
    with torch.no_grad():  # weights edited in place: must not hit either
        model.double_blocks[0].cross_attn.k.weight.mul_(0.5)
        fresh.double_blocks[0].cross_attn.k.weight.mul_(0.5)
    assert _max_diff(_run(model, [case]), _run(fresh, [case])) == 0.0


def test_frame0_modulation_slices_equal_the_gathered_tables() -> None:
    g = torch.Generator().manual_seed(0)
    b, length, d, n0 = 2, 37, 16, 10
    table = torch.randn(b, 2, 6, d, generator=g)
    index = (torch.arange(length)[None, :] < n0).long().expand(b, -1)
    x, y = torch.randn(b, length, d, generator=g), torch.randn(b, length, d, generator=g)
    gathered = TokenModulation(table, StreamState(None, None, index, None, clean_tokens=None))
    for clean in (n0, 0, length):  # split inside, all-noisy and all-clean shards (Ulysses slices)
        idx = (torch.arange(length)[None, :] < clean).long().expand(b, -1)
        sliced = TokenModulation(table, StreamState(None, None, idx, None, clean_tokens=clean))
        ref = TokenModulation(table, StreamState(None, None, idx, None, clean_tokens=None))
        assert torch.equal(sliced.modulate(x, 0, 1), ref.modulate(x, 0, 1))
        assert torch.equal(sliced.gated(x, y, 2), ref.gated(x, y, 2))
    assert torch.equal(TokenModulation(table, StreamState(None, None, index, None, clean_tokens=n0)).modulate(x, 3, 4),
                       gathered.modulate(x, 3, 4))


def test_bf16_block_storage_is_bitwise_exact_under_nava() -> None:
    cases = _cases()
    want = _run(_model("nava"), cases)
    model = _model("nava")
    converted = model.store_blocks_low()
    assert converted > 0 and model.blocks_stored_low
    assert model.double_blocks[0].norm3.weight.dtype == torch.float32  # autocast runs layer_norm in fp32
    assert _max_diff(_run(model, cases), want) == 0.0
    with pytest.raises(ValueError, match="load the weights again with precision 'fp32'"):
        model.set_precision("fp32")


def test_fast_rope_vs_release_rope_through_the_model() -> None:
    """float32 RoPE under bf16 compute vs the release's float64: measured, bounded (rounding level)."""
    cases = _cases()
    exact = _model("nava")
    assert exact.exact_rope  # the default is the release's float64 arithmetic
    want = _run(exact, cases)
    fast = _model("nava")
    fast.exact_rope = False
    got = _run(fast, cases)
    worst = 0.0
    for x, y in zip(_flat(got), _flat(want)):
        worst = max(worst, ((x - y).norm() / y.norm()).item())
    print(f"float32 vs float64 RoPE under 'nava': worst relative L2 over outputs {worst:.3g}")
    assert worst < 2e-2  # bf16 compute noise level (the golden check allows 2e-2 vs the release)


def test_attention_backend_is_probed_and_recorded_on_cpu() -> None:
    cpu = torch.device("cpu")
    choice = choose_attention("auto", cpu)
    assert choice.name == "sdpa" and "auto" in choice.reason
    for name in ("flash", "flash3", "cudnn"):
        assert "CUDA" in probe(name, cpu)
        with pytest.raises(AttentionBackendError, match="cannot run here"):
            choose_attention(name, cpu)
    with pytest.raises(AttentionBackendError, match="choose one of"):
        choose_attention("flash9", cpu)
    model = _model("fp32")
    assert model.set_attention_backend("sdpa").name == "sdpa"
    assert model.double_blocks[0].self_attn.attention_backend is model.attention_choice
    assert model.single_blocks[-1].cross_attn.attention_backend is model.attention_choice


@pytest.mark.slow
def test_compiled_blocks_trace_without_graph_breaks_and_match_eager() -> None:
    """fullgraph=True fails on any graph break (the old complex RoPE broke Inductor); aot_eager runs
    the traced graphs on the CPU without a C++ toolchain."""
    torch._dynamo.reset()
    cases = [_cases()[0], _cases()[3]]
    want = _run(_model("fp32"), cases)
    model = _model("fp32")
    model.compile_blocks(backend="aot_eager", fullgraph=True, dynamic=False)
    assert model.blocks_compiled
    assert _max_diff(_run(model, cases), want) <= 1e-6
    torch._dynamo.reset()


def test_bf16_group_offload_equals_resident_under_nava() -> None:
    """bf16 storage applied before group offload (what the engine does on CUDA): the streamed groups
    are bf16 and the result is the resident model's, bit for bit (CPU both ends here)."""
    from diffusers.hooks import apply_group_offloading

    from nava_core.speed import SpeedOptions, prepare_storage

    cases = _cases()[:3]
    want = _run(_model("nava"), cases)
    model = _model("nava")
    assert prepare_storage(model, SpeedOptions(bf16_storage=True), torch.device("cpu"))
    apply_group_offloading(model, onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
                           offload_type="block_level", num_blocks_per_group=1, block_modules=["patch_embedding_audio"])
    assert model.double_blocks[0].self_attn.q.weight.dtype == torch.bfloat16
    assert _max_diff(_run(model, cases, repeat=2), want) == 0.0


def test_engine_speed_settings_on_cpu_are_recorded(tiny_pipe) -> None:
    state = tiny_pipe.speed
    assert state.attention == "sdpa" and not state.compiled and not state.bf16_storage
    assert "off on CPU" in state.describe()
    assert tiny_pipe.transformer.attention_choice.name == "sdpa"
