"""The release's flow-matching UniPC schedule, built from diffusers' `UniPCMultistepScheduler`.

The release (Wan2.2's `FlowUniPCMultistepScheduler`) applies the time shift twice: once to the
1000-step training grid in its constructor, and again in `set_timesteps`, whose sigma grid starts from
the constructor's already-shifted maximum (0.99980 for shift 5) instead of 0.999. The first sampling
sigma is therefore 0.99996, not 0.99980. We reproduce that by computing the constructor's shifted
sigma range ourselves and handing diffusers the unshifted `linspace(sigma_max, sigma_min, steps+1)[:-1]`
as explicit sigmas; diffusers then applies the second shift (`flow_shift`) exactly as the release does,
truncates `sigma * 1000` to int64 timesteps and appends the final sigma 0. The step itself (order-2
bh2 UniPC predictor-corrector on x0 = x - sigma * v) is diffusers' own, so `.step` keeps diffusers'
`return_dict` semantics.

Each stream (video, audio) needs its own scheduler instance: UniPC keeps per-stream history.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from diffusers import UniPCMultistepScheduler

from nava_core.config import DEFAULT_SHIFT

logger = logging.getLogger(__name__)

NUM_TRAIN_TIMESTEPS = 1000


def _shift(sigmas: np.ndarray | torch.Tensor, shift: float) -> np.ndarray | torch.Tensor:
    """The flow-matching time shift sigma' = s*sigma / (1 + (s-1)*sigma)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def release_sigma_range(shift: float = DEFAULT_SHIFT) -> tuple[float, float]:
    """(sigma_max, sigma_min) of the release scheduler's constructor, after its first shift.

    The constructor computes the training grid in float32 torch and reads the ends with `.item()`;
    we do the same so the values (and hence every timestep) match bit for bit.
    """
    alphas = np.linspace(1, 1 / NUM_TRAIN_TIMESTEPS, NUM_TRAIN_TIMESTEPS)[::-1].copy()
    sigmas = torch.from_numpy(1.0 - alphas).to(torch.float32)
    sigmas = _shift(sigmas, shift)
    return float(sigmas[0].item()), float(sigmas[-1].item())


def release_sigmas(steps: int, shift: float = DEFAULT_SHIFT) -> np.ndarray:
    """The unshifted per-step sigma grid the release feeds to its second shift (length `steps`)."""
    sigma_max, sigma_min = release_sigma_range(shift)
    return np.linspace(sigma_max, sigma_min, steps + 1)[:-1].copy()


def make_scheduler(steps: int, shift: float = DEFAULT_SHIFT) -> UniPCMultistepScheduler:
    """A ready-to-step scheduler with the release's `steps`-step schedule.

    `.timesteps` are int64 (truncated sigma*1000), `.sigmas` float32 with a trailing 0. Call
    `.step(model_output, timestep, sample, return_dict=...)` with the model's velocity output.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(shift, bool) or not np.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a finite number > 0, got {shift!r}")
    scheduler = UniPCMultistepScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        solver_order=2,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type="zero",
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=float(shift),
    )
    scheduler.set_timesteps(sigmas=release_sigmas(steps, float(shift)))
    logger.debug(
        "flow-UniPC schedule: %d steps, shift %.3g, first sigma %.6f, first timestep %d",
        steps, shift, float(scheduler.sigmas[0]), int(scheduler.timesteps[0]),
    )
    return scheduler


__all__ = ["make_scheduler", "release_sigma_range", "release_sigmas", "NUM_TRAIN_TIMESTEPS"]
