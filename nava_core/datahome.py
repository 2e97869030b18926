"""The one rule for where NAVA Studio keeps its files (history, outputs, uploads, weights).

`NAVA_STUDIO_HOME` wins; otherwise `$XDG_DATA_HOME/nava-studio`, and `~/.local/share/nava-studio` when
XDG_DATA_HOME is unset (the XDG base-directory default). The studio, the CLI and the tiny weight set
all ask here, so they never disagree about the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_DIR = "nava-studio"


def data_home() -> Path:
    """The data folder by the rule above (not created here)."""
    env = os.environ.get("NAVA_STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / APP_DIR


__all__ = ["data_home", "APP_DIR"]
