"""Vertices of one head region from x = [psi | jaw], exactly as `training.head.flame.HeadModel`.

smplx.FLAME's forward computes all vertices, the joints from the full shaped mesh
and the blend of five joint transforms: about 3 ms per frame here, too slow to
run inside every M2S training step. With shape, global, neck and eye poses at
zero (the project's layout), FLAME reduces to

    v_shaped = T + E psi                 J = J_T + J_E psi   (J_E = J_regressor E)
    v_posed  = v_shaped + P (R_jaw - I)  (the jaw's block of posedirs)
    v        = v_posed + w_jaw (R_jaw (v_posed - J_jaw) + J_jaw - v_posed)

evaluated on the region's vertices only. The buffers are read from the same
smplx.FLAME model, so any FLAME folder works; equality with HeadModel is tested.
Plain tensor ops: exports to ONNX with dynamic shapes.

The jaw's rotation matrix comes from `rodrigues` below, not smplx's
`batch_rodrigues`: smplx keeps the rest pose defined by adding 1e-8 inside the
norm, which the ONNX export folds away, so the exported graph divided 0 by 0 at
the rest pose (jaw exactly [0, 0, 0], the most common frame there is) and M2S
heard NaN. Here the axis divides by max(|v|, eps): the rest pose gives the identity
in torch and in every exported graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.contracts import N_EXP, N_PARAMS

JAW_JOINT = 2
EPS = 1e-8


def rodrigues(v: torch.Tensor) -> torch.Tensor:
    """Axis-angle (B, 3) -> rotation matrices (B, 3, 3); the identity at v = 0."""
    angle = torch.linalg.vector_norm(v, dim=1, keepdim=True)  # (B, 1)
    axis = v / torch.clamp(angle, min=EPS)  # exports as Max: no 0/0 at rest
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).reshape(-1, 3, 3)
    sin, cos = torch.sin(angle)[:, :, None], torch.cos(angle)[:, :, None]
    eye = torch.eye(3, dtype=v.dtype, device=v.device)[None]
    return eye + sin * k + (1 - cos) * (k @ k)


class RegionVertices(nn.Module):
    """x (..., 53) -> vertices (..., n, 3) in metres for `indices` (None = all vertices)."""

    def __init__(self, model_dir: str | Path, indices: np.ndarray | None = None):
        super().__init__()
        from training.head.flame import HeadModel

        flame = HeadModel(model_dir).flame
        v_t = flame.v_template.detach().float()
        exp_dirs = flame.expr_dirs[:, :, :N_EXP].detach().float()  # (V, 3, 50)
        j_reg = flame.J_regressor.detach().float()
        if j_reg.is_sparse:
            j_reg = j_reg.to_dense()
        n_v = v_t.shape[0]
        idx = torch.arange(n_v) if indices is None else torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if idx.numel() == 0 or int(idx.max()) >= n_v or int(idx.min()) < 0:
            raise ValueError(f"region indices out of range for a head of {n_v} vertices")
        posedirs = flame.posedirs.detach().float().reshape(-1, n_v, 3)  # (36, V, 3)
        jaw_rows = slice((JAW_JOINT - 1) * 9, JAW_JOINT * 9)
        self.register_buffer("indices", idx)
        self.register_buffer("v_template", v_t[idx].contiguous())
        self.register_buffer("exp_dirs", exp_dirs[idx].reshape(-1, N_EXP).t().contiguous())  # (50, n*3)
        self.register_buffer("jaw_posedirs", posedirs[jaw_rows][:, idx].reshape(9, -1).contiguous())  # (9, n*3)
        self.register_buffer("jaw_weight", flame.lbs_weights.detach().float()[idx, JAW_JOINT].contiguous())
        self.register_buffer("j_jaw", j_reg[JAW_JOINT] @ v_t)  # (3,)
        self.register_buffer("j_jaw_dirs", torch.einsum("v,vcp->pc", j_reg[JAW_JOINT], exp_dirs))  # (50, 3)

    @property
    def n_vertices(self) -> int:
        return self.v_template.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != N_PARAMS:
            raise ValueError(f"expected [..., {N_PARAMS}] parameters, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, N_PARAMS)
        psi, jaw = flat[:, :N_EXP], flat[:, N_EXP:]
        rot = rodrigues(jaw)  # (B, 3, 3)
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        pose_feature = (rot - eye).reshape(-1, 9)
        offsets = psi @ self.exp_dirs + pose_feature @ self.jaw_posedirs  # (B, n*3)
        v_posed = self.v_template + offsets.reshape(flat.shape[0], -1, 3)
        j_jaw = (self.j_jaw + psi @ self.j_jaw_dirs).unsqueeze(1)  # (B, 1, 3)
        rotated = (v_posed - j_jaw) @ rot.transpose(1, 2) + j_jaw
        v = v_posed + self.jaw_weight[None, :, None] * (rotated - v_posed)
        return v.reshape(*lead, -1, 3)
