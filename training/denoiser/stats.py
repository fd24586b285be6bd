"""Normalisation and the diffusion noise N(mu, Sigma) (paper Eq. 7).

mu and Sigma are the mean and full covariance of the per-frame parameters
x = [psi | jaw] over the training split (ridge-floored, since some jaw axes
barely move). Training diffuses whitened z = L^-1 (x - mu), Sigma = L L^T, with
standard N(0, I) noise: in parameter space the prior the samplers start from is
exactly N(mu, Sigma). `stats.npz` holds mean (P,), cov (P, P), chol = L, chol_inv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

RIDGE = 1e-3  # relative to the mean variance


def compute_stats(frames: np.ndarray) -> dict:
    """Stats of frames (N, P)."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or len(frames) < 2:
        raise ValueError(f"need frames of shape (N >= 2, P), got {frames.shape}")
    mean = frames.mean(0)
    cov = np.cov(frames, rowvar=False)
    cov = cov + np.eye(len(cov)) * (RIDGE * np.trace(cov) / len(cov) + 1e-10)
    chol = np.linalg.cholesky(cov)
    return {
        "mean": mean.astype(np.float32),
        "cov": cov.astype(np.float32),
        "chol": chol.astype(np.float32),
        "chol_inv": np.linalg.inv(chol).astype(np.float32),
    }


def save_stats(path: Path, stats: dict, **extra) -> None:
    np.savez(path, **stats, **extra)


def load_stats(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class Normaliser(torch.nn.Module):
    """x <-> z in torch, from the stats dict."""

    def __init__(self, stats: dict):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(stats["mean"], dtype=torch.float32))
        self.register_buffer("chol", torch.as_tensor(stats["chol"], dtype=torch.float32))
        self.register_buffer("chol_inv", torch.as_tensor(stats["chol_inv"], dtype=torch.float32))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.chol_inv.T

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.chol.T + self.mean
