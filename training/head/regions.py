"""Region masks (vertex index sets) and lip mid-points.

The stand-in head knows its regions from construction; a user's real FLAME
folder gets them from FLAME_masks.pkl when present, else from geometry.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .geometry import EYE_CENTERS, Surface


def stand_in_regions(surf: Surface, lm) -> dict[str, np.ndarray]:
    v = surf.vertices
    skin = np.arange(surf.n_skin)
    m = surf.slits["mouth"]
    lips = np.concatenate(
        [surf.grid_index(r, np.arange(m.cols.min() - 1, m.cols.max() + 2)) for r in range(m.row - 3, m.row + 5)]
    )
    mc = lm.mouth_center
    q = (v[skin] - mc) / np.array([0.045, 0.032, 0.06])
    mouth = skin[(np.linalg.norm(q, axis=1) < 1.0) & (v[skin, 2] > mc[2] - 0.035)]
    mouth = np.union1d(mouth, lips)
    eyes_skin = skin[np.min(np.linalg.norm(v[skin, None] - EYE_CENTERS[None], axis=2), axis=1) < 0.02]
    eyes = np.concatenate([eyes_skin, surf.eyeballs["eye_L"], surf.eyeballs["eye_R"]])
    upper = skin[(v[skin, 1] > -0.012) & (v[skin, 2] > 0.0)]
    upper = np.union1d(np.setdiff1d(upper, mouth), eyes)
    forehead = skin[(v[skin, 1] > 0.047) & (v[skin, 1] < 0.1) & (v[skin, 2] > 0.03)]
    forehead = np.setdiff1d(forehead, eyes)
    return {"lips": np.unique(lips), "mouth": mouth, "upper_face": upper, "eyes": np.unique(eyes), "forehead": forehead}


def flame_regions(model_dir: str | Path, v_template: np.ndarray, faces: np.ndarray) -> dict[str, np.ndarray]:
    """Regions of a real FLAME model from its FLAME_masks.pkl (the file MPI ships)."""
    path = Path(model_dir) / "FLAME_masks.pkl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: download FLAME_masks.pkl from the FLAME website next to the model")
    with open(path, "rb") as fh:
        masks = pickle.load(fh, encoding="latin1")
    pick = lambda *names: np.unique(np.concatenate([np.asarray(masks[n]) for n in names if n in masks]))  # noqa: E731
    lips = pick("lips")
    mouth = np.union1d(lips, pick("lips", "nose") if False else lips)
    face = pick("face")
    lip_center = v_template[lips].mean(0)
    near = face[np.linalg.norm((v_template[face] - lip_center) / [0.045, 0.032, 0.06], axis=1) < 1.0]
    mouth = np.union1d(lips, near)
    eyes = pick("left_eye_region", "right_eye_region", "left_eyeball", "right_eyeball")
    forehead = pick("forehead")
    upper = np.setdiff1d(np.union1d(pick("forehead", "left_eye_region", "right_eye_region", "nose"), eyes), mouth)
    upper = np.union1d(upper, eyes)
    return {"lips": lips, "mouth": mouth, "upper_face": upper, "eyes": eyes, "forehead": forehead}


def lip_midpoints(v_template: np.ndarray, faces: np.ndarray, lips: np.ndarray) -> tuple[int, int]:
    """Upper and lower lip mid-points: on the mouth opening's rim (the mesh boundary
    inside the lip mask), the two vertices nearest the midline, upper one first."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    rim = np.intersect1d(np.unique(uniq[count == 1]), lips)
    if len(rim) < 4:
        raise ValueError("no mouth opening found inside the lip mask")
    pair = rim[np.argsort(np.abs(v_template[rim, 0]), kind="stable")[:2]]  # the two rim points on the midline
    up, lo = sorted(pair, key=lambda i: -v_template[i, 1])
    return int(up), int(lo)


def lid_midpoints(v_template: np.ndarray, faces: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """Lid rims at the middle of each eye opening: (2 eyes: left (+x) first, 2 lids: upper
    first, 2 vertices) indices. The rim is the mesh boundary inside the eye region; per eye
    the two upper-rim vertices nearest its middle and, under each, the lower-rim vertex of the
    same column (nearest in x), which a full blink brings onto it."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    rim = np.intersect1d(np.unique(uniq[count == 1]), eyes)
    out = []
    for side in (rim[v_template[rim, 0] > 0], rim[v_template[rim, 0] < 0]):
        if len(side) < 4:
            raise ValueError("no eye opening found inside the eye region")
        c = v_template[side].mean(0)
        upper, lower = side[v_template[side, 1] > c[1]], side[v_template[side, 1] <= c[1]]
        if len(upper) < 2 or not len(lower):
            raise ValueError("an eye opening without an upper and a lower rim")
        upper = upper[np.argsort(np.abs(v_template[upper, 0] - c[0]), kind="stable")[:2]]
        below = [lower[np.argmin(np.abs(v_template[lower, 0] - v_template[u, 0]))] for u in upper]
        out.append([upper, below])
    return np.asarray(out, np.int64)
