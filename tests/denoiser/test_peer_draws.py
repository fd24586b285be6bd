"""`evaluate --peer draws / draw-mean`: the corpus's own renditions of an utterance scored against
its draw 0, on the real head model and the real metrics."""

from pathlib import Path

import numpy as np
import pytest
import torch

from training.errors import DataError


@pytest.fixture(scope="module")
def head(head_dir):
    from backend.headfile import load_head_file
    from training.head.flame import HeadModel

    return HeadModel(head_dir), load_head_file(Path(head_dir) / "head.npz")


def _data(head_model, gt_x, draws):
    with torch.no_grad():
        gt = head_model(torch.from_numpy(gt_x)).numpy()
    n = len(gt_x)
    audio = np.zeros(n * 640, np.float32)
    return [{"id": "u", "audio": audio, "feats": None, "gt": gt, "speaker": None, "phones": [], "draws": draws}]


def test_draws_are_the_takes_and_their_mean_is_one(head, head_dir):
    from training.denoiser.evaluate import _peer_row
    from training.metrics import lve

    head_model, hf = head
    rng = np.random.default_rng(0)
    n = 30
    gt_x = np.zeros((n, 53), np.float32)
    gt_x[:, 50] = 0.1 * np.sin(np.linspace(0, 6, n))  # the jaw opens and closes
    # two renditions: the same jaw, different expressions (a smile-like offset moves the lips)
    draws = [gt_x.copy(), gt_x.copy()]
    draws[0][:, :10] += rng.normal(0, 0.5, 10).astype(np.float32)
    draws[1][:, :10] -= rng.normal(0, 0.5, 10).astype(np.float32)
    data = _data(head_model, gt_x, draws)
    row = _peer_row("draws", data, head_dir, head_model, hf, None)
    assert row["variant"] == "peer-draws" and row["samples"] == 2
    with torch.no_grad():
        verts = [head_model(torch.from_numpy(x)).numpy() for x in draws]
    expected = np.mean([lve(v, data[0]["gt"], hf["region_lips"]) for v in verts])
    assert row["metrics"]["lve"]["mean"] == pytest.approx(expected, rel=1e-5)
    assert row["metrics"]["lve"]["mean"] > 0.1  # the expressions move the lips
    mean_row = _peer_row("draw-mean", data, head_dir, head_model, hf, None)
    assert mean_row["samples"] == 1
    with torch.no_grad():
        mean_verts = head_model(torch.from_numpy(np.mean(draws, 0))).numpy()
    assert mean_row["metrics"]["lve"]["mean"] == pytest.approx(
        lve(mean_verts, data[0]["gt"], hf["region_lips"]), rel=1e-5
    )


def test_renditions_equal_to_the_truth_score_zero(head, head_dir):
    from training.denoiser.evaluate import _peer_row

    head_model, hf = head
    gt_x = np.zeros((20, 53), np.float32)
    gt_x[:, 50] = 0.05
    row = _peer_row("draws", _data(head_model, gt_x, [gt_x.copy()] * 3), head_dir, head_model, hf, None)
    assert row["metrics"]["lve"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert row["metrics"]["s_div_u"]["mean"] == pytest.approx(0.0, abs=1e-6)


def test_a_corpus_with_one_draw_is_a_clear_error(head, head_dir):
    from training.denoiser.evaluate import _peer_row

    head_model, hf = head
    gt_x = np.zeros((20, 53), np.float32)
    with pytest.raises(DataError, match="redrawn corpus"):
        _peer_row("draw-mean", _data(head_model, gt_x, []), head_dir, head_model, hf, None)


def test_cli_peer_alone_on_a_corpus_without_draws(tiny_corpus, head_dir, tmp_path):
    """The command runs with peers only, and says what is missing instead of a traceback."""
    from training.cli import main

    with pytest.raises(SystemExit, match="one motion draw per utterance; it needs a redrawn corpus"):
        main(
            [
                "evaluate",
                "--corpus",
                str(tiny_corpus),
                "--head",
                str(head_dir),
                "--peer",
                "draws",
                "--split",
                "train",
                "--limit",
                "1",
                "--out",
                str(tmp_path / "e"),
            ]
        )
