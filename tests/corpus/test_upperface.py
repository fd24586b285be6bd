"""The upper face: blinks at a human rate that close fully, draws that differ above the
mouth and agree on the lips, `corpus redraw`, and denoiser batches that use the draws."""

import json

import numpy as np
import pytest
import torch

from training.corpus.articulation import RATE
from training.corpus.face import clean_motion, controls_to_flame, draw_motion, n_frames_for
from training.corpus.io import motion_arrays, write_npz, write_wav
from training.corpus.kinematics import Kinematics
from training.corpus.phones import SIL
from training.corpus.redraw import redraw
from training.corpus.report import LIPS_AGREE_MM, UPPER_SPREAD_MM, count_blinks
from training.corpus.speakers import draw_style
from training.corpus.upperface import BLINK_RATE_PER_MIN, accent_times, upper_face
from training.metrics import spread_about_mean

WORDS = ["HH", "AH", "L", "OW", "W", "ER", "L", "D", "AA", "M", "P"]


def _speech(n_phrases: int, seed: int = 0, phone_s: float = 0.09):
    """Phrases of 6-14 phones between pauses of 0.1-0.8 s: (phones, duration, stressed)."""
    rng = np.random.default_rng(seed)
    phones, stressed, t = [(0.0, 0.3, SIL)], [False], 0.3
    for _ in range(n_phrases):
        for k in range(int(rng.integers(6, 15))):
            lab = WORDS[int(rng.integers(len(WORDS)))]
            phones.append((t, t + phone_s, lab))
            stressed.append(k % 4 == 1)
            t += phone_s
        pause = float(rng.uniform(0.1, 0.8))
        phones.append((t, t + pause, SIL))
        stressed.append(False)
        t += pause
    return phones, t, stressed


def _blinks(face, exp):
    return count_blinks(face.lid_gaps(np.asarray(exp, np.float64)), float(face.lid_rest.mean()))


def _upper_only(face, phones, dur, style, rng, stressed):
    """psi of the upper-face stream alone (the articulation of a 5-minute talk takes seconds)."""
    t = np.arange(int(dur * RATE)) / RATE
    tracks = upper_face(t, phones, accent_times(phones, stressed), style, rng)
    return controls_to_flame(face, tracks, np.zeros(len(t)), n_frames_for(dur), 0.0)[0]


def test_blink_rate_in_range_and_more_at_pauses(face):
    """Six renditions of a 5-minute talk: the rate is the speakers' (15-26 per minute)."""
    phones, dur, stressed = _speech(200)
    rates, in_pause, pause_time = [], [], sum(e - s for s, e, lab in phones if lab == SIL) / dur
    for k in range(6):
        style = draw_style(np.random.default_rng(k))
        psi = _upper_only(face, phones, dur, style, np.random.default_rng(100 + k), stressed)
        n, _ = _blinks(face, psi)
        rates.append(n / dur * 60)
        g = face.lid_gaps(psi).mean(1)
        shut = np.nonzero((g[1:] < 0.25 * face.lid_rest.mean()) & (g[:-1] >= 0.25 * face.lid_rest.mean()))[0]
        in_pause += [any(s <= (f + 1) / 25 < e + 0.2 for s, e, lab in phones if lab == SIL) for f in shut]
    lo, hi = BLINK_RATE_PER_MIN
    assert lo <= np.mean(rates) <= hi, rates
    assert all(0.7 * lo <= r <= 1.3 * hi for r in rates), rates
    # blinks cluster at pauses: a larger share of them than of the time
    assert np.mean(in_pause) > 1.3 * pause_time, (np.mean(in_pause), pause_time)


def test_every_blink_closes_the_lids(face):
    """Clean motion: every blink's lid rims meet; pseudo-ground-truth: to the tracker's noise."""
    phones, dur, stressed = _speech(20)
    tracked = []
    for k in range(3):
        style = draw_style(np.random.default_rng(k))
        psi, _ = clean_motion(face, phones, dur, style, np.random.default_rng(k), stressed)
        n, full = _blinks(face, psi)
        assert n >= 3 and full == n, (n, full)
        g = face.lid_gaps(psi).min(0) * 1000
        assert np.all(np.abs(g) < 0.3), g  # the rims meet (within the small psi noise), not overshoot
        exp, _ = draw_motion(face, phones, dur, style, np.random.SeedSequence(k), stressed)
        tracked.append(_blinks(face, exp))
    n, full = np.sum(tracked, axis=0)
    assert n >= 10 and full >= 0.9 * n, tracked


def test_blink_closes_against_raised_brows_and_wide_eyes(face):
    """A blink envelope at 1 meets the lids whatever else holds them open or narrows them."""
    T = 4
    for others in ({"brow_raise": 1.0, "eye_wide": 1.0}, {"squint": 1.0}, {}):
        tracks = {k: np.full(T, v) for k, v in others.items()}
        tracks["blink_L"] = np.array([0.0, 0.5, 1.0, 1.0])
        tracks["blink_R"] = tracks["blink_L"].copy()
        gaps = face.lid_gaps(face.weights(tracks, 0.0) @ face.coeffs) * 1000
        assert np.abs(gaps[2:]).max() < 0.05, (others, gaps)
        assert gaps[0].min() > 4.0  # open before
    # the plain blink control is both halves
    W = face.weights({"blink": np.ones(2)}, 0.0)
    assert np.abs(face.lid_gaps(W @ face.coeffs)).max() < 5e-5


def test_draws_agree_on_lips_and_differ_above(face, head_dir):
    """Four draws of a 12 s utterance: lip distance within LIPS_AGREE_MM of each other (the
    report's bar), upper-face vertices at least UPPER_SPREAD_MM (0.25 mm) from the draws' mean."""
    phones, dur, stressed = _speech(10, seed=3)
    style = draw_style(np.random.default_rng(7))
    draws = [draw_motion(face, phones, dur, style, np.random.SeedSequence([5, d]), stressed) for d in range(4)]
    lips = np.stack([face.lip_distance(e.astype(float), j.astype(float)) for e, j in draws]) * 1000
    assert np.abs(lips[1:] - lips[0]).mean() < LIPS_AGREE_MM
    assert min(np.corrcoef(lips)[0, 1:]) > 0.97
    upper = Kinematics.from_head_dir(head_dir, face.regions["upper_face"][::4])
    v = np.stack([upper.vertices(e.astype(float), j.astype(float)) for e, j in draws])
    assert spread_about_mean(v, axis=0) >= UPPER_SPREAD_MM
    # and the jaw (articulation) is the same but for the tracker's fit noise
    assert max(np.abs(j[:, 0] - draws[0][1][:, 0]).mean() for _, j in draws) < 0.005


def _mini_corpus(root, face, n: int = 4):
    """A corpus in the docs/corpus.md layout made by the engine itself (no synthesiser):
    noise for audio, phones from _speech, one speaker with a style."""
    (root / "wav").mkdir(parents=True)
    (root / "motion").mkdir()
    style = draw_style(np.random.default_rng(1))
    utts = []
    for k in range(n):
        phones, dur, stressed = _speech(2 + k % 2, seed=k)
        exp, jaw = draw_motion(face, phones, dur, style, np.random.SeedSequence(k), stressed)
        uid = f"sp0-{k:04d}"
        write_wav(root / "wav" / f"{uid}.wav", np.random.default_rng(k).normal(0, 0.05, int(dur * 16000)))
        write_npz(root / "motion" / f"{uid}.npz", motion_arrays(exp, jaw, phones, [], "sp0", "espeak", "x", stressed))
        split = "train" if k < n - 1 else "val"
        n_frames = int(np.floor(dur * 25 + 1e-9))
        utts.append({"id": uid, "wav": f"wav/{uid}.wav", "motion": f"motion/{uid}.npz", "speaker": "sp0"})
        utts[-1].update(source="espeak", split=split, duration=round(dur, 6), n_frames=n_frames)
    manifest = {
        "version": 1,
        "fps": 25,
        "sample_rate": 16000,
        "head_id": face.head_id,
        "speakers": {"sp0": {"source": "espeak", "split": "train", "style": style}},
        "utterances": utts,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def redrawn(tmp_path_factory, face, head_dir):
    root = tmp_path_factory.mktemp("upper")
    src = _mini_corpus(root / "src", face)
    redraw(src, root / "k3", str(head_dir), draws=3, seed=0, workers=1)
    return src, root / "k3"


def _bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "motion").glob("*.npz"))}


def test_redraw_writes_k_draws_deterministically(redrawn, tmp_path, face, head_dir):
    from training.corpus.dataset import load_corpus

    src, k3 = redrawn
    corpus = load_corpus(k3)
    assert all(corpus.n_draws(u) == 3 for u in corpus.utterances)
    u = corpus.utterances[0]
    assert corpus.motion(u)["exp"].shape == corpus.motion(u, 2)["exp"].shape
    assert not np.array_equal(corpus.motion(u)["exp"], corpus.motion(u, 1)["exp"])
    assert np.array_equal(corpus.audio(u), load_corpus(src).audio(u["id"]))  # the speech is the source's
    # same seed, same bytes, whatever the worker count; another seed differs
    redraw(src, tmp_path / "again", str(head_dir), draws=3, seed=0, workers=2)
    assert _bytes(tmp_path / "again") == _bytes(k3)
    redraw(src, tmp_path / "other", str(head_dir), draws=3, seed=1, workers=1)
    assert all(a != b for a, b in zip(_bytes(tmp_path / "other").values(), _bytes(k3).values()))
    # a redraw never writes into its source, and a different redraw into a finished one is refused
    with pytest.raises(ValueError, match="source corpus"):
        redraw(src, src, str(head_dir), draws=2)
    with pytest.raises(ValueError, match="other settings"):
        redraw(src, k3, str(head_dir), draws=2)


def test_loader_picks_different_draws(redrawn):
    from training.denoiser.data import all_frames, load_split_audio, random_batch

    src, k3 = redrawn
    data = load_split_audio(k3, "train")
    assert all(len(u.all_draws) == 3 for u in data)
    b = random_batch(data, np.random.default_rng(0), 64, 20)
    assert set(b["draws"].tolist()) == {0, 1, 2}
    for k in range(8):  # each window is its chosen draw's frames
        u = data[b["idx"][k]]
        x = u.all_draws[b["draws"][k]][b["starts"][k] : b["starts"][k] + 20]
        assert torch.equal(b["x"][k], torch.from_numpy(x))
    assert len(all_frames(data)) == 3 * sum(len(u.x) for u in data)
    # a corpus without draws: draw 0 every time, and the same windows as before draws existed
    plain = load_split_audio(src, "train")
    one = random_batch(plain, np.random.default_rng(0), 64, 20)
    assert not one["draws"].any()
    first = [type(u)(u.id, u.speaker, u.feats, u.x, u.audio) for u in data]  # draw 0 only
    again = random_batch(first, np.random.default_rng(0), 64, 20)
    assert list(again["starts"]) == list(one["starts"]) and list(again["idx"]) == list(one["idx"])


def test_encoded_draws_survive_the_feature_cache(redrawn, tmp_path):
    from training.denoiser.data import encode_split
    from training.speech.encoder import EncoderConfig, SpeechEncoder

    _, k3 = redrawn
    torch.manual_seed(0)
    enc = SpeechEncoder(EncoderConfig(kind="logmel", hidden=16, layers=1, heads=2, ff=32))
    fresh = encode_split(k3, enc, "train", tmp_path)
    cached = encode_split(k3, enc, "train", tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    for a, b in zip(fresh, cached):
        assert len(b.all_draws) == 3
        assert all(np.array_equal(x, y) for x, y in zip(a.all_draws, b.all_draws))
