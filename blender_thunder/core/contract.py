"""The backend's contract as the add-on needs it: parameter layout, rig names, request limits.

The add-on must not import `backend` (it talks HTTP, and a zip may ship without
one), so these are a copy of `backend/contracts.py`'s shared names;
tests/blender/test_contract.py fails the moment the two disagree. A bundle states
its own layout in `/v1/model`, which messages.py checks against this one.
No bpy.
"""

from __future__ import annotations

import hashlib

import numpy as np

N_EXP = 50  # FLAME expression coefficients psi per frame
N_JAW = 3  # jaw rotation, axis-angle (radians)
FPS = 25  # the backend's motion rate
SAMPLE_RATE = 16000

JOINT_NAMES = ("root", "neck", "jaw", "eye_L", "eye_R")
SHAPE_KEY_NAMES = tuple(f"exp{i:03d}" for i in range(N_EXP))
HEAD_ID_PROP = "thunder_head_id"

PRESET_NAMES = ("draft", "default", "high")
MAX_TAKES = 32
MAX_GUIDANCE = 10.0
MAX_SEED = 2**32 - 1


def head_id(v_template, faces) -> str:
    """The head's identity (docs/bundle.md): sha256 of its rest vertices (float32 LE, FLAME's
    frame) then its triangles (int32 LE). backend/headfile.head_id computes the same."""
    h = hashlib.sha256(np.ascontiguousarray(v_template, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(faces, dtype="<i4").tobytes())
    return h.hexdigest()
