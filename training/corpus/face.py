"""Phones + style -> FLAME expression and jaw at 25 fps, through the head's semantic controls.

psi = sum_k w_k * semantic_coeffs[k] (training/head/semantics.py); articulation
gives the lip controls and jaw, upperface.py the rest, the tracker the
pseudo-ground-truth. Two draws of one utterance share the articulation and
differ in the upper-face stream. Blinks close the lids fully: the face turns a
0..1 blink envelope into the blink weight at which the lid rims meet, given what
the brows, squint and wide eyes do to the opening at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from backend.contracts import FPS

from .articulation import RATE, articulate, to_frames
from .kinematics import Kinematics
from .tracker import Tracker, fit_vertices
from training.head.regions import lid_midpoints

from .upperface import accent_times, upper_face

PSI_NOISE = 0.01  # small head-independent noise on psi (smoothed), in psi units


def _lid_gaps(lids: Kinematics, exp: np.ndarray) -> np.ndarray:
    v = lids.vertices(exp, np.zeros((len(exp), 3))).reshape(len(exp), 2, 2, 2, 3).mean(3)  # (T, eye, lid, 3)
    rest = lids.template.reshape(2, 2, 2, 3).mean(2)
    d = rest[:, 0] - rest[:, 1]
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return ((v[:, :, 0] - v[:, :, 1]) * d).sum(-1)


def n_frames_for(duration: float) -> int:
    return int(np.floor(duration * FPS + 1e-9))


@dataclass
class Face:
    """What the corpus engine needs from a head folder."""

    head_dir: Path
    head_id: str
    names: list[str]
    coeffs: np.ndarray  # (K, 50)
    lip_pair: Kinematics  # upper and lower lip mid-points
    tracker: Tracker
    regions: dict
    lids: Kinematics  # lid rim vertices: (eye L, R) x (upper, lower) x 2
    lid_gain: np.ndarray  # (K, 2): lid gap change (m) per unit of each control, per eye
    lid_rest: np.ndarray  # (2,): lid gap at rest (m)

    @classmethod
    def load(cls, head_dir: str | Path) -> "Face":
        from training.head import load_head

        head = load_head(head_dir)
        if not len(head.semantic_names):
            raise ValueError(
                f"{head.path} has no semantic controls (a plain FLAME import?): the corpus "
                "engine animates through them; build it on the stand-in head "
                "(`thunder-train head build`) or import tracked data (`corpus import`)"
            )
        lips = np.array([head.lip_upper, head.lip_lower])
        kin = Kinematics.from_head_dir(head.path, fit_vertices(head.regions, head.weights[:, 2]))
        lids = Kinematics.from_head_dir(
            head.path, lid_midpoints(head.v_template, head.faces, head.regions["eyes"]).ravel()
        )
        coeffs = np.asarray(head.semantic_coeffs, np.float64)
        rest = _lid_gaps(lids, np.zeros((1, coeffs.shape[1])))[0]
        gain = _lid_gaps(lids, coeffs) - rest  # expression is linear in psi, and the jaw moves no lid
        return cls(
            head.path,
            str(head.head_id),
            list(head.semantic_names),
            coeffs,
            Kinematics.from_head_dir(head.path, lips),
            Tracker(kin),
            head.regions,
            lids,
            gain,
            rest,
        )

    def weights(self, tracks: dict, asymmetry: float) -> np.ndarray:
        """Control tracks (name -> (T,)) -> (T, K) weights; bilateral controls get the asymmetry."""
        T = len(next(iter(tracks.values())))
        W = np.zeros((T, len(self.names)))
        col = {n: i for i, n in enumerate(self.names)}
        for name, v in tracks.items():
            if name not in col:
                continue
            W[:, col[name]] += v
            if f"{name}_L" in col:
                W[:, col[f"{name}_L"]] += asymmetry * v
                W[:, col[f"{name}_R"]] -= asymmetry * v
        return self.close_lids(W)

    def close_lids(self, W: np.ndarray) -> np.ndarray:
        """Blink columns hold 0..1 closure envelopes: make each the weight at which that eye's
        lid gap is its envelope's share of the way to shut (1: the rims meet), given the other
        controls' effect on the opening in that frame."""
        col = {n: i for i, n in enumerate(self.names)}
        if not {"blink", "blink_L", "blink_R"} <= set(col):
            return W
        W = W.copy()
        b, sided = col["blink"], (col["blink_L"], col["blink_R"])
        for k in sided:  # one unit of blink is one of each half (training/head/semantics.py)
            W[:, k] += W[:, b]
        W[:, b] = 0.0
        others = W.copy()
        others[:, list(sided)] = 0.0
        for eye, k in enumerate(sided):
            opening = self.lid_rest[eye] + others @ self.lid_gain[:, eye]
            W[:, k] *= np.clip(opening / -self.lid_gain[k, eye], 0.0, 2.0)
        return W

    def lid_gaps(self, exp: np.ndarray) -> np.ndarray:
        """Lid opening (m) per frame and eye (T, 2): upper rim to lower rim along the rest
        opening's direction (negative: the lids overlap)."""
        return _lid_gaps(self.lids, np.asarray(exp, np.float64))

    def lip_distance(self, exp: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        """Distance (m) between the upper and lower lip mid-points per frame."""
        v = self.lip_pair.vertices(exp, jaw)
        return np.linalg.norm(v[:, 0] - v[:, 1], axis=-1)


def clean_motion(
    face: Face, phones, duration: float, style: dict, rng_upper: np.random.Generator, stressed: list[bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free psi (T, 50) and jaw (T, 3) at 25 fps."""
    T = n_frames_for(duration)
    lips, jaw_open = articulate(phones, duration, style)
    t = np.arange(len(jaw_open)) / RATE
    upper = upper_face(t, phones, accent_times(phones, stressed), style, rng_upper)
    psi, jaw = controls_to_flame(face, {**lips, **upper}, jaw_open, T, style["asymmetry"])
    noise = gaussian_filter1d(rng_upper.normal(0, 1, psi.shape), 2.0, axis=0, mode="nearest")
    psi = psi + PSI_NOISE * noise / max(float(noise.std()), 1e-9)
    return psi, jaw


def controls_to_flame(
    face: Face, tracks: dict, jaw_open: np.ndarray, n_frames: int, asymmetry: float
) -> tuple[np.ndarray, np.ndarray]:
    """RATE Hz control tracks (name -> (N,)) and jaw opening (N,) -> psi (T, 50) and jaw (T, 3)
    at 25 fps, no noise (also what the classic pipeline peer in training/peers uses)."""
    frames = {k: to_frames(v, n_frames) for k, v in tracks.items()}
    psi = face.weights(frames, asymmetry) @ face.coeffs
    jaw_x = to_frames(jaw_open, n_frames)
    jaw = np.stack([jaw_x, np.zeros(n_frames), 0.05 * asymmetry * jaw_x], axis=1)
    return psi, jaw


def draw_motion(
    face: Face,
    phones,
    duration: float,
    style: dict,
    seed_seq: np.random.SeedSequence,
    stressed: list[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One draw of pseudo-ground-truth motion: (exp (T,50) f4, jaw (T,3) f4)."""
    upper_ss, track_ss = seed_seq.spawn(2)
    psi, jaw = clean_motion(face, phones, duration, style, np.random.default_rng(upper_ss), stressed)
    return face.tracker.pseudo_gt(psi, jaw, np.random.default_rng(track_ss))
