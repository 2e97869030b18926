"""Getting a weight set: the release from the Hugging Face Hub (resumable, checksum-verified by
huggingface_hub) and the ReDimNet speaker encoder from its GitHub release."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from nava_core.weights.layouts import (
    HUB_REPO,
    REDIMNET_URL,
    RELEASE_LAYOUT,
    WeightReport,
    inspect_weights,
)

logger = logging.getLogger(__name__)


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

    Every downloaded file is then checked against the Hub's published hashes by huggingface_hub
    (`HfApi.verify_repo_checksums`: SHA-256 for LFS files, git blob ids for the rest). The ReDimNet
    checkpoint is not part of the Hub repo: it is fetched from its GitHub release.
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
        logger.warning("download of %s failed: %s: %s", repo_id, type(e).__name__, e)
        raise HubUnreachableError(
            f"could not download {repo_id}: this machine cannot reach the Hugging Face Hub (no internet "
            "connection, a proxy or firewall in the way, or the Hub is down). Check the network or proxy "
            "settings and press Download again (finished files are kept), or download on another machine "
            "and copy the folder here."
        ) from e
    if verify:
        bad = verify_download(root, repo_id, endpoint, progress)
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


def verify_download(root: Path, repo_id: str = HUB_REPO, endpoint: str | None = None,
                    progress: DownloadProgress | None = None) -> list[str]:
    """Paths (relative to `root`) whose hash differs from the one the Hub publishes for `repo_id`.

    huggingface_hub does the work; files the repo has but `root` lacks (e.g. the fp8 backbone when it
    was not asked for) are not errors here, and files the repo does not have (the ReDimNet checkpoint)
    are ignored. When the Hub cannot list the repo, verification is skipped with a warning: the files
    are there, and `inspect_weights` still reports what is missing.
    """
    from huggingface_hub import HfApi

    if progress:
        progress(f"Verifying checksums of {repo_id}", 0.95)
    try:
        result = HfApi(endpoint=endpoint).verify_repo_checksums(repo_id, local_dir=root)
    except Exception as e:  # noqa: BLE001 - listing failed (network, auth): nothing was compared
        logger.warning("could not verify %s against the Hub's checksums: %s", root, e)
        return []
    return sorted(m["path"] for m in result.mismatches)


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


