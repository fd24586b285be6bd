"""Lips meet, they do not pass (backend/lipcontact.py), on the shipped bundle's real head, graphs
and the demo speech: no take's lips cross, frames that did not cross are untouched, only the lip
directions move, and a preset can turn it off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.contracts import N_EXP
from backend.engine import Engine
from backend.headfile import load_head_file
from backend.lipcontact import TOLERANCE_MM, keep_apart, keeps_lips_apart
from backend.liplock import lip_directions
from blender_thunder.core import lipseal

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "backend" / "models" / "thunder-base"
DEMO = ROOT / "assets" / "speech" / "demo.wav"
# Takes come back as float32: their openings are exact to a few micrometres, not to the solver's tolerance.
FLOAT32_MM = 0.01


@pytest.fixture(scope="module")
def uncontacted(tmp_path_factory):
    """The shipped bundle with every preset's lip contact turned off (a copy: graphs untouched)."""
    out = tmp_path_factory.mktemp("bundle") / "thunder-base"
    shutil.copytree(BUNDLE, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["presets"] = {k: {**v, "lip_contact": False} for k, v in manifest["presets"].items()}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def takes(uncontacted):
    audio, _ = sf.read(DEMO, dtype="float32")
    free = Engine(uncontacted, device="cpu", threads=2).animate(audio, takes=4, seed=3)
    kept = Engine(BUNDLE, device="cpu", threads=2).animate(audio, takes=4, seed=3)
    as_x = lambda res: np.stack([np.concatenate([t.exp, t.jaw], 1) for t in res.takes]).astype(np.float64)  # noqa: E731
    return as_x(free), as_x(kept)


def _openings(x, head):
    lips = [lipseal.source_lips(xi[:, :N_EXP], xi[:, N_EXP:], head) for xi in x]
    return np.stack([s.opening_mm for s in lips]), lips[0].meet_mm


def test_the_engines_takes_meet_and_never_pass(takes):
    free, kept = takes
    head = load_head_file(BUNDLE / "head.npz")
    before, meet = _openings(free, head)
    after, _ = _openings(kept, head)
    assert (before < meet - 0.5).any(), "without contact the demo crosses (else this tests nothing)"
    assert after.min() >= meet - FLOAT32_MM
    crossed = before < meet - TOLERANCE_MM
    np.testing.assert_allclose(after[crossed], meet, atol=FLOAT32_MM)  # moved onto contact, not past it
    np.testing.assert_allclose(kept[~crossed], free[~crossed], atol=1e-5)  # the rest as sampled


def test_only_the_lip_directions_move():
    engine = Engine(BUNDLE, device="cpu", threads=2)
    head = load_head_file(engine.head_path)
    mean, chol = engine._mean.astype(np.float64), engine._chol_t.T.astype(np.float64)
    dirs = lip_directions(head, mean, chol, N_EXP).astype(np.float64)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 40, 53))
    x = z @ chol.T + mean
    opening, meet = _openings(x, head)
    assert (opening < meet).any() and (opening > meet).any(), "random poses should cross in some frames, not all"
    z2, share = keep_apart(z, mean, chol, dirs, head, N_EXP)
    moved = z2 - z
    np.testing.assert_allclose(moved - (moved @ dirs) @ dirs.T, 0.0, atol=1e-4)  # the upper face keeps its value
    assert share == pytest.approx(float((opening < meet - TOLERANCE_MM).mean()))
    assert _openings(z2.astype(np.float64) @ chol.T + mean, head)[0].min() >= meet - FLOAT32_MM


def test_a_preset_can_keep_the_sampled_lips():
    assert keeps_lips_apart({"sampler": "dpmpp2m", "steps": 8}) and keeps_lips_apart(None)
    assert not keeps_lips_apart({"lip_contact": False})
