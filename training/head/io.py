"""Load a head folder (stand-in or real FLAME) as plain numpy data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.contracts import REGION_NAMES
from backend.headfile import load_head_file


@dataclass
class Head:
    path: Path
    v_template: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3)
    exp_dirs: np.ndarray  # (V, 3, 50)
    joints: np.ndarray  # (5, 3)
    weights: np.ndarray  # (V, 5)
    regions: dict[str, np.ndarray]  # name -> vertex indices
    lip_upper: int
    lip_lower: int
    semantic_names: list[str]
    semantic_coeffs: np.ndarray  # (K, 50)
    head_id: str

    def semantic(self, name: str) -> np.ndarray:
        """psi (50,) of one unit of a semantic control."""
        try:
            return self.semantic_coeffs[self.semantic_names.index(name)]
        except ValueError:
            raise KeyError(f"unknown semantic control {name!r}; known: {', '.join(self.semantic_names)}") from None


def load_head(model_dir: str | Path) -> Head:
    """Read DIR/head.npz (written by `thunder-train head build` or `head import`)."""
    d = Path(model_dir)
    path = d / "head.npz" if d.is_dir() else d
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: run `thunder-train head build --out {d}` (stand-in head) or "
            f"`thunder-train head import --flame {d}` (a real FLAME folder)"
        )
    z = load_head_file(path)
    return Head(
        path=path.parent,
        v_template=z["v_template"],
        faces=z["faces"],
        exp_dirs=z["exp_dirs"],
        joints=z["joints"],
        weights=z["weights"],
        regions={r: z[f"region_{r}"] for r in REGION_NAMES},
        lip_upper=int(z["lip_upper"]),
        lip_lower=int(z["lip_lower"]),
        semantic_names=[str(s) for s in z.get("semantic_names", np.array([], str))],
        semantic_coeffs=z.get("semantic_coeffs", np.zeros((0, z["exp_dirs"].shape[2]), np.float32)),
        head_id=z["head_id"],
    )
