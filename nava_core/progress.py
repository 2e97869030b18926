"""Progress reporting and cancellation shared by the pipeline, the CLI, the queue and the UI.

Long work reports through exactly one callback type so the terminal bar, the Gradio progress and
the worker group all see the same phases. Cancellation is a token the pipeline checks before every
denoising step (a Gradio cancel only takes effect at the next check).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    from nava_core.preview import Preview

Phase = Literal[
    "loading",  # loading weights
    "encoding",  # text, voices, first-frame image
    "denoising",  # step i/N
    "decoding_video",
    "decoding_audio",
    "writing",  # MP4 / WAV / sidecar
    "done",
]

PHASE_LABELS: dict[str, str] = {
    "loading": "Loading weights",
    "encoding": "Encoding text and voices",
    "denoising": "Denoising",
    "decoding_video": "Decoding video",
    "decoding_audio": "Decoding audio",
    "writing": "Writing files",
    "done": "Done",
}


@dataclass(frozen=True)
class ProgressEvent:
    phase: Phase
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = ""
    # set every few denoising steps when the render asked for a live preview (nava_core.preview)
    preview: "Preview | None" = None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    def describe(self) -> str:
        label = PHASE_LABELS.get(self.phase, self.phase)
        if self.phase == "denoising" and self.total:
            eta = f", ETA {self.eta_s:.0f} s" if self.eta_s is not None else ""
            return f"{label}: step {self.step}/{self.total}{eta}"
        return f"{label}{': ' + self.message if self.message else ''}"


ProgressCallback = Callable[[ProgressEvent], None]


def null_progress(event: ProgressEvent) -> None:
    """A callback that ignores events."""


class RenderCancelled(Exception):
    """Raised by the pipeline when its cancel token is set; no output is written."""


class CancelToken:
    """Thread-safe flag the UI or queue sets and the pipeline checks before every step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise RenderCancelled("render cancelled")


class StepTimer:
    """ETA for the denoising loop from the mean time of the steps done so far."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.start = time.perf_counter()
        self.done = 0

    def tick(self) -> float | None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        return elapsed / self.done * (self.total - self.done)
