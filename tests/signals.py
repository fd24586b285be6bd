"""Synthetic test signals (the tests' own; production code uses real speech)."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000


def speechlike(seconds: float, rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-rate modulated signal of any length and rate, reproducible by seed:
    for tests of decoding, resampling and limits, where the content does not matter."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    x = 0.3 * voiced * envelope + 0.01 * rng.standard_normal(len(t))
    return (0.8 * x / max(1e-6, np.abs(x).max())).astype(np.float32)
