"""Lips meet, they do not pass: no take pushes its upper lip through its lower one.

Why (session 10, 40 synthetic test clips x 8 takes of the shipped bundle, measured on the rig's
own lip mid-points along the direction the jaw opens them): at the smallest opening of each m/p/b
the takes sit at a median 1.0 mm *past* the point where the lips meet (5 % of them past by 2.3 mm
or more), while the corpus articulation they learnt from stops at the meeting point (median
+0.1 mm, 5 % past by 0.4 mm or more). Pressed that far, the stand-in's upper lip sinks into the
lower one, which an artist sees as a lip swallowed, and the two mid-points end up over 2 mm apart
again on the far side: 38 % of the m/p/b that `lipcheck` found open were lips crossed, not open.
The denoiser has no notion of contact; a mesh without collision has none either.

How: the two lip mid-points are posed as the rig poses them (expression offsets, then the jaw
joint's rotation blended by each point's skin weight: the posing of blender_thunder's lipseal,
which the backend may not import; tests/backend/test_lipcontact.py keeps the two equal), and
their separation is measured along the axis on which the jaw starts to open them. After
sampling, each frame whose separation is negative (the upper point past the lower one on that
axis) is moved back to where they meet, along the take's lip directions of z only
(backend/liplock.lip_directions: the upper face is left as it is), by the least change in z:
Newton steps on the separation's gradient (finite differences; the jaw's rotation makes it
slightly non-linear). Frames that did not cross are not touched. On by default; a preset with
`"lip_contact": false` keeps the takes as sampled (a stylised rig that wants pressed lips, or a
comparison).
"""

from __future__ import annotations

import numpy as np

# Newton steps onto the meeting point (the separation is linear in the expression and nearly so in
# the jaw: two steps leave under 1e-3 mm, the third is a margin).
STEPS = 3
# Finite-difference step along a unit lip direction of z (whitened units: a tiny fraction of one sd).
EPS = 1e-3
# Separations this far (mm) below zero count as meeting (numerical slack of the steps).
TOLERANCE_MM = 1e-3


class LipPair:
    """The head's two lip mid-points (`lip_upper`, `lip_lower` of the head file) as the rig poses them."""

    def __init__(self, head, n_exp: int):
        jaw = [str(n) for n in head["joint_names"]].index("jaw")
        lips = [int(head["lip_upper"]), int(head["lip_lower"])]
        self.n_exp = n_exp
        self.rest = np.asarray(head["v_template"], np.float64)[lips]  # (2, 3)
        self.offsets = np.asarray(head["exp_dirs"], np.float64)[lips][..., :n_exp]  # (2, 3, n_exp)
        self.centre = np.asarray(head["joints"], np.float64)[jaw]
        self.weight = np.asarray(head["weights"], np.float64)[lips, jaw][None, :, None]  # (1, 2, 1)
        # how each point starts to move as the jaw opens (a turn about x, positive opens), skinned
        start = self.weight[0] * np.cross([1.0, 0.0, 0.0], self.rest - self.centre)
        axis = start[0] - start[1]
        self.axis = axis / np.linalg.norm(axis)

    def points(self, x: np.ndarray) -> np.ndarray:
        """(T, 2, 3) upper and lower lip points (m) for motion x (T, n_exp + 3)."""
        p = self.rest[None] + np.einsum("vcn,tn->tvc", self.offsets, x[:, : self.n_exp])
        jaw = x[:, self.n_exp : self.n_exp + 3]
        angle = np.linalg.norm(jaw, axis=1)[:, None, None]
        k = (jaw / np.maximum(angle[:, :, 0], 1e-12))[:, None, :]  # unit axes (T, 1, 3)
        arm = p - self.centre
        # Rodrigues' formula on the two arms: a cos + (k x a) sin + k (k . a)(1 - cos)
        turned = (
            arm * np.cos(angle)
            + np.cross(k, arm) * np.sin(angle)
            + k * (k * arm).sum(-1, keepdims=True) * (1.0 - np.cos(angle))
        )
        return p + self.weight * (turned + self.centre - p)

    def separation_mm(self, x: np.ndarray) -> np.ndarray:
        """(T,) upper minus lower point along the opening axis (mm): < 0 where they have passed."""
        pts = self.points(np.asarray(x, np.float64))
        return 1000.0 * (pts[:, 0] - pts[:, 1]) @ self.axis


def keep_apart(z: np.ndarray, mean: np.ndarray, chol: np.ndarray, directions: np.ndarray, lips: LipPair):
    """z (takes, T, 53) whitened motion (x = mean + chol z) with every frame whose lips have passed
    each other moved back to where they meet, along `directions` (53, k) only.

    Returns (z', share of frames moved)."""
    z = np.array(z, dtype=np.float64)
    mean, chol = np.asarray(mean, np.float64), np.asarray(chol, np.float64)
    dirs = np.asarray(directions, np.float64)
    dx = (chol @ dirs).T  # (k, 53): a unit step along each lip direction, in x
    moved = 0
    for take in z:  # a view: edited in place
        x = take @ chol.T + mean
        sep = lips.separation_mm(x)
        hit = sep < -TOLERANCE_MM
        moved += int(hit.sum())
        for _ in range(STEPS):
            if not hit.any():
                break
            xs, s = x[hit], sep[hit]
            grad = np.stack([(lips.separation_mm(xs + EPS * d) - s) / EPS for d in dx], axis=1)  # (n, k)
            norm2 = np.maximum((grad**2).sum(axis=1), 1e-12)
            step = (-s / norm2)[:, None] * grad  # the least step in z that brings the separation to 0
            take[hit] += step @ dirs.T
            x[hit] = take[hit] @ chol.T + mean
            sep[hit] = lips.separation_mm(x[hit])
            hit = sep < -TOLERANCE_MM
    return z.astype(np.float32), moved / max(z.shape[0] * z.shape[1], 1)


def keeps_lips_apart(preset: dict | None) -> bool:
    """Whether a preset keeps the lips from passing each other (`"lip_contact"`, default on)."""
    return bool((preset or {}).get("lip_contact", True))
