"""`thunder-train frontier` on evaluate reports in the format `evaluate` writes."""

import json

import pytest

from training.cli import main


def _report(path, source, rows):
    def row(variant, sampler, lve, gap, closure):
        return {
            "variant": variant,
            "sampler": sampler,
            "steps": 1,
            "samples": 1,
            "metrics": {
                "lve": {"mean": lve, "std": 0.1},
                "vowel_gap": {"mean": gap, "std": 0.0},
                "vowel_gap_gt": {"mean": 10.0, "std": 0.0},
                "closure": {"mean": closure, "std": 0.0},
            },
        }

    path.write_text(json.dumps({"source": source, "split": "test", "rows": [row(*r) for r in rows]}))
    return path


def test_frontier_panels_points_and_regression_line(tmp_path):
    a = _report(
        tmp_path / "a.json", "espeak", [("g1.0", "dpmpp2m", 4.5, 9.0, 0.84), ("reg", "regression", 4.6, 8.5, 0.9)]
    )
    b = _report(tmp_path / "b.json", "asterisk-en", [("g1.4", "dpmpp2m", 5.0, 9.7, 1.0)])
    c = _report(tmp_path / "c.json", "espeak", [("g1.4", "dpmpp2m", 5.0, 11.0, 0.86)])
    assert main(["frontier", str(a), str(b), str(c), "--out", str(tmp_path / "f")]) == 0
    data = json.loads((tmp_path / "f.json").read_text())
    assert set(data["panels"]) == {"espeak test", "asterisk-en test"}  # reports of one source share a panel
    syn = {p["label"]: p for p in data["panels"]["espeak test"]}
    assert syn["g1.0"]["vowel_share"] == pytest.approx(0.9) and syn["g1.4"]["lve"] == 5.0
    assert syn["reg"]["regression"] and not syn["g1.0"]["regression"]
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_a_setting_measured_again_under_another_name_is_one_point(tmp_path):
    a = _report(tmp_path / "a.json", "espeak", [("opening-g1.3", "dpmpp2m", 4.79, 10.6, 0.93)])
    b = _report(
        tmp_path / "b.json",
        "espeak",
        [("fixed-g1.3", "dpmpp2m", 4.79, 10.6, 0.93), ("new", "dpmpp2m", 4.55, 9.9, 0.92)],
    )
    assert main(["frontier", str(a), str(b), "--out", str(tmp_path / "f")]) == 0
    labels = [p["label"] for p in json.loads((tmp_path / "f.json").read_text())["panels"]["espeak test"]]
    assert labels == ["opening-g1.3 = fixed-g1.3", "new"]


def test_frontier_errors_are_clear(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match="not an evaluate report"):
        main(["frontier", str(tmp_path / "bad.json"), "--out", str(tmp_path / "f")])
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"rows": [{"variant": "v", "sampler": "s", "metrics": {"lve": {"mean": 5.0}}}]}))
    with pytest.raises(SystemExit, match="no row with LVE and the vowel lip check"):
        main(["frontier", str(old), "--out", str(tmp_path / "f")])
