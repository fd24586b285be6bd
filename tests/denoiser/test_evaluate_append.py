"""`thunder-train evaluate --append`: rows of variants evaluated at different times join one
table only when they were measured on the same utterances."""

import json

import pytest

from training.denoiser.evaluate import append_report
from training.errors import DataError


def _result(variant, ids, lve, split="test"):
    row = {
        "variant": variant,
        "run": f"runs/{variant}",
        "sampler": "dpmpp2m",
        "steps": 25,
        "samples": 4,
        "sample_seconds_per_utt": 1.0,
        "metrics": {
            "lve": {"mean": lve, "std": 0.1},
            "l_pcc": {"mean": 0.5, "std": 0.1},
            "lip_dtw": {"mean": 1.0, "std": 0.1},
            "s_div_l": {"mean": 0.1, "std": 0.0},
        },
        "per_utterance": {"ids": ids, "lve": [lve] * len(ids)},
    }
    return {
        "rows": [row],
        "split": split,
        "source": None,
        "utterances": len(ids),
        "guidance": 1.0,
        "corpus": "c",
        "machine": "m",
        "date": "d",
        "commit": "c",
        "units": "mm",
    }


def test_append_adds_and_replaces_rows(tmp_path):
    stem = tmp_path / "eval"
    append_report(_result("a", ["u1", "u2"], 5.0), stem)
    append_report(_result("b", ["u1", "u2"], 6.0), stem)
    merged = append_report(_result("a", ["u1", "u2"], 4.0), stem)
    on_disk = json.loads(stem.with_suffix(".json").read_text())
    assert [(r["variant"], r["metrics"]["lve"]["mean"]) for r in on_disk["rows"]] == [("b", 6.0), ("a", 4.0)]
    assert on_disk == merged
    assert "| a | dpmpp2m:25 | 4.000" in stem.with_suffix(".md").read_text()
    assert stem.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize("other", [_result("b", ["u1", "u3"], 6.0), _result("b", ["u1", "u2"], 6.0, split="val")])
def test_append_refuses_other_utterances(tmp_path, other):
    stem = tmp_path / "eval"
    append_report(_result("a", ["u1", "u2"], 5.0), stem)
    with pytest.raises(DataError, match="--append"):
        append_report(other, stem)
    assert [r["variant"] for r in json.loads(stem.with_suffix(".json").read_text())["rows"]] == ["a"]


def test_cli_refuses_before_sampling(tiny_corpus, head_dir, tmp_path):
    """A mismatch is refused before the evaluation runs (minutes of sampling on the real corpus),
    not after: here the run and encoder do not exist, so getting past the check would fail otherwise."""
    from training.cli import main

    stem = tmp_path / "eval"
    append_report(_result("a", ["u1", "u2"], 5.0, split="train"), stem)  # the same split, size, guidance
    before = stem.with_suffix(".json").read_text()
    args = ["evaluate", "--corpus", str(tiny_corpus), "--head", str(head_dir), "--encoder", str(tmp_path / "no-enc")]
    args += ["--run", f"b={tmp_path / 'no-run'}", "--split", "train", "--limit", "2", "--out", str(stem), "--append"]
    with pytest.raises(SystemExit, match="--append: .*eval.json was measured on other utterances"):
        main(args)
    assert stem.with_suffix(".json").read_text() == before
