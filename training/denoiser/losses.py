"""Vertex-space reconstruction and velocity losses without a per-vertex pass.

Vertices of the head: v = LBS(v_template + E psi, jaw). Its expression part is
linear, so sum_v |E_v d_psi|^2 = d_psi^T G d_psi with G = sum_v E_v^T E_v (50x50):
exact, and 4,000 vertices become one 50x50 quadratic form. The jaw part at
neutral expression is v + w_v (R - I)(v - J): the error is w_v (R1 - R2)(v - J),
so sum_v |.|^2 = tr(dR M dR^T) with M = sum_v w_v^2 (v - J)(v - J)^T (3x3), also
exact. Dropped: the expression-jaw cross term and pose correctives (small: the
jaw moves few expression offsets). Units: mm^2 per vertex (mean over vertices).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.contracts import EXP_SLICE, JAW_SLICE

JAW_JOINT = 2
MM = 1000.0


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues (..., 3) -> (..., 3, 3), smooth at zero."""
    theta2 = (aa * aa).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-12)
    k = aa / theta
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    K = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return eye + s * K + (1 - c) * (K @ K)


class VertexQuadratic(torch.nn.Module):
    """Exact cheap vertex-space squared error between parameter sequences."""

    def __init__(self, gram: np.ndarray, jaw_moment: np.ndarray, n_vertices: int):
        super().__init__()
        self.register_buffer("gram", torch.as_tensor(gram / n_vertices, dtype=torch.float32))
        self.register_buffer("moment", torch.as_tensor(jaw_moment / n_vertices, dtype=torch.float32))

    @classmethod
    def from_head(cls, head_npz: Path, region: str | None = None) -> "VertexQuadratic":
        with np.load(head_npz, allow_pickle=False) as z:
            idx = z[f"region_{region}"] if region else np.arange(len(z["v_template"]))
            E = z["exp_dirs"][idx].astype(np.float64) * MM  # (V, 3, 50)
            v = z["v_template"][idx].astype(np.float64) * MM
            J = z["joints"][JAW_JOINT].astype(np.float64) * MM
            w = z["weights"][idx, JAW_JOINT].astype(np.float64)
        gram = np.einsum("vci,vcj->ij", E, E)
        r = v - J
        moment = np.einsum("v,vi,vj->ij", w * w, r, r)
        return cls(gram, moment, len(idx))

    def sq_error(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean squared vertex distance (mm^2) per frame (...,) between x = [psi | jaw] a and b."""
        d = a[..., EXP_SLICE] - b[..., EXP_SLICE]
        e_exp = ((d @ self.gram) * d).sum(-1)
        dR = axis_angle_to_matrix(a[..., JAW_SLICE]) - axis_angle_to_matrix(b[..., JAW_SLICE])
        e_jaw = ((dR @ self.moment) * dR).sum((-1, -2))
        return e_exp + e_jaw

    def losses(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_rec, L_vel) for parameter sequences (B, T, P) in parameter space."""
        rec = self.sq_error(pred, target).mean()
        # velocity: differences of the vertex error are the error of differences for the
        # linear part; for the jaw compare the rotation-matrix velocities
        dp, dt = pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1]
        d = dp[..., EXP_SLICE] - dt[..., EXP_SLICE]
        vel_exp = ((d @ self.gram) * d).sum(-1)
        Rp, Rt = axis_angle_to_matrix(pred[..., JAW_SLICE]), axis_angle_to_matrix(target[..., JAW_SLICE])
        dR = (Rp[:, 1:] - Rp[:, :-1]) - (Rt[:, 1:] - Rt[:, :-1])
        vel_jaw = ((dR @ self.moment) * dR).sum((-1, -2))
        return rec, (vel_exp + vel_jaw).mean()


class LipGap(torch.nn.Module):
    """The lip opening as a 3-vector, upper minus lower lip mid-point (mm), exactly.

    The whole-head mean of `VertexQuadratic` gives the two lips 2 of ~5,800 vertices:
    a closure missed by 5 mm costs less than a millimetre of drift over the cheeks, so
    a model can under-articulate at little cost (issue #15). For two vertices the full
    skinning (`RegionVertices`: expression, jaw, pose correctives) is cheap. `loss` is the
    squared error of that vector (mm^2), the quantity `backend/lipcheck` judges (its norm
    reaching <= 2 mm on m/p/b).
    """

    def __init__(self, head_dir: Path):
        super().__init__()
        from training.m2s.vertices import RegionVertices

        with np.load(Path(head_dir) / "head.npz", allow_pickle=False) as z:
            lips = np.array([int(z["lip_upper"]), int(z["lip_lower"])])
        self.vertices = RegionVertices(head_dir, lips)

    def vector(self, x: torch.Tensor) -> torch.Tensor:
        """Upper minus lower lip (..., 3) in mm for parameters x (..., 53)."""
        v = self.vertices(x) * MM
        return v[..., 0, :] - v[..., 1, :]

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._errors(pred, target)[0].mean()

    def _errors(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(squared error of the lip vector per frame (mm^2), the target's lip opening per frame (mm))."""
        vt = self.vector(target)
        return ((self.vector(pred) - vt) ** 2).sum(-1), vt.norm(dim=-1)

    def losses(self, pred: torch.Tensor, target: torch.Tensor, closed_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_gap over every frame, L_gap over the frames whose target lips are closed).

        Closed frames (m/p/b, pauses) are a few percent of all frames, so in the mean they
        weigh little against the open ones: a model that leaves a closure 3 mm open loses
        almost nothing. The second term is their own mean, weighted apart (`w_close`); zero
        when a batch has none."""
        err, opening = self._errors(pred, target)
        closed = opening <= closed_mm
        close = err[closed].mean() if bool(closed.any()) else err.new_zeros(())
        return err.mean(), close
