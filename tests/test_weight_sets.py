"""Weight-set downloads: clear refusals when the Hub cannot be reached, checksum verification through
huggingface_hub, fp8 detection from the safetensors header, and the one data-folder rule."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nava_core.datahome import data_home
from nava_core.weights import download, layouts, tiny


def test_offline_mode_refuses_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(download.HubUnreachableError, match="HF_HUB_OFFLINE=1.*copy a weight set"):
        download.download_weights(tmp_path / "w")


def test_unreachable_hub_is_reported_not_raised_raw(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # nothing listens on port 9 of loopback: the download fails at once
    with pytest.raises(download.HubUnreachableError, match="could not download .*press Download again"):
        download.download_weights(tmp_path / "w", endpoint="http://127.0.0.1:9", verify=False)


def _tree_server(entries: list[dict]) -> ThreadingHTTPServer:
    """A loopback stand-in for the Hub's tree listing (`/api/models/<repo>/tree/<rev>`), the one call
    huggingface_hub's checksum verification makes."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = json.dumps(entries).encode() if "/tree/" in self.path else b"{}"
            self.send_response(200 if "/tree/" in self.path else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_verify_download_names_corrupt_files_by_the_hubs_hashes(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once at import; the suite runs offline
    (tmp_path / "params").mkdir()
    (tmp_path / "NAVA.safetensors").write_bytes(b"backbone bytes")
    (tmp_path / "params" / "x.bin").write_bytes(b"truncated")
    (tmp_path / "extra.pt").write_bytes(b"not in the repo")  # e.g. the ReDimNet checkpoint: ignored

    def lfs(path: str, content: bytes) -> dict:
        sha = hashlib.sha256(content).hexdigest()
        return {"type": "file", "path": path, "size": len(content), "oid": "0" * 40,
                "lfs": {"oid": sha, "size": len(content), "pointerSize": 130}}

    server = _tree_server([lfs("NAVA.safetensors", b"backbone bytes"), lfs("params/x.bin", b"the full file"),
                           lfs("NAVA_fp8.safetensors", b"not downloaded")])
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        assert download.verify_download(tmp_path, "org/repo", endpoint) == ["params/x.bin"]
        (tmp_path / "params" / "x.bin").write_bytes(b"the full file")
        assert download.verify_download(tmp_path, "org/repo", endpoint) == []
    finally:
        server.shutdown()


def test_progress_bar_forwards_fractions():
    seen = []
    bar = download._progress_bar(lambda msg, frac: seen.append(frac))(total=100, desc="NAVA.safetensors",
                                                                       file=io.StringIO())
    bar.update(50)
    bar.update(50)
    bar.close()
    assert seen and seen[-1] == pytest.approx(0.95) and seen[0] == pytest.approx(0.475)


def test_fp8_backbone_detected_from_the_header(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"backbone.double_blocks.0.ffn.0.weight": torch.zeros(2, 2, dtype=torch.float8_e4m3fn)},
              str(tmp_path / "a.safetensors"))
    save_file({"backbone.double_blocks.0.ffn.0.weight": torch.zeros(2, 3)}, str(tmp_path / "b.safetensors"))
    (tmp_path / "c.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    assert layouts.is_fp8_checkpoint(tmp_path / "a.safetensors")
    assert not layouts.is_fp8_checkpoint(tmp_path / "b.safetensors")
    assert layouts.tensor_specs(tmp_path / "b.safetensors") == {"backbone.double_blocks.0.ffn.0.weight": ("F32", [2, 3])}
    assert layouts.tensor_specs(tmp_path / "c.safetensors") == {}


def test_one_data_folder_rule_honours_xdg(tmp_path, monkeypatch):
    from app.paths import StudioPaths

    monkeypatch.delenv("NAVA_STUDIO_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_home() == tmp_path / "xdg" / "nava-studio"
    assert StudioPaths.from_env().home == (tmp_path / "xdg" / "nava-studio").resolve()
    assert tiny.default_tiny_folder() == tmp_path / "xdg" / "nava-studio" / "weights" / "tiny"
    monkeypatch.setenv("NAVA_STUDIO_HOME", str(tmp_path / "mine"))
    assert data_home() == tmp_path / "mine"
    assert StudioPaths.from_env().home == (tmp_path / "mine").resolve()
    monkeypatch.delenv("NAVA_STUDIO_HOME")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert data_home() == Path.home() / ".local" / "share" / "nava-studio"
