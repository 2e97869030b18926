"""Weight-set downloads: clear refusals when the Hub cannot be reached, checksum verification."""

from __future__ import annotations

import hashlib
import json

import pytest

from nava_core.weights import sets


def test_offline_mode_refuses_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(sets.HubUnreachableError, match="HF_HUB_OFFLINE=1.*copy a weight set"):
        sets.download_weights(tmp_path / "w")


def test_unreachable_hub_is_reported_not_raised_raw(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # nothing listens on port 9 of loopback: the download fails at once
    with pytest.raises(sets.HubUnreachableError, match="could not download .*press Download again"):
        sets.download_weights(tmp_path / "w", endpoint="http://127.0.0.1:9", verify=False)


def test_verify_weights_finds_corrupt_files_against_the_manifest(tmp_path):
    good, bad = tmp_path / "NAVA.safetensors", tmp_path / "params" / "x.bin"
    bad.parent.mkdir()
    good.write_bytes(b"backbone bytes")
    bad.write_bytes(b"truncated")
    manifest = {
        "NAVA.safetensors": hashlib.sha256(b"backbone bytes").hexdigest(),
        "params/x.bin": hashlib.sha256(b"the full file").hexdigest(),
        "absent.pth": "0" * 64,
    }
    assert sets.verify_weights(tmp_path, manifest) == ["params/x.bin"]
    (tmp_path / sets.CHECKSUMS).write_text(json.dumps(manifest))
    assert sets.verify_weights(tmp_path) == ["params/x.bin"]
    assert sets.verify_weights(tmp_path / "params") == []  # no saved manifest there: nothing to check


def test_progress_bar_forwards_fractions():
    seen = []
    import io

    bar = sets._progress_bar(lambda msg, frac: seen.append(frac))(total=100, desc="NAVA.safetensors", file=io.StringIO())
    bar.update(50)
    bar.update(50)
    bar.close()
    assert seen and seen[-1] == pytest.approx(0.95) and seen[0] == pytest.approx(0.475)


def test_fp8_backbone_detected_from_the_header(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"backbone.double_blocks.0.ffn.0.weight": torch.zeros(2, 2, dtype=torch.float8_e4m3fn)},
              str(tmp_path / "a.safetensors"))
    save_file({"backbone.double_blocks.0.ffn.0.weight": torch.zeros(2, 2)}, str(tmp_path / "b.safetensors"))
    assert sets.is_fp8_checkpoint(tmp_path / "a.safetensors")
    assert not sets.is_fp8_checkpoint(tmp_path / "b.safetensors")
