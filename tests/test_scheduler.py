"""The release's flow-UniPC schedule: fixture timesteps/sigmas, the recorded fake-model trajectory,
and behaviour for other step counts and shifts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nava_core.scheduler import make_scheduler, release_sigma_range


@pytest.fixture(scope="module")
def fixture(data_dir):
    return json.loads((data_dir / "nava_timesteps_50.json").read_text())


def _fake_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # The fixture's fake model (see its "description").
    return torch.sin(1.3 * x + t / 1000) * 0.5 + 0.1 * x


def test_50_step_timesteps_and_sigmas_match_release(fixture):
    sch = make_scheduler(50)
    assert sch.timesteps.dtype == torch.int64
    assert sch.timesteps.tolist() == fixture["timesteps"]
    assert len(sch.sigmas) == 51
    np.testing.assert_allclose(sch.sigmas.numpy(), np.array(fixture["sigmas"], dtype=np.float32), rtol=0, atol=1e-7)
    # The release's double-shift quirk.
    assert sch.sigmas[0].item() == pytest.approx(0.99996, abs=5e-6)
    assert release_sigma_range(5.0)[0] == pytest.approx(0.99980, abs=5e-6)
    assert sch.sigmas[-1].item() == 0.0


def test_fake_model_trajectory_matches_release(fixture):
    sch = make_scheduler(50)
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    means = []
    for t in sch.timesteps:
        x = sch.step(_fake_velocity(x, t), t, x, return_dict=False)[0]
        means.append(x.abs().mean().item())
    ref = fixture["fake_model_check"]
    np.testing.assert_allclose(means, ref["mean_abs_after_step"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(x.numpy(), np.array(ref["final_sample"]), rtol=0, atol=1e-5)


def test_step_return_dict_semantics():
    sch = make_scheduler(4)
    x = torch.ones(2, 3)
    out = sch.step(torch.zeros_like(x), sch.timesteps[0], x)
    assert hasattr(out, "prev_sample") and out.prev_sample.shape == x.shape
    sch2 = make_scheduler(4)
    tup = sch2.step(torch.zeros_like(x), sch2.timesteps[0], x, return_dict=False)
    assert isinstance(tup, tuple) and torch.equal(tup[0], out.prev_sample)


@pytest.mark.parametrize("steps", [1, 2, 4, 20, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 8.0])
def test_other_steps_and_shifts_form_a_valid_schedule(steps, shift):
    sch = make_scheduler(steps, shift)
    sig = sch.sigmas.numpy().astype(np.float64)
    assert len(sch.timesteps) == steps and len(sig) == steps + 1
    assert sig[-1] == 0.0
    assert np.all(np.diff(sig) < 0), "sigmas must strictly decrease"
    # Double shift: the first sigma is the constructor's shifted maximum, shifted again.
    smax = release_sigma_range(shift)[0]
    assert sig[0] == pytest.approx(shift * smax / (1 + (shift - 1) * smax), abs=1e-6)
    # Integer timesteps are the truncated sigma * 1000 (sigma stored as float32 after truncation).
    expect_t = np.floor(sig[:-1] * 1000 + 1e-4).astype(np.int64)
    assert np.abs(sch.timesteps.numpy() - expect_t).max() <= 1


@pytest.mark.parametrize("steps,shift", [(4, 5.0), (20, 5.0), (20, 1.0), (50, 3.0)])
def test_oracle_velocity_recovers_clean_sample(steps, shift):
    """With the exact velocity of the straight flow path, x0 = x - sigma*v is exact at every step,
    so the sampler must land on the clean sample, whatever the step count or shift."""
    sch = make_scheduler(steps, shift)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 5, generator=g)
    x = torch.randn(3, 5, generator=g)
    for i, t in enumerate(sch.timesteps):
        sigma = sch.sigmas[i].item()
        v = (x - x0) / sigma
        x = sch.step(v, t, x, return_dict=False)[0]
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-4)


def test_larger_shift_keeps_more_noise():
    lo, hi = make_scheduler(20, 1.0), make_scheduler(20, 8.0)
    assert torch.all(hi.sigmas[1:-1] > lo.sigmas[1:-1])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_steps_rejected(bad):
    with pytest.raises(ValueError):
        make_scheduler(bad)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_shift_rejected(bad):
    with pytest.raises(ValueError):
        make_scheduler(10, bad)
