"""What a complete NAVA install is and what a folder has of it (no download, no torch).

A *weight set* is a folder holding the five networks. Two layouts are understood: the release's
(what `hf download ernie-research/NAVA` produces, plus the ReDimNet checkpoint that the
release fetches through torch.hub) and a diffusers-style one (one sub-folder per component).
Getting the files is `nava_core.weights.download`; the tiny random-weight set is `nava_core.weights.tiny`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

HUB_REPO = "ernie-research/NAVA"
REDIMNET_FILE = "M-vb2+vox2+cnc-ft_mix.pt"
REDIMNET_URL = f"https://github.com/IDRnD/ReDimNet/releases/download/latest/{REDIMNET_FILE}"
REDIMNET_SOURCE = f"IDRnD/ReDimNet GitHub release {REDIMNET_FILE} (the release loads it through torch.hub)"
GB = 1024**3
MB = 1024**2

Component = Literal["backbone", "text_encoder", "tokenizer", "video_vae", "audio_vae", "speaker_encoder"]


@dataclass(frozen=True)
class WeightFile:
    """One file (or folder) of a layout; `alternatives` are accepted in its place (e.g. the fp8 backbone)."""

    component: Component
    path: str
    approx_bytes: int
    description: str
    alternatives: tuple[str, ...] = ()
    is_dir: bool = False
    source: str = HUB_REPO

    def candidates(self) -> tuple[str, ...]:
        return (self.path, *self.alternatives)


@dataclass(frozen=True)
class Layout:
    name: str
    files: tuple[WeightFile, ...]

    def file_for(self, component: Component) -> WeightFile:
        for f in self.files:
            if f.component == component:
                return f
        raise KeyError(component)


RELEASE_LAYOUT = Layout(
    "release",
    (
        WeightFile("backbone", "NAVA.safetensors", 25_190_000_000, "NAVA backbone (6.3B, fp32/bf16 master)",
                   alternatives=("NAVA_fp8.safetensors",)),
        WeightFile("video_vae", "Wan2.2-TI2V-5B/Wan2.2_VAE.pth", 2_820_000_000, "Wan2.2 video VAE"),
        WeightFile("text_encoder", "Wan2.2-TI2V-5B/models_t5_umt5-xxl-enc-bf16.pth", 11_360_000_000,
                   "umT5-XXL text encoder (bf16)"),
        WeightFile("tokenizer", "Wan2.2-TI2V-5B/google/umt5-xxl", 21 * MB, "umT5 tokenizer", is_dir=True),
        WeightFile("audio_vae", "params/LTX2/ltx-2.3-22b-dev_audio_vae.safetensors", 348 * MB,
                   "LTX-2.3 audio VAE + vocoder"),
        WeightFile("speaker_encoder", "params/ReDimNet/M-vb2+vox2+cnc-ft_mix.pt", 50 * MB,
                   "ReDimNet-M speaker encoder (192-d)", source=REDIMNET_SOURCE),
    ),
)

DIFFUSERS_LAYOUT = Layout(
    "diffusers",
    (
        WeightFile("backbone", "transformer/diffusion_pytorch_model.safetensors", 25_190_000_000, "NAVA backbone"),
        WeightFile("video_vae", "vae", 2_820_000_000, "Wan2.2 video VAE (diffusers AutoencoderKLWan)", is_dir=True),
        WeightFile("text_encoder", "text_encoder", 11_360_000_000, "umT5-XXL encoder (transformers)", is_dir=True),
        WeightFile("tokenizer", "tokenizer", 21 * MB, "umT5 tokenizer", is_dir=True),
        WeightFile("audio_vae", "audio_vae/ltx-2.3-22b-dev_audio_vae.safetensors", 348 * MB,
                   "LTX-2.3 audio VAE + vocoder"),
        WeightFile("speaker_encoder", "speaker_encoder/M-vb2+vox2+cnc-ft_mix.pt", 50 * MB,
                   "ReDimNet-M speaker encoder", source=REDIMNET_SOURCE),
    ),
)

LAYOUTS = (RELEASE_LAYOUT, DIFFUSERS_LAYOUT)
TINY_MARKER = "nava_tiny.json"


@dataclass
class FileStatus:
    spec: WeightFile
    found: Path | None
    size: int = 0
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.found is not None and not self.problem


@dataclass
class WeightReport:
    """What a folder holds of a weight set, in words a user can act on."""

    root: Path
    layout: str
    files: list[FileStatus] = field(default_factory=list)
    is_tiny: bool = False
    backbone_fp8: bool = False

    @property
    def complete(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def missing(self) -> list[FileStatus]:
        return [f for f in self.files if not f.ok]

    def path(self, component: Component) -> Path:
        for f in self.files:
            if f.spec.component == component:
                if f.found is None:
                    raise FileNotFoundError(f"{f.spec.description} is missing: expected {self.root / f.spec.path}")
                return f.found
        raise KeyError(component)

    def summary(self) -> str:
        kind = "tiny (random weights)" if self.is_tiny else f"{self.layout} layout"
        if self.complete:
            fp8 = ", fp8 backbone" if self.backbone_fp8 else ""
            return f"Weight set at {self.root}: complete ({kind}{fp8})."
        lines = [f"Weight set at {self.root}: {len(self.missing)} of {len(self.files)} parts missing ({kind})."]
        for f in self.missing:
            why = f.problem or "not found"
            lines.append(
                f"  - {f.spec.description}: {why}; expected {f.spec.path} (~{_human(f.spec.approx_bytes)}), from {f.spec.source}"
            )
        return "\n".join(lines)

    def to_rows(self) -> list[list[str]]:
        """Table rows (component, status, path, size) for the studio's Model tab."""
        rows = []
        for f in self.files:
            status = "ok" if f.ok else (f.problem or "missing")
            where = str(f.found) if f.found else f.spec.path
            size = _human(f.size) if f.found else f"~{_human(f.spec.approx_bytes)}"
            rows.append([f.spec.description, status, where, size])
        return rows


def _human(n: int) -> str:
    if n >= GB:
        return f"{n / GB:.1f} GB"
    if n >= MB:
        return f"{n / MB:.0f} MB"
    return f"{n / 1024:.0f} KB"


def _size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def _check(spec: WeightFile, root: Path) -> FileStatus:
    for rel in spec.candidates():
        p = root / rel
        if spec.is_dir:
            if p.is_dir() and any(p.iterdir()):
                return FileStatus(spec, p, _size(p))
            continue
        if p.is_file():
            size = p.stat().st_size
            st = FileStatus(spec, p, size)
            if size == 0:
                st.problem = "file is empty (interrupted download?)"
            return st
    return FileStatus(spec, None)


def tensor_specs(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Tensor name -> (safetensors dtype, shape) of a safetensors file, read from its header by the
    safetensors library without loading any weight; {} for other or unreadable files."""
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            out = {}
            for key in fh.keys():
                sl = fh.get_slice(key)
                out[key] = (sl.get_dtype(), list(sl.get_shape()))
            return out
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file is "not a safetensors backbone"
        logger.debug("cannot read the safetensors header of %s: %s", path, e)
        return {}


def is_fp8_checkpoint(path: Path) -> bool:
    """True when a safetensors backbone stores float8 tensors (read from the header, no weights loaded)."""
    return any(dtype.startswith("F8") for dtype, _ in tensor_specs(path).values())


def inspect_weights(root: str | os.PathLike) -> WeightReport:
    """Report what `root` holds, choosing the layout that matches best."""
    root = Path(root).expanduser()
    best: WeightReport | None = None
    for layout in LAYOUTS:
        rep = WeightReport(root, layout.name, [_check(s, root) for s in layout.files])
        if best is None or sum(f.ok for f in rep.files) > sum(f.ok for f in best.files):
            best = rep
    assert best is not None
    best.is_tiny = (root / TINY_MARKER).is_file()
    speaker = next(f for f in best.files if f.spec.component == "speaker_encoder")
    cached = torch_hub_checkpoint()
    if speaker.found is None and cached is not None:
        speaker.found, speaker.size = cached, cached.stat().st_size
    backbone = next(f for f in best.files if f.spec.component == "backbone")
    if backbone.found is not None:
        best.backbone_fp8 = is_fp8_checkpoint(backbone.found)
    return best


def torch_hub_checkpoint_path() -> Path:
    """Where the release's torch.hub call keeps the ReDimNet checkpoint (present or not)."""
    home = Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch")
    return home / "hub" / "checkpoints" / REDIMNET_FILE


def torch_hub_checkpoint() -> Path | None:
    """The ReDimNet checkpoint where the release's torch.hub call leaves it, if it is there."""
    p = torch_hub_checkpoint_path()
    return p if p.is_file() and p.stat().st_size > 0 else None
