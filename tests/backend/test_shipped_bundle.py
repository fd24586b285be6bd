"""The shipped model bundle, backend/models/thunder-base: intact, traceable, and it speaks.

These run the real trained graphs in onnxruntime on the project's own speech
sample: the jaw follows the speech, takes differ in expression but agree on the
mouth, a seed reproduces its take, and the lip-sync score prefers the take that
is in sync over the same take shifted in time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.bundle import checked_file, read_manifest
from backend.engine import SAMPLES_PER_FRAME, Engine

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "backend" / "models" / "thunder-base"
SPEECH = ROOT / "assets" / "speech" / "demo.wav"
TAKES = 4


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(BUNDLE, device="cpu", threads=2)


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    audio, sr = sf.read(str(SPEECH), dtype="float32")
    assert sr == 16000
    return audio


@pytest.fixture(scope="module")
def takes(engine, audio):
    return engine.animate(audio, takes=TAKES, seed=0).takes


def _frame_energy(audio: np.ndarray, n: int) -> np.ndarray:
    frames = audio[: n * SAMPLES_PER_FRAME].reshape(n, SAMPLES_PER_FRAME)
    return np.log(np.sqrt((frames**2).mean(1)) + 1e-4)


def _opening(take) -> np.ndarray:
    """Jaw opening angle (radians) per frame: the rotation about the head's x axis."""
    return take.jaw[:, 0]


def test_manifest_checksums_and_provenance():
    m = read_manifest(BUNDLE)
    for name, entry in m["graphs"].items():
        checked_file(BUNDLE, entry, name)  # sha256 of every graph
    prov = m["provenance"]
    assert "denoiser train" in prov["command"] and "--m2s" in prov["command"] and prov["commit"]
    assert "thunder-train export" in prov["export_command"]
    for upstream in ("audio_encoder", "m2s", "denoiser_init"):  # the whole chain is on record
        assert "train" in prov["inputs"][upstream]["command"], upstream
    assert m["evaluation"]["rows"], "the evaluation figures travel with the bundle"


def test_jaw_follows_the_speech(takes, audio):
    energy = _frame_energy(audio, len(takes[0].jaw))
    for take in takes:
        r = np.corrcoef(energy, _opening(take))[0, 1]
        assert r > 0.3, f"seed {take.seed}: jaw opening vs speech energy r = {r:.2f}"  # measured 0.46-0.49
    quiet, loud = energy < np.quantile(energy, 0.2), energy > np.quantile(energy, 0.6)
    opening = np.mean([_opening(t) for t in takes], 0)
    assert opening[loud].mean() > opening[quiet].mean() + 0.02  # radians (measured 0.033): open when speaking


def test_takes_differ_in_expression_but_agree_on_the_mouth(takes):
    exp = np.stack([t.exp for t in takes])  # (K, T, 50)
    spread = exp.std(0).mean()
    assert spread > 0.02, f"takes are near copies (expression spread {spread:.3f})"  # measured 0.038
    jaws = np.stack([_opening(t) for t in takes])
    r = [np.corrcoef(jaws[i], jaws[j])[0, 1] for i in range(TAKES) for j in range(i + 1, TAKES)]
    assert min(r) > 0.6, f"takes disagree on when the mouth opens (pairwise r {np.round(r, 2)})"


def test_a_seed_reproduces_its_take(engine, audio, takes):
    again = engine.animate(audio, takes=1, seed=2).takes[0]
    np.testing.assert_allclose(again.exp, takes[2].exp, atol=1e-5)
    np.testing.assert_allclose(again.jaw, takes[2].jaw, atol=1e-5)


def test_lip_sync_score_prefers_the_synced_take(engine, audio, takes):
    for take in takes:
        shifted = engine.score(audio, np.roll(take.exp, 10, 0), np.roll(take.jaw, 10, 0))  # 0.4 s late
        assert take.score > shifted + 0.02, f"seed {take.seed}: {take.score:.3f} vs shifted {shifted:.3f}"


def test_listening_without_speech_uses_the_training_speakers_mean(engine, takes):
    """`listen` (what M2S hears from keyed motion alone) needs a speaker: the bundle carries
    the mean training-speaker embedding, a unit vector like the speaker encoder's output."""
    mean = engine.bundle.stats.get("speaker_mean")
    assert mean is not None and mean.shape == (256,)
    assert abs(float(np.linalg.norm(mean)) - 1.0) < 1e-4
    wav = engine.listen(takes[0].exp, takes[0].jaw)
    assert wav.ndim == 1 and len(wav) >= (len(takes[0].exp) - 2) * SAMPLES_PER_FRAME
    assert np.isfinite(wav).all() and float(np.abs(wav).max()) > 1e-3
