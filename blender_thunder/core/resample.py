"""Backend frames (25 fps) to scene frames.

Pure numpy (no bpy) so that tests and the batch runner compute the very same
numbers the add-on keys.
"""

from __future__ import annotations

import numpy as np


def scene_frame_count(n_frames: int, src_fps: float, dst_fps: float) -> int:
    """Scene frames covering the take: every scene frame whose time lies within
    [0, (n_frames - 1) / src_fps] (a tiny tolerance keeps 25 -> 25 exact)."""
    if n_frames <= 0:
        return 0
    duration = (n_frames - 1) / src_fps
    return int(np.floor(duration * dst_fps + 1e-6)) + 1


def resample(values: np.ndarray, src_fps: float, dst_fps: float, offset: float = 0.0) -> np.ndarray:
    """Linear interpolation of `values (T, D)` sampled at `src_fps` onto the scene
    frames t_k = offset + k / dst_fps (seconds from the first source frame).
    `offset` handles a take starting between two scene frames."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"expected a (frames, channels) array, got shape {values.shape}")
    n_out = scene_frame_count(len(values), src_fps, dst_fps)
    t_src = np.arange(len(values)) / src_fps
    t_dst = np.minimum(offset + np.arange(n_out) / dst_fps, t_src[-1])
    return np.stack([np.interp(t_dst, t_src, values[:, d]) for d in range(values.shape[1])], axis=1)
