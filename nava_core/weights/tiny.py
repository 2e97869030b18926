"""The tiny weight set: a complete release-layout folder of seeded random weights, so every loader
runs on the real code path in tests and in the weight-less studio; and the golden-fixture init rule."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from nava_core.config import NAVAConfig
from nava_core.datahome import data_home
from nava_core.weights.layouts import RELEASE_LAYOUT, TINY_MARKER, inspect_weights

logger = logging.getLogger(__name__)


def default_tiny_folder() -> Path:
    return data_home() / "weights" / "tiny"


def build_tiny_weight_set(folder: str | os.PathLike | None = None, seed: int = 0, force: bool = False) -> Path:
    """Write a complete weight set in the release layout from seeded random weights.

    Written into a temporary sibling and renamed, so a crash never leaves a half set that looks complete.
    """
    import shutil
    import tempfile

    from nava_core.components.audio_vae import write_tiny_audio_vae
    from nava_core.components.speaker_encoder import write_tiny_speaker_encoder
    from nava_core.components.text_encoder import write_tiny_text_encoder
    from nava_core.components.video_vae import write_tiny_video_vae
    from nava_core.weights.checkpoint import save_backbone_checkpoint

    folder = Path(folder) if folder is not None else default_tiny_folder()
    if (folder / TINY_MARKER).is_file() and not force:
        rep = inspect_weights(folder)
        if rep.complete:
            return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
    try:
        spec = {f.component: f.path for f in RELEASE_LAYOUT.files}
        config = NAVAConfig.tiny()
        save_backbone_checkpoint(init_golden_weights(config, seed), tmp / spec["backbone"])
        (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        wan = tmp / "Wan2.2-TI2V-5B"
        wan.mkdir(parents=True, exist_ok=True)
        write_tiny_video_vae(tmp / spec["video_vae"], seed=seed)
        te = write_tiny_text_encoder(wan, seed=seed)
        tok_src = Path(te["tokenizer"])
        tok_dst = tmp / spec["tokenizer"]
        if tok_src.resolve() != tok_dst.resolve():
            tok_dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tok_src), str(tok_dst))
        pth_src = Path(te["text_encoder"])
        if pth_src.resolve() != (tmp / spec["text_encoder"]).resolve():
            shutil.move(str(pth_src), str(tmp / spec["text_encoder"]))
        (tmp / spec["audio_vae"]).parent.mkdir(parents=True, exist_ok=True)
        write_tiny_audio_vae(tmp / spec["audio_vae"], seed=seed)
        (tmp / spec["speaker_encoder"]).parent.mkdir(parents=True, exist_ok=True)
        write_tiny_speaker_encoder(tmp / spec["speaker_encoder"], seed=seed)
        (tmp / TINY_MARKER).write_text(json.dumps({"seed": seed, "note": "random weights, for tests and previews"}))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("tiny weight set written to %s", folder)
    return folder


# ---- golden-fixture weights --------------------------------------------------------------------

# Golden init rule (tests/data/nava_golden/spec.json `norm_suffixes`).
GOLDEN_NORM_SUFFIXES = (
    "norm_q.weight",
    "norm_k.weight",
    "norm_q_audio.weight",
    "norm_k_audio.weight",
    "norm3.weight",
    "speaker_embedding.net.0.weight",
    "speaker_embedding.out_norm.weight",
)


def golden_key_shapes(config: NAVAConfig) -> list[tuple[str, tuple[int, ...]]]:
    """The model's keys in registration order (= the golden fixture's key order) with shapes."""
    from nava_core.model import WanAVModel

    with torch.device("meta"):
        model = WanAVModel(config)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def init_golden_weights(config: NAVAConfig, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights by the golden fixture's rule (spec.json `init_rule`), in key order.

    One generator for all keys; z ~ N(0,1): bias 0.05z, norm weights 1+0.1z, modulation 0.1z,
    null_token z, other weights z / sqrt(fan_in) with fan_in = numel / shape[0].
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in golden_key_shapes(config):
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if key.endswith(".bias"):
            v = 0.05 * z
        elif key.endswith(GOLDEN_NORM_SUFFIXES):
            v = 1 + 0.1 * z
        elif key.endswith("modulation"):
            v = 0.1 * z
        elif key.endswith("null_token"):
            v = z
        else:
            v = z / (z.numel() / shape[0]) ** 0.5
        out[key] = v
    return out
