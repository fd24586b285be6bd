"""Lip seal: a character's lips open and close as the take's do, whatever its shapes do to them.

Why (reports/retarget-character.md, the MakeHuman Face Units head): a mapping drives each
target shape from the controls that mean the same, but what a shape does to the lips depends
on the rig. The stand-in's lip_press is not in jaw units (a full unit seals about a tenth of
jaw_open), so arkit52's mouthClose (lip_press, capped at jawOpen) seals the character where the
take is 8 mm open, and the Face Units' mouthPress and mouthSmile each lift its lower lip
1.4-1.7 mm per side at the midline (the stand-in's smile leaves its lips alone): a smiling
m/p/b with mouthClose = jawOpen pushes the lower lip ~3 mm past the upper one, 2.3-3.6 mm
between the lip points, and this character's lip points are already 1.5 mm apart at rest.

So the lips are retargeted by what they do: the take's lip opening is measured on the stand-in
(`source_lips`, from the head file), what each shape does to the character's own lip points is
measured once (`calibrate`: the Blender layer or a studio script evaluates the mesh and passes
the numbers in), and `seal` places the character's lips where the take's are (`target_opening`:
closed where the stand-in's count as closed, else open as far, scaled by the jaws) with the
closer (mouthClose, within [0, jawOpen] as ARKit has it) and, where that is not enough,
turning down the shapes that misplace the lips. Shapes that do not move the lips (blinks,
brows) are never touched. numpy only, no bpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .retarget import JAW_OPEN, JAW_OPEN_RAD, Mapping

HEAD_KEYS = ("v_template", "exp_dirs", "joints", "joint_names", "weights", "lip_upper", "lip_lower")
# A shape moves the lips when a full weight changes their opening by more than this (mm).
MOVES_LIPS_MM = 0.05
# The opener's own opening must be at least this (mm) for a calibration to mean anything.
MIN_JAW_MM = 2.0
# Least cost (mm^2) of turning a lip-moving shape down by a full unit (see `seal`: the cost is the
# square of the character's contact zone, this where that zone is nil).
MIN_KEEP = 0.01
# Lips this close (mm) touch: backend/lipcheck.CLOSED_MM, the project's definition of closed lips
# (the add-on cannot import the backend; tests/blender/test_lipseal.py keeps the two equal).
LIP_CONTACT_MM = 2.0


def _rotations(axis_angle: np.ndarray) -> np.ndarray:
    """(T, 3) axis-angle -> (T, 3, 3) rotation matrices (Rodrigues)."""
    a = np.asarray(axis_angle, np.float64)
    theta = np.linalg.norm(a, axis=1)
    k = a / np.maximum(theta, 1e-12)[:, None]
    K = np.zeros((len(a), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K = K - K.transpose(0, 2, 1)
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3)[None] + s * K + (1.0 - c) * (K @ K)


def _head_lips(exp, jaw, head) -> np.ndarray:
    """(T, 2, 3) upper and lower lip points of the stand-in posed as the rig poses it (expression
    offsets, then the jaw joint's rotation blended by the skin weights), in metres."""
    missing = [k for k in HEAD_KEYS if k not in head]
    if missing:
        raise ValueError(f"the head file lacks {', '.join(repr(k) for k in missing)} (needed to measure its lips)")
    names = [str(n) for n in head["joint_names"]]
    if "jaw" not in names:
        raise ValueError(f"the head has no 'jaw' joint (joints: {names})")
    j = names.index("jaw")
    lips = [int(head["lip_upper"]), int(head["lip_lower"])]
    exp = np.asarray(exp, np.float64)
    p = np.asarray(head["v_template"], np.float64)[lips][None] + np.einsum(
        "vcn,tn->tvc", np.asarray(head["exp_dirs"], np.float64)[lips], exp
    )
    centre = np.asarray(head["joints"], np.float64)[j]
    rotated = np.einsum("tij,tvj->tvi", _rotations(np.asarray(jaw, np.float64)), p - centre) + centre
    w = np.asarray(head["weights"], np.float64)[lips, j][None, :, None]
    return (1.0 - w) * p + w * rotated


def lip_gap_mm(exp, jaw, head) -> np.ndarray:
    """(T,) distance between the stand-in's lip mid-points (mm) as the rig poses the take: the
    lip gap backend/lipcheck judges."""
    lips = _head_lips(exp, jaw, head)
    return 1000.0 * np.linalg.norm(lips[:, 0] - lips[:, 1], axis=1)


def contact_opening(rest_mm, direction) -> float:
    """How far (mm) lips at rest (upper-minus-lower vector `rest_mm`) may open along `direction`
    (a unit vector) before their points are LIP_CONTACT_MM apart: the opening still counted
    as closed (0 when they are apart by more than that at rest)."""
    rest = np.asarray(rest_mm, np.float64)
    along = float(rest @ np.asarray(direction, np.float64))
    disc = along * along - float(rest @ rest) + LIP_CONTACT_MM**2
    return max(-along + float(np.sqrt(disc)), 0.0) if disc >= 0 else 0.0


@dataclass(frozen=True)
class SourceLips:
    """The take's lips on the stand-in, per frame: `opening_mm` signed along the direction the jaw
    opens them (0 at rest, < 0 pushed into one another), and two constants of the head: `jaw_mm`,
    the opening of a full jaw_open (to scale to another jaw), and `contact_mm`, the opening up to
    which its lips still count as closed (`contact_opening`)."""

    opening_mm: np.ndarray
    jaw_mm: float
    contact_mm: float


def source_lips(exp, jaw, head) -> SourceLips:
    """The take's lips on the stand-in (head.npz's rig: `HEAD_KEYS`), measured as the rig poses
    them: the upper-minus-lower lip vector's change from rest along the direction a full jaw_open
    (JAW_OPEN_RAD about x) moves it."""
    exp = np.asarray(exp, np.float64)
    jaw = np.asarray(jaw, np.float64)
    if exp.ndim != 2 or jaw.shape != (len(exp), 3):
        raise ValueError(f"exp (T, 50) and jaw (T, 3) expected, got {exp.shape} and {jaw.shape}")
    ref = _head_lips(np.zeros((2, exp.shape[1])), np.array([[0.0, 0.0, 0.0], [JAW_OPEN_RAD, 0.0, 0.0]]), head)
    rest = ref[0, 0] - ref[0, 1]
    full = (ref[1, 0] - ref[1, 1]) - rest
    jaw_mm = 1000.0 * float(np.linalg.norm(full))
    if not jaw_mm > MIN_JAW_MM:
        raise ValueError(f"opening the stand-in's jaw moves its lips only {jaw_mm:.2f} mm: lip indices wrong?")
    direction = full / np.linalg.norm(full)
    lips = _head_lips(exp, jaw, head)
    opening = 1000.0 * ((lips[:, 0] - lips[:, 1]) - rest) @ direction
    return SourceLips(opening, jaw_mm, contact_opening(1000.0 * rest, direction))


@dataclass(frozen=True)
class LipCalibration:
    """What the character's shapes do to its lips: `moves_mm[name]` is the change (mm, x y z in the
    mesh's frame) one full weight of that shape alone makes to the upper-minus-lower lip vector;
    `opener` opens the jaw (its move sets the opening direction and scale), `closer` seals the
    lips against it (ARKit's mouthClose)."""

    opener: str
    closer: str
    moves_mm: dict
    rest_mm: tuple  # the upper-minus-lower lip vector at rest

    @property
    def contact_mm(self) -> float:
        return contact_opening(self.rest_mm, self.direction)

    @property
    def jaw_mm(self) -> float:
        return float(np.linalg.norm(self.moves_mm[self.opener]))

    @property
    def direction(self) -> np.ndarray:
        return np.asarray(self.moves_mm[self.opener], np.float64) / self.jaw_mm

    def opening_mm(self, name: str) -> float:
        """The signed opening (mm along the opener's direction) one full weight of `name` makes."""
        return float(np.asarray(self.moves_mm[name], np.float64) @ self.direction)

    def to_dict(self) -> dict:
        moves = {k: [float(x) for x in v] for k, v in self.moves_mm.items()}
        rest = [float(x) for x in self.rest_mm]
        return {"opener": self.opener, "closer": self.closer, "moves_mm": moves, "rest_mm": rest}

    @classmethod
    def from_dict(cls, d: dict) -> "LipCalibration":
        try:
            moves = {str(k): tuple(float(x) for x in v) for k, v in d["moves_mm"].items()}
            cal = cls(str(d["opener"]), str(d["closer"]), moves, tuple(float(x) for x in d["rest_mm"]))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"not a lip calibration: {e}") from None
        _check(cal)
        return cal


def _check(cal: LipCalibration) -> None:
    for name in (cal.opener, cal.closer):
        if name not in cal.moves_mm:
            raise ValueError(f"lip calibration: no lip move measured for {name!r}")
    if not all(len(v) == 3 and np.all(np.isfinite(v)) for v in (*cal.moves_mm.values(), cal.rest_mm)):
        raise ValueError("lip calibration: every move must be 3 finite numbers")
    if not cal.jaw_mm > MIN_JAW_MM:
        raise ValueError(f"lip calibration: {cal.opener!r} opens the lips only {cal.jaw_mm:.2f} mm")
    if not cal.opening_mm(cal.closer) < -MOVES_LIPS_MM:
        shut = cal.opening_mm(cal.closer)
        raise ValueError(f"lip calibration: {cal.closer!r} does not close the lips ({shut:+.2f} mm)")


def seal_channels(mapping: Mapping) -> tuple[str, str] | None:
    """The mapping's (opener, closer) targets: the channel driven by jaw_open alone and the one
    limited by jaw_open (arkit52: jawOpen, mouthClose); None when it has no such pair (visemes,
    psi, a jaw bone)."""
    opener = next((c.target for c in mapping.driven if set(c.sources) == {JAW_OPEN}), None)
    closer = next((c.target for c in mapping.driven if JAW_OPEN in c.limit and c.target != opener), None)
    return (opener, closer) if opener and closer else None


def find_lips(basis, opener, closer, band: float = 0.05) -> tuple[int, int]:
    """A character's lip pair from its mesh: (upper, lower) vertex indices.

    By what ARKit's shapes mean, not by where vertices are: the lower lip is skin the opener
    (jawOpen) moves far (over 0.3 of its largest move) and the closer (mouthClose) brings back
    (what is left under 0.25 of the move; chin and jaw skin stay moved), the upper lip is skin
    the opener leaves (under 0.1); the pair is the closest of the two at rest among lower-lip
    vertices within `band` of the lower lip's width of its middle (at least the one nearest it;
    x is the character's left-right axis, as Blender's characters face -y). `basis` (V, 3) and
    the opener's and closer's offsets (V, 3) in any one unit."""
    V = np.asarray(basis, np.float64)
    jaw, shut = np.asarray(opener, np.float64), np.asarray(closer, np.float64)
    if V.ndim != 2 or V.shape[1] != 3 or jaw.shape != V.shape or shut.shape != V.shape:
        raise ValueError(f"basis and offsets must be (vertices, 3) alike, got {V.shape}, {jaw.shape}, {shut.shape}")
    move = np.linalg.norm(jaw, axis=1)
    top = float(move.max()) if len(move) else 0.0
    if not top > 0:
        raise ValueError("the jaw-opening shape moves no vertex: no lips to find")
    lower = np.nonzero((move > 0.3 * top) & (np.linalg.norm(jaw + shut, axis=1) < 0.25 * move))[0]
    upper = np.nonzero(move < 0.1 * top)[0]
    if not len(lower) or not len(upper):
        raise ValueError("no lips found: the closer does not bring back what the opener moves (not ARKit's pair?)")
    off = np.abs(V[lower, 0] - 0.5 * (V[lower, 0].min() + V[lower, 0].max()))
    mid = lower[off <= max(band * float(np.ptp(V[lower, 0])), float(off.min()))]
    d = np.linalg.norm(V[mid][:, None] - V[upper][None], axis=2)  # (mid, upper)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(upper[j]), int(mid[i])


def calibrate(mapping: Mapping, lips, offsets: dict) -> LipCalibration | None:
    """The character's lip calibration from its upper and lower lip points at rest (`lips` (2, 3)
    metres) and what each driven shape does to them at full weight (`offsets`: target name ->
    (2, 3) metres, upper then lower, as the evaluated mesh moves them); None when the mapping
    has no opener/closer pair."""
    pair = seal_channels(mapping)
    if pair is None:
        return None
    lips = np.asarray(lips, np.float64)
    if lips.shape != (2, 3) or not np.all(np.isfinite(lips)):
        raise ValueError(f"lips must be the finite upper and lower lip points (2, 3), got {lips.shape}")
    d = {k: np.asarray(v, np.float64) for k, v in offsets.items()}
    for name in pair:
        if name not in d:
            raise ValueError(f"no lip offsets for {name!r}")
    bad = [k for k, v in d.items() if v.shape != (2, 3) or not np.all(np.isfinite(v))]
    if bad:
        raise ValueError(f"lip offsets must be finite (2, 3) arrays: {', '.join(bad[:4])}")
    moves = {k: tuple(float(x) for x in 1000.0 * (v[0] - v[1])) for k, v in d.items()}
    cal = LipCalibration(*pair, moves, tuple(float(x) for x in 1000.0 * (lips[0] - lips[1])))
    _check(cal)
    return cal


def target_opening(source: SourceLips, cal: LipCalibration) -> np.ndarray:
    """The take's opening for the character (T,) mm: lips that count as closed on the stand-in
    count as closed on the character (openings up to the stand-in's contact_mm map linearly onto
    the character's), and beyond that the opening is scaled by the jaws (cal.jaw_mm /
    source.jaw_mm). Monotonic and continuous; vowels keep their scaled opening less the
    difference of the two contact zones."""
    x = np.asarray(source.opening_mm, np.float64)
    scale = cal.jaw_mm / source.jaw_mm
    src_c, tgt_c = source.contact_mm, cal.contact_mm
    inside = x * (tgt_c / src_c) if src_c > 0 else x * scale
    return np.where(x <= src_c, inside, tgt_c + scale * (x - src_c))


def seal(weights: dict, source: SourceLips, cal: LipCalibration, keep: float | None = None) -> dict:
    """Weights whose lips on the character follow the take's (`source_lips`).

    Per frame, with the lip vector linear in the weights (shape keys add): the character's lips
    should be open along its jaw's direction by `target_opening` and, where the take's lips touch,
    otherwise as at rest (where they are open, a slide across the opening is left as mapped). The
    closer is set freely within [0, min(opener, 1)] (ARKit: mouthClose <= jawOpen); the other
    shapes that move the lips may only be turned down from the mapping's weights, each at a
    cost of `keep` mm^2 per unit^2, a tenth of it where the take's lips touch (default: the
    square of the character's contact zone, cal.contact_mm, so a shape gives way where it
    would misplace the lips by about as much as still counts as closed; on the Face Units head
    (0.35 mm^2) over studio/retarget_check's 21 clips the articulation's closure is 100 % for
    keep 0.03-1, 87 % at 2, 31 % at 4); the opener and shapes that do not move the lips (blinks,
    brows) are kept as given. A small box-constrained least squares per frame, solved for all
    frames at once."""
    _check(cal)
    if cal.opener not in weights:
        return dict(weights)  # nothing opens the jaw: nothing to seal against
    out = {k: np.asarray(v, np.float64).copy() for k, v in weights.items()}
    jaw = out[cal.opener]
    T = len(jaw)
    want = target_opening(source, cal)
    if want.shape != (T,) or not np.all(np.isfinite(want)):
        raise ValueError(f"the take's lips must be finite ({T},) curves like the weights, got {want.shape}")
    free = [cal.closer] + [
        k
        for k in out
        if k in cal.moves_mm and k not in (cal.opener, cal.closer) and np.linalg.norm(cal.moves_mm[k]) > MOVES_LIPS_MM
    ]
    D = np.array([cal.moves_mm[k] for k in free], np.float64)  # (K, 3) mm per unit
    goal = want[:, None] * cal.direction[None] - jaw[:, None] * np.asarray(cal.moves_mm[cal.opener])[None]  # (T, 3)
    given = np.stack([out.get(cal.closer, np.zeros(T))] + [out[k] for k in free[1:]], axis=1)  # (T, K)
    hi = given.copy()
    hi[:, 0] = np.clip(jaw, 0.0, 1.0)
    keep = max(cal.contact_mm**2, MIN_KEEP) if keep is None else float(keep)
    if not keep > 0:
        raise ValueError(f"keep must be > 0, got {keep}")
    # Across the opening the lips need placing only where they touch: there the take's closed lips
    # must be the character's (a slide, e.g. a shape rolling one lip in, moves the lip points
    # apart); where they are open, only the opening counts and a roll or tuck stays as mapped.
    n = cal.direction
    touch = np.clip(2.0 - np.asarray(source.opening_mm, np.float64) / max(source.contact_mm, 1e-9), 0.0, 1.0)
    # Where the take's lips touch, a shape that holds them apart gives way ten times as easily: a
    # closure matters more than a smile's last millimetre (a take that smiles through an m kept
    # the character's lips 2.03 mm apart at the full cost).
    cost = np.full((T, len(free)), keep) * (1.0 - 0.9 * touch)[:, None]
    cost[:, 0] = 0.0
    metric = n[None, :, None] * n[None, None, :] + touch[:, None, None] * (np.eye(3) - np.outer(n, n))[None]
    X = _box_least_squares(D, goal, given, cost, np.zeros_like(hi), hi, metric)
    for i, k in enumerate(free):
        out[k] = X[:, i]
    return {k: v.astype(np.float32) for k, v in out.items()}


def _box_least_squares(D, goal, given, cost, lo, hi, metric, iters: int = 500, tol: float = 1e-7) -> np.ndarray:
    """Per row t: argmin over lo_t <= x <= hi_t of |x D - goal_t|^2_{M_t} + sum_k cost_tk (x_k - given_tk)^2
    with M_t = metric[t] (3, 3), 0 <= M_t <= I, cost (T, K) (accelerated projected gradient, all rows at once;
    convex, and strictly so where cost > 0)."""
    G = D @ D.T
    lip = 2.0 * (float(np.linalg.eigvalsh(G).max()) + float(cost.max()))
    X = np.clip(given, lo, hi)
    Y, t = X.copy(), 1.0
    for _ in range(iters):
        grad = 2.0 * (np.einsum("tj,tij->ti", Y @ D - goal, metric) @ D.T + cost * (Y - given))
        X_new = np.clip(Y - grad / lip, lo, hi)
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        Y = X_new + ((t - 1.0) / t_new) * (X_new - X)
        done = float(np.abs(X_new - X).max()) < tol
        X, t = X_new, t_new
        if done:
            break
    return X
