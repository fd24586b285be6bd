"""The synthetic take's arrays: one formula for the scenarios (inside bpy, through common)
and the tests that recompute it outside Blender. numpy only, no bpy."""

from __future__ import annotations

import numpy as np


def take_arrays(seed: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth deterministic take at 25 fps: exp float32 [n_frames, 50], jaw float32 [n_frames, 3]."""
    t = np.arange(n_frames)[:, None] / 25.0
    k = np.arange(50)[None, :]
    exp = (0.5 * np.sin(2 * np.pi * (0.3 + 0.05 * k) * t + seed)).astype(np.float32)
    jaw = np.concatenate(
        [0.2 * (1 + np.sin(2 * np.pi * 1.7 * t + seed)) / 2, 0.01 * np.cos(t), 0.02 * np.sin(t)], axis=1
    ).astype(np.float32)
    return exp, jaw
