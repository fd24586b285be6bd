"""Windowing of long clips: the plan covers every frame, and seams keep position and velocity."""

from __future__ import annotations

import numpy as np
import pytest

from backend import windows


@pytest.mark.parametrize(
    "n,w,overlap",
    [(10, 20, 5), (20, 20, 5), (21, 20, 5), (250, 100, 25), (1500, 750, 50), (7501, 750, 50), (101, 10, 3)],
)
def test_plan_covers_with_at_least_the_overlap(n, w, overlap):
    spans = windows.plan(n, w, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(e - s == min(w, n) for s, e in spans)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s0 < s1 and e1 > e0 and e0 - s1 >= overlap


def test_fade_is_c1_and_complementary():
    f = windows.fade(50)
    assert np.all(np.diff(f) > 0) and 0 < f[0] < 0.01 and 0.99 < f[-1] < 1
    np.testing.assert_allclose(f + f[::-1], 1.0, atol=1e-6)
    d = np.diff(f)
    assert d[0] < 0.1 * d.max() and d[-1] < 0.1 * d.max(), "slope must vanish at both ends"


def smooth_track(n: int, dims: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] / 25.0
    freqs, phases = rng.uniform(0.3, 3.0, dims), rng.uniform(0, 6, dims)
    return np.sin(2 * np.pi * freqs * t + phases).astype(np.float32)


def test_blend_of_agreeing_windows_is_exact():
    truth = smooth_track(250)
    spans = windows.plan(250, 100, 25)
    out = windows.blend([truth[s:e] for s, e in spans], spans)
    np.testing.assert_allclose(out, truth, atol=1e-6)


def test_seams_keep_position_and_velocity():
    """Windows that disagree (independent samples of the same speech): no jump, no kink."""
    n, w, overlap = 400, 120, 40
    spans = windows.plan(n, w, overlap)
    rng = np.random.default_rng(1)
    truth = smooth_track(n)
    # each window = truth + its own slowly varying deviation (what two diffusion samples differ by)
    pieces = [
        truth[s:e] + 0.3 * smooth_track(e - s, seed=10 + i) + rng.normal(0, 1.0, 4).astype(np.float32)
        for i, (s, e) in enumerate(spans)
    ]
    out = windows.blend(pieces, spans)
    vel = np.diff(out, axis=0)
    within = np.concatenate([np.abs(np.diff(p, axis=0)) for p in pieces]).max()
    for i in range(1, len(spans)):
        s, e_prev = spans[i][0], spans[i - 1][1]
        a, b = pieces[i - 1], pieces[i]
        # where the fade begins the blend follows window i-1 (position and velocity) ...
        np.testing.assert_allclose(out[s], a[s - spans[i - 1][0]], atol=0.02)
        np.testing.assert_allclose(vel[s - 1], np.diff(a, axis=0)[s - 1 - spans[i - 1][0]], atol=0.01)
        # ... and where it ends it follows window i
        np.testing.assert_allclose(out[e_prev - 1], b[e_prev - 1 - s], atol=0.02)
        np.testing.assert_allclose(vel[e_prev - 1], np.diff(b, axis=0)[e_prev - 1 - s], atol=0.01)
        # inside the fade the speed stays within what the windows themselves do (plus w'·|b-a|)
        gap = np.abs(a[s - spans[i - 1][0] :] - b[: e_prev - s]).max()
        assert np.abs(vel[s - 1 : e_prev]).max() <= within + np.pi / (2 * (e_prev - s)) * gap + 1e-4
    # the windows do disagree: a hard cut mid-overlap would jump by more than any frame step
    cut = (spans[0][1] + spans[1][0]) // 2
    hard_jump = np.abs(pieces[1][cut - spans[1][0]] - pieces[0][cut - spans[0][0]]).max()
    assert hard_jump > 1.5 * np.abs(vel).max()


def test_merge_scores_are_frame_weighted():
    from backend.engine import AnimateResult, Take

    spans = [(0, 100), (60, 160), (120, 220)]
    results = [
        AnimateResult(
            [Take(7, np.zeros((100, 50), np.float32), np.zeros((100, 3), np.float32), sc)],
            {"sample": 1.0},
            lip_guidance=g,
        )
        for sc, g in ((0.2, 1.0), (0.5, 1.2), (0.8, 1.4))
    ]
    merged = windows.merge(results, spans)
    assert merged.takes[0].exp.shape == (220, 50) and merged.takes[0].seed == 7
    assert merged.takes[0].score == pytest.approx(0.5)
    assert merged.lip_guidance == pytest.approx(1.2)  # each window's mean-lips guidance, frame-weighted
    assert merged.timings["sample"] == 3.0 and merged.timings["windows"] == 3
