"""The committed bundle as a user meets it: `thunder serve` with its defaults, in its
own process, on a real socket — health, model (strict JSON) and animate. And the
rule behind it: everything the project writes as JSON is finite or null.

A NaN in the shipped manifest once made `GET /v1/model` answer 500, so Generate and
`make demo` failed for every user while every other test passed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from backend import jsonio
from backend.bundle import read_manifest

from tests.serve import thunder_serve

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "backend" / "models" / "thunder-base"
SPEECH = ROOT / "assets" / "speech" / "demo.wav"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`python -m backend.cli serve` with no --bundle: the default a user gets."""
    home = tmp_path_factory.mktemp("served")
    env = dict(os.environ, XDG_CONFIG_HOME=str(home / "config"), HOME=str(home), PYTHONNOUSERSITE="1")
    env.pop("THUNDER_BUNDLE", None)
    with thunder_serve(env=env, log=home / "serve.log", cwd=home) as url:
        token = (home / "config" / "thunder" / "token").read_text().strip()
        yield url, {"Authorization": f"Bearer {token}"}, home / "serve.log"


def test_health_names_the_shipped_model(served):
    url, _, _ = served
    r = httpx.get(f"{url}/v1/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert r.json()["bundle"] == read_manifest(BUNDLE)["name"]


def test_model_answers_strict_json(served):
    url, auth, _ = served
    r = httpx.get(f"{url}/v1/model", headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    model = jsonio.loads_strict(r.text)  # a NaN anywhere fails here
    assert model["head"]["head_id"] and model["evaluation"]["rows"]


def test_animate_the_demo_sentence(served):
    url, auth, log = served
    with open(SPEECH, "rb") as fh:
        r = httpx.post(
            f"{url}/v1/animate",
            headers=auth,
            timeout=120,
            files={"audio": ("demo.wav", fh, "audio/wav")},
            data={"takes": "2", "rank": "true"},
        )
    assert r.status_code == 200, r.text
    reply = jsonio.loads_strict(r.text)
    assert len(reply["takes"]) == 2
    for take in reply["takes"]:
        exp, jaw = np.array(take["exp"]), np.array(take["jaw"])
        assert exp.shape[1] == 50 and jaw.shape == (len(exp), 3) and len(exp) > 90  # 3.9 s at 25 fps
        assert np.isfinite(exp).all() and np.isfinite(jaw).all()
    assert "Traceback" not in log.read_text()


def test_every_committed_json_file_is_strict():
    files = subprocess.run(
        ["git", "ls-files", "*.json"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert files, "git ls-files found no JSON: run from a checkout"
    bad = [f for f in files if not jsonio.is_strict(ROOT / f)]
    assert not bad, f"not strict JSON (NaN/Infinity): {bad}"


def test_writer_refuses_non_finite_and_finite_makes_null(tmp_path):
    path = tmp_path / "r.json"
    jsonio.write_json(path, {"ok": 1.0})
    with pytest.raises(ValueError):
        jsonio.write_json(path, {"rank": float("nan")})
    assert json.loads(path.read_text()) == {"ok": 1.0}  # the refused write left the old file
    jsonio.write_json(path, jsonio.finite({"rank": np.float32("nan"), "xs": np.array([1.0, np.inf])}))
    assert jsonio.read_json(path, strict=True) == {"rank": None, "xs": [1.0, None]}


def test_exporter_writes_undefined_figures_as_null(tmp_path):
    """write_bundle refuses NaN; export_trained's evaluation passes through `finite` (a rank
    correlation over one take is undefined and becomes null)."""
    import shutil

    from training.export import write_bundle

    out = tmp_path / "b"
    out.mkdir()
    m = read_manifest(BUNDLE)
    for g in m["graphs"].values():
        shutil.copy(BUNDLE / g["file"], out / g["file"])
    stats = dict(np.load(BUNDLE / "stats.npz"))
    kwargs = dict(
        name="t",
        head_npz=BUNDLE / "head.npz",
        stats=stats,
        provenance={},
        graphs={k: {"file": v["file"]} for k, v in m["graphs"].items()},
    )
    with pytest.raises(ValueError):
        write_bundle(out, evaluation={"rows": [{"sync_lve_rank": float("nan")}]}, **kwargs)
    assert not (out / "manifest.json").exists()  # no half-truth left behind
    write_bundle(out, evaluation=jsonio.finite({"rows": [{"sync_lve_rank": float("nan")}]}), **kwargs)
    assert jsonio.read_json(out / "manifest.json", strict=True)["evaluation"]["rows"][0]["sync_lve_rank"] is None


def test_a_legacy_manifest_with_nan_is_served_as_null(tmp_path):
    """Bundles written before the strict writer still load; their NaN reads as null."""
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(BUNDLE, legacy)
    text = (legacy / "manifest.json").read_text().replace('"evaluation": {', '"evaluation": {"x": NaN, ', 1)
    (legacy / "manifest.json").write_text(text)
    manifest = read_manifest(legacy)
    assert manifest["evaluation"]["x"] is None
    jsonio.dumps(manifest)  # strict: would raise on NaN
