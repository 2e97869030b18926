"""ZeroGPU support for the Hugging Face Space: how long to ask for a GPU, and the `spaces.GPU` wrapper.

On a ZeroGPU Space a GPU exists only inside a function decorated with `spaces.GPU`; the decorator
asks the scheduler for a slot of `duration` seconds, runs the function in a forked worker process
that has the GPU, and returns its result. Elsewhere (a local studio, a Space on dedicated hardware,
or `spaces` not installed) nothing here changes behaviour: `spaces.GPU` returns the function as is
when `SPACES_ZERO_GPU` is not set, and `wrap_for_zerogpu` returns it as is when `spaces` is absent.

What a ZeroGPU worker implies for the studio (see README "Hugging Face Space"):

- The arguments and the return value cross a process boundary by pickling. Callables and locks
  (the render queue's progress callback, the `CancelToken`) cannot, so on ZeroGPU the wrapper passes
  `None` for any `progress` / `cancel` keyword argument that does not pickle: the render runs without
  step progress and cannot be cancelled half way. Positional arguments are passed untouched.
- The worker is a fork of the studio process: weights loaded (on the CPU) before the first GPU call
  are inherited, and the pipeline must move them to `cuda` inside the wrapped call. Loading inside
  the call would repeat the load in every fresh worker and spend GPU time on disk reads.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import pickle
from typing import Any, Callable

log = logging.getLogger(__name__)

# Seconds of GPU time requested per render = FIXED_OVERHEAD_S + SAFETY * (estimated denoising time),
# clamped to [MIN_DURATION_S, MAX_DURATION_S].
FIXED_OVERHEAD_S = 60.0  # weights onto the GPU, text/voice encoding, VAE decodes, muxing
SAFETY = 1.5  # the estimate is computed, not measured (nava_core.estimate says so)
MIN_DURATION_S = 60
MAX_DURATION_S = 600  # longer requests are refused or starve the quota on ZeroGPU; render shorter clips
# Keyword arguments that may be dropped (replaced by None) on the way into a ZeroGPU worker.
DROPPABLE_KWARGS = ("progress", "cancel")


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space (the variable `spaces` itself reads)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def estimated_render_seconds(request: Any) -> float:
    """Denoising time of `request` on one GPU, from the one estimator (`nava_core.estimate`)."""
    from nava_core.estimate import estimate

    return float(estimate(request, gpus=1).total_seconds)


def gpu_duration(request: Any) -> int:
    """Seconds of ZeroGPU time to request for rendering `request` (a RenderRequest).

    Positive, non-decreasing in steps and clip duration, clamped to [MIN_DURATION_S, MAX_DURATION_S].
    """
    seconds = FIXED_OVERHEAD_S + SAFETY * estimated_render_seconds(request)
    return int(min(MAX_DURATION_S, max(MIN_DURATION_S, math.ceil(seconds))))


def find_request(args: tuple, kwargs: dict) -> Any:
    """The RenderRequest among a call's arguments (directly, or as `.request` of e.g. a Job)."""
    from nava_core.request import RenderRequest

    for value in (*args, *kwargs.values()):
        if isinstance(value, RenderRequest):
            return value
        inner = getattr(value, "request", None)
        if isinstance(inner, RenderRequest):
            return inner
    return None


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
        return True
    except Exception:  # noqa: BLE001 - PicklingError, TypeError, AttributeError alike
        return False


def wrap_for_zerogpu(fn: Callable, duration_fn: Callable[[Any], int] = gpu_duration) -> Callable:
    """`fn` decorated with `spaces.GPU(duration=...)` when `spaces` is importable, else `fn` itself.

    `duration_fn(request) -> seconds` is evaluated per call on the RenderRequest found among `fn`'s
    arguments (`find_request`); calls without one ask for MAX_DURATION_S. On a ZeroGPU Space
    (`SPACES_ZERO_GPU` set) the result is additionally guarded so that `progress` / `cancel` keyword
    arguments that cannot be pickled into the GPU worker are passed as None (see the module doc).
    """
    try:
        import spaces
    except ImportError:
        return fn

    def duration(*args: Any, **kwargs: Any) -> int:
        request = find_request(args, kwargs)
        if request is None:
            return MAX_DURATION_S
        return int(duration_fn(request))

    gpu_fn = spaces.GPU(duration=duration)(fn)
    if not on_zerogpu():
        return gpu_fn

    @functools.wraps(fn)
    def zerogpu_call(*args: Any, **kwargs: Any) -> Any:
        for name in DROPPABLE_KWARGS:
            if kwargs.get(name) is not None and not _picklable(kwargs[name]):
                log.info("ZeroGPU: '%s' cannot cross into the GPU worker; running without it", name)
                kwargs[name] = None
        return gpu_fn(*args, **kwargs)

    zerogpu_call.zerogpu_wrapped = gpu_fn  # type: ignore[attr-defined]
    return zerogpu_call


__all__ = ["gpu_duration", "wrap_for_zerogpu", "find_request", "on_zerogpu", "estimated_render_seconds",
           "MAX_DURATION_S", "MIN_DURATION_S"]
