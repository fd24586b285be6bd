"""A trained artifact is reproducible: the same command and seed give the same weights
(torch seeds its own generator at random on start-up, so the trainers seed it themselves,
before the model's initial weights are drawn)."""

from __future__ import annotations

import torch

from tests.speech import pipeline
from training.cli import main as thunder_train


def _weights(run) -> dict:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=False)["model"]


def test_same_seed_same_encoder_weights(tmp_path_factory, tmp_path):
    corpus = pipeline.corpus(tmp_path_factory)
    runs = []
    for name in ("a", "b"):
        torch.manual_seed(1000 + len(runs))  # whatever the process did before must not matter
        out = tmp_path / name
        assert (
            thunder_train(
                [
                    "encoder",
                    "train",
                    "--corpus",
                    str(corpus),
                    "--out",
                    str(out),
                    "--small",
                    "--steps",
                    "3",
                    "--val-every",
                    "3",
                    "--seed",
                    "5",
                ]
            )
            == 0
        )
        runs.append(_weights(out))
    assert runs[0].keys() == runs[1].keys()
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k], rtol=0, atol=0, msg=k)
