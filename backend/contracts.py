"""Contracts shared by `training/` and `backend/`: defined once, here.

`training/` imports these; the Blender add-on learns them over HTTP (`/v1/model`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

# Parameter layout: x = [psi | theta_jaw] per frame, at FPS.
N_EXP = 50          # FLAME expression coefficients psi
N_JAW = 3           # jaw rotation, axis-angle (radians)
N_PARAMS = N_EXP + N_JAW
FPS = 25
SAMPLE_RATE = 16000

EXP_SLICE = slice(0, N_EXP)
JAW_SLICE = slice(N_EXP, N_PARAMS)

# Head joints in FLAME order; kintree parents (-1 = root).
JOINT_NAMES = ("root", "neck", "jaw", "eye_L", "eye_R")
JOINT_PARENTS = (-1, 0, 1, 1, 1)
SHAPE_KEY_NAMES = tuple(f"exp{i:03d}" for i in range(N_EXP))

# Region masks every head file carries (index arrays into the vertices).
REGION_NAMES = ("lips", "mouth", "upper_face", "eyes", "forehead")


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel front-end, as in the lip-to-speech work M2S builds on."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 640
    win_length: int = 640
    hop_length: int = 160          # 100 Hz
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5        # log(max(mel, floor))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


LAYOUT = {
    "n_exp": N_EXP,
    "n_jaw": N_JAW,
    "fps": FPS,
    "order": ["exp", "jaw"],
    "jaw": "axis-angle radians",
}
