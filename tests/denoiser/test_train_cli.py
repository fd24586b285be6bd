"""`thunder-train denoiser train --small`, resume, baseline, evaluate, export: the real commands."""

import json

import numpy as np
import pytest

from training.cli import main

from .helpers import evaluate_args, run_log, train_args


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_corpus, tiny_encoder, head_dir):
    root = tmp_path_factory.mktemp("runs")
    common = train_args(tiny_corpus, tiny_encoder, head_dir)
    assert main(["denoiser", "train", *common, "--out", str(root / "thunder"), "--steps", "8"]) == 0
    assert (
        main(["denoiser", "train", *common, "--out", str(root / "baseline"), "--variant", "baseline", "--steps", "5"])
        == 0
    )
    return root


def test_train_writes_a_resumable_run(runs, tiny_corpus, tiny_encoder, head_dir):
    run = runs / "thunder"
    for name in ("last.pt", "best.pt", "stats.npz", "curves.png", "provenance.json", "config.json"):
        assert (run / name).is_file(), name
    assert [r["step"] for r in run_log(run)] == [5, 8]
    # resume: a longer schedule continues from step 8, it does not restart
    assert (
        main(
            ["denoiser", "train", *train_args(tiny_corpus, tiny_encoder, head_dir), "--out", str(run), "--steps", "12"]
        )
        == 0
    )
    assert [r["step"] for r in run_log(run)] == [5, 8, 10, 12]
    assert all(np.isfinite(r["val"]["loss"]) for r in run_log(run))


def test_evaluate_writes_table_json_and_figure(runs, tiny_corpus, tiny_encoder, head_dir, tmp_path):
    stem = tmp_path / "reports" / "eval"
    assert (
        main(
            evaluate_args(
                tiny_corpus,
                tiny_encoder,
                head_dir,
                {"thunder": runs / "thunder", "baseline": runs / "baseline"},
                "dpmpp2m:3,ddim:3",
                samples=3,
                limit=2,
                out=stem,
            )
        )
        == 0
    )
    result = json.loads(stem.with_suffix(".json").read_text())
    names = [(r["variant"], r["sampler"]) for r in result["rows"]]
    assert names == [("thunder", "dpmpp2m"), ("thunder", "ddim"), ("baseline", "regression")]
    for r in result["rows"]:
        assert np.isfinite(r["metrics"]["lve"]["mean"]) and r["metrics"]["lve"]["mean"] > 0
    assert result["rows"][0]["metrics"]["s_div_l"]["mean"] > 0  # samples differ
    assert result["rows"][2]["metrics"]["s_div_l"]["mean"] == 0  # the regression baseline cannot
    assert "| thunder | dpmpp2m:3 |" in stem.with_suffix(".md").read_text()
    assert stem.with_suffix(".png").stat().st_size > 1000
    assert result["rows"][0]["per_utterance"]["ids"] == result["rows"][2]["per_utterance"]["ids"]
    assert len(result["rows"][0]["per_utterance"]["lve"]) == 2

    # effects: paired differences of the same utterances; a row against itself has no effect
    eff = tmp_path / "reports" / "effect"
    assert (
        main(
            [
                "effects",
                str(stem.with_suffix(".json")),
                "--pair",
                "thunder:baseline",
                "--pair",
                "thunder:thunder",
                "--sampler",
                "dpmpp2m:3",
                "--out",
                str(eff),
                "--of",
                "diffusion",
            ]
        )
        == 0
    )
    e = json.loads(eff.with_suffix(".json").read_text())
    assert e["of"] == "diffusion" and "Effect of diffusion (with - without)" in eff.with_suffix(".md").read_text()
    lve = [p["metrics"]["lve"] for p in e["pairs"]]
    thunder_lve = np.array(result["rows"][0]["per_utterance"]["lve"])
    assert np.isclose(lve[0]["with"], thunder_lve.mean()) and lve[1]["diff"] == 0 and lve[1]["ci95"] == [0, 0]
    assert "| lve | lower |" in eff.with_suffix(".md").read_text()


def test_export_of_a_trained_run_loads_in_the_engine(runs, tiny_encoder, head_dir, tmp_path, monkeypatch):
    from backend.engine import Engine

    monkeypatch.chdir(tmp_path)  # a relative --out, as in `--out backend/models/thunder-base`
    out = tmp_path / "models" / "bundle"
    assert (
        main(
            [
                "export",
                "--out",
                "models/bundle",
                "--denoiser",
                str(runs / "thunder"),
                "--encoder",
                str(tiny_encoder),
                "--head",
                str(head_dir),
            ]
        )
        == 0
    )
    engine = Engine(out)
    res = engine.animate(np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32), takes=2)
    assert res.takes[0].exp.shape == (50, 50)
    m = engine.manifest
    assert m["provenance"]["command"] and m["graphs"]["denoiser"]["config"]["d_model"] == 32


def test_diagnose_gives_x0_error_per_step_next_to_regression(runs, tiny_corpus, tiny_encoder, head_dir, tmp_path):
    """`denoiser diagnose`: a row per diffusion step for a diffusion run, one for the regression
    run; a preconditioned run (trained with `model.precondition` from a config file) passes
    its clean input through, so its t = 0 error is far below its audio-only (t = 999) error."""
    from training.config import CONFIG_DIR

    cfg = json.loads((CONFIG_DIR / "small.json").read_text())
    cfg["denoiser"]["model"]["precondition"] = True
    (tmp_path / "pre.json").write_text(json.dumps(cfg))
    common = train_args(tiny_corpus, tiny_encoder, head_dir)
    pre = tmp_path / "pre"
    assert (
        main(["denoiser", "train", *common, "--config", str(tmp_path / "pre.json"), "--out", str(pre), "--steps", "5"])
        == 0
    )
    stem = tmp_path / "x0"
    argv = [
        "denoiser",
        "diagnose",
        "--corpus",
        str(tiny_corpus),
        "--encoder",
        str(tiny_encoder),
        "--head",
        str(head_dir),
    ]
    runs_ = ["--run", f"plain={runs / 'thunder'}", "--run", f"pre={pre}", "--run", f"regression={runs / 'baseline'}"]
    assert main([*argv, *runs_, "--batches", "1", "--out", str(stem)]) == 0
    result = json.loads(stem.with_suffix(".json").read_text())["runs"]
    assert [r["t"] for r in result["regression"]["rows"]] == [None]
    rows = {r["t"]: r for r in result["pre"]["rows"]}
    assert len(rows) == len(result["plain"]["rows"]) == 12
    assert rows[0]["vertex_rms_mm"] < 0.1 * rows[999]["vertex_rms_mm"]
    assert stem.with_suffix(".png").is_file() and "| regression |" in stem.with_suffix(".md").read_text()
