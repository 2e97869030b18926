"""fp8 backbone storage: the release's fp8 file format loads strictly, stays fp8 where the file is fp8,
and renders exactly like the same weights dequantised (and close to the fp32 weights)."""

from __future__ import annotations

import shutil

import pytest
import torch

from nava_core import memory
from nava_core.config import NAVAConfig
from nava_core.fp8 import FP8_DTYPE, Float8Linear, dequantized_state_dict, quantize_blocks
from nava_core.request import RenderRequest
from nava_core.weights.checkpoint import load_backbone_fp8, load_backbone_state_dict, save_backbone_checkpoint
from nava_core.weights.tiny import init_golden_weights

REQ = RenderRequest(prompt="a dog barks <S>woof<E>", width=160, height=96, seconds=0.5, steps=2, precision="fp32",
                    seed=3)


def test_fp8_checkpoint_loads_with_fp8_blocks_only(tmp_path) -> None:
    from nava_core.fp8 import SCALE_SUFFIX, dequantize_state_dict

    cfg = NAVAConfig.tiny("fp32")
    sd = init_golden_weights(cfg, seed=1)
    path = save_backbone_checkpoint(sd, tmp_path / "NAVA_fp8.safetensors", fp8=True)
    file = load_backbone_state_dict(path)
    model = load_backbone_fp8(path, cfg)
    state = model.state_dict()
    assert set(state) == set(file)  # the release fp8 layout: weight (fp8) + weight_scale (bf16) per block Linear
    assert set(dequantize_state_dict(state)) == set(sd)
    scales = [k for k in file if k.endswith("." + SCALE_SUFFIX)]
    assert scales and all(file[k].dtype == torch.bfloat16 for k in scales)
    for k, v in state.items():
        assert v.dtype == file[k].dtype, k  # fp8 exactly where the file is fp8
        assert torch.equal(v.float(), file[k].float()), k
    fp8_keys = [k for k, v in state.items() if v.dtype == FP8_DTYPE]
    assert fp8_keys and all(k.startswith(("double_", "single_")) for k in fp8_keys)
    # per-row scales keep e4m3's 3-bit mantissa precision; a plain cast flushes small weights to zero
    deq = dequantize_state_dict(state)
    for k in fp8_keys:
        err_scaled = (deq[k] - sd[k]).norm() / sd[k].norm()
        err_cast = (sd[k].to(FP8_DTYPE).float() - sd[k]).norm() / sd[k].norm()
        assert err_scaled < 0.05 and err_scaled < err_cast, k


def test_fp8_file_without_scales_and_per_tensor_scales_load(tmp_path) -> None:
    from safetensors.torch import save_file

    from nava_core.fp8 import SCALE_SUFFIX, dequantize_state_dict

    cfg = NAVAConfig.tiny("fp32")
    sd = init_golden_weights(cfg, seed=2)
    plain = {}
    for k, v in sd.items():
        if k.startswith(("double_blocks.", "single_blocks.")) and k.endswith(".weight") and v.ndim == 2:
            plain["backbone." + k] = (v * 100).to(FP8_DTYPE)
            plain["backbone." + k[: -len("weight")] + SCALE_SUFFIX] = torch.tensor([0.01], dtype=torch.bfloat16)
        else:
            plain["backbone." + k] = v
    save_file(plain, str(tmp_path / "per_tensor.safetensors"))
    model = load_backbone_fp8(tmp_path / "per_tensor.safetensors", cfg)
    deq = dequantize_state_dict(model.state_dict())
    k = "double_blocks.0.self_attn.q.weight"
    expected = plain["backbone." + k].float() * torch.tensor(0.01, dtype=torch.bfloat16).float()
    assert torch.equal(deq[k], expected)
    no_scale = {k: v for k, v in plain.items() if not k.endswith(SCALE_SUFFIX)}
    save_file(no_scale, str(tmp_path / "no_scale.safetensors"))
    deq2 = dequantize_state_dict(load_backbone_fp8(tmp_path / "no_scale.safetensors", cfg).state_dict())
    assert torch.equal(deq2[k], plain["backbone." + k].float())


def test_fp8_forward_equals_dequantised_model(tmp_path) -> None:
    from nava_core.model import WanAVModel

    cfg = NAVAConfig.tiny("fp32")
    sd = init_golden_weights(cfg, seed=2)
    fp8_model = WanAVModel(cfg)
    fp8_model.load_state_dict(sd)
    n = quantize_blocks(fp8_model, torch.float32)
    assert n == sum(isinstance(m, Float8Linear) for m in fp8_model.modules()) and n > 0
    ref = WanAVModel(cfg)
    ref.load_state_dict(dequantized_state_dict(fp8_model))
    full = WanAVModel(cfg)
    full.load_state_dict(sd)
    g = torch.Generator().manual_seed(0)
    args = dict(video=[torch.randn(48, 3, 4, 6, generator=g)], audio=[torch.randn(11, 128, generator=g)],
                t=torch.tensor([500]), context=[torch.randn(9, 4096, generator=g)])
    with torch.no_grad():
        v8, a8 = fp8_model(**args)
        vr, ar = ref(**args)
        vf, af = full(**args)
    assert torch.equal(v8[0], vr[0]) and torch.equal(a8[0], ar[0])
    rel = ((v8[0] - vf[0]).norm() / vf[0].norm()).item()
    assert 0 < rel < 0.15  # fp8 rounding changes the result, but only a little


def test_fp8_profile_renders_release_fp8_file(tiny_weights, tmp_path) -> None:
    """A weight set holding only NAVA_fp8.safetensors renders under the fp8 profile, exactly like the
    dequantised weights and close to the fp32 original."""
    from nava_core.pipeline import NAVAPipeline

    folder = tmp_path / "fp8set"
    shutil.copytree(tiny_weights, folder)
    full_sd = load_backbone_state_dict(folder / "NAVA.safetensors")
    save_backbone_checkpoint(full_sd, folder / "NAVA_fp8.safetensors", fp8=True)
    (folder / "NAVA.safetensors").unlink()
    file = load_backbone_state_dict(folder / "NAVA_fp8.safetensors")

    pipe8 = NAVAPipeline.from_pretrained(folder, device="cpu", precision="fp32")
    memory.apply_profile(pipe8, "fp8")
    state = pipe8.transformer.state_dict()
    assert all(torch.equal(state[k].float(), file[k].float()) and state[k].dtype == file[k].dtype for k in file)
    out8 = pipe8(memory.prepare_render(pipe8, REQ))

    deq = NAVAPipeline.from_pretrained(folder, device="cpu", precision="fp32")  # fp8 file upcast to fp32
    out_deq = deq(REQ.replace(tiled_vae=True))
    assert torch.equal(out8.video_latents, out_deq.video_latents)
    assert torch.equal(out8.audio_latents, out_deq.audio_latents)
    assert (out8.frames == out_deq.frames).all()

    full = NAVAPipeline.from_pretrained(tiny_weights, device="cpu", precision="fp32")
    out_full = full(REQ)
    rel = ((out8.video_latents - out_full.video_latents).norm() / out_full.video_latents.norm()).item()
    assert 0 < rel < 0.25


def test_convert_once_then_load_equals_converting_at_load(tmp_path) -> None:
    from nava_core.weights.checkpoint import convert_checkpoint_to_fp8

    cfg = NAVAConfig.tiny("fp32")
    src = save_backbone_checkpoint(init_golden_weights(cfg, seed=4), tmp_path / "NAVA.safetensors")
    dst = convert_checkpoint_to_fp8(src, tmp_path / "NAVA_fp8.safetensors")
    from nava_core.estimate import param_counts

    saved = src.stat().st_size - dst.stat().st_size  # 3 bytes per block matrix element (fp32 -> fp8)
    assert abs(saved - 3 * param_counts(cfg).block_linear) < 50_000  # headers differ slightly
    a, b = load_backbone_fp8(src, cfg).state_dict(), load_backbone_fp8(dst, cfg).state_dict()
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k].float(), b[k].float()) for k in a)


def test_full_precision_profiles_dequantise_an_fp8_file(tmp_path) -> None:
    from nava_core.fp8 import dequantize_state_dict
    from nava_core.weights.checkpoint import load_backbone

    cfg = NAVAConfig.tiny("fp32")
    path = save_backbone_checkpoint(init_golden_weights(cfg, seed=4), tmp_path / "NAVA_fp8.safetensors", fp8=True)
    resident = load_backbone(path, cfg)
    expected = dequantize_state_dict(load_backbone_state_dict(path))
    got = resident.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k].float()) for k in got)
