"""Memory profiles (the one table in nava_core.profiles): automatic choice, refusal of unknown names,
estimates (nava_core.estimate) calibrated to the release, and that offload profiles attach their hooks and
render exactly what the resident profile renders (tiny pipeline, CPU)."""

from __future__ import annotations

import pytest
import torch

from nava_core import estimate as E
from nava_core import memory, profiles
from nava_core.config import GuidanceScales
from nava_core.estimate import estimate
from nava_core.profiles import MEMORY_PROFILES, MemoryProfileError, choose_profile
from nava_core.request import RenderRequest, RequestError

GB = 1e9
H100 = E.GPUInfo(0, "NVIDIA H100 80GB HBM3", 85_031_714_816, E.bf16_peak_flops("NVIDIA H100 80GB HBM3"))
RTX4090 = E.GPUInfo(0, "NVIDIA GeForce RTX 4090", 25_386_352_640, E.bf16_peak_flops("RTX 4090"))
SPEAKER_REQ = RenderRequest(prompt="a man says <S>hello there<E>", speaker_wavs=("voice.wav",))


def test_choose_profile_by_card_size() -> None:
    assert choose_profile(None) == "resident"  # CPU: nothing to offload to
    assert choose_profile(H100.total_bytes) == "resident"
    assert choose_profile(int(64 * GB)) == "t5_offload"
    assert choose_profile(RTX4090.total_bytes) == "fp8"
    assert choose_profile(int(16 * GB)) == "group_offload"


def test_profile_names_aliases_and_refusal() -> None:
    assert profiles.resolve_profile_name("low") == "fp8"
    assert profiles.resolve_profile_name("auto", None) == "resident"
    assert profiles.canonical_profile(" Balanced ") == "t5_offload" and profiles.canonical_profile(None) == "auto"
    for refuse in (profiles.resolve_profile_name, profiles.canonical_profile):
        with pytest.raises(MemoryProfileError, match="unknown memory profile 'turbo'; choose one of auto, resident, "
                                                     "t5_offload, fp8, group_offload"):
            refuse("turbo")
    with pytest.raises(RequestError, match="unknown memory profile 'turbo'; choose one of auto"):
        RenderRequest(prompt="x", memory_profile="turbo")
    assert RenderRequest(prompt="x", memory_profile="low").memory_profile == "low"


@pytest.mark.parametrize("name", list(MEMORY_PROFILES))
def test_estimate_reproduces_release_table(name: str) -> None:
    """At the release's own setting (8xH100, 720p, 37 latent frames, 4 forwards) the published numbers."""
    est = estimate(SPEAKER_REQ, name, 8, gpu=H100)
    prof = MEMORY_PROFILES[name]
    assert est.forwards_per_step == 4
    assert est.seconds_per_step == pytest.approx(prof.reference_s_per_step, rel=1e-6)
    assert est.total_seconds == pytest.approx(prof.reference_s_per_step * 50, rel=1e-6)
    if prof.reference_peak_bytes is not None:
        assert est.peak_vram_bytes == pytest.approx(prof.reference_peak_bytes, rel=1e-3)
    assert "estimate" in est.label and "not measured" in est.label


def test_estimate_follows_branches_gpus_and_size() -> None:
    base = estimate(SPEAKER_REQ, "resident", 8, gpu=H100)
    no_speaker = estimate(SPEAKER_REQ.replace(speaker_wavs=()), "resident", 8, gpu=H100)
    cond_only = estimate(SPEAKER_REQ.replace(guidance=GuidanceScales(0, 0, 0, 0, 0)), "resident", 8, gpu=H100)
    assert (no_speaker.forwards_per_step, cond_only.forwards_per_step) == (3, 1)
    assert no_speaker.seconds_per_step == pytest.approx(base.seconds_per_step * 3 / 4)
    assert cond_only.seconds_per_step == pytest.approx(base.seconds_per_step / 4)
    one = estimate(SPEAKER_REQ, "resident", 1, gpu=H100)
    assert one.seconds_per_step == pytest.approx(8 * base.seconds_per_step)
    assert one.peak_vram_bytes >= base.peak_vram_bytes
    # with a tiled decode the denoising activations (8x the tokens per GPU) set the peak
    assert estimate(SPEAKER_REQ, "fp8", 1, gpu=H100).peak_vram_bytes > \
        estimate(SPEAKER_REQ, "fp8", 8, gpu=H100).peak_vram_bytes
    short = estimate(SPEAKER_REQ.replace(seconds=2.0), "resident", 8, gpu=H100)
    assert short.seconds_per_step < base.seconds_per_step / 3  # attention is quadratic in tokens
    slow_card = estimate(SPEAKER_REQ, "fp8", 1, gpu=RTX4090)
    assert slow_card.seconds_per_step > estimate(SPEAKER_REQ, "fp8", 1, gpu=H100).seconds_per_step * 5
    sizes = [estimate(SPEAKER_REQ, p, 1, gpu=H100).peak_vram_bytes for p in ("resident", "t5_offload", "fp8")]
    assert sizes == sorted(sizes, reverse=True)
    assert estimate(SPEAKER_REQ, "fp8", 8, gpu=RTX4090).peak_vram_bytes < RTX4090.total_bytes
    assert estimate(SPEAKER_REQ, "resident", 8, gpu=RTX4090).peak_vram_bytes > RTX4090.total_bytes
    with pytest.raises(ValueError, match="divide"):
        estimate(SPEAKER_REQ, "resident", 5, gpu=H100)


def test_estimate_with_request_only_uses_defaults() -> None:
    """The studio calls `estimate(request)`: profile and GPU come from the request and detection."""
    est = estimate(RenderRequest(prompt="rain on a window"))
    assert est.forwards_per_step == 3 and est.peak_vram_bytes > 0 and est.total_seconds > 0
    assert "GB per GPU" in est.describe()


def test_detect_gpus_on_this_machine() -> None:
    gpus = E.detect_gpus()
    assert len(gpus) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_tiny_cpu_estimate_grows_with_steps_size_and_branches() -> None:
    base = RenderRequest(prompt="x", width=160, height=96, seconds=1.0, steps=4)
    t = E.render_seconds(base, tiny=True)
    assert t > 0 and E.render_seconds(base.replace(steps=8), tiny=True) > t
    assert E.render_seconds(base.replace(width=320, height=192), tiny=True) > t
    assert E.render_seconds(base.replace(guidance=GuidanceScales(0, 0, 0, 0, 0)), tiny=True) < t
    assert E.render_seconds(base) == estimate(base).total_seconds  # real weights: the calibrated model


# ---- offload changes where weights live, not the result ---------------------------------------

REQ = RenderRequest(prompt="a cat says <S>hello<E> in the rain", width=160, height=96, seconds=0.5, steps=2,
                    precision="fp32", seed=7)


def _load(tiny_weights, profile: str):
    from nava_core.pipeline import NAVAPipeline

    pipe = NAVAPipeline.from_pretrained(tiny_weights, device="cpu", precision="fp32")
    memory.apply_profile(pipe, profile)
    return pipe


@pytest.fixture(scope="module")
def resident_render(tiny_weights):
    pipe = _load(tiny_weights, "resident")
    return pipe(memory.prepare_render(pipe, REQ))


@pytest.mark.parametrize("profile", ["t5_offload", "group_offload"])
def test_offload_profiles_render_like_resident(tiny_weights, resident_render, profile: str) -> None:
    pipe = _load(tiny_weights, profile)
    assert isinstance(pipe.text_encoder, memory.OffloadedTextEncoder)
    assert hasattr(pipe.text_encoder.inner.model, "_hf_hook")  # accelerate's offload hook
    if profile == "group_offload":
        registry = getattr(pipe.transformer.double_blocks[0], "_diffusers_hook", None)
        assert registry is not None and registry.get_hook("group_offloading") is not None
    req = memory.prepare_render(pipe, REQ)
    assert req.tiled_vae == MEMORY_PROFILES[profile].vae_tiling
    out = pipe(req)
    assert torch.equal(out.video_latents, resident_render.video_latents)
    assert torch.equal(out.audio_latents, resident_render.audio_latents)
    if not req.tiled_vae:
        assert (out.frames == resident_render.frames).all()
    assert out.audio.shape == resident_render.audio.shape
    # the encoder went back to the offload device after encoding
    assert next(pipe.text_encoder.inner.model.parameters()).device.type == "cpu"


def test_switching_profile_needs_reload(tiny_weights) -> None:
    pipe = _load(tiny_weights, "t5_offload")
    assert memory.apply_profile(pipe, "t5_offload").profile.name == "t5_offload"  # same: no-op
    with pytest.raises(MemoryProfileError, match="reload"):
        memory.apply_profile(pipe, "fp8")


def test_param_counts_match_the_model() -> None:
    from nava_core.config import NAVAConfig
    from nava_core.model import WanAVModel

    assert E.param_counts(NAVAConfig.release()).total == 6_296_995_520  # NAVA_SPEC.md 1
    assert E.param_counts(NAVAConfig.release()).block_max == 239_209_472  # one double block
    cfg = NAVAConfig.tiny()
    with torch.device("meta"):
        model = WanAVModel(cfg)
    pc = E.param_counts(cfg)
    assert pc.total == sum(p.numel() for p in model.parameters())
    assert pc.block_linear == sum(p.numel() for n, p in model.named_parameters()
                                  if n.startswith(("double_", "single_")) and p.ndim == 2)


@pytest.mark.parametrize("profile", ["resident", "fp8", "group_offload"])
def test_load_backbone_for_profile(tiny_weights, profile: str) -> None:
    from nava_core.config import NAVAConfig
    from nava_core.fp8 import FP8_DTYPE
    from nava_core.weights.checkpoint import load_backbone_state_dict

    path = tiny_weights / "NAVA.safetensors"
    cfg = NAVAConfig.tiny("fp32")
    model = memory.load_backbone_for_profile(path, cfg, "cpu", profile)
    state, file = model.state_dict(), load_backbone_state_dict(path)
    from nava_core.fp8 import quantize_weight

    fp8 = {k for k, v in state.items() if v.dtype == FP8_DTYPE}
    assert bool(fp8) == (profile == "fp8")
    for k, v in file.items():
        expected = quantize_weight(v)[0] if k in fp8 else v
        assert torch.equal(state[k].float(), expected.float()), k


def test_audio_only_estimate_is_bounded_by_weight_reads_and_reads_well() -> None:
    """Few tokens: the FLOP count alone promised ~0.01 s/step; a forward at least streams its weights."""
    from nava_core.config import GuidanceScales
    from nava_core.estimate import (REFERENCE_HBM_BYTES_PER_S, duration_text, estimate, param_counts)
    from nava_core.config import NAVAConfig
    from nava_core.request import RenderRequest

    req = RenderRequest(prompt="A voice says <S>hello there<E>", mode="audio", seconds=5.0, steps=50,
                        guidance=GuidanceScales.audio_only())
    est = estimate(req, profile="resident", gpus=1)
    weights_read = 4 * param_counts(NAVAConfig.release()).total / REFERENCE_HBM_BYTES_PER_S
    assert est.seconds_per_step >= est.forwards_per_step * weights_read
    assert "0.0 s" not in est.describe() and duration_text(est.total_seconds) != "0 s"
    assert duration_text(0.6) == "0.6 s" and duration_text(48.2) == "48 s" and duration_text(228) == "3.8 min"
