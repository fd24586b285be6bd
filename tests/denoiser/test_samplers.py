"""Samplers against an exact x0 oracle (Gaussian data), and torch == numpy."""

import math

import numpy as np
import pytest
import torch

from backend.samplers import SamplerError, Schedule, sample, take_noise, timesteps

SCHED = Schedule()
M, S = 0.7, 0.3  # data x0 ~ N(M, S^2) per coordinate


def oracle(x, t):
    """E[x0 | x_t] for Gaussian data: the best possible x0-predicting denoiser."""
    a = math.sqrt(SCHED.alphas_cumprod[t])
    var = 1.0 - SCHED.alphas_cumprod[t]
    return M + (a * S * S / (a * a * S * S + var)) * (x - a * M)


@pytest.mark.parametrize("sampler,steps", [("ddpm", 1000), ("ddim", 50), ("dpmpp2m", 10), ("dpmpp2m-sde", 25)])
def test_samplers_reach_the_data_distribution(sampler, steps):
    x_T, noise = take_noise(list(range(4)), (500, 2))
    x = sample(oracle, x_T, SCHED, sampler, steps, noise)
    assert x.dtype == np.float32 and x.shape == x_T.shape
    assert abs(x.mean() - M) < 0.02
    assert abs(x.std() - S) < 0.02


def test_dpmpp2m_few_steps_matches_the_ode_solution():
    x_T, _ = take_noise([3], (200, 3))
    a = math.sqrt(SCHED.alphas_cumprod[-1])  # the exact probability-flow ODE map for Gaussian data
    ref = M + S * (x_T - a * M) / math.sqrt(a * a * S * S + 1 - SCHED.alphas_cumprod[-1])
    fast = sample(oracle, x_T.astype(np.float64), SCHED, "dpmpp2m", 25)
    slow1 = sample(oracle, x_T.astype(np.float64), SCHED, "ddim", 25)
    err_fast, err_ddim = np.abs(fast - ref).max(), np.abs(slow1 - ref).max()
    assert err_fast < 0.05 * S
    assert err_fast < err_ddim  # second order beats first order at equal cost


def test_same_code_runs_on_torch_tensors():
    for sampler in ("ddim", "dpmpp2m", "dpmpp2m-sde"):
        x_T, noise = take_noise([5, 6], (40, 53))
        a = sample(oracle, x_T, SCHED, sampler, 8, noise)
        x_T, noise = take_noise([5, 6], (40, 53))
        b = sample(oracle, torch.from_numpy(x_T), SCHED, sampler, 8, lambda k: torch.from_numpy(noise(k)))
        np.testing.assert_allclose(a, b.numpy(), atol=1e-5)


def test_sde_solver_draws_fresh_noise_and_needs_a_source():
    x_T, noise = take_noise([1], (300, 2))
    ode = sample(oracle, x_T, SCHED, "dpmpp2m", 10)
    sde = sample(oracle, x_T, SCHED, "dpmpp2m-sde", 10, noise)
    assert np.abs(ode - sde).mean() > 0.1 * S  # not the ODE map of x_T
    with pytest.raises(SamplerError, match="noise source"):
        sample(oracle, x_T, SCHED, "dpmpp2m-sde", 10)


def test_take_noise_depends_only_on_its_seed():
    a, _ = take_noise([10, 11, 12], (30, 53))
    b, _ = take_noise([11], (30, 53))
    np.testing.assert_array_equal(a[1], b[0])


def test_timesteps_and_errors():
    assert timesteps(SCHED, 1) == [999]
    assert len(timesteps(SCHED, 25)) == 25
    ts = timesteps(SCHED, 10)
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts)) == 10
    with pytest.raises(SamplerError):
        sample(oracle, np.zeros((1, 2, 2)), SCHED, "euler", 5)
    with pytest.raises(SamplerError):
        timesteps(SCHED, 0)
