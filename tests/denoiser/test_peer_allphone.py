"""The classic pipeline peer (training/peers/allphone.py) on a real espeak recording:
pocketsphinx allphone phones -> the corpus engine's articulation -> FLAME psi + jaw."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus.phones import BILABIAL, INVENTORY, SIL, VOWELS
from training.peers.allphone import SAMPLE_RATE, peer_motion, recognise_phones

DEMO = Path(__file__).resolve().parents[2] / "assets" / "speech" / "demo.wav"


@pytest.fixture(scope="module")
def demo() -> np.ndarray:
    audio, sr = sf.read(DEMO, dtype="float32")
    assert sr == SAMPLE_RATE
    return audio


@pytest.fixture(scope="module")
def face(head_dir):
    from training.corpus.face import Face

    return Face.load(head_dir)


def _frame_labels(phones, n, rate):
    centres = (np.arange(n) + 0.5) / rate
    out = np.full(n, SIL, dtype=object)
    for s, e, lab in phones:
        out[(centres >= s) & (centres < e)] = lab
    return out


def _loud(audio):
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    energy = np.sqrt((frames**2).mean(axis=1))
    return energy > 0.15 * np.percentile(energy, 95)


def test_phones_cover_the_speech_and_pauses_are_silence(demo):
    rng = np.random.default_rng(0)
    pad = np.zeros(SAMPLE_RATE // 2, np.float32)
    audio = np.concatenate([pad, demo, pad]) + rng.normal(0, 1e-3, len(demo) + 2 * len(pad)).astype(np.float32)
    phones = recognise_phones(audio)
    duration = len(audio) / SAMPLE_RATE
    # contiguous, from 0 to the end, in the corpus inventory
    assert phones[0][0] == 0.0 and phones[-1][1] == pytest.approx(duration)
    assert all(abs(a[1] - b[0]) < 1e-9 for a, b in zip(phones, phones[1:]))
    assert all(lab in INVENTORY for _, _, lab in phones)
    # the half-second pauses either side are silence
    assert phones[0][2] == SIL and phones[0][1] >= 0.4
    assert phones[-1][2] == SIL and duration - phones[-1][0] >= 0.4
    # the speech is phones: nearly every loud 10 ms frame is inside a non-pause phone
    loud = _loud(audio)
    labels = _frame_labels(phones, len(loud), 100)
    assert (labels[loud] != SIL).mean() > 0.85
    assert sum(lab in VOWELS for _, _, lab in phones) >= 10  # ~16 syllables said
    # deterministic
    assert recognise_phones(audio) == phones


def test_peer_motion_opens_for_vowels_and_closes_on_bilabials(demo, face):
    n_frames = len(demo) // 640
    x = peer_motion(demo, n_frames, face)
    assert x.shape == (n_frames, 53) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.array_equal(x, peer_motion(demo, n_frames, face))
    phones = recognise_phones(demo)
    labels = _frame_labels(phones, n_frames, 25)
    vowel = np.array([lab in VOWELS for lab in labels])
    pause = labels == SIL
    jaw = x[:, 50]
    assert vowel.any() and pause.any()
    assert jaw[vowel].mean() > 2 * jaw[pause].mean()  # ~3.7x
    gap = face.lip_distance(x[:, :50].astype(np.float64), x[:, 50:].astype(np.float64))
    assert gap[vowel].mean() > 2 * gap[pause].mean()  # ~3.5x
    bilabials = [(s, e) for s, e, lab in phones if lab in BILABIAL]
    assert bilabials, "espeak's 'Blender' / 'talking' should give at least one p/b/m"
    open_gap = np.median(gap[vowel])
    for s, e in bilabials:
        k = int(0.5 * (s + e) * 25)
        assert gap[max(k - 1, 0) : k + 2].min() < 0.15 * open_gap, (s, e)


def test_peer_row_in_evaluate(demo, face, head_dir):
    """`evaluate --peer allphone`'s row: deterministic (one take), same metrics as the runs."""
    import torch

    from backend.headfile import load_head_file
    from training.denoiser.evaluate import _peer_row, markdown
    from training.head.flame import HeadModel

    head_model = HeadModel(head_dir)
    head = load_head_file(Path(head_dir) / "head.npz")
    n = len(demo) // 640
    with torch.no_grad():
        gt = head_model(torch.zeros(n, 53)).numpy()
    data = [{"id": "demo", "audio": demo[: n * 640], "feats": None, "gt": gt, "speaker": None}]
    row = _peer_row("allphone", data, head_dir, head_model, head, None)
    assert row["variant"] == "peer-allphone" and row["samples"] == 1
    assert np.isfinite(row["metrics"]["lve"]["mean"]) and row["metrics"]["lve"]["mean"] > 0
    assert row["metrics"]["s_div_l"]["mean"] == 0
    table = markdown(
        {
            "rows": [row],
            "utterances": 1,
            "split": "test",
            "source": None,
            "units": "mm",
            "machine": "m",
            "date": "d",
            "commit": "c",
        }
    )
    assert "| peer-allphone | peer:1 |" in table
