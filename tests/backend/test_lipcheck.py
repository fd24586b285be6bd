"""backend/lipcheck: the geometric lip-sync checks on hand-made gap curves."""

import numpy as np

from backend import lipcheck

PHONES = [
    (0.0, 0.2, "sil"),
    (0.2, 0.28, "M"),
    (0.28, 0.5, "AA1"),
    (0.5, 0.58, "p"),
    (0.58, 0.8, "IY"),
    (0.8, 1.0, "sil"),
]


def _gap(closed_at: list[int], n: int = 25, open_mm: float = 9.0) -> np.ndarray:
    gap = np.full(n, open_mm)
    gap[closed_at] = 0.5
    return gap


def test_closure_counts_a_bilabial_closed_when_some_frame_of_it_closes():
    # M spans frames 5..7 (0.2-0.28 s at 25 fps), P frames 12..14
    assert lipcheck.closure(_gap([6, 13]), PHONES) == (1.0, 2)
    assert lipcheck.closure(_gap([6]), PHONES) == (0.5, 2)
    assert lipcheck.closure(_gap([]), PHONES) == (0.0, 2)
    # one frame of slack either side: a closure just before the phone still counts, two frames before does not
    assert lipcheck.closure(_gap([4, 11]), PHONES) == (1.0, 2)
    assert lipcheck.closure(_gap([3, 10]), PHONES) == (0.0, 2)


def test_bilabial_min_gap_is_how_near_each_m_p_b_comes_to_closing():
    gap = _gap([6])
    gap[11] = 3.0  # the P (frames 12..14, slack 11..15) comes within 3 mm, the M closes
    assert lipcheck.bilabial_min_gaps(gap, PHONES).tolist() == [0.5, 3.0]
    assert lipcheck.bilabial_min_gaps(gap, [(0.0, 1.0, "AA")]).shape == (0,)


def test_no_bilabials_is_undefined_not_zero():
    share, n = lipcheck.closure(np.zeros(25), [(0.0, 1.0, "AA")])
    assert n == 0 and share != share


def test_vowel_gap_takes_only_vowel_frames():
    gap = np.arange(25, dtype=float)
    v = lipcheck.vowel_frames(gap, PHONES)
    assert set(v) == set(range(7, 13)) | set(range(14, 20))
    res = lipcheck.summarise([gap, gap], [PHONES, PHONES])
    assert res["bilabials"] == 4 and res["vowel_frames"] == 2 * len(v)
    assert res["vowel_gap_mm"] == float(np.median(v))


def test_frame_classes_put_each_frame_in_the_phone_its_centre_lies_in():
    cls = lipcheck.frame_classes(PHONES + [(1.0, 1.08, "S")], 28)
    names = [lipcheck.FRAME_CLASSES[c] for c in cls]
    expect = ["pause"] * 5 + ["mbp"] * 2 + ["vowel"] * 5 + ["mbp"] * 2 + ["vowel"] * 6 + ["pause"] * 5
    assert names == expect + ["consonant"] * 2 + ["pause"]
