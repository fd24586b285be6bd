"""Pseudo-ground-truth the way a video tracker makes it.

INFERNO / EMOCA-style trackers observe a face, then fit FLAME expression and jaw
to it; their output carries fitting noise. Here the "observation" is the
vertices of the clean motion plus jitter (independent per frame and a slow
per-vertex drift), and the fit is: jaw by Gauss-Newton (3 parameters, numeric
Jacobian), expression by linear least squares on the un-skinned vertices.
Like a tracker that follows a video frame to frame, the fit starts from where the
face was (the clean motion, slightly perturbed) and keeps a weak prior there:
directions the vertices barely see (the basis is not full rank, and jaw and
mouth_open trade off) stay put instead of wandering.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .kinematics import Kinematics, rodrigues

JITTER_M = 0.0004  # per-frame vertex noise, metres
DRIFT_M = 0.0002  # slow per-vertex drift, metres
RIDGE = 1e-6  # prior weight (squared metres per unit psi)
INIT_JAW_NOISE = 0.003  # rad


def fit_vertices(head_regions: dict, weights_jaw: np.ndarray, n_max: int = 300) -> np.ndarray:
    """The vertices the tracker sees (like a dense landmark set): lips, mouth, jaw, upper face."""

    def every(idx, n):
        idx = np.asarray(idx, np.int64)
        return idx[np.linspace(0, len(idx) - 1, min(n, len(idx))).astype(int)]

    jaw_area = np.nonzero(weights_jaw > 0.5)[0]
    parts = [
        every(head_regions["lips"], 80),
        every(head_regions["mouth"], 100),
        every(jaw_area, 40),
        every(head_regions["upper_face"], 100),
    ]
    idx = np.unique(np.concatenate(parts))
    return every(idx, n_max)


def _solve3(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Many 3x3 systems M x = b by Cramer's rule (numpy's batched solve is slow for 3x3)."""
    r0, r1, r2 = M[..., 0, :], M[..., 1, :], M[..., 2, :]
    c0, c1, c2 = np.cross(r1, r2), np.cross(r2, r0), np.cross(r0, r1)
    det = (r0 * c0).sum(-1, keepdims=True)
    return (c0 * b[..., :1] + c1 * b[..., 1:2] + c2 * b[..., 2:]) / det


class Tracker:
    def __init__(self, kin: Kinematics):
        self.kin = kin
        S = len(kin.idx)
        E = kin.exp_dirs.reshape(S * 3, -1)
        A = np.linalg.inv(E.T @ E + RIDGE * np.eye(E.shape[1]))
        self.pinv = A @ E.T  # (50, 3S)
        self.prior = RIDGE * A  # (50, 50)
        self.moving = np.nonzero(kin.jaw_weight > 1e-4)[0]  # only these need un-skinning

    def _psi_given_jaw(self, v_obs, jaw, psi_prev, psi0):
        """Undo the jaw skinning with the current joint estimate, then least squares."""
        k = self.kin
        A = rodrigues(jaw) - np.eye(3)  # (T,3,3)
        mv = self.moving
        w = k.jaw_weight[mv]
        M = np.eye(3) + w[None, :, None, None] * A[:, None]  # (T,S',3,3)
        j = k.joint_t + psi_prev @ k.joint_e.T  # (T,3)
        rhs = v_obs[:, mv] + w[None, :, None] * np.matmul(A, j[..., None])[..., 0][:, None]
        v_e = v_obs.copy()
        v_e[:, mv] = _solve3(M, rhs)
        return (v_e - k.template).reshape(len(v_obs), -1) @ self.pinv.T + psi0 @ self.prior.T

    def fit(
        self, v_obs: np.ndarray, psi0: np.ndarray, jaw0: np.ndarray, iters: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fit expression + jaw to observed vertices, starting from (psi0, jaw0)."""
        T = len(v_obs)
        psi, jaw = psi0.copy(), jaw0.copy()
        eps = 1e-4
        for _ in range(iters):
            psi = self._psi_given_jaw(v_obs, jaw, psi, psi0)
            v_e, joint = self.kin.shaped(psi)
            mv = self.moving  # the jaw moves nothing else
            r0 = (self.kin.skin(v_e, joint, jaw)[:, mv] - v_obs[:, mv]).reshape(T, -1)
            J = np.empty((T, r0.shape[1], 3))
            for a in range(3):
                d = jaw.copy()
                d[:, a] += eps
                J[:, :, a] = ((self.kin.skin(v_e, joint, d)[:, mv] - v_obs[:, mv]).reshape(T, -1) - r0) / eps
            H = np.matmul(J.transpose(0, 2, 1), J) + 1e-9 * np.eye(3)
            g = np.matmul(J.transpose(0, 2, 1), r0[..., None])
            jaw = jaw - np.linalg.solve(H, g)[..., 0]
        psi = self._psi_given_jaw(v_obs, jaw, psi, psi0)
        return psi, jaw

    def observe(self, psi: np.ndarray, jaw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clean motion -> jittered vertices, as a tracker would see them."""
        v = self.kin.vertices(psi, jaw)
        # unit-variance noise smoothed over ~4 frames, rescaled to DRIFT_M
        drift = gaussian_filter1d(rng.normal(0, 1, v.shape), 4.0, axis=0, mode="nearest")
        drift *= DRIFT_M / max(float(drift.std()), 1e-12)
        return v + drift + rng.normal(0, JITTER_M, v.shape)

    def pseudo_gt(self, psi, jaw, rng):
        jaw0 = jaw + rng.normal(0, INIT_JAW_NOISE, jaw.shape)
        psi_fit, jaw_fit = self.fit(self.observe(psi, jaw, rng), psi, jaw0)
        return psi_fit.astype(np.float32), jaw_fit.astype(np.float32)
