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


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny weight set in the release layout, written once per test session."""
    from nava_core.weights.tiny import build_tiny_weight_set

    return build_tiny_weight_set(tmp_path_factory.mktemp("weights") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_weights: Path):
    """One CPU pipeline on the tiny weights, shared by the tests that only render."""
    from nava_core.pipeline import NAVAPipeline

    return NAVAPipeline.from_pretrained(tiny_weights, device="cpu")


def _espeak(text: str, voice: str, path: Path) -> Path:
    import shutil
    import subprocess

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it on Debian as root)")
    subprocess.run([exe, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def voices(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real speech clips from different espeak-ng voices."""
    d = tmp_path_factory.mktemp("voices")
    return [
        _espeak("Hello there, this is the first speaker talking about the weather.", "en-us", d / "a.wav"),
        _espeak("And this is a second voice, a little higher, answering the first.", "en+f3", d / "b.wav"),
    ]


# ---- refusals with a reason (issue 15): every hardening test records the cases it saw refused ----------

_REFUSED_KEY = pytest.StashKey[list]()


@pytest.fixture()
def refused(request: pytest.FixtureRequest):
    """`refused(case, reason)`: record one input refused with a clear reason; the run prints the total."""
    cases = request.config.stash.setdefault(_REFUSED_KEY, [])

    def record(case: str, reason: str) -> None:
        assert reason.strip(), f"{case} was refused without a reason"
        cases.append((case, reason))

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # noqa: ANN001
    cases = config.stash.get(_REFUSED_KEY, [])
    if cases:
        terminalreporter.write_line(f"refused with a reason: {len(cases)} case(s) "
                                    f"({len({c for c, _ in cases})} distinct)")
