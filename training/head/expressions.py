"""The stand-in head's expression basis, built the way FLAME's is in spirit.

Semantic deformations (one displacement field each, one unit = a full natural
movement) are split into left/right halves, weighted by how much each varies in
speech and expression, and orthogonalised by SVD into 50 components ordered by
variance. Components are scaled so that psi ~ N(0, 1) under that distribution,
like FLAME's PCA. A table maps every semantic control to its psi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.contracts import N_EXP

from .geometry import EYE_CENTERS, Surface
from .semantics import CONTROLS, SHIFTS, semantic_names

# std of each control in the sampled distribution (larger: speech-relevant)
CONTROL_STD = {
    "mouth_open": 1.0,
    "lip_press": 0.6,
    "pucker": 0.8,
    "funnel": 0.7,
    "spread": 0.6,
    "smile": 0.7,
    "frown": 0.4,
    "lower_lip_tuck": 0.6,
    "upper_lip_raise": 0.4,
    "lower_lip_depress": 0.4,
    "cheek_puff": 0.3,
    "chin_raise": 0.35,
    "lip_roll_in": 0.4,
    "brow_raise": 0.6,
    "brow_frown": 0.45,
    "blink": 0.7,
    "squint": 0.3,
    "nose_wrinkle": 0.3,
    "dimpler": 0.3,
    "lip_stretch": 0.3,
    "nostril_flare": 0.2,
    "eye_wide": 0.3,
    "cheek_suck": 0.2,
    "brow_inner_raise": 0.35,
    "mouth_up": 0.25,
    "mouth_shift": 0.3,
}


@dataclass
class Landmarks:
    mouth_center: np.ndarray
    corner_L: np.ndarray
    corner_R: np.ndarray
    upper_mid: int
    lower_mid: int
    above: np.ndarray  # bool (V,): skin above the lip line
    below: np.ndarray
    skin: np.ndarray  # bool (V,)


def landmarks(surf: Surface) -> Landmarks:
    n_rows, n_cols = surf.grid_shape
    m = surf.slits["mouth"]
    center = n_cols // 2
    v = surf.vertices
    up, lo = int(surf.grid_index(m.row, center)), int(surf.grid_index(m.row + 1, center))
    cL = v[surf.grid_index(m.row, m.cols.max())]
    cR = v[surf.grid_index(m.row, m.cols.min())]
    rows = np.full(len(v), -1)
    rows[1 : 1 + n_rows * n_cols] = np.repeat(np.arange(n_rows), n_cols)
    skin = np.zeros(len(v), bool)
    skin[: surf.n_skin] = True
    above = skin & (rows <= m.row) & (rows >= 0)
    above[0] = True
    below = skin & ~above
    return Landmarks(0.5 * (v[up] + v[lo]), cL, cR, up, lo, above, below, skin)


def _g(p, c, s):
    """Anisotropic gaussian falloff; s: scalar or (3,) sigmas."""
    return np.exp(-0.5 * np.sum(((p - c) / s) ** 2, axis=-1))


def _normals(v, f):
    n = np.zeros_like(v)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _lid_rotation(surf: Surface, side: str, upper_frac: float, lower_frac: float) -> np.ndarray:
    """Lids rotating about the eye's x axis: upper lid down by upper_frac of the
    opening, lower lid up by lower_frac (negative fractions open wider)."""
    v = surf.vertices
    s = surf.slits[side]
    c = EYE_CENTERS[0 if side == "eye_L" else 1]
    d = np.zeros_like(v)
    beta = lambda p: np.arctan2(p[..., 1] - c[1], p[..., 2] - c[2])  # noqa: E731
    cols = np.arange(s.cols.min() - 3, s.cols.max() + 4)
    opening = beta(v[surf.grid_index(s.row, cols)]) - beta(v[surf.grid_index(s.row + 1, cols)])
    opening = np.clip(opening, 0, None)
    for sign, rows, frac in (
        (-1, range(s.row, s.row - 6, -1), upper_frac),
        (1, range(s.row + 1, s.row + 5), lower_frac),
    ):
        for k, r in enumerate(rows):
            idx = surf.grid_index(r, cols)
            ang = sign * frac * opening * np.exp(-0.5 * (k / 1.6) ** 2)
            q = v[idx] - c
            cy, cz = np.cos(ang), np.sin(ang)
            ny = q[:, 1] * cy + q[:, 2] * cz
            nz = -q[:, 1] * cz + q[:, 2] * cy
            d[idx, 1] += ny - q[:, 1]
            d[idx, 2] += nz - q[:, 2]
    return d


def control_fields(surf: Surface) -> dict[str, np.ndarray]:
    """Symmetric displacement field (V, 3) of every control in semantics.CONTROLS, plus mouth_shift."""
    v = surf.vertices
    lm = landmarks(surf)
    sk = lm.skin[:, None].astype(float)
    mc = lm.mouth_center
    U = _g(v, v[lm.upper_mid] + [0, 0.004, 0], [0.024, 0.009, 0.02]) * lm.above
    L = _g(v, v[lm.lower_mid] - [0, 0.005, 0], [0.022, 0.010, 0.02]) * lm.below
    M = _g(v, mc, [0.028, 0.016, 0.025]) * lm.skin
    C = {s: _g(v, c, 0.013) * lm.skin for s, c in (("L", lm.corner_L), ("R", lm.corner_R))}
    Cs = C["L"] + C["R"]
    sx = np.sign(v[:, 0])
    corners = [(lm.corner_L, 1), (lm.corner_R, -1)]
    C_wide = sum(_g(v, c, 0.02) for c, _ in corners) * lm.skin
    C_low = sum(_g(v, c - [0, 0.012, 0], 0.014) for c, _ in corners) * lm.skin
    C_lat = sum(_g(v, c + [s * 0.012, 0, -0.008], 0.011) for c, s in corners) * lm.skin
    U_edge = _g(v, v[lm.upper_mid], [0.02, 0.003, 0.02]) * lm.above
    L_edge = _g(v, v[lm.lower_mid], [0.02, 0.003, 0.02]) * lm.below
    cheek = sum(_g(v, np.array([s * 0.042, -0.03, 0.052]), 0.017) for s in (1, -1)) * lm.skin
    cheek_hi = sum(_g(v, np.array([s * 0.04, 0.0, 0.07]), 0.016) for s in (1, -1)) * lm.skin
    brow = sum(_g(v, np.array([s * 0.03, 0.05, 0.075]), [0.022, 0.016, 0.03]) for s in (1, -1)) * lm.skin
    brow_in = sum(_g(v, np.array([s * 0.013, 0.047, 0.085]), 0.012) for s in (1, -1)) * lm.skin
    nose_side = sum(_g(v, np.array([s * 0.014, 0.0, 0.09]), 0.009) for s in (1, -1)) * lm.skin
    alae = sum(_g(v, np.array([s * 0.016, -0.013, 0.09]), 0.007) for s in (1, -1)) * lm.skin
    chin = _g(v, np.array([0, -0.075, 0.075]), 0.015) * lm.skin
    normals = _normals(v, surf.faces)
    col = lambda w, d: w[:, None] * np.asarray(d, float)[None]  # noqa: E731

    f = {}
    f["mouth_open"] = col(U, [0, 0.003, 0.0005]) + col(L, [0, -0.006, -0.001])
    f["lip_press"] = col(U, [0, -0.0012, -0.0018]) + col(L, [0, 0.0015, -0.0018])
    f["pucker"] = col(M, [0, 0, 0.008]) + M[:, None] * np.stack(
        [-0.45 * (v[:, 0] - mc[0]), np.zeros(len(v)), np.zeros(len(v))], 1
    )
    f["funnel"] = (
        col(M, [0, 0, 0.006])
        + M[:, None] * np.stack([-0.3 * (v[:, 0] - mc[0]), 0 * v[:, 0], 0 * v[:, 0]], 1)
        + col(U, [0, 0.003, 0.002])
        + col(L, [0, -0.0035, 0.002])
    )
    f["spread"] = (
        col(C_wide, [0, 0.0005, -0.003])
        + (C_wide * sx)[:, None] * [0.006, 0, 0]
        + col(U_edge, [0, -0.001, 0])
        + col(L_edge, [0, 0.001, 0])
    )
    f["smile"] = (
        col(Cs, [0, 0.006, -0.003])
        + (Cs * sx)[:, None] * [0.004, 0, 0]
        + col(cheek_hi, [0, 0.003, 0.002])
        + col(cheek, [0, 0.002, 0.002])
    )
    f["frown"] = col(Cs, [0, -0.004, 0]) + col(C_low, [0, -0.002, 0.001])
    f["lower_lip_tuck"] = col(L, [0, 0.0045, -0.0065])
    f["upper_lip_raise"] = col(U, [0, 0.004, 0.001]) + col(nose_side, [0, 0.001, 0])
    f["lower_lip_depress"] = col(L, [0, -0.0045, 0.001])
    f["cheek_puff"] = (cheek + 0.5 * M * (1 - Cs))[:, None] * normals * 0.006
    f["chin_raise"] = col(chin, [0, 0.003, 0.002]) + col(L, [0, 0.002, 0.002])
    f["lip_roll_in"] = col(U_edge, [0, -0.001, -0.004]) + col(L_edge, [0, 0.001, -0.004])
    f["brow_raise"] = col(brow, [0, 0.006, 0.0005]) + _lid_rotation_pair(surf, -0.1, 0.0)
    f["brow_frown"] = col(brow_in, [0, -0.004, 0.001]) + (brow_in * -sx)[:, None] * [0.003, 0, 0]
    f["blink"] = _lid_rotation_pair(surf, 0.85, 0.15)
    f["squint"] = _lid_rotation_pair(surf, 0.15, 0.35) + col(cheek_hi, [0, 0.0015, 0.001])
    f["nose_wrinkle"] = col(nose_side, [0, 0.002, 0.0005]) + col(brow_in, [0, -0.0012, 0]) + col(U, [0, 0.0012, 0])
    f["dimpler"] = col(C_lat, [0, 0, -0.004]) + (C_lat * sx)[:, None] * [0.001, 0, 0]
    f["lip_stretch"] = col(C_low, [0, -0.002, -0.001]) + (C_low * sx)[:, None] * [0.006, 0, 0]
    f["nostril_flare"] = (alae * sx)[:, None] * [0.0025, 0, 0] + col(alae, [0, 0.0005, 0])
    f["eye_wide"] = _lid_rotation_pair(surf, -0.3, -0.05)
    f["cheek_suck"] = -(cheek[:, None] * normals) * 0.004
    f["brow_inner_raise"] = col(brow_in, [0, 0.005, 0]) + col(brow, [0, 0.001, 0])
    f["mouth_up"] = col(M, [0, 0.003, 0])
    f["mouth_shift"] = col(M, [0.005, 0, 0])
    return {k: d * sk for k, d in f.items()}


def _lid_rotation_pair(surf, upper, lower):
    return _lid_rotation(surf, "eye_L", upper, lower) + _lid_rotation(surf, "eye_R", upper, lower)


def _side_weight(v: np.ndarray) -> np.ndarray:
    """1 on the subject's left (+x), 0 on the right, smooth across the midline."""
    return 1 / (1 + np.exp(-v[:, 0] / 0.004))


@dataclass
class ExpressionBasis:
    dirs: np.ndarray  # (V, 3, N_EXP): psi -> displacement
    names: list[str]  # semantic control names (head-file order)
    coeffs: np.ndarray  # (K, N_EXP): psi of one unit of each control
    explained: np.ndarray  # (N_EXP,) cumulative variance fraction
    fit_residual: dict[str, float]


def build_basis(surf: Surface, n_exp: int = N_EXP) -> ExpressionBasis:
    fields = control_fields(surf)
    sL = _side_weight(surf.vertices)[:, None]
    atoms, stds = [], []
    for name, d in fields.items():
        halves = [d] if name == "mouth_shift" else [d * sL, d * (1 - sL)]
        for h in halves:
            atoms.append(h.reshape(-1))
            stds.append(CONTROL_STD[name] / np.sqrt(len(halves)))
    A = np.stack(atoms, 1) * np.asarray(stds)[None]
    U, S, _ = np.linalg.svd(A, full_matrices=False)
    if len(S) < n_exp:
        raise ValueError(f"only {len(S)} semantic atoms for {n_exp} components")
    U, S = U[:, :n_exp], S[:n_exp]
    # deterministic signs: each component's largest entry is positive
    flip = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(n_exp)])
    U = U * flip
    dirs = U * S[None]  # psi ~ N(0, 1) scaling
    explained = np.cumsum(S**2) / np.sum(np.linalg.svd(A, compute_uv=False) ** 2)

    table, resid = [], {}
    for name in semantic_names():
        d = _named_field(name, fields, sL)
        psi = (U.T @ d.reshape(-1)) / S
        table.append(psi)
        r = d.reshape(-1) - dirs @ psi
        resid[name] = float(np.linalg.norm(r) / max(np.linalg.norm(d), 1e-12))
    V = len(surf.vertices)
    return ExpressionBasis(dirs.reshape(V, 3, n_exp), semantic_names(), np.stack(table), explained, resid)


def _named_field(name: str, fields: dict, sL: np.ndarray) -> np.ndarray:
    if name in SHIFTS:
        return fields["mouth_shift"] * (1 if name == "mouth_left" else -1)
    base, _, side = name.rpartition("_")
    if side in ("L", "R") and base in CONTROLS:
        return fields[base] * (sL if side == "L" else 1 - sL)
    return fields[name]
