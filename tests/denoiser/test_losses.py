"""The cheap vertex-space losses equal the per-vertex ones through the real head model."""

import pytest
import torch

from training.denoiser.losses import MM, VertexQuadratic

pytestmark = pytest.mark.usefixtures("head_dir")


@pytest.fixture(scope="module")
def models(head_dir):
    from training.head.flame import HeadModel

    return VertexQuadratic.from_head(head_dir / "head.npz"), HeadModel(head_dir)


def _vertex_mse(head, a, b):
    return (((head(a) - head(b)) * MM) ** 2).sum(-1).mean(-1)


def test_expression_part_is_exact(models):
    vq, head = models
    torch.manual_seed(0)
    a, b = torch.zeros(6, 53), torch.zeros(6, 53)
    a[:, :50], b[:, :50] = torch.randn(6, 50), torch.randn(6, 50)
    torch.testing.assert_close(vq.sq_error(a, b), _vertex_mse(head, a, b), rtol=1e-4, atol=1e-4)


def test_jaw_part_is_exact(models):
    vq, head = models
    a, b = torch.zeros(4, 53), torch.zeros(4, 53)
    a[:, 50] = torch.tensor([0.0, 0.1, 0.3, 0.2])
    b[:, 50] = torch.tensor([0.2, 0.1, 0.0, 0.25])
    b[:, 51] = 0.05
    torch.testing.assert_close(vq.sq_error(a, b), _vertex_mse(head, a, b), rtol=1e-3, atol=1e-4)


def test_joint_error_is_close_and_velocity_matches(models):
    vq, head = models
    torch.manual_seed(1)
    a = torch.cat([torch.randn(2, 12, 50) * 0.5, torch.rand(2, 12, 1) * 0.3, torch.zeros(2, 12, 2)], -1)
    b = torch.cat([torch.randn(2, 12, 50) * 0.5, torch.rand(2, 12, 1) * 0.3, torch.zeros(2, 12, 2)], -1)
    rec, vel = vq.losses(a, b)
    va, vb = head(a) * MM, head(b) * MM
    rec_ref = ((va - vb) ** 2).sum(-1).mean()
    vel_ref = (((va[:, 1:] - va[:, :-1]) - (vb[:, 1:] - vb[:, :-1])) ** 2).sum(-1).mean()
    # only the expression x jaw cross term is dropped
    assert abs(rec.item() - rec_ref.item()) < 0.1 * rec_ref.item()
    assert abs(vel.item() - vel_ref.item()) < 0.15 * vel_ref.item()


def test_lip_gap_is_the_head_models_lip_opening(models, head_dir):
    """LipGap's vector is upper minus lower lip of the real head model, and its loss is zero
    only when the openings agree (a jaw that opens more is penalised)."""
    import numpy as np

    from training.denoiser.losses import LipGap

    _, head = models
    gap = LipGap(head_dir)
    with np.load(head_dir / "head.npz") as z:
        up, lo = int(z["lip_upper"]), int(z["lip_lower"])
    torch.manual_seed(2)
    x = torch.cat([torch.randn(5, 50) * 0.5, torch.rand(5, 1) * 0.3, torch.zeros(5, 2)], -1)
    v = head(x) * MM
    torch.testing.assert_close(gap.vector(x), v[:, up] - v[:, lo], rtol=1e-4, atol=1e-3)
    assert gap.loss(x, x).item() == 0.0
    wider = x.clone()
    wider[:, 50] += 0.1
    assert gap.loss(wider, x).item() > 1.0  # 0.1 rad of jaw opens the lips by millimetres


def test_closed_frame_term_is_the_mean_over_the_targets_closed_frames(head_dir):
    """L_close averages the lip-opening error over the frames whose target lips are closed
    (<= the closure bar) only: an opening missed on a closed frame costs its full error there,
    not diluted by the open frames, and a batch with no closed frame gives zero."""
    from training.denoiser.losses import LipGap

    gap = LipGap(head_dir)
    torch.manual_seed(3)
    target = torch.cat([torch.randn(1, 8, 50) * 0.3, torch.full((1, 8, 1), 0.25), torch.zeros(1, 8, 2)], -1)
    opening = gap.vector(target).norm(dim=-1)
    assert float(opening.min()) > 3.0  # every frame open
    pred = target.clone()
    pred[..., 50] += 0.05
    total, close = gap.losses(pred, target, closed_mm=2.0)
    assert close.item() == 0.0 and total.item() > 0.0
    # the same errors, judged against a bar above every frame's opening: all frames count
    total_all, close_all = gap.losses(pred, target, closed_mm=float(opening.max()) + 1.0)
    torch.testing.assert_close(close_all, total_all)
    # a bar between the frames' openings picks exactly the frames under it
    bar = float(opening.median())
    err = ((gap.vector(pred) - gap.vector(target)) ** 2).sum(-1)
    _, close_some = gap.losses(pred, target, closed_mm=bar)
    torch.testing.assert_close(close_some, err[opening <= bar].mean())
