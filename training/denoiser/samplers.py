"""Torch side of the samplers: the algebra is `backend.samplers` (shared with the
backend's numpy path, so the two cannot drift); this wraps a torch denoiser."""

from __future__ import annotations

import numpy as np
import torch

from backend.samplers import Schedule, guided, sample, take_noise
from training.denoiser.model import Denoiser


@torch.no_grad()
def sample_takes(
    model: Denoiser,
    audio: torch.Tensor,
    seeds: list[int],
    schedule: Schedule,
    sampler: str = "dpmpp2m",
    steps: int = 10,
    guidance: float = 1.0,
    progress=None,
) -> torch.Tensor:
    """Normalised samples (len(seeds), T, P) for one utterance's features audio (T, A).

    Noise comes from `backend.samplers.take_noise`, so the same seeds give the same
    takes here and in the backend.
    """
    model.eval()
    n, t_len = len(seeds), audio.shape[0]
    x_T, np_noise = take_noise(seeds, (t_len, model.cfg.n_params))
    feats = audio[None].expand(n, -1, -1)
    use_null = guidance != 1.0
    if use_null:  # one doubled batch: [cond | null]
        feats = torch.cat([feats, feats])
        null = torch.cat([torch.zeros(n), torch.ones(n)])
    else:
        null = torch.zeros(n)
    ctx = model.context(feats, null)
    if model.cfg.deterministic:  # regression baseline: one pass, no noise
        x0 = model.step(torch.zeros(n, t_len, model.cfg.n_params), torch.zeros(n, dtype=torch.long), ctx)
        return x0

    def denoise(x, t):
        xx = torch.cat([x, x]) if use_null else x
        x0 = model.step(xx, torch.full((xx.shape[0],), t, dtype=torch.long), ctx)
        return guided(x0[:n], x0[n:], guidance) if use_null else x0

    noise = lambda k: torch.from_numpy(np_noise(k))
    return sample(denoise, torch.from_numpy(x_T), schedule, sampler, steps, noise, progress)


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32)
