"""`thunder-train curves` on real run logs written by the trainer's log format."""

import json

import pytest

from training.cli import main


def _run(folder, steps, val):
    folder.mkdir()
    with open(folder / "log.jsonl", "w") as f:
        for s, v in zip(steps, val):
            f.write(json.dumps({"step": s, "train": {"loss": 1.0}, "val": v}) + "\n")
    return folder


def test_curves_offsets_stage_b_and_draws_shared_metrics(tmp_path):
    a = _run(tmp_path / "a", [500, 1000], [{"rec": 0.6, "vel": 0.3}, {"rec": 0.5, "vel": 0.2}])
    b = _run(tmp_path / "b", [100], [{"rec": 0.4, "vel": 0.1, "m2s": 12.0}])
    assert (
        main(["curves", "--run", f"A={a}", "--run", f"B={b}", "--offset", "B=1000", "--out", str(tmp_path / "c")]) == 0
    )
    data = json.loads((tmp_path / "c.json").read_text())["curves"]
    assert data["B"]["steps"] == [1100] and data["A"]["rec"] == [0.6, 0.5]
    assert "m2s" not in data["A"]  # only the metrics every run has
    assert (tmp_path / "c.png").stat().st_size > 5000


def test_curves_errors_are_clear(tmp_path):
    with pytest.raises(SystemExit, match="^thunder-train curves: .* has no log.jsonl"):
        main(["curves", "--run", f"x={tmp_path}", "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        main(["curves", "--run", str(tmp_path), "--out", str(tmp_path / "c")])
