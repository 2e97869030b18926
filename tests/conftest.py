"""Test-wide settings: one CPU thread (2-core machines thrash otherwise), offline hubs, slow opt-in."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # prompt_builder tests run without torch
        pass
    if os.environ.get("NAVA_SLOW") == "1" and config.getoption("markexpr") == "not slow":
        config.option.markexpr = ""


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
