"""Write the stand-in head as a FLAME model folder plus head.npz for Blender.

The folder loads in `smplx.FLAME` unchanged: FLAME_NEUTRAL.npz (or .pkl) and
flame_static_embedding.pkl. Deterministic: the same seed writes identical bytes.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from backend import jsonio
from backend.contracts import JOINT_NAMES, JOINT_PARENTS, N_EXP

from .expressions import ExpressionBasis, build_basis, landmarks
from .geometry import Proportions, Surface, build_surface
from .regions import stand_in_regions
from .skinning import joint_positions, joint_regressor, skin_weights

N_SHAPE_SPACE, N_EXPR_SPACE = 300, 100  # FLAME's shapedirs layout


def build_head(seed: int = 0) -> tuple[Surface, ExpressionBasis, dict]:
    surf = build_surface(Proportions.from_seed(seed))
    basis = build_basis(surf)
    joints = joint_positions()
    weights = skin_weights(surf)
    regressor = joint_regressor(surf.vertices, joints, surf.n_skin, surf.eyeballs)
    lm = landmarks(surf)
    regions = stand_in_regions(surf, lm)
    extra = dict(
        joints=joints,
        weights=weights,
        regressor=regressor,
        regions=regions,
        lip_upper=lm.upper_mid,
        lip_lower=lm.lower_mid,
    )
    return surf, basis, extra


def flame_dict(surf: Surface, basis: ExpressionBasis, extra: dict) -> dict:
    V = len(surf.vertices)
    shapedirs = np.zeros((V, 3, N_SHAPE_SPACE + N_EXPR_SPACE), np.float32)
    shapedirs[:, :, N_SHAPE_SPACE : N_SHAPE_SPACE + N_EXP] = basis.dirs
    kintree = np.array(
        [[np.iinfo(np.uint32).max if p < 0 else p for p in JOINT_PARENTS], list(range(len(JOINT_NAMES)))],
        dtype=np.int64,
    )
    return {
        "v_template": surf.vertices.astype(np.float32),
        "f": surf.faces.astype(np.int64),
        "shapedirs": shapedirs,
        "posedirs": np.zeros((V, 3, 9 * (len(JOINT_NAMES) - 1)), np.float32),
        "J_regressor": extra["regressor"].astype(np.float32),
        "weights": extra["weights"].astype(np.float32),
        "kintree_table": kintree,
    }


def static_embedding(surf: Surface, vertex_ids: list[int]) -> dict:
    """Landmarks as barycentric points on faces (each at one of the face's corners)."""
    face_idx, bary = [], []
    for vid in vertex_ids:
        fi = int(np.nonzero((surf.faces == vid).any(1))[0][0])
        face_idx.append(fi)
        bary.append((surf.faces[fi] == vid).astype(np.float64))
    return {"lmk_face_idx": np.array(face_idx, np.int64), "lmk_b_coords": np.array(bary)}


def _write_npz(path: Path, arrays: dict) -> None:
    """np.savez_compressed with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def head_arrays(surf: Surface, basis: ExpressionBasis, extra: dict, head_id: str) -> dict:
    arrays = {
        "v_template": surf.vertices.astype(np.float32),
        "faces": surf.faces.astype(np.int32),
        "exp_dirs": basis.dirs.astype(np.float32),
        "joints": extra["joints"].astype(np.float32),
        "parents": np.array(JOINT_PARENTS, np.int32),
        "joint_names": np.array(JOINT_NAMES),
        "weights": extra["weights"].astype(np.float32),
        "lip_upper": np.int32(extra["lip_upper"]),
        "lip_lower": np.int32(extra["lip_lower"]),
        "semantic_names": np.array(basis.names),
        "semantic_coeffs": basis.coeffs.astype(np.float32),
        "head_id": np.array(head_id),
        "source": np.array("thunder-standin"),
    }
    for name, idx in extra["regions"].items():
        arrays[f"region_{name}"] = np.asarray(idx, np.int32)
    return arrays


def write_head_folder(out: str | Path, seed: int = 0, fmt: str = "npz") -> dict:
    """Build and write the stand-in head; returns a summary."""
    from backend.headfile import head_id as compute_head_id

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    surf, basis, extra = build_head(seed)
    model = flame_dict(surf, basis, extra)
    if fmt == "npz":
        _write_npz(out / "FLAME_NEUTRAL.npz", model)
    elif fmt == "pkl":
        with open(out / "FLAME_NEUTRAL.pkl", "wb") as fh:
            pickle.dump(model, fh, protocol=4)
    else:
        raise ValueError(f"unknown format {fmt!r} (npz or pkl)")
    lm_ids = [extra["lip_upper"], extra["lip_lower"]]
    with open(out / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump(static_embedding(surf, lm_ids), fh, protocol=4)
    hid = compute_head_id(model["v_template"], model["f"])
    _write_npz(out / "head.npz", head_arrays(surf, basis, extra, hid))
    summary = {
        "head_id": hid,
        "seed": seed,
        "format": fmt,
        "vertices": int(len(surf.vertices)),
        "faces": int(len(surf.faces)),
        "explained_variance_50": float(basis.explained[-1]),
        "semantic_fit_residual_max": max(basis.fit_residual.values()),
        "regions": {k: int(len(v)) for k, v in extra["regions"].items()},
    }
    jsonio.write_json(out / "head.json", jsonio.finite(summary), sort_keys=True)
    return summary
