"""L_m2s: the frozen M2S passes gradients to the denoiser and stays unchanged itself."""

import numpy as np
import torch

from training.denoiser.data import Utterance, random_batch
from training.denoiser.losses import VertexQuadratic
from training.denoiser.m2s_loss import M2SLoss
from training.denoiser.model import Denoiser, DenoiserConfig
from training.denoiser.stats import Normaliser, compute_stats
from training.denoiser.train import DiffusionLoss
from training.export import tiny_m2s
from training.m2s.data import Split


def test_m2s_loss_trains_the_denoiser_only(head_dir):
    rng = np.random.default_rng(0)
    lengths = [30, 45]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = offsets[-1]
    split = Split(
        {
            "exp": rng.normal(size=(n, 50)).astype(np.float32),
            "jaw": np.zeros((n, 3), np.float32),
            "mel": rng.normal(size=(4 * n, 80)).astype(np.float32),
            "units": rng.integers(0, 50, 2 * n),
            "speaker": rng.normal(size=(2, 256)).astype(np.float32),
            "offsets": offsets,
            "ids": np.array(["u0", "u1"]),
            "texts": np.array(["", ""]),
        }
    )
    data = [
        Utterance(
            f"u{i}",
            "s",
            rng.normal(size=(L, 16)).astype(np.float32),
            np.concatenate([rng.normal(size=(L, 50)), rng.uniform(0, 0.2, (L, 3))], 1).astype(np.float32),
        )
        for i, L in enumerate(lengths)
    ]
    m2s = tiny_m2s(head_dir)
    before = {k: v.clone() for k, v in m2s.state_dict().items()}
    model = Denoiser(DenoiserConfig(audio_dim=16, d_model=32, n_layers=2, d_ff=64))
    stats = compute_stats(np.concatenate([d.x for d in data]))
    with_m2s = DiffusionLoss(
        Normaliser(stats),
        VertexQuadratic.from_head(head_dir / "head.npz"),
        m2s_loss=M2SLoss(m2s, [split]),
        w_m2s=1.0,
        m2s_fraction=0.5,
    )
    batch = random_batch(data, rng, 4, 20)
    loss, metrics = with_m2s(model, batch, torch.Generator().manual_seed(0))
    assert metrics["m2s"] > 0 and abs(metrics["loss"] - metrics["rec"] - metrics["vel"] - metrics["m2s"]) < 1e-3
    loss.backward()
    assert model.x_proj.weight.grad is not None and model.x_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m2s.parameters())
    for k, v in m2s.state_dict().items():
        torch.testing.assert_close(v, before[k])
    # targets are the right slices of the speech
    tg = M2SLoss(m2s, [split]).targets(["u1"], [5], 10)
    np.testing.assert_array_equal(tg["mel"][0].numpy(), split.mel[4 * (30 + 5) : 4 * (30 + 15)])
    np.testing.assert_array_equal(tg["units"][0].numpy(), split.units[2 * 35 : 2 * 45])
