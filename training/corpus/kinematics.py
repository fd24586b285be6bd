"""FLAME forward kinematics for expression + jaw on a subset of vertices, in numpy.

The corpus needs vertices for millions of frames (pseudo-ground-truth fitting,
lip-distance checks); the full torch model would dominate the build time. With
zero shape and only the jaw rotated, FLAME's linear blend skinning reduces to
    v = v_e + P(jaw) + w_jaw * (R(jaw) - I) (v_e + P(jaw) - J_jaw(psi)),
    v_e = v_template + E psi,  J_jaw = J_regressor[jaw] v_e,
which this module evaluates on the vertices it is asked for. It reads the same
FLAME file `smplx.FLAME` loads (tests check it against the torch HeadModel).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.contracts import N_EXP

N_SHAPE_SPACE = 300
JAW = 2  # FLAME joint order: root, neck, jaw, eye_L, eye_R


def _load_flame(head_dir: Path) -> dict:
    npz, pkl = head_dir / "FLAME_NEUTRAL.npz", head_dir / "FLAME_NEUTRAL.pkl"
    if npz.exists():
        with np.load(npz, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if pkl.exists():
        with open(pkl, "rb") as f:
            return pickle.load(f, encoding="latin1")
    raise FileNotFoundError(f"{head_dir} holds no FLAME_NEUTRAL.npz / .pkl")


def rodrigues(aa: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3)."""
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(angle, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    K = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


@dataclass
class Kinematics:
    """Expression + jaw -> vertices for the vertex indices `idx`."""

    idx: np.ndarray
    template: np.ndarray  # (S, 3)
    exp_dirs: np.ndarray  # (S, 3, 50)
    jaw_weight: np.ndarray  # (S,)
    joint_t: np.ndarray  # (3,)   jaw joint at psi = 0
    joint_e: np.ndarray  # (3, 50) jaw joint per unit psi
    posedirs: np.ndarray  # (S, 3, 9) jaw pose correctives (zero on the stand-in)

    @classmethod
    def from_head_dir(cls, head_dir: str | Path, idx: np.ndarray) -> "Kinematics":
        m = _load_flame(Path(head_dir))
        idx = np.asarray(idx, np.int64)
        v_t = np.asarray(m["v_template"], np.float64)
        E = np.asarray(m["shapedirs"], np.float64)[:, :, N_SHAPE_SPACE : N_SHAPE_SPACE + N_EXP]
        J = m["J_regressor"]
        J = np.asarray(J.todense() if hasattr(J, "todense") else J, np.float64)[JAW]
        posedirs = np.asarray(m["posedirs"], np.float64)
        return cls(
            idx=idx,
            template=v_t[idx],
            exp_dirs=E[idx],
            jaw_weight=np.asarray(m["weights"], np.float64)[idx, JAW],
            joint_t=J @ v_t,
            joint_e=np.einsum("v,vce->ce", J, E),
            posedirs=posedirs[idx][:, :, 9 * (JAW - 1) : 9 * JAW],
        )

    def shaped(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unposed vertices (T, S, 3) and jaw joint (T, 3) for psi (T, 50)."""
        S = len(self.idx)
        v = self.template + (psi @ self.exp_dirs.reshape(S * 3, -1).T).reshape(len(psi), S, 3)
        return v, self.joint_t + psi @ self.joint_e.T

    def skin(self, v: np.ndarray, joint: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        """Rotate the jaw: unposed (T, S, 3) -> posed (T, S, 3)."""
        A = rodrigues(np.asarray(jaw, np.float64)) - np.eye(3)  # (T, 3, 3)
        if self.posedirs.any():
            S = len(self.idx)
            v = v + (A.reshape(-1, 9) @ self.posedirs.reshape(S * 3, 9).T).reshape(v.shape)
        rel = v - joint[:, None]
        return v + self.jaw_weight[None, :, None] * np.matmul(rel, A.transpose(0, 2, 1))

    def vertices(self, psi: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        """psi (T, 50), jaw (T, 3) -> (T, S, 3)."""
        return self.skin(*self.shaped(np.asarray(psi, np.float64)), jaw)
