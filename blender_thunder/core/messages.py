"""Validate what the backend sends before anything touches the scene.

No bpy. Every check raises `BadMessage` with a sentence a user can act on.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from .contract import FPS, N_EXP, N_JAW

MAX_FRAMES = FPS * 60 * 60  # an hour of motion: anything longer is a bug


class BadMessage(ValueError):
    pass


@dataclass
class Take:
    seed: int
    score: float
    exp: np.ndarray  # (T, 50) float32, 25 fps
    jaw: np.ndarray  # (T, 3) axis-angle radians

    @property
    def n_frames(self) -> int:
        return len(self.exp)


def encode_array(arr: np.ndarray) -> str:
    """The protocol's b64 encoding: float32 little-endian, row-major."""
    return base64.b64encode(np.ascontiguousarray(arr, dtype="<f4").tobytes()).decode()


def decode_array(text: str, width: int) -> np.ndarray:
    """encode_array's inverse, as (frames, width)."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(-1, width)


def _array(take: dict, name: str, width: int, n_frames: int | None) -> np.ndarray:
    if f"{name}_b64" in take:
        try:
            raw = base64.b64decode(take[f"{name}_b64"], validate=True)
        except (ValueError, TypeError):
            raise BadMessage(f"take field {name}_b64 is not base64") from None
        arr = np.frombuffer(raw, dtype="<f4")
        if arr.size % width:
            raise BadMessage(f"take field {name}_b64 holds {arr.size} floats, not a multiple of {width}")
        arr = arr.reshape(-1, width)
    elif name in take:
        try:
            arr = np.asarray(take[name], dtype=np.float32)
        except (ValueError, TypeError):
            raise BadMessage(f"take field {name} is not a numeric array") from None
    else:
        raise BadMessage(f"take has no {name!r} array")
    if arr.ndim != 2 or arr.shape[1] != width:
        raise BadMessage(f"take field {name} has shape {arr.shape}, expected (frames, {width})")
    if n_frames is not None and len(arr) != n_frames:
        raise BadMessage(f"take field {name} has {len(arr)} frames, the reply says {n_frames}")
    if not len(arr) or len(arr) > MAX_FRAMES:
        raise BadMessage(f"take field {name} has {len(arr)} frames")
    if not np.isfinite(arr).all():
        raise BadMessage(f"take field {name} holds NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def parse_animate(reply: dict, expect_takes: int | None = None) -> tuple[list[Take], dict]:
    """Takes and the reply's metadata (fps, duration, timings) from /v1/animate."""
    if not isinstance(reply, dict):
        raise BadMessage("the reply is not a JSON object")
    fps = reply.get("fps")
    if fps != 25:
        raise BadMessage(f"the backend animates at {fps!r} fps; this add-on expects 25")
    n_frames = reply.get("n_frames")
    if n_frames is not None and (not isinstance(n_frames, int) or n_frames <= 0):
        raise BadMessage(f"bad n_frames {n_frames!r}")
    raw_takes = reply.get("takes")
    if not isinstance(raw_takes, list) or not raw_takes:
        raise BadMessage("the reply holds no takes")
    if expect_takes is not None and len(raw_takes) != expect_takes:
        raise BadMessage(f"asked for {expect_takes} takes, got {len(raw_takes)}")
    takes = []
    for t in raw_takes:
        if not isinstance(t, dict):
            raise BadMessage("a take is not a JSON object")
        seed = t.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise BadMessage(f"bad take seed {seed!r}")
        score = t.get("score", float("nan"))
        if score is None:
            score = float("nan")
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise BadMessage(f"bad take score {score!r}")
        exp = _array(t, "exp", N_EXP, n_frames)
        jaw = _array(t, "jaw", N_JAW, len(exp))
        takes.append(Take(seed, float(score), exp, jaw))
    meta = {k: reply.get(k) for k in ("fps", "n_frames", "duration", "sampler", "steps", "guidance", "timings")}
    return takes, meta


def check_model(model: dict) -> dict:
    """The parts of /v1/model the add-on relies on."""
    layout = model.get("layout") or {}
    if layout.get("n_exp", N_EXP) != N_EXP or layout.get("n_jaw", N_JAW) != N_JAW:
        raise BadMessage(f"the bundle's parameter layout {layout} is not {N_EXP} expression + {N_JAW} jaw")
    head = model.get("head") or {}
    if not isinstance(head.get("head_id"), str) or not head["head_id"]:
        raise BadMessage("the bundle does not say which head it was trained on (head.head_id)")
    return model


def encode_take(take: Take) -> dict:
    """The /v1/listen body for one take (base64 float32)."""
    return {
        "n_frames": take.n_frames,
        "exp_b64": encode_array(take.exp),
        "jaw_b64": encode_array(take.jaw),
    }
