"""Joints, skin weights and joint regressor of the stand-in head (FLAME's 5 joints)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from backend.contracts import JOINT_NAMES

from .geometry import EYE_CENTERS, HEAD_ORIGIN, NECK_AXIS_Z, NECK_BOTTOM_Y, Surface, _smoothstep

JAW_PIVOT = np.array([0.0, -0.01, 0.0])  # level with and just in front of the ears
NECK_JOINT = np.array([0.0, -0.06, -0.02])
ROOT_JOINT = np.array([0.0, NECK_BOTTOM_Y + 0.012, NECK_AXIS_Z])


def joint_positions() -> np.ndarray:
    return np.stack([ROOT_JOINT, NECK_JOINT, JAW_PIVOT, EYE_CENTERS[0], EYE_CENTERS[1]])


def _vertex_adjacency(faces: np.ndarray, n: int) -> sparse.csr_matrix:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    a = ((a + a.T) > 0).astype(np.float64)
    return sparse.csr_matrix(a)


def smooth_field(values: np.ndarray, faces: np.ndarray, iterations: int, keep: np.ndarray | None = None):
    """Umbrella-operator smoothing; `keep` vertices hold their values."""
    adj = _vertex_adjacency(faces, len(values))
    deg = np.asarray(adj.sum(1)).ravel()
    deg[deg == 0] = 1
    out = values.copy()
    for _ in range(iterations):
        nxt = 0.5 * out + 0.5 * (adj @ out) / (deg[:, None] if out.ndim == 2 else deg)
        if keep is not None:
            nxt[keep] = out[keep]
        out = nxt
    return out


def skin_weights(surf: Surface) -> np.ndarray:
    """(V, 5) weights: jaw for the lower face (hard split at the lips, smooth over the
    cheeks), neck for the rest of the head, root for the lower neck, eyes for the eyeballs."""
    n_rows, n_cols = surf.grid_shape
    V = len(surf.vertices)
    w = np.zeros((V, len(JOINT_NAMES)))
    theta = surf.theta
    m = surf.slits["mouth"]
    th_c = np.abs(theta[m.cols]).max()
    rows = np.arange(n_rows)[:, None].astype(float)
    d_row = rows - (m.row + 0.5)  # > 0 below the lip line
    beyond = np.clip(np.abs(theta)[None] - th_c, 0, None)  # radians past the mouth corner
    rise = 9.0 * _smoothstep(beyond / np.radians(60))  # the line climbs to the jaw joint
    width = 0.12 + 2.5 * _smoothstep(beyond / np.radians(25))
    jaw = 1 / (1 + np.exp(-(d_row + rise) / width))
    jaw *= 1 - _smoothstep((np.abs(theta)[None] - np.radians(62)) / np.radians(40))
    # below the chin the weight hands over to the neck
    y = surf.vertices[1 : 1 + n_rows * n_cols, 1].reshape(n_rows, n_cols)
    z = surf.vertices[1 : 1 + n_rows * n_cols, 2].reshape(n_rows, n_cols)
    throat = _smoothstep((z - (NECK_AXIS_Z + 0.035)) / 0.03) * _smoothstep((y + 0.125) / 0.03)
    under = y < -0.07
    jaw = np.where(under, jaw * np.maximum(throat, _smoothstep((y + 0.085) / 0.01)), jaw)
    grid = np.zeros(V)
    grid[1 : 1 + n_rows * n_cols] = jaw.ravel()
    # smooth everywhere except across the lips, whose split must stay sharp
    lip_rows = np.concatenate([surf.grid_index(r, m.cols) for r in (m.row - 1, m.row, m.row + 1, m.row + 2)])
    skin_faces = surf.faces[surf.faces.max(1) < surf.n_skin]
    grid = np.clip(smooth_field(grid, skin_faces, 6, keep=lip_rows), 0, 1)
    head = 1 - _smoothstep((NECK_JOINT[1] - 0.02 - surf.vertices[:, 1]) / 0.06)
    w[:, 2] = grid
    w[:, 1] = (1 - grid) * head
    w[:, 0] = (1 - grid) * (1 - head)
    for k, name in ((3, "eye_L"), (4, "eye_R")):
        w[surf.eyeballs[name]] = 0
        w[surf.eyeballs[name], k] = 1
    w[surf.n_skin :][w[surf.n_skin :].sum(1) == 0, 1] = 1
    return w / w.sum(1, keepdims=True)


def joint_regressor(verts: np.ndarray, joints: np.ndarray, n_skin: int, eyeballs: dict) -> np.ndarray:
    """(5, V) affine vertex combinations that reproduce each joint exactly.

    Each joint uses vertices that expressions do not move (sides of the head,
    neck rings, eyeballs), so joints stay put under expression like FLAME's."""
    reg = np.zeros((len(joints), len(verts)))
    skin = verts[:n_skin]
    for k, j in enumerate(joints):
        if k >= 3:
            idx = eyeballs["eye_L" if k == 3 else "eye_R"]
        else:
            # skin vertices on the horizontal ring through the joint, away from the face
            side = np.abs(skin[:, 1] - j[1]) + 0.5 * np.clip(skin[:, 2] - 0.02, 0, None)
            idx = np.argsort(side)[:24]
        p = verts[idx]
        a = np.vstack([p.T, np.ones(len(idx))])  # (4, k)
        wts = np.linalg.lstsq(a, np.append(j, 1.0), rcond=None)[0]  # least-norm exact solution
        reg[k, idx] = wts
    return reg


def head_center() -> np.ndarray:
    return HEAD_ORIGIN.copy()
