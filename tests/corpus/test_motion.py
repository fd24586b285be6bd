"""Motion side: the hard constraints lips obey, coarticulation, draws, kinematics, tracker."""

import numpy as np
import torch

from training.corpus.articulation import RATE, articulate
from training.corpus.face import clean_motion, draw_motion
from training.corpus.kinematics import Kinematics
from training.corpus.phones import SIL
from training.corpus.report import CLOSED_MM
from training.corpus.speakers import draw_style

STYLE = draw_style(np.random.default_rng(0))


def _seq(labels, dur=0.09, lead=0.3, tail=0.3):
    """Phones at `dur` s each between pauses."""
    phones, t = [(0.0, lead, SIL)], lead
    for lab in labels:
        phones.append((t, t + dur, lab))
        t += dur
    phones.append((t, t + tail, SIL))
    return phones, t + tail


def _at(track, t):
    return track[int(t * RATE)]


def test_bilabials_close_the_lips(face):
    # p/b/m between the most open vowels, for several speaking styles
    labels = ["AA", "P", "AA", "B", "AE", "M", "AA", "P", "IY", "M", "UW"]
    phones, dur = _seq(labels, dur=0.07)
    for k in range(5):
        style = draw_style(np.random.default_rng(k))
        psi, jaw = clean_motion(face, phones, dur, style, np.random.default_rng(k))
        d = face.lip_distance(psi, jaw) * 1000
        for s, e, lab in phones:
            frame = int(0.5 * (s + e) * 25)
            if lab in ("P", "B", "M"):
                assert d[frame] < CLOSED_MM, (k, lab, d[frame])
            if lab == "AA":
                assert d[frame] > 3 * CLOSED_MM, (k, lab, d[frame])


def test_labiodentals_tuck_and_pauses_relax():
    phones, dur = _seq(["AA", "F", "AA", SIL, "V", "AE"], dur=0.1)
    phones[4] = (phones[4][0], phones[4][0] + 0.5, SIL)  # a long pause
    phones = phones[:5] + [(p[0] + 0.4, p[1] + 0.4, p[2]) for p in phones[5:]]
    lips, jaw = articulate(phones, dur + 0.4, STYLE)
    f = phones[2]
    assert _at(lips["lower_lip_tuck"], 0.5 * (f[0] + f[1])) > 0.9
    pause = phones[4]
    mid = 0.5 * (pause[0] + pause[1])
    assert _at(jaw, mid) < 1e-3 and max(_at(v, mid) for v in lips.values()) < 1e-3
    assert _at(jaw, 0.5 * (phones[1][0] + phones[1][1])) > 0.1  # the open vowel opens the jaw


def test_jaw_follows_openness_and_rounding_anticipates():
    phones, dur = _seq(["IY", "T", "AA", "T", "UW"], dur=0.15)
    lips, jaw = articulate(phones, dur, STYLE)
    c = [0.5 * (s + e) for s, e, _ in phones]
    assert _at(jaw, c[3]) > _at(jaw, c[1]) and _at(jaw, c[3]) > _at(jaw, c[5])
    # the consonant before a rounded vowel is already rounding; the one before a spread vowel is not
    t_before_uw = phones[4]
    t_before_aa = phones[2]
    assert _at(lips["pucker"], 0.5 * sum(t_before_uw[:2])) > 3 * _at(lips["pucker"], 0.5 * sum(t_before_aa[:2])) + 1e-3


def test_two_draws_agree_on_lips_and_differ_above(face, head_dir):
    phones, dur = _seq(["HH", "AH", "L", "OW", "W", "ER", "L", "D", "AA", "M", "P"] * 3, dur=0.09)
    a = draw_motion(face, phones, dur, STYLE, np.random.SeedSequence(1))
    b = draw_motion(face, phones, dur, STYLE, np.random.SeedSequence(2))
    a2 = draw_motion(face, phones, dur, STYLE, np.random.SeedSequence(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, a2))
    la = face.lip_distance(*[x.astype(float) for x in a]) * 1000
    lb = face.lip_distance(*[x.astype(float) for x in b]) * 1000
    assert np.abs(la - lb).mean() < 0.5 and np.corrcoef(la, lb)[0, 1] > 0.95
    upper = Kinematics.from_head_dir(head_dir, face.regions["upper_face"][::3])
    diff = np.sqrt(
        ((upper.vertices(*[x.astype(float) for x in a]) - upper.vertices(*[x.astype(float) for x in b])) ** 2).sum(-1)
    ).max(1)
    assert (diff > 0.001).mean() > 0.1  # blinks, brows, mood: mm-scale differences


def test_numpy_kinematics_match_the_torch_head(head_dir):
    from training.head.flame import HeadModel

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.5, (4, 50)), rng.normal(0, 0.1, (4, 3))], 1)
    model = HeadModel(head_dir)
    v_torch = model(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    idx = np.arange(0, v_torch.shape[1], 7)
    v_np = Kinematics.from_head_dir(head_dir, idx).vertices(x[:, :50], x[:, 50:])
    assert np.abs(v_np - v_torch[:, idx]).max() < 1e-5


def test_tracker_pseudo_gt_is_close_but_noisy(face):
    phones, dur = _seq(["AA", "M", "IY", "F", "UW", "S"] * 4, dur=0.1)
    psi, jaw = clean_motion(face, phones, dur, STYLE, np.random.default_rng(0))
    e, j = face.tracker.pseudo_gt(psi, jaw, np.random.default_rng(1))
    full = face.tracker.kin
    err = np.linalg.norm(full.vertices(e.astype(float), j.astype(float)) - full.vertices(psi, jaw), axis=-1)
    assert 1e-5 < err.mean() < 5e-4  # tracker-like: sub-millimetre, never exact
    assert np.abs(j - jaw).max() < 0.03


def test_short_clips_stay_in_range(face):
    """Slow random drifts are scaled by their stationary spread, so a 0.6 s clip is not blown up."""
    phones, dur = _seq(["F", "AO", "R"], dur=0.1, lead=0.15, tail=0.15)
    for k in range(20):
        psi, jaw = clean_motion(face, phones, dur, draw_style(np.random.default_rng(k)), np.random.default_rng(k))
        assert np.abs(psi).max() < 6 and -0.01 < jaw[:, 0].min() and jaw[:, 0].max() < 0.4
