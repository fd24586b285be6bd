"""Lips meet, they do not pass: no take pushes its upper lip through its lower one.

Why (session 10, 40 synthetic test clips x 8 takes of the shipped bundle, measured on the rig's
own lip mid-points along the direction the jaw opens them): at the smallest opening of each m/p/b
the takes sit at a median 1.0 mm *past* the point where the lips meet (5 % of them past by 2.3 mm
or more), while the corpus articulation they learnt from stops at the meeting point (median
+0.1 mm, 5 % past by 0.4 mm or more). Pressed that far, the stand-in's upper lip sinks into the
lower one, which an artist sees as a lip swallowed, and the two mid-points end up over 2 mm apart
again on the far side: 38 % of the m/p/b that `lipcheck` found open were lips crossed, not open.
The denoiser has no notion of contact; a mesh without collision has none either.

How: after sampling, each frame whose opening (blender_thunder.core.lipseal.source_lips, the same
measure the retargeting's lip seal uses) lies below the meeting point is moved back onto it, along
the take's lip directions of z only (backend/liplock.lip_directions: the upper face is left as it
is), by the least change in z: Newton steps on the opening's gradient (finite differences, the
jaw's rotation makes it slightly non-linear). Frames at or above the meeting point are not touched.
On by default; a preset with `"lip_contact": false` keeps the takes as sampled (a stylised rig
that wants pressed lips, or a comparison).
"""

from __future__ import annotations

import numpy as np

from blender_thunder.core.lipseal import source_lips

# Newton steps onto the meeting point (the opening is linear in the expression and nearly so in
# the jaw: two steps leave under 1e-3 mm, the third is a margin).
STEPS = 3
# Finite-difference step along a unit lip direction of z (whitened units: a tiny fraction of one sd).
EPS = 1e-3
# Openings this far (mm) below the meeting point count as meeting (numerical slack of the steps).
TOLERANCE_MM = 1e-3


def _lip_points(head) -> dict:
    """The head cut down to its two lip mid-points (what `source_lips` reads of it): the posing
    then copies two vertices' data, not the whole head's, for each of the ~30 calls per take."""
    lips = [int(head["lip_upper"]), int(head["lip_lower"])]
    out = {k: np.asarray(head[k])[lips] for k in ("v_template", "exp_dirs", "weights")}
    return {**out, "joints": head["joints"], "joint_names": head["joint_names"], "lip_upper": 0, "lip_lower": 1}


def _opening(x: np.ndarray, head, n_exp: int):
    lips = source_lips(x[:, :n_exp], x[:, n_exp:], head)
    return lips.opening_mm, lips.meet_mm


def keep_apart(z: np.ndarray, mean: np.ndarray, chol: np.ndarray, directions: np.ndarray, head, n_exp: int):
    """z (takes, T, 53) whitened motion (x = mean + chol z) with every frame whose lips have passed
    each other moved back to where they meet, along `directions` (53, k) only.

    Returns (z', share of frames moved)."""
    z = np.array(z, dtype=np.float64)
    mean, chol = np.asarray(mean, np.float64), np.asarray(chol, np.float64)
    dirs = np.asarray(directions, np.float64)
    dx = (chol @ dirs).T  # (k, 53): a unit step along each lip direction, in x
    head = _lip_points(head)
    moved = 0
    for take in z:  # a view: edited in place
        x = take @ chol.T + mean
        opening, meet = _opening(x, head, n_exp)
        hit = opening < meet - TOLERANCE_MM
        moved += int(hit.sum())
        for _ in range(STEPS):
            if not hit.any():
                break
            xs = x[hit]
            o, _ = _opening(xs, head, n_exp)
            grad = np.stack([(_opening(xs + EPS * d, head, n_exp)[0] - o) / EPS for d in dx], axis=1)  # (n, k)
            norm2 = np.maximum((grad**2).sum(axis=1), 1e-12)
            step = ((meet - o) / norm2)[:, None] * grad  # least-norm step onto the meeting point
            take[hit] += step @ dirs.T
            x[hit] = take[hit] @ chol.T + mean
            hit[hit] = _opening(x[hit], head, n_exp)[0] < meet - TOLERANCE_MM
    return z.astype(np.float32), moved / max(z.shape[0] * z.shape[1], 1)


def keeps_lips_apart(preset: dict | None) -> bool:
    """Whether a preset keeps the lips from passing each other (`"lip_contact"`, default on)."""
    return bool((preset or {}).get("lip_contact", True))
