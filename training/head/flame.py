"""The head model as a torch module: x = [psi | jaw] -> vertices, through smplx.FLAME.

Works for the stand-in head and for a user's real FLAME 2020/2023 folder alike
(FLAME_NEUTRAL.pkl / .npz + flame_static_embedding.pkl). Shape is the template.
"""

from __future__ import annotations

from pathlib import Path

import smplx
import torch
from torch import nn

from backend.contracts import N_EXP, N_PARAMS


def model_ext(model_dir: str | Path) -> str:
    d = Path(model_dir)
    for ext in ("npz", "pkl"):
        if (d / f"FLAME_NEUTRAL.{ext}").exists():
            return ext
    raise FileNotFoundError(
        f"{d}: no FLAME_NEUTRAL.npz or FLAME_NEUTRAL.pkl (run `thunder-train head build --out {d}`"
        " or point at your FLAME download)"
    )


class HeadModel(nn.Module):
    """x (..., 53) -> vertices (..., V, 3) in metres. Batched over any leading dims."""

    def __init__(self, model_dir: str | Path, n_exp: int = N_EXP):
        super().__init__()
        self.model_dir = Path(model_dir)
        self.flame = smplx.FLAME(
            model_path=str(self.model_dir),
            gender="neutral",
            ext=model_ext(model_dir),
            num_expression_coeffs=n_exp,
            num_betas=10,
            use_face_contour=False,
        )
        if self.flame.num_expression_coeffs != n_exp:
            raise ValueError(
                f"{model_dir}: the model has only {self.flame.num_expression_coeffs} expression components"
            )
        self.flame.requires_grad_(False)
        self.n_exp = n_exp

    @property
    def faces(self):
        return self.flame.faces_tensor

    @property
    def n_vertices(self) -> int:
        return self.flame.v_template.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != N_PARAMS:
            raise ValueError(f"expected [..., {N_PARAMS}] parameters, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, N_PARAMS).to(self.flame.v_template.dtype)
        B = flat.shape[0]
        zeros = flat.new_zeros(B, 3)
        out = self.flame(
            betas=flat.new_zeros(B, self.flame.num_betas),
            expression=flat[:, : self.n_exp],
            jaw_pose=flat[:, self.n_exp :],
            global_orient=zeros,
            neck_pose=zeros,
            leye_pose=zeros,
            reye_pose=zeros,
            transl=zeros,
        )
        return out.vertices.reshape(*lead, -1, 3)
