"""Lip-sync and diversity metrics on vertex sequences (paper Table 2), numpy only.

Conventions (all distances in millimetres; vertices are given in metres):
- LVE: per frame, the largest Euclidean distance over the lip vertices between
  prediction and (pseudo-)ground truth; averaged over frames (not squared).
- L-CCC / L-PCC: each coordinate of each mouth-region vertex is a time series;
  Lin's concordance and Pearson correlation between truth and prediction, averaged
  over series (constant series are skipped).
- Lip DTW: dynamic time warping cost (|a - b| per step, divided by the two
  lengths' sum, mm) between the upper-lower lip mid-point distance curves.
- FDD (CodeTalker): per vertex, std over time of its displacement norm from the
  template; truth minus prediction, averaged over the region (mm; >0: too stiff).
- S-DIV / T-DIV: distances of each vertex to the truth per sample; the std over
  samples (S-DIV) and over time (T-DIV), averaged (mm).
- Spread about the mean (`spread_about_mean`): each vertex's distance from its own mean
  along an axis, averaged (mm): over time, how much a region moves (no truth needed);
  over draws or takes of one utterance, how much they differ.
Regions: U = `upper_face`, L = `mouth`.
"""

from __future__ import annotations

import numpy as np

MM = 1000.0


def lip_errors(pred: np.ndarray, gt: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """Per frame, the largest distance over the lip vertices (mm): LVE before its mean."""
    return np.linalg.norm(pred[:, lips] - gt[:, lips], axis=-1).max(axis=1) * MM


def lve(pred: np.ndarray, gt: np.ndarray, lips: np.ndarray) -> float:
    """pred, gt (T, V, 3) metres -> mm."""
    return float(lip_errors(pred, gt, lips).mean())


def _series(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return x[:, idx].reshape(len(x), -1)


def lip_correlations(pred: np.ndarray, gt: np.ndarray, mouth: np.ndarray) -> tuple[float, float]:
    """(L-CCC, L-PCC) over mouth-region coordinate series."""
    p, g = _series(pred, mouth).astype(np.float64), _series(gt, mouth).astype(np.float64)
    mp, mg = p.mean(0), g.mean(0)
    vp, vg = p.var(0), g.var(0)
    cov = ((p - mp) * (g - mg)).mean(0)
    ok = (vg > 1e-16) & (vp > 1e-16)
    if not ok.any():
        return 0.0, 0.0
    cov, vp, vg, mp, mg = cov[ok], vp[ok], vg[ok], mp[ok], mg[ok]
    ccc = 2 * cov / (vp + vg + (mp - mg) ** 2)
    pcc = cov / np.sqrt(vp * vg)
    return float(ccc.mean()), float(pcc.mean())


def lip_distance(verts: np.ndarray, upper: int, lower: int) -> np.ndarray:
    """Upper-lower lip mid-point distance per frame (mm)."""
    return np.linalg.norm(verts[:, upper] - verts[:, lower], axis=-1) * MM


def dtw(a: np.ndarray, b: np.ndarray) -> float:
    """DTW cost between 1-D sequences with |a_i - b_j| steps, divided by len(a) + len(b).

    Filled one anti-diagonal at a time (each depends on the two before), so the
    work is vectorised and a 250 x 250 problem takes milliseconds.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n, m = len(a), len(b)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for k in range(2, n + m + 1):  # k = i + j over 1-based cells
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        best = np.minimum(np.minimum(acc[i - 1, j - 1], acc[i - 1, j]), acc[i, j - 1])
        acc[i, j] = np.abs(a[i - 1] - b[j - 1]) + best
    return float(acc[n, m] / (n + m))


def spread_about_mean(verts: np.ndarray, axis: int = 0) -> float:
    """Mean distance (mm) of every vertex from its mean along `axis`: verts (T, V, 3), axis 0:
    motion over time; (D, T, V, 3), axis 0: spread over draws (metres in)."""
    v = np.asarray(verts, np.float64)
    return float(np.linalg.norm(v - v.mean(axis=axis, keepdims=True), axis=-1).mean() * MM)


def fdd(pred: np.ndarray, gt: np.ndarray, template: np.ndarray, region: np.ndarray) -> float:
    dyn = lambda x: np.linalg.norm(x[:, region] - template[region], axis=-1).std(axis=0)
    return float((dyn(gt) - dyn(pred)).mean() * MM)


def diversity(samples: np.ndarray, gt: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """(S-DIV, T-DIV) for samples (S, T, V, 3) against gt (T, V, 3)."""
    d = np.linalg.norm(samples[:, :, region] - gt[None, :, region], axis=-1) * MM  # (S, T, Vr)
    s_div = float(d.std(axis=0).mean()) if len(samples) > 1 else 0.0
    return s_div, float(d.std(axis=1).mean())


def utterance_metrics(samples: np.ndarray, gt: np.ndarray, head: dict) -> dict:
    """All per-utterance metrics; samples (S, T, V, 3), gt (T, V, 3), head = head.npz dict."""
    lips, mouth, upper = head["region_lips"], head["region_mouth"], head["region_upper_face"]
    up, lo = int(head["lip_upper"]), int(head["lip_lower"])
    per = []
    gt_lip = lip_distance(gt, up, lo)
    for s in samples:
        ccc, pcc = lip_correlations(s, gt, mouth)
        per.append(
            {
                "lve": lve(s, gt, lips),
                "l_ccc": ccc,
                "l_pcc": pcc,
                "lip_dtw": dtw(lip_distance(s, up, lo), gt_lip),
                "fdd_u": fdd(s, gt, head["v_template"], upper),
                "fdd_l": fdd(s, gt, head["v_template"], mouth),
            }
        )
    out = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    out["s_div_u"], out["t_div_u"] = diversity(samples, gt, upper)
    out["s_div_l"], out["t_div_l"] = diversity(samples, gt, mouth)
    # how much the upper face moves over time (mean distance of its vertices from their own
    # mean position), the takes' next to the pseudo-GT's: a face can match the GT's spread
    # (T-DIV) while standing still
    out["motion_u"] = float(np.mean([spread_about_mean(s[:, upper]) for s in samples]))
    out["motion_u_gt"] = spread_about_mean(gt[:, upper])
    out["per_sample_lve"] = [p["lve"] for p in per]
    return out


def spearman(a, b) -> float:
    """Rank correlation (ties averaged); NaN when either side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
