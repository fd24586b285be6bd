"""Contracts shared by `training/` and `backend/`: defined once, here.

`training/` imports these; the Blender add-on learns them over HTTP (`/v1/model`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Parameter layout: x = [psi | theta_jaw] per frame, at FPS.
N_EXP = 50  # FLAME expression coefficients psi
N_JAW = 3  # jaw rotation, axis-angle (radians)
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

# Custom property naming the head a Blender rig was built from (its head_id).
HEAD_ID_PROP = "thunder_head_id"

# Quality presets a bundle offers (sampler and steps; a manifest may override them). The
# default's 8 steps were chosen on validation (training/denoiser/README.md, session 8): as close
# and as accurate as 10 (m/p/b closure 0.81 vs 0.77, LVE 6.15 mm both) and inside the 1.5 s budget.
# Every preset takes its lips from the first step's prediction, guided ("mean lips",
# backend/liplock.py, session 9; training/denoiser/README.md): the upper face stays sampled; the
# steps only change how finely it is. That prediction is the mean of 4 from fixed starts (session
# 11): every take gets the same lips, at the cost of the takes' own guided first step (S-DIV-L
# 0.20 -> 0.11 mm, worst-take closure up, LVE unchanged on validation). The guidance moves it only
# along the direction that opens the lips (session 17: LVE 0.06-0.13 mm lower on every test and
# validation source at the same g, vowels as open, closure held). Each clip gets only as much of
# it as its lips need to open with a spread (sd over the clip) of 5.75 mm, up to g 1.4 (session 18,
# liplock.articulate): of the (ceiling, target) pairs that open real validation voices' vowels to
# 80 % of the corpus articulation (the rule every g since session 9 was chosen by), the one with the
# least validation LVE (84 %; LVE 0.11 mm under the fixed g 1.3 on synthetic validation voices).
MEAN_LIPS = {
    "lips": "mean",
    "lip_guidance": 1.4,
    "lip_draws": 4,
    "lip_guidance_along": "opening",
    "lip_opening_std_mm": 5.75,
}
DEFAULT_PRESETS = {
    "draft": {"sampler": "dpmpp2m", "steps": 6, **MEAN_LIPS},
    "default": {"sampler": "dpmpp2m", "steps": 8, **MEAN_LIPS},
    "high": {"sampler": "dpmpp2m", "steps": 25, **MEAN_LIPS},
}
PRESET_NAMES = tuple(DEFAULT_PRESETS)

# Limits of one animate request: the HTTP schema, the CLI, the engine and the add-on's
# controls all take them from here (the add-on through its checked copy, core/contract.py).
MAX_TAKES = 32
MAX_STEPS = 1000
MAX_GUIDANCE = 10.0
MAX_SEED = 2**32 - 1  # seeds are uint32: take i of a request uses seed + i
# Limits of a take sent to /v1/listen: far outside any face (FLAME psi lives within a few
# units; a jaw turns well under a radian), yet finite in float32 all the way through M2S.
MAX_ABS_EXP = 100.0
MAX_ABS_JAW = 2 * math.pi


class OptionError(ValueError):
    """An option the engine cannot honour (HTTP 422 `bad_option`)."""

    code = "bad_option"
    status = 422


def check_request(takes: int, seed: int, steps: int | None, guidance: float) -> None:
    """The one range check of an animate request (service, CLI and Engine.animate)."""
    if not 1 <= takes <= MAX_TAKES:
        raise OptionError(f"takes must be 1..{MAX_TAKES}, got {takes}")
    if seed < 0 or seed + takes > MAX_SEED + 1:
        raise OptionError(f"seed must be 0..{MAX_SEED + 1 - takes}, got {seed}")
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise OptionError(f"steps must be 1..{MAX_STEPS}, got {steps}")
    if not (math.isfinite(guidance) and 0.0 <= guidance <= MAX_GUIDANCE):
        raise OptionError(f"guidance must be 0..{MAX_GUIDANCE:g}, got {guidance}")


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel front-end, as in the lip-to-speech work M2S builds on."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 640
    win_length: int = 640
    hop_length: int = 160  # 100 Hz
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5  # log(max(mel, floor))

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
