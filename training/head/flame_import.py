"""Make head.npz for a user's real FLAME folder, so Blender and the trainers can use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.contracts import JOINT_NAMES, JOINT_PARENTS
from backend.headfile import head_id

from .build import _write_npz
from .flame import HeadModel
from .regions import flame_regions, lip_midpoints


def import_flame(flame_dir: str | Path, out: str | Path | None = None) -> Path:
    model = HeadModel(flame_dir)
    f = model.flame
    v = f.v_template.detach().cpu().numpy().astype(np.float32)
    faces = np.asarray(f.faces, dtype=np.int32)
    regions = flame_regions(flame_dir, v, faces)
    up, lo = lip_midpoints(v, faces, regions["lips"])
    joints = (f.J_regressor @ f.v_template).detach().cpu().numpy()
    arrays = {
        "v_template": v,
        "faces": faces,
        "exp_dirs": f.expr_dirs.detach().cpu().numpy().astype(np.float32),
        "joints": joints.astype(np.float32),
        "parents": np.array(JOINT_PARENTS, np.int32),
        "joint_names": np.array(JOINT_NAMES),
        "weights": f.lbs_weights.detach().cpu().numpy().astype(np.float32),
        "lip_upper": np.int32(up),
        "lip_lower": np.int32(lo),
        "semantic_names": np.array([], dtype="<U1"),
        "semantic_coeffs": np.zeros((0, model.n_exp), np.float32),
        "head_id": np.array(head_id(v, faces)),
        "source": np.array(f"flame:{Path(flame_dir).name}"),
    }
    for name, idx in regions.items():
        arrays[f"region_{name}"] = np.asarray(idx, np.int32)
    out_dir = Path(out) if out else Path(flame_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "head.npz"
    _write_npz(path, arrays)
    return path
