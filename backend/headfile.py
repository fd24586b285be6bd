"""Read a head file (head.npz) and compute its identity, without torch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .contracts import REGION_NAMES


def head_id(v_template: np.ndarray, faces: np.ndarray) -> str:
    """sha256 of the template (float32 LE) then the faces (int32 LE): the same for a
    head file and the FLAME model it came from."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(v_template, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(faces, dtype="<i4").tobytes())
    return h.hexdigest()


def load_head_file(path: str | Path) -> dict:
    """head.npz as a dict of arrays (strings as Python str); raises ValueError if incomplete."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    required = [
        "v_template",
        "faces",
        "exp_dirs",
        "joints",
        "parents",
        "weights",
        "lip_upper",
        "lip_lower",
        "head_id",
    ] + [f"region_{r}" for r in REGION_NAMES]
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path}: not a THUNDER head file (missing {', '.join(missing)})")
    data["head_id"] = str(data["head_id"])
    return data
