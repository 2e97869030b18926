"""Voice reference -> 192-d speaker embedding, as NAVA's release computes it.

The release averages the reference's channels, resamples to 16 kHz, keeps the first 30 s and feeds
the waveform to ReDimNet 'M' (``ft_mix``, ``vb2+vox2+cnc``); the raw 192-d output (not L2-normalised)
goes to the backbone's speaker MLP. The checkpoint is ``{"model_config": ..., "state_dict": ...}``;
it is loaded strictly so a wrong file fails here, not as a silently different voice.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nava_core.components.audio_io import load_audio
from nava_core.components.redimnet import ReDimNet, ReDimNetConfig
from nava_core.statedict import expected_shapes, require_state_dict

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0
EMBED_DIM = 192

# A small member of the same family: every block kind the 'M' setup uses (convnext 2-D blocks,
# attention 1-D blocks, layer mixing, ASTP pooling), tiny widths, the same 192-d output.
TINY_CONFIG: dict = {
    "F": 24,
    "C": 4,
    "block_1d_type": "att",
    "block_2d_type": "convnext_like",
    "stages_setup": [(1, 1, 1, [(3, 3)], None), (2, 1, 1, [(3, 3)], 4), (2, 1, 1, [(3, 3)], 4)],
    "group_divisor": 4,
    "out_channels": None,
    "embed_dim": EMBED_DIM,
    "hop_length": 160,
    "pooling_func": "ASTP",
    "feat_type": "pt",
    "spec_params": {"do_spec_aug": False},
}


class SpeakerCheckpointError(ValueError):
    """A speaker-encoder checkpoint cannot be used; the message names the file and the problem."""


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise SpeakerCheckpointError(f"speaker encoder checkpoint {path}: file not found")
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise SpeakerCheckpointError(
            f"speaker encoder checkpoint {path}: cannot be read as a torch checkpoint ({exc}); "
            f"the file is truncated or not a ReDimNet .pt file. Download it again.") from exc
    except Exception as exc:  # unpickling refusals (weights_only) come as various types
        raise SpeakerCheckpointError(
            f"speaker encoder checkpoint {path}: refused by the safe loader ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or "model_config" not in blob or "state_dict" not in blob:
        found = sorted(blob)[:8] if isinstance(blob, dict) else type(blob).__name__
        raise SpeakerCheckpointError(
            f"speaker encoder checkpoint {path}: expected a dict with 'model_config' and 'state_dict' "
            f"(the ReDimNet release format), found {found}")
    return blob["model_config"], blob["state_dict"]


class SpeakerEncoder:
    """ReDimNet in eval mode with the release's audio preparation around it."""

    def __init__(self, model: ReDimNet, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)

    @property
    def config(self) -> ReDimNetConfig:
        return self.model.config

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "SpeakerEncoder":
        """Load a ``{model_config, state_dict}`` checkpoint strictly (0 missing, 0 unexpected)."""
        path = Path(path)
        raw_cfg, state = _read_checkpoint(path)
        try:
            cfg = ReDimNetConfig.from_dict(dict(raw_cfg))
            model = ReDimNet(cfg)
        except (ValueError, TypeError) as exc:
            raise SpeakerCheckpointError(f"speaker encoder checkpoint {path}: {exc}") from exc
        require_state_dict(state, expected_shapes(model),
                           f"speaker encoder checkpoint {path}: state_dict does not match its model_config",
                           SpeakerCheckpointError)
        model.load_state_dict(state, strict=True)
        logger.info("speaker encoder loaded from %s (%d parameters)", path,
                    sum(p.numel() for p in model.parameters()))
        return cls(model, device)

    @torch.inference_mode()
    def embed_waveform(self, samples: np.ndarray) -> Tensor:
        """Mono 16 kHz float waveform (any length >= 1 frame; the first 30 s are used) -> ``[192]``
        float32 on CPU."""
        wav = np.asarray(samples, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"embed_waveform expects mono samples [N], got shape {wav.shape}")
        wav = wav[: int(MAX_SECONDS * SAMPLE_RATE)]
        x = torch.from_numpy(np.ascontiguousarray(wav)).to(self.device)[None]
        return self.model(x)[0].float().cpu()

    def embed_file(self, path: str | Path) -> Tensor:
        """Audio file (any common format) -> ``[192]``; raises ``AudioInputError`` for unusable audio."""
        audio = load_audio(path, sample_rate=SAMPLE_RATE, mono=True, max_seconds=MAX_SECONDS)
        return self.embed_waveform(audio.samples)


def write_tiny_speaker_encoder(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny seeded-random ReDimNet checkpoint in the release format (same key naming,
    :data:`TINY_CONFIG` widths), loadable by :meth:`SpeakerEncoder.from_checkpoint`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    model = ReDimNet(ReDimNetConfig.from_dict(TINY_CONFIG))
    state = model.state_dict()
    for name, tensor in state.items():
        if not tensor.is_floating_point() or name.startswith("spec."):
            continue  # front-end buffers keep their exact values
        if name.endswith("running_var"):
            state[name] = 1.0 + 0.1 * torch.rand(tensor.shape, generator=gen)
        elif name.endswith("running_mean"):
            state[name] = 0.05 * torch.randn(tensor.shape, generator=gen)
        elif name.endswith(".w"):
            state[name] = 0.5 * torch.randn(tensor.shape, generator=gen)
        elif tensor.ndim == 1:  # norm scales / biases
            base = 1.0 if name.endswith("weight") else 0.0
            state[name] = base + 0.05 * torch.randn(tensor.shape, generator=gen)
        else:
            fan_in = max(1, tensor[0].numel())
            state[name] = torch.randn(tensor.shape, generator=gen) / fan_in**0.5
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model_config": TINY_CONFIG, "state_dict": state}, tmp)
    tmp.replace(path)
    return path
