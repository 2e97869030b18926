"""Golden parity with the release's own backbone code (tests/data/nava_golden, see spec.json)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from nava_core.config import NAVAConfig
from nava_core.model import WanAVModel
from nava_core.weights.tiny import init_golden_weights

GOLDEN = "nava_golden"


@pytest.fixture(scope="module")
def golden(data_dir):
    spec = json.loads((data_dir / GOLDEN / "spec.json").read_text())
    tensors = load_file(str(data_dir / GOLDEN / "tensors.safetensors"))
    return spec, tensors


@pytest.fixture(scope="module")
def golden_weights(golden):
    spec, _ = golden
    return init_golden_weights(NAVAConfig.tiny(), spec["weight_seed"])


def _inputs(case: str, info: dict, tensors: dict) -> dict:
    def items(kind: str, n: int):
        return [tensors[f"{case}/in/{kind}/{i}"] for i in range(n)] if n else None

    return dict(
        video=items("video", info["n_video"]),
        audio=items("audio", info["n_audio"]),
        t=torch.tensor(info["t"], dtype=torch.long),
        context=items("context", info["n_context"]),
        speaker_embeddings=items("speaker_embeddings", info["n_speaker_embeddings"]),
        speaker_positions=info["speaker_positions"],
        masking_modality=info["masking_modality"],
        first_frame_is_clean=info["first_frame_is_clean"],
    )


def _outputs(case: str, kind: str, info: dict, tensors: dict) -> dict[str, list[torch.Tensor] | None]:
    return {
        m: [tensors[f"{case}/out/{kind}/{m}/{i}"] for i in range(info[f"n_{m}"])] if info[f"n_{m}"] else None
        for m in ("video", "audio")
    }


def _run(golden, weights, precision: str):
    spec, tensors = golden
    model = WanAVModel(NAVAConfig.tiny(precision))
    model.load_state_dict(weights, strict=True)
    model.eval()
    results = {}
    with torch.no_grad():
        for case, info in spec["cases"].items():
            video, audio = model(**_inputs(case, info, tensors))
            results[case] = (info, {"video": video, "audio": audio})
    return results


def test_golden_has_every_case(golden):
    spec, _ = golden
    assert len(spec["cases"]) == 11


def test_fp32_matches_release_graph_exactly(golden, golden_weights):
    _, tensors = golden
    for case, (info, got) in _run(golden, golden_weights, "fp32").items():
        want = _outputs(case, "fp32", info, tensors)
        for m in ("video", "audio"):
            assert (got[m] is None) == (want[m] is None), (case, m)
            for i, (g, w) in enumerate(zip(got[m] or [], want[m] or [])):
                assert g.shape == w.shape, (case, m, i)
                err = (g - w).abs().max().item()
                assert err <= 1e-5, f"{case} {m}[{i}]: max abs diff {err:.3g}"


def test_nava_precision_matches_released_outputs(golden, golden_weights):
    _, tensors = golden
    for case, (info, got) in _run(golden, golden_weights, "nava").items():
        want = _outputs(case, "released", info, tensors)
        for m in ("video", "audio"):
            assert (got[m] is None) == (want[m] is None), (case, m)
            for i, (g, w) in enumerate(zip(got[m] or [], want[m] or [])):
                assert g.shape == w.shape, (case, m, i)
                rel = ((g - w).norm() / w.norm()).item()
                cos = torch.nn.functional.cosine_similarity(g.flatten(), w.flatten(), dim=0).item()
                assert rel <= 2e-2 and cos >= 0.999, f"{case} {m}[{i}]: rel L2 {rel:.3g}, cosine {cos:.5f}"
