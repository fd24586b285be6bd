"""Diffusion samplers for an x0-predicting denoiser: DDPM, DDIM, DPM-Solver++(2M)
and its stochastic (SDE) form.

The samplers are plain functions of `(denoise, x_T, schedule, ...)` as in
k-diffusion. They only add, multiply and scale arrays by Python floats, so the
same code runs on numpy arrays (the backend) and on torch tensors (training's
`training.denoiser.samplers` wraps it): one implementation, so the two cannot drift.

`denoise(x, t) -> x0` is called with the whole batch and one integer step `t`
(0 = cleanest, steps-1 = noisiest); guidance and batching live inside it.
`noise(k)` returns fresh N(0, I) noise shaped like x for the k-th DDPM step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

SAMPLERS = ("dpmpp2m", "dpmpp2m-sde", "ddim", "ddpm")
STOCHASTIC = ("ddpm", "dpmpp2m-sde")  # draw fresh noise at every step


class SamplerError(ValueError):
    """Bad sampler name or step count."""


@dataclass(frozen=True)
class Schedule:
    """Variance schedule of the forward process x_t = a_t x0 + s_t eps."""

    kind: str = "linear"
    steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self):
        if self.kind != "linear":
            raise SamplerError(f"unknown schedule kind {self.kind!r} (only 'linear')")

    @property
    def betas(self) -> np.ndarray:
        return np.linspace(self.beta_start, self.beta_end, self.steps, dtype=np.float64)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def timesteps(schedule: Schedule, steps: int) -> list[int]:
    """Up to `steps` distinct evaluation steps, noisiest first, ending at t = 0.

    Spaced uniformly in log-SNR (lambda = log(alpha / sigma)), DPM-Solver's
    default: uniform spacing in t with a linear schedule leaves the low-noise end
    so coarse that the second-order solver degrades as steps are added (measured
    on Gaussian data with its exact denoiser: tests/denoiser/test_samplers.py).
    """
    if steps < 1:
        raise SamplerError(f"steps must be >= 1, got {steps}")
    ac = schedule.alphas_cumprod
    lam = 0.5 * np.log(ac / (1.0 - ac))  # decreasing in t
    target = np.linspace(lam[-1], lam[0], min(steps, schedule.steps))
    # lam is monotonic: interpolate t on it, then round to the discrete grid
    ts = np.round(np.interp(target, lam[::-1], np.arange(schedule.steps)[::-1])).astype(int)
    ts[0] = schedule.steps - 1
    if len(ts) > 1:
        ts[-1] = 0
    return [int(t) for t in dict.fromkeys(ts.tolist())]


def n_evaluations(sampler: str, steps: int, schedule: Schedule) -> int:
    """Model evaluations a sampler makes (DDPM always walks every step)."""
    check_sampler(sampler)
    return schedule.steps if sampler == "ddpm" else len(timesteps(schedule, steps))


def check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise SamplerError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")


def sample(
    denoise: Callable,
    x_T,
    schedule: Schedule,
    sampler: str = "dpmpp2m",
    steps: int = 10,
    noise: Callable | None = None,
    progress: Callable[[float], None] | None = None,
):
    """Run `sampler` from x_T (pure N(0, I) noise) and return the clean sample."""
    check_sampler(sampler)
    if sampler in STOCHASTIC and noise is None:
        raise SamplerError(f"{sampler} needs a noise source")
    if sampler == "ddpm":
        return ddpm(denoise, x_T, schedule, noise, progress)
    ts = timesteps(schedule, steps)
    if sampler == "ddim":
        return ddim(denoise, x_T, schedule, ts, progress)
    if sampler == "dpmpp2m-sde":
        return dpmpp2m(denoise, x_T, schedule, ts, progress, eta=1.0, noise=noise)
    return dpmpp2m(denoise, x_T, schedule, ts, progress)


def _report(progress, i, n):
    if progress is not None:
        progress((i + 1) / n)


def ddpm(denoise, x, schedule: Schedule, noise: Callable, progress=None):
    """Ancestral sampling over all steps with the posterior q(x_{t-1} | x_t, x0)."""
    betas, ac = schedule.betas, schedule.alphas_cumprod
    n = schedule.steps
    for k, t in enumerate(range(n - 1, -1, -1)):
        x0 = denoise(x, t)
        if t == 0:
            x = x0
        else:
            ac_prev = ac[t - 1]
            c0 = math.sqrt(ac_prev) * betas[t] / (1.0 - ac[t])
            ct = math.sqrt(1.0 - betas[t]) * (1.0 - ac_prev) / (1.0 - ac[t])
            var = betas[t] * (1.0 - ac_prev) / (1.0 - ac[t])
            x = x0 * float(c0) + x * float(ct) + noise(k) * float(math.sqrt(var))
        _report(progress, k, n)
    return x


def ddim(denoise, x, schedule: Schedule, ts: list[int], progress=None):
    """Deterministic DDIM (eta = 0) over the given steps; the last output is x0."""
    ac = schedule.alphas_cumprod
    for i, t in enumerate(ts):
        x0 = denoise(x, t)
        if i == len(ts) - 1:
            x = x0
        else:
            s = ts[i + 1]
            eps = (x - x0 * float(math.sqrt(ac[t]))) * float(1.0 / math.sqrt(1.0 - ac[t]))
            x = x0 * float(math.sqrt(ac[s])) + eps * float(math.sqrt(1.0 - ac[s]))
        _report(progress, i, len(ts))
    return x


def dpmpp2m(
    denoise, x, schedule: Schedule, ts: list[int], progress=None, eta: float = 0.0, noise: Callable | None = None
):
    """DPM-Solver++(2M) (Lu et al. 2022), data prediction, multistep second order.

    eta = 0: the probability-flow ODE solver. eta = 1: the SDE solver (DPM-Solver++(2M)
    SDE, k-diffusion's `sample_dpmpp_2m_sde`, midpoint correction, written for the VP
    schedule): each step keeps e^{-eta h} of the current noise and draws the rest fresh,
    as ancestral DDPM does, at few steps. First order on the first step; after the last
    evaluation (t = 0) the output is the model's x0 (denoise to zero, as the reference
    implementation does).
    """
    ac = schedule.alphas_cumprod
    alpha = lambda t: math.sqrt(ac[t])
    sigma = lambda t: math.sqrt(1.0 - ac[t])
    lam = lambda t: math.log(alpha(t) / sigma(t))
    x0_prev, h_prev = None, None
    for i, t in enumerate(ts):
        x0 = denoise(x, t)
        if i == len(ts) - 1:
            x = x0
        else:
            s = ts[i + 1]
            h = lam(s) - lam(t)
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = x0 * float(1.0 + 0.5 / r) - x0_prev * float(0.5 / r)
            keep = sigma(s) / sigma(t) * math.exp(-eta * h)
            x = x * float(keep) - d * float(alpha(s) * math.expm1(-(1.0 + eta) * h))
            if eta > 0:
                x = x + noise(i) * float(sigma(s) * math.sqrt(-math.expm1(-2.0 * eta * h)))
            x0_prev, h_prev = x0, h
        _report(progress, i, len(ts))
    return x


def take_noise(seeds: list[int], shape: tuple[int, ...]) -> tuple[np.ndarray, Callable]:
    """Initial noise and a DDPM noise source, one generator per take.

    Take i depends on seeds[i] only, so one take redrawn alone (same seed) is the
    same as inside a larger batch.
    """
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    x_T = np.stack([r.standard_normal(shape, dtype=np.float32) for r in rngs])

    def noise(_k: int) -> np.ndarray:
        return np.stack([r.standard_normal(shape, dtype=np.float32) for r in rngs])

    return x_T, noise


def guided(x0_cond, x0_null, scale: float):
    """Classifier-free guidance on the x0 prediction."""
    return x0_null + (x0_cond - x0_null) * float(scale)
