"""Shared lip noise: takes that differ in the upper face but agree on the lips.

Why (training/denoiser/README.md, session 8): with four motion draws per clip the denoiser
learns an upper face worth sampling (S-DIV-U 0.3 mm), but it is also unsure where the lips
go, so independent takes of the demo sentence agreed on the lip opening with a pairwise
correlation of only 0.46-0.67 (3.8 mm spread between takes). An artist wants every take to
say the words the same way and to differ in expression.

How: the sampler's initial noise z_T (one N(0, I) vector per frame in the whitened space
x = mean + chol z) is split into the few directions that move the lip region's vertices and
the rest. The lip part is drawn once from a fixed seed and shared by every take of every
request; the rest stays the take's own (`seed + i`). Each take's noise is still exactly
N(0, I), a take redrawn alone is the same as inside a batch, and the lips of an ODE sampler
(DPM-Solver++, DDIM) start from the same place in every take. The directions are the top
right-singular vectors of the Jacobian of the lip vertices with respect to z at the mean pose
(analytic: the expression part is linear; the jaw's rotation is taken to first order about the
jaw joint), as many as carry LIP_ENERGY of its squared singular values (9 of 53 for the
shipped bundle). Measured on the demo sentence, 4 takes, DPM-Solver++ 8 steps: lip-opening
correlation between takes 0.46-0.67 -> 0.85-0.91, spread between takes 3.8 -> 1.1 mm, expression
spread 0.27 -> 0.22 (the upper face keeps its variety).

Mean lips (a preset's `"lips": "mean"`, every shipped preset since session 9): along the same
directions the take is replaced by the denoiser's first prediction, made at the top of the
schedule from almost pure noise: the model's conditional mean of the motion given the speech,
what a deterministic model would answer. Guided (`lip_guidance` g: null + g (speech - null), one
extra null-audio pass on that step only) it articulates as widely as the corpus. Why: a sampled
trajectory's lips carry the model's uncertainty as lip error (training/denoiser/README.md, "Why
diffusion loses to regression"), while the mean alone under-articulates. On validation (40 clips
x 8 takes, session 9) g = 1.4 is the least guidance that opens vowels to 80 % of the corpus
articulation on both synthetic and real voices: synthetic closure 0.94 (worst take 0.92) vs 0.86
sampled, vowel gap 93 % vs 70 %, LVE 4.7 vs 5.9 mm; real (non-English) voices vowel gap 84 % vs
58 %, LVE 5.5 vs 6.9 mm, closure 0.69 vs 0.76 (the one figure it costs). The upper face is the
sampler's, untouched, so takes still differ in expression; their lips agree up to the little
the first step sees of each take's own noise.

Lip draws (a preset's `"lip_draws": K`, every shipped preset since session 11 with K = 4): the
first prediction is instead the mean of K guided predictions from fixed starting noises
(`lip_draw_noise`), batched into the first step in place of the takes' own guided rows (same cost
at K = 4 and 8 takes). Every take of every request then has the same lips for the same speech,
exactly, and a take redrawn alone keeps them. On validation (40 clips x 8 takes, session 11): lip
spread between takes S-DIV-L 0.20 -> 0.11 mm synthetic, 0.18 -> 0.11 mm real; closure 0.961 ->
0.958 synthetic (worst take 0.950 -> 0.956), 0.693 -> 0.709 real (worst 0.684 -> 0.709); LVE 4.67
-> 4.69 and 5.45 -> 5.48 mm; vowel gap unchanged. K = 8 or 16 measured the same within noise: the
first prediction's own noise is not where the lip error is.

Guidance along the opening (a preset's `"lip_guidance_along": "opening"`, every shipped preset since
session 17): the guidance is there to open the vowels, but null + g (speech - null) pushes every lip
direction past the model's estimate (rounding, corners, the lips' rest shape), and the lip error of
every kind of frame grew with g (training/denoiser/README.md, session 16). Instead the mean lips are
the unguided estimate c plus only the guided change's component along the one direction of z that
parts the rig's lip mid-points fastest at the mean pose (`opening_direction`): c + ((G - c) . d) d.
Same rows, same cost. On 40 clips a source x 8 takes (session 17, shipped bundle, g 1.4), all lip
directions guided -> the opening only: LVE 4.67 -> 4.59 mm synthetic and 5.48 -> 5.37 real
(non-English) validation, 5.00 -> 4.93 synthetic test and 5.01 -> 4.88 held-out real English;
m/p/b closure 0.947 -> 0.953, 0.709 -> 0.717, 0.918 -> 0.927 (worst take 0.916 -> 0.922), 1.000
both; vowel opening unchanged within 1 %; L-CCC 0.01-0.02 lower. The guidance rule then picks
g 1.3 (the least g, in 0.1 steps, that opens real validation vowels to 80 % of the articulation:
82 % on 120 clips, 1.2 gives 79 %), which takes LVE down further on synthetic voices (test 4.79 mm)
and keeps every test closure (training/denoiser/README.md, "Guidance along the opening, shipped").

Articulation (a preset's `"lip_opening_std_mm": s`, every shipped preset since session 18, with
`lip_guidance` 1.4 as the ceiling): one g for every clip over-opens the clips the model already
articulates to open the ones it hardly does. The synthetic test voices' vowels opened to 106 % of the
corpus articulation at g 1.3 while held-out real English opened to 82 %, and where the model is
unsure of a clip's timing its estimate moves the lips little over the clip (the clip's need for
guidance, GT over estimated vowel opening, correlates -0.57 with the estimate's opening spread over
40 clips x 4 sources). So each clip's mean lips get the least guidance, from 1 up to the ceiling, at
which the lips' opening (`LipPair.separation_mm`, frame by frame) reaches a standard deviation of s
over the clip (`articulate`; 21 candidate lips, 8 ms for 10 s of speech, no denoiser rows). The
pair (ceiling 1.4, s 5.75 mm) is the one of 12 that opens real validation vowels to 80 % of the
articulation (84 %, 120 clips) with the least validation LVE. Served on 40 clips a source x 8
takes, against the fixed g 1.3: LVE 4.79 -> 4.55 mm synthetic test (paired -0.25 [-0.46, -0.07])
and 4.86 -> 4.79 held-out real English, vowels 106 % -> 99 % and 82 % -> 81 %, closure 0.927 ->
0.916 (worst take 0.911) and 1.000; the clips got g 1.21 on average (synthetic) and 1.28 (real
English) (training/denoiser/README.md, "Articulation: each clip guided as far as it needs").
"""

from __future__ import annotations

import math

import numpy as np

from backend.lipcontact import LipPair

# Seed of the lip noise every take shares (any fixed value: it only has to be the same everywhere).
LIP_SEED = 0x5EA1
# Share of the lip Jacobian's energy (squared singular values) the locked directions carry.
LIP_ENERGY = 0.999
# Where the mean lips' guidance acts (`lip_guidance_along`): every lip direction, or only the
# one that opens the lips (module docstring, "Guidance along the opening").
GUIDANCE_ALONG = ("all", "opening")
# Central-difference step along one whitened unit of z for the opening direction (the separation
# is linear in the expression and nearly so in the jaw's small turn about the mean pose).
OPENING_EPS = 1e-3
# Shares of the guided change tried for a preset's `lip_opening_std_mm` (0: the unguided estimate,
# 1: the preset's full lip_guidance): steps of 1/20, 0.02 in g for g 1.4, finer than its effect.
ARTICULATION_STEPS = 20


def _skew(v: np.ndarray) -> np.ndarray:
    """(V, 3) -> (V, 3, 3) cross-product matrices: skew(a) @ b = a x b."""
    out = np.zeros(v.shape + (3,))
    out[:, 0, 1], out[:, 0, 2], out[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    return out - out.transpose(0, 2, 1)


def lip_directions(head: dict, mean: np.ndarray, chol: np.ndarray, n_exp: int, energy: float = LIP_ENERGY):
    """(53, k) orthonormal directions of z that move the head's lip region (`region_lips`).

    `mean`, `chol`: the bundle's normalisation (x = mean + chol @ z); `n_exp` expression
    coefficients come first in x, then the jaw's axis-angle."""
    lips = np.asarray(head["region_lips"], np.int64)
    dirs = np.asarray(head["exp_dirs"], np.float64)[lips]  # (V, 3, n_exp)
    mean = np.asarray(mean, np.float64)
    p = np.asarray(head["v_template"], np.float64)[lips] + dirs @ mean[:n_exp]
    names = [str(n) for n in head["joint_names"]]
    j = names.index("jaw")
    w = np.asarray(head["weights"], np.float64)[lips, j]
    # d(R(r) (p - c)) / dr at a small jaw turn r: -skew(p - c), blended by the jaw's skin weight w
    d_jaw = -w[:, None, None] * _skew(p - np.asarray(head["joints"], np.float64)[j])
    jac_x = np.concatenate([dirs, d_jaw], axis=2).reshape(-1, n_exp + 3)  # (3V, 53)
    _, s, vt = np.linalg.svd(jac_x @ np.asarray(chol, np.float64), full_matrices=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.searchsorted(share, energy) + 1)
    return vt[:k].T.astype(np.float32)


def share_lip_noise(x_T: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """x_T (takes, T, 53) with its component along `directions` replaced by the shared lip noise."""
    shared = np.random.default_rng(LIP_SEED).standard_normal(x_T.shape[1:], dtype=np.float32)
    own = x_T - (x_T @ directions) @ directions.T
    return (own + (shared @ directions) @ directions.T).astype(np.float32)


def replace_lips(z: np.ndarray, z_lips: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """z (takes, T, 53) with its component along `directions` taken from z_lips (same shape)."""
    return (z + ((z_lips - z) @ directions) @ directions.T).astype(np.float32)


def lip_draw_noise(draws: int, shape: tuple[int, int]) -> np.ndarray:
    """(draws, T, 53) fixed N(0, I) starting points for the mean lips' first prediction: the
    same for every request and take, so a take redrawn alone keeps its lips; draw k is the same
    whatever the number of draws."""
    return np.random.default_rng((LIP_SEED, 1)).standard_normal((int(draws), *shape), dtype=np.float32)


def opening_direction(pair: LipPair, mean: np.ndarray, chol: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(53, 1) unit direction of z, among the lip `directions` (53, k), along which the rig's lip
    mid-points part fastest at the mean pose: the gradient of their separation
    (`LipPair.separation_mm`, mm) by central differences, one per column of `chol`
    (x = mean + chol @ z), projected on `directions` (it lies 0.99992 inside them for the shipped
    head; projected, the mean lips' other lip directions stay exactly unguided) and normalised."""
    mean, chol = np.asarray(mean, np.float64), np.asarray(chol, np.float64)
    step = OPENING_EPS * chol.T  # row j: a small step along z_j, in x
    grad = (pair.separation_mm(mean + step) - pair.separation_mm(mean - step)) / (2 * OPENING_EPS)
    dirs = np.asarray(directions, np.float64)
    grad = dirs @ (dirs.T @ grad)
    return (grad / np.linalg.norm(grad))[:, None].astype(np.float32)


def guide_lips(cond: np.ndarray, guided_x0: np.ndarray, along: np.ndarray | None) -> np.ndarray:
    """The mean lips' guided estimate: `guided_x0` itself (along None: guidance in every lip
    direction) or `cond`, the unguided estimate, moved by the guidance only along `along`
    (k unit columns, e.g. `opening_direction`)."""
    if along is None:
        return guided_x0
    return (cond + ((guided_x0 - cond) @ along) @ along.T).astype(np.float32)


def articulate(cond: np.ndarray, guided: np.ndarray, separation_mm, target_std_mm: float) -> tuple[np.ndarray, float]:
    """The mean lips guided only as far as the clip needs: cond + a (guided - cond) for the least
    share a in [0, 1] (steps of 1/ARTICULATION_STEPS) at which the lips' opening, `separation_mm`
    (z (N, 53) -> (N,) mm) frame by frame, spreads over the clip with a standard deviation of
    `target_std_mm`; a = 1 (the full guidance) where none reaches it. Returns (lips, a).

    Why: the model's estimate articulates some clips fully and others hardly (it is unsure of
    their timing), and one guidance for all over-opens the first to open the second; the spread of
    the opening over the clip is what tells them apart (module docstring, "Articulation")."""
    shares = np.linspace(0.0, 1.0, ARTICULATION_STEPS + 1)
    lips = cond[None] + shares[:, None, None] * (guided - cond)[None]  # (A, T, 53): guidance is linear in g
    spread = np.asarray(separation_mm(lips.reshape(-1, lips.shape[-1]))).reshape(len(shares), -1).std(1)
    reached = np.flatnonzero(spread >= target_std_mm)
    i = int(reached[0]) if len(reached) else len(shares) - 1
    return lips[i].astype(np.float32), float(shares[i])


def mean_lips_opening_std(preset: dict | None) -> float | None:
    """A preset's `lip_opening_std_mm`: guide the mean lips only until their opening spreads this
    much over the clip (`articulate`); None: always the full `lip_guidance`."""
    v = (preset or {}).get("lip_opening_std_mm")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"lip_opening_std_mm must be a number > 0 (mm), got {v!r}")
    return float(v)


def mean_lips_along(preset: dict | None) -> str:
    """A preset's `lip_guidance_along`: "all" lip directions (the default) or only the "opening"."""
    along = (preset or {}).get("lip_guidance_along", "all")
    if along not in GUIDANCE_ALONG:
        raise ValueError(f"lip_guidance_along must be one of {', '.join(GUIDANCE_ALONG)}, got {along!r}")
    return along


def mean_lips_draws(preset: dict | None) -> int | None:
    """A preset's `lip_draws` K: average the mean lips over K fixed noises; None: each take's own."""
    k = (preset or {}).get("lip_draws")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k != int(k) or k < 1:
        raise ValueError(f"lip_draws must be a whole number >= 1, got {k!r}")
    return int(k)


def mean_lips_guidance(preset: dict | None) -> float | None:
    """A preset's mean-lips guidance (1.0: the unguided estimate); None when its lips are sampled."""
    preset = preset or {}
    return float(preset.get("lip_guidance", 1.0)) if preset.get("lips") == "mean" else None
