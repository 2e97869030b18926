"""The one result type of a render, from `render_to_files` to the page.

Why one type: a render's files, timings and the request that made them used to be re-wrapped at
every layer (pipeline result -> render outputs -> studio files -> dict -> queue job -> history row).
`RenderOutputs` is written by `nava_core.render.render_to_files`, extended with a thumbnail by the
studio's engine, stored as `files` + `timings` in the job store, and rebuilt from a finished job
(`nava_core.jobs.Job.result`) for History and the API. The in-memory arrays (`RenderResult`) stay in
the pipeline; nothing after `render_to_files` sees a tensor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nava_core.request import RenderRequest

FILE_KEYS: tuple[str, ...] = ("mp4", "wav", "flac", "sidecar", "srt", "thumbnail")


@dataclass(frozen=True)
class RenderOutputs:
    """What one finished render left on disk, and the exact request that rendered it.

    `request` is the final request (profile, tiling and size as rendered): the sidecar, the MP4/WAV
    metadata and the job store all hold this same request.
    """

    request: RenderRequest
    wav: Path
    sidecar: Path
    mp4: Path | None = None
    flac: Path | None = None
    srt: Path | None = None
    thumbnail: Path | None = None  # a still for History: a video frame, or the waveform in audio mode
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def main(self) -> Path:
        """The file a caller wants: the MP4, or the WAV in audio mode."""
        return self.mp4 or self.wav

    def files(self) -> dict[str, str]:
        """{kind: path} of the files that exist in this result (what the job store keeps)."""
        return {k: str(getattr(self, k)) for k in FILE_KEYS if getattr(self, k) is not None}

    def as_dict(self) -> dict[str, str]:  # the name `nava_core.jobs` render functions return
        return self.files()

    def replace(self, **changes: Any) -> "RenderOutputs":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_files(cls, request: RenderRequest, files: Mapping[str, str], timings: Mapping[str, Any] | None = None
                   ) -> "RenderOutputs":
        """Rebuild a result from stored file paths (a finished job); unknown keys are ignored."""
        paths = {k: Path(v) for k, v in files.items() if k in FILE_KEYS and v}
        wav = paths.pop("wav", None) or paths.get("mp4") or Path()
        sidecar = paths.pop("sidecar", None) or Path()
        return cls(request=request, wav=wav, sidecar=sidecar, **paths,
                   timings={k: float(v) for k, v in (timings or {}).items() if isinstance(v, (int, float))})


__all__ = ["RenderOutputs", "FILE_KEYS"]
