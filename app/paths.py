"""Where the studio keeps its files: one data folder per user, so history survives restarts.

The folder follows the one rule in `nava_core.datahome` (`NAVA_STUDIO_HOME`, else
`$XDG_DATA_HOME/nava-studio`, else `~/.local/share/nava-studio`); tests point NAVA_STUDIO_HOME at a tmp dir.
Outputs and uploads live under it and are the only folders the web server may serve.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nava_core.datahome import data_home


@dataclass(frozen=True)
class StudioPaths:
    home: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> "StudioPaths":
        """The data folder from `home`, else the rule of `nava_core.datahome.data_home`."""
        root = home or data_home()
        paths = cls(Path(root).expanduser().resolve())
        for d in (paths.home, paths.outputs, paths.uploads, paths.voices, paths.images):
            d.mkdir(parents=True, exist_ok=True)
        return paths

    @property
    def outputs(self) -> Path:
        return self.home / "outputs"

    @property
    def uploads(self) -> Path:
        return self.home / "uploads"

    @property
    def voices(self) -> Path:
        return self.uploads / "voices"

    @property
    def images(self) -> Path:
        return self.uploads / "images"

    @property
    def jobs_db(self) -> Path:
        """The one job store: studio, API and Batch-tab renders, queued and finished (History)."""
        return self.home / "jobs.sqlite"

    @property
    def weights(self) -> Path:
        """Default folder for the release weights when `--weights` is not given."""
        return self.home / "weights" / "nava"

    def allowed_paths(self) -> list[str]:
        return [str(self.outputs), str(self.uploads)]
