"""`thunder-train probe`: a linear probe's frame phone accuracy on an encoder's features."""

import json

import numpy as np

from training.cli import main as thunder_train
from training.corpus.dataset import load_corpus
from training.speech.data import load_motion, phone_labels


def test_probe_reports_accuracies_above_the_commonest_phone(tiny_corpus, encoder_run, tmp_path):
    out = tmp_path / "probe"
    assert (
        thunder_train(["probe", "--corpus", str(tiny_corpus), "--encoder", f"logmel={encoder_run}", "--out", str(out)])
        == 0
    )
    res = json.loads(out.with_suffix(".json").read_text())
    (row,) = res["rows"]
    assert row["encoder"] == "logmel" and row["train_frames"] > 100
    # the tiny corpus has no real speakers: that column is undefined, not zero
    assert row["test_real"] is None and 0.0 <= row["test_synthetic"] <= 1.0
    corpus = load_corpus(tiny_corpus)
    labels = np.concatenate(
        [phone_labels(load_motion(tiny_corpus, u), u["n_frames"], rate=25.0) for u in corpus.split("train")]
    )
    commonest = np.bincount(labels).max() / len(labels)
    assert row["train_accuracy"] > commonest + 0.05
    assert "| logmel |" in out.with_suffix(".md").read_text()
