"""`thunder-train fidelity` on a report with a DDPM reference and fast-sampler rows."""

import json

import pytest

from training.cli import main
from training.denoiser.fidelity import fidelity
from training.errors import DataError


def _row(sampler, steps, lve, s_div_u, seconds, variant="thunder"):
    return {
        "variant": variant,
        "sampler": sampler,
        "steps": steps,
        "samples": 8,
        "sample_seconds_per_utt": seconds,
        "metrics": {
            "lve": {"mean": lve, "std": 0.0},
            "s_div_u": {"mean": s_div_u, "std": 0.0},
            "sync_lve_rank": {"mean": -0.3, "std": 0.0},
        },
    }


def _report():
    return {
        "utterances": 3,
        "machine": "m",
        "date": "d",
        "rows": [
            _row("ddpm", 1000, 5.00, 0.100, 200.0),
            _row("dpmpp2m", 25, 5.10, 0.104, 4.0),
            _row("dpmpp2m", 10, 5.20, 0.100, 2.0),
            _row("ddim", 25, 5.00, 0.120, 4.0),
            _row("dpmpp2m", 25, 9.0, 0.5, 1.0, variant="other"),
        ],
    }


def test_targets_are_checked_against_the_reference():
    result = fidelity(_report())
    by = {r["sampler"]: r for r in result["rows"]}
    assert set(by) == {"dpmpp2m:25", "dpmpp2m:10", "ddim:25"}  # only the reference's run
    assert by["dpmpp2m:25"]["relative"]["lve"] == pytest.approx(0.02)
    assert by["dpmpp2m:25"]["speedup"] == pytest.approx(50.0)
    assert by["dpmpp2m:25"]["passes"]
    assert by["dpmpp2m:10"]["checks"] == {"lve": False, "s_div_u": True, "speedup": True}
    assert by["ddim:25"]["checks"]["s_div_u"] is False and not by["ddim:25"]["passes"]


def test_cli_writes_markdown_and_json(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(_report()))
    assert main(["fidelity", str(tmp_path / "r.json"), "--out", str(tmp_path / "f")]) == 0
    md = (tmp_path / "f.md").read_text()
    assert "| dpmpp2m:25 | 5.1000 (+2.0%)" in md and "missed: lve" in md
    assert json.loads((tmp_path / "f.json").read_text())["reference"] == "ddpm:1000"


def test_missing_reference_is_a_clear_error():
    with pytest.raises(DataError, match="no ddpm:1000 row"):
        fidelity({"utterances": 1, "rows": [_row("dpmpp2m", 25, 5.0, 0.1, 1.0)]})
