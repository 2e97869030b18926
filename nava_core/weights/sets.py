"""What a complete NAVA install is, what a folder has of it, and how to get the rest.

A *weight set* is a folder holding the five networks. Two layouts are understood: the release's
(what `hf download ernie-research/NAVA` produces, plus the ReDimNet checkpoint that the
release fetches through torch.hub) and a diffusers-style one (one sub-folder per component). The
tiny set is written by the project itself in the release layout from seeded random weights so every
loader runs, in tests and in the weight-less studio, on the same code path as the real files.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

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


def safetensors_header(path: Path) -> dict[str, dict]:
    """Tensor entries (dtype, shape, offsets) of a safetensors file, read without loading any weight;
    {} for other or unreadable files."""
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if n <= 0 or n > 100 * MB:
            return {}
        header = json.loads(fh.read(n))
    return {k: v for k, v in header.items() if isinstance(v, dict) and "dtype" in v}


def is_fp8_checkpoint(path: Path) -> bool:
    """True when a safetensors backbone stores float8 tensors (read from the header, no weights loaded)."""
    return any(str(v["dtype"]).startswith("F8") for v in safetensors_header(path).values())


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


def torch_hub_checkpoint() -> Path | None:
    """The ReDimNet checkpoint where the release's torch.hub call leaves it, if it is there."""
    home = Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch")
    p = home / "hub" / "checkpoints" / REDIMNET_FILE
    return p if p.is_file() and p.stat().st_size > 0 else None


def hub_snapshot() -> Path | None:
    """The release's Hub snapshot already in the local Hugging Face cache (e.g. a Space's preload), or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(HUB_REPO, local_files_only=True))
    except Exception:  # not cached, or huggingface_hub cannot tell offline: both mean "not here"
        return None


# ---- downloads -------------------------------------------------------------------------------

DownloadProgress = Callable[[str, float], None]


class HubUnreachableError(RuntimeError):
    """The Hugging Face Hub could not be reached (offline machine, firewall, or HF_HUB_OFFLINE=1)."""


def download_weights(
    root: str | os.PathLike,
    include_fp8: bool = False,
    include_bf16: bool = True,
    progress: DownloadProgress | None = None,
    repo_id: str = HUB_REPO,
    endpoint: str | None = None,
    verify: bool = True,
) -> WeightReport:
    """Fetch the release weight set into `root` (resumable; honours offline mode), then check it.

    Files whose SHA-256 the Hub publishes (its LFS files) are verified after the download and the
    manifest is kept in `root/.nava-checksums.json`, so `verify_weights` can re-check later. The
    ReDimNet checkpoint is not part of the Hub repo: it is fetched from its GitHub release.
    """
    from huggingface_hub import snapshot_download

    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    exclude = []
    if not include_fp8:
        exclude.append("NAVA_fp8.safetensors")
    if not include_bf16:
        exclude.append("NAVA.safetensors")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise HubUnreachableError(
            "HF_HUB_OFFLINE=1 is set, so nothing can be downloaded. Unset it, or copy a weight set into "
            f"{root} by hand (layout: see the Model tab)."
        )
    if progress:
        progress(f"Downloading {repo_id} into {root}", 0.0)
    try:
        snapshot_download(repo_id=repo_id, local_dir=str(root), ignore_patterns=exclude or None,
                          endpoint=endpoint, tqdm_class=_progress_bar(progress))
    except Exception as e:  # connection, HTTP and offline-cache errors all mean the same to a user
        raise HubUnreachableError(
            f"could not download {repo_id} from the Hugging Face Hub ({type(e).__name__}: {e}). "
            "Check the network or proxy settings and press Download again (finished files are kept), or "
            "download on another machine and copy the folder here."
        ) from e
    if verify:
        try:
            manifest = hub_checksums(repo_id, endpoint=endpoint)
        except Exception as e:  # the files are there; a missing manifest only skips verification
            logger.warning("could not fetch checksums for %s: %s", repo_id, e)
        else:
            (root / CHECKSUMS).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            bad = verify_weights(root, manifest, progress)
            if bad:
                raise ChecksumError(
                    f"{len(bad)} downloaded file(s) do not match the Hub's checksums: {', '.join(bad)}. "
                    "Delete them and press Download again."
                )
    report = inspect_weights(root)
    speaker = next(f for f in report.files if f.spec.component == "speaker_encoder")
    if speaker.found is None:
        download_speaker_encoder(root / RELEASE_LAYOUT.file_for("speaker_encoder").path, progress)
        report = inspect_weights(root)
    if progress:
        progress("Download finished", 1.0)
    return report


CHECKSUMS = ".nava-checksums.json"


class ChecksumError(RuntimeError):
    """A weight file's SHA-256 differs from the published one (a corrupt or tampered download)."""


def _progress_bar(progress: DownloadProgress | None):
    """A tqdm class that forwards huggingface_hub's download progress to our callback."""
    from tqdm.auto import tqdm

    class _Forwarding(tqdm):  # type: ignore[misc, valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if progress is not None and not getattr(self, "disable", False) and self.total:
                what = getattr(self, "desc", "") or "Downloading"
                progress(f"{what}: {self.n:,.0f} of {self.total:,.0f}", min(self.n / self.total, 1.0) * 0.95)
            return out

    return _Forwarding


def hub_checksums(repo_id: str = HUB_REPO, endpoint: str | None = None) -> dict[str, str]:
    """Relative path -> SHA-256 for every file of `repo_id` whose hash the Hub publishes (LFS files)."""
    from huggingface_hub import HfApi

    out: dict[str, str] = {}
    for entry in HfApi(endpoint=endpoint).list_repo_tree(repo_id, recursive=True, expand=True):
        lfs = getattr(entry, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        if sha:
            out[entry.path] = sha
    return out


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_weights(
    root: str | os.PathLike, manifest: dict[str, str] | None = None, progress: DownloadProgress | None = None
) -> list[str]:
    """Paths (relative to `root`) whose SHA-256 differs from `manifest` (default: the saved one).

    Files the manifest lists but that are absent are not reported here (`inspect_weights` reports them).
    """
    root = Path(root)
    if manifest is None:
        saved = root / CHECKSUMS
        if not saved.is_file():
            return []
        manifest = json.loads(saved.read_text())
    bad = []
    items = sorted(manifest.items())
    for i, (rel, sha) in enumerate(items):
        p = root / rel
        if not p.is_file():
            continue
        if progress:
            progress(f"Verifying {rel}", 0.95 + 0.05 * i / max(len(items), 1))
        if sha256_file(p) != sha.lower():
            bad.append(rel)
    return bad


def download_speaker_encoder(dest: str | os.PathLike, progress: DownloadProgress | None = None) -> Path:
    """Fetch the ReDimNet-M checkpoint from its GitHub release (not part of the Hub repo), atomically."""
    import urllib.error
    import urllib.request

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    if progress:
        progress(f"Downloading the speaker encoder from {REDIMNET_URL}", 0.95)
    try:
        with urllib.request.urlopen(REDIMNET_URL, timeout=60) as r, open(tmp, "wb") as fh:
            while chunk := r.read(1 << 20):
                fh.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise HubUnreachableError(
            f"could not download the ReDimNet speaker encoder ({e}). Download {REDIMNET_URL} by hand "
            f"and put it at {dest}."
        ) from e
    os.replace(tmp, dest)
    return dest


# ---- tiny weight set ---------------------------------------------------------------------------


def default_data_home() -> Path:
    env = os.environ.get("NAVA_STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nava-studio"


def default_tiny_folder() -> Path:
    return default_data_home() / "weights" / "tiny"


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
    from nava_core.config import NAVAConfig
    from nava_core.weights.checkpoint import init_golden_weights, save_backbone_checkpoint

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
