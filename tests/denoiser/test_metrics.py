"""Metrics on hand-made vertex sequences with known answers."""

import numpy as np

from training.metrics import diversity, dtw, fdd, lip_correlations, lve, spearman, utterance_metrics


def _head(V=6):
    return {
        "region_lips": np.array([0, 1]),
        "region_mouth": np.array([0, 1, 2]),
        "region_upper_face": np.array([3, 4, 5]),
        "lip_upper": np.int32(0),
        "lip_lower": np.int32(1),
        "v_template": np.zeros((V, 3), np.float32),
    }


def test_lve_is_max_over_lips_in_mm():
    gt = np.zeros((4, 6, 3))
    pred = gt.copy()
    pred[:, 0, 0] = 0.001  # 1 mm on lip vertex 0
    pred[:, 1, 1] = 0.003  # 3 mm on lip vertex 1
    pred[:, 5, 2] = 1.0  # not a lip vertex
    assert abs(lve(pred, gt, np.array([0, 1])) - 3.0) < 1e-9


def test_correlations():
    t = np.linspace(0, 6, 50)
    gt = np.zeros((50, 3, 3))
    gt[:, :, 1] = np.sin(t)[:, None] * 0.01
    gt[:, :, 0] = np.cos(t)[:, None] * 0.01
    ccc, pcc = lip_correlations(gt, gt, np.arange(3))
    assert abs(ccc - 1) < 1e-9 and abs(pcc - 1) < 1e-9
    ccc, pcc = lip_correlations(gt * 2 + 0.01, gt, np.arange(3))
    assert abs(pcc - 1) < 1e-9 and ccc < 0.6  # scaled and shifted: correlated, not concordant
    _, pcc = lip_correlations(-gt, gt, np.arange(3))
    assert abs(pcc + 1) < 1e-9


def test_dtw_forgives_shifts_not_shape():
    t = np.linspace(0, 4 * np.pi, 120)
    a = np.sin(t)
    assert dtw(a, a) == 0.0
    shifted = np.sin(t - 0.3)
    assert dtw(a, shifted) < 0.1 * np.abs(a - shifted).mean()
    assert dtw(a, np.zeros_like(a)) > 0.2
    # against a plain O(nm) recursion on a small case
    x, y = np.array([0.0, 1, 2, 1]), np.array([0.0, 2, 1])
    D = np.full((5, 4), np.inf)
    D[0, 0] = 0
    for i in range(1, 5):
        for j in range(1, 4):
            D[i, j] = abs(x[i - 1] - y[j - 1]) + min(D[i - 1, j - 1], D[i - 1, j], D[i, j - 1])
    assert abs(dtw(x, y) - D[4, 3] / 7) < 1e-12


def test_fdd_and_diversity():
    rng = np.random.default_rng(0)
    gt = np.zeros((30, 6, 3))
    gt[:, 3:, 1] = np.sin(np.linspace(0, 6, 30))[:, None] * 0.002
    still = np.zeros_like(gt)
    assert fdd(still, gt, np.zeros((6, 3)), np.array([3, 4, 5])) > 0  # too stiff: positive
    assert abs(fdd(gt, gt, np.zeros((6, 3)), np.array([3, 4, 5]))) < 1e-12
    same = np.stack([gt] * 4)
    s_div, _ = diversity(same, gt, np.arange(6))
    assert s_div == 0.0
    noisy = gt[None] + rng.normal(0, 0.001, (4, 30, 6, 3))
    s_div, t_div = diversity(noisy, gt, np.arange(6))
    assert 0.2 < s_div < 1.5 and 0.2 < t_div < 1.5
    m = utterance_metrics(noisy, gt, _head())
    assert {"lve", "l_ccc", "l_pcc", "lip_dtw", "fdd_u", "fdd_l", "s_div_u", "t_div_u", "s_div_l", "t_div_l"} <= set(m)
    assert len(m["per_sample_lve"]) == 4
    still_takes = utterance_metrics(np.zeros((2, *gt.shape)), gt, _head())
    assert still_takes["motion_u"] == 0.0 and still_takes["motion_u_gt"] > 0  # a face standing still
    assert abs(utterance_metrics(same, gt, _head())["motion_u"] - still_takes["motion_u_gt"]) < 1e-9


def test_spearman():
    assert spearman([1, 2, 3], [10, 20, 30]) == 1.0
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
