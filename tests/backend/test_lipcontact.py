"""Lips meet, they do not pass (backend/lipcontact.py), on the shipped bundle's real head, graphs
and the demo speech: the backend poses the lip points as the rig does, no take's lips cross,
frames that did not cross are untouched, only the lip directions move, a preset can turn it off."""

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
from backend.lipcontact import TOLERANCE_MM, LipPair, keep_apart, keeps_lips_apart
from backend.liplock import lip_directions
from blender_thunder.core import lipseal

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "backend" / "models" / "thunder-base"
DEMO = ROOT / "assets" / "speech" / "demo.wav"
# Takes come back as float32: their separations are exact to a few micrometres, not to the solver's tolerance.
FLOAT32_MM = 0.01


@pytest.fixture(scope="module")
def head():
    return load_head_file(BUNDLE / "head.npz")


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


def test_the_backend_poses_the_lips_as_the_rig_does(head):
    """The add-on's posing (lipseal, which the backend may not import) and the backend's agree, and
    opening the jaw separates the points along the axis."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((50, N_EXP)), rng.normal(0.0, 0.15, (50, 3))], axis=1)
    pair = LipPair(head, N_EXP)
    np.testing.assert_allclose(pair.points(x), lipseal._head_lips(x[:, :N_EXP], x[:, N_EXP:], head), atol=1e-12)
    opened = np.zeros((2, N_EXP + 3))
    opened[1, N_EXP] = 0.2
    rest, wide = pair.separation_mm(opened)
    assert wide > rest + 3.0


def test_the_engines_takes_meet_and_never_pass(takes, head):
    free, kept = takes
    pair = LipPair(head, N_EXP)
    before = np.stack([pair.separation_mm(x) for x in free])
    after = np.stack([pair.separation_mm(x) for x in kept])
    assert (before < -0.5).any(), "without contact the demo crosses (else this tests nothing)"
    assert after.min() >= -FLOAT32_MM
    crossed = before < -TOLERANCE_MM
    np.testing.assert_allclose(after[crossed], 0.0, atol=FLOAT32_MM)  # moved onto contact, not past it
    np.testing.assert_allclose(kept[~crossed], free[~crossed], atol=1e-5)  # the rest as sampled


def test_only_the_lip_directions_move(head):
    engine = Engine(BUNDLE, device="cpu", threads=2)
    mean, chol = engine._mean.astype(np.float64), engine._chol_t.T.astype(np.float64)
    dirs = lip_directions(head, mean, chol, N_EXP).astype(np.float64)
    pair = LipPair(head, N_EXP)
    z = np.random.default_rng(0).standard_normal((2, 40, 53))
    sep = np.stack([pair.separation_mm(zi @ chol.T + mean) for zi in z])
    assert (sep < 0).any() and (sep > 0).any(), "random poses should cross in some frames, not all"
    z2, share = keep_apart(z, mean, chol, dirs, pair)
    moved = z2 - z
    np.testing.assert_allclose(moved - (moved @ dirs) @ dirs.T, 0.0, atol=1e-4)  # the upper face keeps its value
    assert share == pytest.approx(float((sep < -TOLERANCE_MM).mean()))
    assert min(pair.separation_mm(zi.astype(np.float64) @ chol.T + mean).min() for zi in z2) >= -FLOAT32_MM


def test_a_preset_can_keep_the_sampled_lips():
    assert keeps_lips_apart({"sampler": "dpmpp2m", "steps": 8}) and keeps_lips_apart(None)
    assert not keeps_lips_apart({"lip_contact": False})
