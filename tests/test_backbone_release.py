"""The release-size model, built on the meta device: exact parameter count, key set and shapes."""

from __future__ import annotations

import json

import torch

from nava_core.config import NAVAConfig
from nava_core.model import WanAVModel

RELEASE_PARAMS = 6_296_995_520


def _release_on_meta() -> WanAVModel:
    with torch.device("meta"):
        return WanAVModel(NAVAConfig.release())


def test_release_parameter_count_and_parts():
    model = _release_on_meta()
    assert sum(p.numel() for p in model.parameters()) == RELEASE_PARAMS
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.double_blocks[0]) == 239_209_472
    assert count(model.single_blocks[0]) == 163_656_704
    assert count(model.patch_embedding_audio) == 531_237_888
    assert count(model.speaker_embedding) == 10_042_752


def test_release_keys_and_shapes_match_release_file(data_dir):
    expected = json.loads((data_dir / "nava_release_keys.json").read_text())
    assert len(expected) == 1052
    state = _release_on_meta().state_dict()
    assert set(state) == set(expected)
    wrong = {k: (list(v.shape), expected[k]) for k, v in state.items() if list(v.shape) != expected[k]}
    assert not wrong
