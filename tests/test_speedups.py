"""Opt-in speed-ups that change the output: drift against the exact path on the same seed is measured,
reported and bounded (never asserted equal), and the forwards they save are what they claim.

Also the fp8 compute path (row-wise scaled fp8 matmul; emulated on the CPU with the same
quantisation) against bf16/fp32 compute of the same fp8-stored weights.
"""

from __future__ import annotations

import pytest
import torch

from nava_core.guidance import Branch
from nava_core.request import RenderRequest, RequestError
from nava_core.speedups import SPEEDUP_NAMES, Speedup, describe, get_speedup
from nava_core.step_cache import StepReuse

REQ = RenderRequest(prompt="a cat says <S>hello<E> in the rain", width=160, height=96, seconds=1.0, steps=10,
                    precision="fp32", seed=3)


class _Counter:
    def __init__(self, model: torch.nn.Module) -> None:
        self.rows = 0
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs) -> None:
        self.rows += len(kwargs["audio"])

    def close(self) -> None:
        self.handle.remove()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def exact(tiny_pipe):
    cond = tiny_pipe.encode_conditions(REQ)
    counter = _Counter(tiny_pipe.transformer)
    try:
        video, audio, _ = tiny_pipe.denoise(REQ, cond)
    finally:
        counter.close()
    return cond, video, audio, counter.rows


@pytest.mark.parametrize("name", [n for n in SPEEDUP_NAMES if n != "exact"])
def test_speedup_drift_is_bounded_and_forwards_are_saved(tiny_pipe, exact, name: str) -> None:
    cond, v0, a0, rows0 = exact
    counter = _Counter(tiny_pipe.transformer)
    try:
        v, a, _ = tiny_pipe.denoise(REQ.replace(speedup=name), cond)
    finally:
        counter.close()
    stats = tiny_pipe.last_step_reuse.stats()
    dv, da = _rel(v, v0), _rel(a, a0)
    print(f"{name}: drift video {dv:.4f} audio {da:.4f}, branch-forwards saved {stats['speedup_forward_saving']:.1%}")
    assert torch.isfinite(v).all() and torch.isfinite(a).all()
    assert dv < 1.0 and da < 1.0  # same seed, same content scale: a bounded perturbation, not noise
    # the rows the backbone really computed match the runner's own accounting
    assert rows0 - counter.rows == stats["speedup_branch_forwards_skipped"]
    sp = get_speedup(name)
    if sp.aux_every > 1:  # no-align skipped on every off-step after the first computed one
        assert stats["speedup_branch_forwards_skipped"] >= (REQ.steps - 1) // sp.aux_every
        assert dv > 0 or da > 0


def test_step_cache_reuses_exactly_when_inputs_barely_move() -> None:
    """Unit check of the decision rule with a hand-made latent trajectory (threshold per stream)."""
    sp = Speedup("t", "t", threshold_video=0.05, threshold_audio=1.0, warmup=1, tail=1)
    reuse = StepReuse(sp, total_steps=6)
    calls = []

    def run(branches):
        calls.append(list(branches))
        return {b: (torch.ones(2), torch.ones(2)) for b in branches}

    video = torch.ones(4)
    audio = torch.ones(4)
    moves = [0.0, 0.01, 0.01, 0.2, 0.01, 0.01]  # relative change of the video latent per step
    for m in moves:
        video = video * (1 + m)
        reuse.predict([Branch.COND, Branch.NEG], run, video, audio, lambda p: p[Branch.COND])
    # step 0 warm-up; 1, 2 reuse (0.01, 0.02 < 0.05); 3 computes (0.22); 4 reuses; 5 is the forced tail
    assert reuse.reused_steps == 3 and len(calls) == 3


def test_unknown_speedup_is_refused_with_the_choices() -> None:
    with pytest.raises(RequestError, match="speedup must be one of exact"):
        REQ.replace(speedup="warp9")
    assert RenderRequest.from_json(REQ.replace(speedup="aux_every_2").to_json()).speedup == "aux_every_2"
    assert describe("exact").startswith("exact")
    assert "drift" in describe("step_cache_light")


def test_fp8_compute_drift_vs_weight_only_fp8_and_full_precision() -> None:
    """Row-wise scaled fp8 matmuls (torch._scaled_mm; the CPU has a kernel in this torch) against the
    same fp8-stored weights computed in bf16 (profile fp8) and against the unquantised model."""
    from nava_core.config import NAVAConfig
    from nava_core.fp8 import Float8Linear, quantize_blocks, set_fp8_compute
    from nava_core.model import WanAVModel
    from nava_core.weights.tiny import init_golden_weights

    cfg = NAVAConfig.tiny("nava")
    g = torch.Generator().manual_seed(0)
    case = dict(video=[torch.randn(48, 3, 6, 10, generator=g)], audio=[torch.randn(13, 128, generator=g)],
                t=torch.tensor([600]), context=[torch.randn(9, cfg.text_dim, generator=g)])

    def run(model):
        with torch.no_grad():
            v, a = model(**case)
        return v[0], a[0]

    full = WanAVModel(cfg).eval()
    full.load_state_dict(init_golden_weights(cfg, seed=0))
    ref_v, ref_a = run(full)
    quantize_blocks(full)
    w8_v, w8_a = run(full)
    assert set_fp8_compute(full, True) == sum(isinstance(m, Float8Linear) for m in full.modules()) > 0
    c8_v, c8_a = run(full)
    drift = {"fp8 compute vs fp8 storage": (_rel(c8_v, w8_v), _rel(c8_a, w8_a)),
             "fp8 compute vs full precision": (_rel(c8_v, ref_v), _rel(c8_a, ref_a)),
             "fp8 storage vs full precision": (_rel(w8_v, ref_v), _rel(w8_a, ref_a))}
    for k, (dv, da) in drift.items():
        print(f"{k}: video {dv:.4f} audio {da:.4f}")
    dv, da = drift["fp8 compute vs fp8 storage"]
    assert 0 < dv < 0.25 and 0 < da < 0.25


def test_fp8_compute_profile_is_opt_in_and_renders(tiny_weights) -> None:
    from nava_core.fp8 import Float8Linear
    from nava_core.pipeline import NAVAPipeline
    from nava_core.profiles import choose_profile

    assert all(choose_profile(b) != "fp8_compute" for b in (None, 10**9, 24 * 10**9, 80 * 10**9, 10**12))
    pipe = NAVAPipeline.from_pretrained(tiny_weights, device="cpu", memory_profile="fp8_compute")
    layers = [m for m in pipe.transformer.modules() if isinstance(m, Float8Linear)]
    assert layers and all(m.fp8_compute for m in layers)
    req = REQ.replace(precision="nava", steps=2, memory_profile="fp8_compute")
    video, audio, _ = pipe.denoise(req, pipe.encode_conditions(req))
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()
