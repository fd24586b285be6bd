"""Lip seal (blender_thunder/core/lipseal.py), bpy-free: the take's lips measured on the real
stand-in head, a character's lips calibrated from what its shapes do to them, and the seal that
makes the character close on m/p/b and open on vowels whatever its shapes do.

The character here is two lip points and what each ARKit shape moves them by, with the Face
Units head's numbers (studio/characters/faceunits.py, reports/retarget-character.md): lip points
1.5 mm apart at rest, mostly the upper lip overhanging, and mouthPress / mouthSmile lifting the
lower lip 1.4-1.5 mm per side. The end-to-end check on the real mesh in Blender is
tests/studio/test_retarget_character.py."""

from __future__ import annotations

import numpy as np
import pytest

from backend import lipcheck
from blender_thunder.core import lipseal, retarget

# upper-minus-lower lip vector (mm, x y z: face towards -y, z up) that each shape adds at full weight
MOVES = {
    "jawOpen": (-0.4, -17.0, 34.5),
    "mouthClose": (0.4, 16.9, -34.5),
    "mouthFunnel": (-0.9, -3.4, 14.0),
    "mouthPucker": (0.0, 0.5, -0.9),
    "mouthPressLeft": (-1.2, -0.2, -1.4),
    "mouthPressRight": (1.2, -0.2, -1.4),
    "mouthSmileLeft": (0.1, -0.1, -1.5),
    "mouthSmileRight": (-0.1, -0.1, -1.5),
    "mouthLowerDownLeft": (0.0, 0.6, 1.9),
    "mouthLowerDownRight": (0.0, 0.6, 1.9),
    "mouthRollLower": (0.0, -4.6, -3.8),
    "eyeBlinkLeft": (0.0, 0.0, 0.0),
    "eyeBlinkRight": (0.0, 0.0, 0.0),
}
REST = (0.0, -1.34, 0.67)
# Speech with ten bilabials, each next to a vowel, some rounded.
WORDS = "SIL M AA P IY B AA M UW P OW B AE M IY P AA B UW M AA SIL"


@pytest.fixture(scope="module")
def head(head_npz):
    z = np.load(head_npz)
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def mapping():
    return retarget.bind(retarget.presets()["arkit52"], list(MOVES))[0]


@pytest.fixture(scope="module")
def cal(mapping):
    lips = np.array([[0.0, 0.0, 0.0], [0.0, -REST[1], -REST[2]]]) / 1000.0  # upper, lower (m)
    offsets = {k: np.array([[0.0, 0.0, 0.0], [-x / 1000.0 for x in v]]) for k, v in MOVES.items()}
    return lipseal.calibrate(mapping, lips, offsets)


def _gap(weights: dict) -> np.ndarray:
    vec = np.asarray(REST)[None] + sum(
        np.asarray(w, np.float64)[:, None] * np.asarray(MOVES[k]) for k, w in weights.items()
    )
    return np.linalg.norm(vec, axis=1)


@pytest.fixture(scope="module")
def take(head_dir):
    """Pseudo-truth speech motion of WORDS (the corpus's articulation, the motion the model learns),
    with a steady smile as a speaker's mood adds one."""
    from training.corpus.articulation import RATE, articulate
    from training.corpus.face import Face, controls_to_flame
    from training.peers.allphone import NEUTRAL_STYLE

    labels = WORDS.split()
    dur = [0.25 if lab == "SIL" else 0.09 if lab in lipcheck.BILABIAL else 0.14 for lab in labels]
    ends = np.cumsum(dur)
    phones = [(float(e - d), float(e), lab) for e, d, lab in zip(ends, dur, labels)]
    lips, jaw_open = articulate(phones, float(ends[-1]), NEUTRAL_STYLE)
    lips["smile"] = np.full(len(jaw_open), 0.6)
    n = int(round(float(ends[-1]) * 25))
    assert len(jaw_open) >= n * RATE // 25
    exp, jaw = controls_to_flame(Face.load(head_dir), lips, jaw_open, n, 0.0)
    return exp, jaw, phones


def _weights(head, mapping, exp, jaw):
    return retarget.apply(mapping, retarget.solve_for_head(exp, jaw, head))


def test_contact_is_the_projects_definition_of_closed_lips():
    assert lipseal.LIP_CONTACT_MM == lipcheck.CLOSED_MM


def test_seal_channels_of_the_presets():
    presets = retarget.presets()
    assert lipseal.seal_channels(presets["arkit52"]) == ("jawOpen", "mouthClose")
    assert lipseal.seal_channels(presets["vrm_visemes"]) is None
    assert lipseal.seal_channels(presets["thunder_exp"]) is None


def test_source_lips_measure_the_stand_ins_rig(head):
    z = np.zeros((3, 50))
    jaw = np.array([[0.0, 0, 0], [retarget.JAW_OPEN_RAD, 0, 0], [0.5 * retarget.JAW_OPEN_RAD, 0, 0]])
    src = lipseal.source_lips(z, jaw, head)
    assert 20.0 < src.jaw_mm < 60.0  # a wide-open jaw parts the lips by centimetres
    assert src.opening_mm[0] == pytest.approx(0.0, abs=1e-9)
    assert src.opening_mm[1] == pytest.approx(src.jaw_mm, rel=1e-9)
    assert 0.4 * src.jaw_mm < src.opening_mm[2] < 0.6 * src.jaw_mm
    assert 0.0 < src.contact_mm <= lipseal.LIP_CONTACT_MM
    with pytest.raises(ValueError, match="lacks 'lip_upper'"):
        lipseal.source_lips(z, jaw, {k: v for k, v in head.items() if k != "lip_upper"})


def test_calibration_round_trips_and_refuses_nonsense(cal, mapping):
    assert cal.opener == "jawOpen" and cal.closer == "mouthClose"
    assert cal.jaw_mm == pytest.approx(np.linalg.norm(MOVES["jawOpen"]))
    assert cal.opening_mm("mouthPressLeft") < 0 < cal.opening_mm("mouthFunnel")
    assert 0.3 < cal.contact_mm < 0.9  # 1.5 mm apart at rest: little room left under 2 mm
    assert lipseal.LipCalibration.from_dict(cal.to_dict()) == cal
    bad = cal.to_dict()
    bad["moves_mm"]["mouthClose"] = [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="does not close the lips"):
        lipseal.LipCalibration.from_dict(bad)
    with pytest.raises(ValueError, match="not a lip calibration"):
        lipseal.LipCalibration.from_dict({"opener": "jawOpen"})
    lips = np.zeros((2, 3))
    with pytest.raises(ValueError, match="opens the lips only"):
        lipseal.calibrate(mapping, lips, {"jawOpen": np.zeros((2, 3)), "mouthClose": np.zeros((2, 3))})
    assert lipseal.calibrate(retarget.presets()["vrm_visemes"], lips, {}) is None


def test_sealed_lips_close_on_every_bilabial_and_open_on_vowels(head, mapping, cal, take):
    """The mapping alone leaves this rig's lips apart on most m/p/b (a smile and a press lift its
    lower lip past the upper one); sealed, it closes on >= 95 % as the stand-in does, vowels stay
    open, and only the shapes that move the lips change."""
    exp, jaw, phones = take
    source = lipseal.source_lips(exp, jaw, head)
    standin_gap = 1000 * np.linalg.norm(np.diff(lipseal._head_lips(exp, jaw, head), axis=1)[:, 0], axis=1)
    standin, n = lipcheck.closure(standin_gap, phones)
    assert n == 10 and standin == 1.0  # the take closes the stand-in's lips on every one

    weights = _weights(head, mapping, exp, jaw)
    before, _ = lipcheck.closure(_gap(weights), phones)
    sealed = lipseal.seal(weights, source, cal)
    after, _ = lipcheck.closure(_gap(sealed), phones)
    assert before < 0.9, before  # the failure this module fixes is there to fix
    assert after >= 0.95, (before, after)
    vowels = lipcheck.vowel_frames(_gap(sealed), phones)
    assert np.median(vowels) >= np.linalg.norm(REST) + 5.0

    assert np.all(sealed["mouthClose"] <= sealed["jawOpen"] + 1e-6)
    for k in ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight"):
        np.testing.assert_array_equal(sealed[k], weights[k])
    for k in weights:
        if k != "mouthClose":
            assert np.all(sealed[k] <= weights[k] + 1e-6), k  # shapes only give way, none is added


def test_seal_refuses_curves_of_another_length(head, mapping, cal, take):
    exp, jaw, _ = take
    weights = _weights(head, mapping, exp, jaw)
    with pytest.raises(ValueError, match="like the weights"):
        lipseal.seal(weights, lipseal.source_lips(exp[:-1], jaw[:-1], head), cal)


def test_find_lips_goes_by_what_the_shapes_do():
    """On a strip of mouth: the lower lip is what the opener moves and the closer brings back; jaw
    skin the closer leaves moved is not a lip even where it lies closer to the upper lip, and
    neither is a mouth corner off the middle."""
    x = np.linspace(-0.02, 0.02, 9)
    upper = np.stack([x, np.zeros(9), np.full(9, 0.002)], axis=1)
    lower = np.stack([x, np.zeros(9), np.zeros(9)], axis=1)
    jaw_skin = np.array([[0.0, 0.0005, 0.0015]])  # 0.5 mm from the upper lip's middle
    corner = np.array([[0.02, 0.0, 0.0019]])  # off the middle, touching
    V = np.concatenate([upper, lower, jaw_skin, corner])
    down = np.array([0.0, 0.0, -0.03])
    opener = np.zeros_like(V)
    opener[9:] = down
    closer = np.zeros_like(V)
    closer[9:18] = closer[19] = -down  # the lips (the corner too) come back, the jaw skin does not
    assert lipseal.find_lips(V, opener, closer) == (4, 13)  # the middle of each lip
    with pytest.raises(ValueError, match="no lips found"):
        lipseal.find_lips(V, opener, np.zeros_like(V))
    with pytest.raises(ValueError, match="moves no vertex"):
        lipseal.find_lips(V, np.zeros_like(V), closer)
