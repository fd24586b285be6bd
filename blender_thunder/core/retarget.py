"""A take (psi, jaw) onto any character: semantic controls, mappings, presets, Live Link Face CSV.

The stand-in head's expression basis was built from semantic controls (head.npz
`semantic_names` / `semantic_coeffs`: psi = sum_k w_k coeffs[k]), which sit close to
ARKit's blendshapes. `solve_controls` inverts that per take: it finds control curves
that rebuild the take's psi, bounded, ridge-regularised and smooth over frames
(`solve_for_head` does it fitting the head's vertices, the better fit in millimetres). A
`Mapping` then says which target shape each control drives (presets for ARKit 52,
VRM/VRChat visemes and the project's own exp### keys, in presets/mappings/), and
`apply` turns the curves into shape-key weights. numpy and stdlib only (Blender's
Python has numpy, not scipy), no bpy.

Sides: a control's `_L` is the character's own left, +x in FLAME's frame (the head's
eye_L joint sits at x > 0; training/head/expressions._side_weight). ARKit names sides
the same way ("relative to the face": eyeBlinkLeft is the face's left eye), so
eyeBlinkLeft <- blink_L.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .contract import FPS, N_EXP, SHAPE_KEY_NAMES

# Jaw axis-angle x (rad) that counts as fully open: the stand-in head's wide-open jaw
# (training/head/semantics.py), so jaw_open = jaw_x / JAW_OPEN_RAD is 1 at wide open.
JAW_OPEN_RAD = 0.35
JAW_OPEN = "jaw_open"

# Bounds of a solved control: 0 is neutral, 1 one full natural movement; a little
# headroom above 1 keeps strong takes from being flattened.
UPPER = 1.5
# Defaults of the solve (reports/retarget-solve.md says how they were chosen).
SMOOTH = 0.2  # weight of the second-difference (curvature) penalty over frames
RIDGE = 0.01  # weight of the ridge penalty on the controls
PSI_WEIGHT = 0.1  # vertex_metric: share of psi's own metric next to the vertices
MAX_ITERS = 2000
TOL = 1e-5  # stop when no control moves more than this (relative) in one step: within ~4e-4 of converged

# The 52 ARKit blendshapes in the order of Live Link Face's CSV columns. Checked against
# three independent readers/writers of the app's CSV (search, code corpus: a Blender
# LiveLink script's LIVE_LINK_FACE_HEADER, a Dart loader's documented header, a Faceit
# converter's BLENDER_HEADER): Timecode,BlendShapeCount, these 52 in PascalCase, then
# HeadYaw..RightEyeRoll; note JawRight before JawLeft and MouthRight before MouthLeft.
ARKIT_52 = (
    "eyeBlinkLeft",
    "eyeLookDownLeft",
    "eyeLookInLeft",
    "eyeLookOutLeft",
    "eyeLookUpLeft",
    "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight",
    "eyeLookDownRight",
    "eyeLookInRight",
    "eyeLookOutRight",
    "eyeLookUpRight",
    "eyeSquintRight",
    "eyeWideRight",
    "jawForward",
    "jawRight",
    "jawLeft",
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthRight",
    "mouthLeft",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "noseSneerLeft",
    "noseSneerRight",
    "tongueOut",
)
LLF_ROTATIONS = (
    "HeadYaw",
    "HeadPitch",
    "HeadRoll",
    "LeftEyeYaw",
    "LeftEyePitch",
    "LeftEyeRoll",
    "RightEyeYaw",
    "RightEyePitch",
    "RightEyeRoll",
)
# Live Link Face writes BlendShapeCount = 61 (52 shapes + 9 rotations) on every row.
LLF_HEADER = ("Timecode", "BlendShapeCount", *(n[0].upper() + n[1:] for n in ARKIT_52), *LLF_ROTATIONS)
LLF_COUNT = len(ARKIT_52) + len(LLF_ROTATIONS)

KINDS = ("shape_keys", "psi")
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "mappings"
PRESET_ORDER = ("thunder_exp", "arkit52", "vrm_visemes")  # ties in detect() go to the earlier one


# ---------------------------------------------------------------------------------------------
# The solve: psi -> semantic control curves
# ---------------------------------------------------------------------------------------------


def solve_basis(names) -> list[str]:
    """The controls the solve uses: every name except a plain bilateral one whose `_L`/`_R`
    halves are there too (plain = L + R, so it would only duplicate them)."""
    names = [str(n) for n in names]
    have = set(names)
    return [n for n in names if not (f"{n}_L" in have and f"{n}_R" in have)]


def _check_take(exp, jaw, names, coeffs):
    exp = np.asarray(exp, np.float64)
    jaw = np.asarray(jaw, np.float64)
    coeffs = np.asarray(coeffs, np.float64)
    names = [str(n) for n in names]
    if not names or coeffs.ndim != 2 or coeffs.shape[0] == 0:
        raise ValueError(
            "the head has no semantic controls (a plain FLAME import?): retargeting needs the "
            "stand-in head's semantic_names / semantic_coeffs"
        )
    if coeffs.shape != (len(names), N_EXP):
        raise ValueError(f"semantic_coeffs must be ({len(names)}, {N_EXP}), got {coeffs.shape}")
    if exp.ndim != 2 or exp.shape[1] != N_EXP or len(exp) == 0:
        raise ValueError(f"exp must be (frames, {N_EXP}), got {exp.shape}")
    if jaw.shape != (len(exp), 3):
        raise ValueError(f"jaw must be ({len(exp)}, 3) like exp, got {jaw.shape}")
    for what, a in (("exp", exp), ("jaw", jaw), ("semantic_coeffs", coeffs)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what} holds non-finite values")
    return exp, jaw, names, coeffs


def vertex_metric(exp_dirs, psi_weight: float = PSI_WEIGHT, vertices=None) -> np.ndarray:
    """The psi metric (50, 50) that makes the solve fit the head's vertices: |psi|^2_M is the
    squared displacement over `vertices` (None: all; exp_dirs (V, 3, 50) from head.npz), scaled
    to psi's own trace (50) so smooth and ridge keep their meaning, plus `psi_weight` times psi's
    own metric, which keeps controls that barely move a vertex from drifting."""
    E = np.asarray(exp_dirs, np.float64)
    if E.ndim != 3 or E.shape[1:] != (3, N_EXP):
        raise ValueError(f"exp_dirs must be (vertices, 3, {N_EXP}), got {E.shape}")
    if vertices is not None:
        E = E[np.asarray(vertices, int)]
    E = E.reshape(-1, N_EXP)
    M = E.T @ E
    trace = float(np.trace(M))
    if not trace > 0:
        raise ValueError("exp_dirs move no vertex")
    return M * (N_EXP / trace) + psi_weight * np.eye(N_EXP)


def solve_for_head(exp, jaw, head, **kw) -> dict[str, np.ndarray]:
    """`solve_controls` with the vertex metric of a head file (head.npz as a mapping: its
    semantic_names, semantic_coeffs and exp_dirs): what the add-on should call. Fitting the
    head's vertices leaves about a third of the psi metric's residual in millimetres
    (reports/retarget-solve.md)."""
    for key in ("semantic_names", "semantic_coeffs", "exp_dirs"):
        if key not in head:
            raise ValueError(f"the head file lacks {key!r}")
    kw.setdefault("metric", vertex_metric(head["exp_dirs"]))
    return solve_controls(exp, jaw, head["semantic_names"], head["semantic_coeffs"], **kw)


def _opposite_pairs(basis: list[str], C: np.ndarray) -> dict[int, int]:
    """Controls that are one another's negative (mouth_left / mouth_right): first index -> second."""
    pairs, taken = {}, set()
    norms = np.linalg.norm(C, axis=1)
    for i in range(len(basis)):
        for j in range(i + 1, len(basis)):
            if i in taken or j in taken or norms[i] == 0:
                continue
            if np.linalg.norm(C[i] + C[j]) < 1e-4 * norms[i]:
                pairs[i] = j
                taken |= {i, j}
    return pairs


def solve_controls(
    exp,
    jaw,
    names,
    coeffs,
    *,
    smooth: float = SMOOTH,
    ridge: float = RIDGE,
    upper: float = UPPER,
    metric=None,
) -> dict[str, np.ndarray]:
    """Per-frame control curves of one take: name -> (T,), plus "jaw_open" (jaw x / JAW_OPEN_RAD).

    Minimises, over all frames at once and with every control in [0, upper],
        1/2 sum_t |psi_t - w_t C|^2_M  +  ridge/2 |W|^2  +  smooth/2 |D^T D W|^2
    where C are the coefficients of the solve basis (`solve_basis`: sided halves and
    unilateral controls), D^T D the second difference over frames (free ends) and M the psi
    metric (`metric` (50, 50); None: psi's own, in which psi ~ N(0, 1) per component). Two
    controls that are one another's negative (mouth_left / mouth_right) are solved as one
    signed control in [-upper, upper] and reported split (each >= 0, at most one non-zero).
    """
    exp, jaw, names, coeffs = _check_take(exp, jaw, names, coeffs)
    if smooth < 0 or ridge < 0 or not upper > 0:
        raise ValueError(f"smooth and ridge must be >= 0 and upper > 0 (got {smooth}, {ridge}, {upper})")
    M = np.eye(N_EXP) if metric is None else np.asarray(metric, np.float64)
    if M.shape != (N_EXP, N_EXP) or not np.all(np.isfinite(M)):
        raise ValueError(f"metric must be a finite ({N_EXP}, {N_EXP}) matrix, got {M.shape}")
    basis = solve_basis(names)
    C = coeffs[[names.index(n) for n in basis]]  # (K, 50)
    pairs = _opposite_pairs(basis, C)
    keep = [k for k in range(len(basis)) if k not in pairs.values()]
    lo = np.array([-upper if k in pairs else 0.0 for k in keep])
    Ck = C[keep]
    W = _fista(exp @ M @ Ck.T, Ck @ M @ Ck.T, lo, np.full(len(keep), upper), smooth, ridge)
    out = {}
    for col, k in enumerate(keep):
        out[basis[k]] = np.maximum(W[:, col], 0.0).astype(np.float32)
        if k in pairs:
            out[basis[pairs[k]]] = np.maximum(-W[:, col], 0.0).astype(np.float32)
    out = {n: out[n] for n in basis}  # head-file order
    out[JAW_OPEN] = np.clip(jaw[:, 0] / JAW_OPEN_RAD, 0.0, upper).astype(np.float32)
    return out


def _laplacian(W: np.ndarray) -> np.ndarray:
    """D^T D W along frames (D: first difference, free ends); |D^T D w|^2 is the sum of squared
    second differences inside the take (first differences at its two ends)."""
    d = np.diff(W, axis=0)
    out = np.zeros_like(W)
    out[1:] += d
    out[:-1] -= d
    return out


def _fista(R: np.ndarray, G: np.ndarray, lo: np.ndarray, hi: np.ndarray, smooth: float, ridge: float) -> np.ndarray:
    """argmin over lo <= W <= hi of 1/2 tr(W G W^T) - tr(R^T W) + ridge/2 |W|^2 + smooth/2 |D^T D W|^2.

    Accelerated projected gradient (FISTA) with adaptive restart (O'Donoghue & Candes 2015):
    strongly convex (G's smallest eigenvalue plus the ridge), so it converges linearly; with the
    shift merged into one signed control, G's condition number is ~70 and a take needs ~100-300
    cheap iterations."""
    lip = float(np.linalg.eigvalsh(G).max()) + ridge + 16.0 * smooth  # |D^T D| <= 4
    step = 1.0 / lip
    grad = lambda W: W @ G - R + ridge * W + (smooth * _laplacian(_laplacian(W)) if smooth else 0.0)  # noqa: E731
    X = np.clip(np.linalg.lstsq(G + ridge * np.eye(len(G)), R.T, rcond=None)[0].T, lo, hi)
    Y, t = X.copy(), 1.0
    scale = max(float(np.abs(X).max()), 1.0)
    for _ in range(MAX_ITERS):
        X_new = np.clip(Y - step * grad(Y), lo, hi)
        if np.sum((Y - X_new) * (X_new - X)) > 0:  # momentum points uphill: restart
            t, Y = 1.0, X.copy()
            continue
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        Y = X_new + ((t - 1.0) / t_new) * (X_new - X)
        change = float(np.abs(X_new - X).max())
        X, t = X_new, t_new
        if change < TOL * scale:
            break
    return X


def controls_to_psi(controls: dict, names, coeffs) -> np.ndarray:
    """psi (T, 50) that control curves rebuild (the solve's forward model; jaw_open ignored)."""
    names = [str(n) for n in names]
    coeffs = np.asarray(coeffs, np.float64)
    curves = {k: np.asarray(v, np.float64) for k, v in controls.items() if k != JAW_OPEN}
    if not curves:
        raise ValueError("no control curves")
    T = len(next(iter(curves.values())))
    psi = np.zeros((T, coeffs.shape[1]))
    for name, curve in curves.items():
        if name not in names:
            raise ValueError(f"unknown control {name!r}")
        psi += curve[:, None] * coeffs[names.index(name)][None]
    return psi


def psi_controls(exp) -> dict[str, np.ndarray]:
    """A take's psi as curves keyed exp000 … exp049: what a "psi" mapping (the project's own
    shape keys) reads."""
    exp = np.asarray(exp, np.float64)
    if exp.ndim != 2 or exp.shape[1] != N_EXP:
        raise ValueError(f"exp must be (frames, {N_EXP}), got {exp.shape}")
    return {name: exp[:, i] for i, name in enumerate(SHAPE_KEY_NAMES)}


# ---------------------------------------------------------------------------------------------
# Mappings
# ---------------------------------------------------------------------------------------------


@dataclass
class Channel:
    """One target shape: weight = clip(gain * sum(coef * control), 0, 1), and at most
    sum(coef * control) over `limit` where one is given (ARKit's mouthClose never exceeds
    jawOpen: it closes the lips against the jaw's opening). A source that names a plain
    bilateral control ("smile") reads the mean of its halves. No sources: the target is listed
    but not driven (`note` says why); apply() leaves it out."""

    target: str
    sources: dict[str, float]
    gain: float = 1.0
    aliases: tuple[str, ...] = ()  # other names the target goes by (VRM "A" for "aa", …)
    note: str = ""
    limit: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"target": self.target, "sources": {k: float(v) for k, v in self.sources.items()}, "gain": self.gain}
        if self.limit:
            d["limit"] = {k: float(v) for k, v in self.limit.items()}
        if self.aliases:
            d["aliases"] = list(self.aliases)
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Channel":
        if not isinstance(d, dict) or not isinstance(d.get("target"), str) or not d["target"]:
            raise ValueError(f"a channel needs a target name: {d!r}")
        target = d["target"]
        gain = d.get("gain", 1.0)
        if not _is_number(gain):
            raise ValueError(f"channel {target!r}: gain must be a finite number, got {gain!r}")
        aliases = d.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ValueError(f"channel {target!r}: aliases must be a list of names")
        return cls(
            target,
            _weights(target, "sources", d.get("sources", {})),
            float(gain),
            tuple(aliases),
            str(d.get("note", "")),
            _weights(target, "limit", d.get("limit", {})),
        )


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _weights(target: str, what: str, d) -> dict[str, float]:
    if not isinstance(d, dict):
        raise ValueError(f"channel {target!r}: {what} must be an object name -> weight")
    for k, v in d.items():
        if not _is_number(v):
            raise ValueError(f"channel {target!r}: {what} {k!r} needs a finite number, got {v!r}")
    return {str(k): float(v) for k, v in d.items()}


@dataclass
class Mapping:
    """Which target shapes a take drives and how. kind "shape_keys": weights in [0, 1] from the
    solved controls; kind "psi": the project's own exp### keys, psi itself (identity)."""

    name: str
    kind: str
    channels: list[Channel]
    jaw_bone: str | None = None
    description: str = ""
    meta: dict = field(default_factory=dict)  # free-form (e.g. which preset and names detect() bound)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"mapping {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        targets = [c.target for c in self.channels]
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise ValueError(f"mapping {self.name!r}: targets listed twice: {', '.join(dup)}")

    @property
    def driven(self) -> list[Channel]:
        return [c for c in self.channels if c.sources]

    def to_dict(self) -> dict:
        d = {"format": "thunder-mapping", "version": 1, "name": self.name, "kind": self.kind}
        d["jaw_bone"] = self.jaw_bone
        if self.description:
            d["description"] = self.description
        if self.meta:
            d["meta"] = self.meta
        d["channels"] = [c.to_dict() for c in self.channels]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Mapping":
        if not isinstance(d, dict):
            raise ValueError("a mapping is a JSON object")
        if d.get("format", "thunder-mapping") != "thunder-mapping" or d.get("version", 1) != 1:
            raise ValueError(f"not a THUNDER mapping v1 (format {d.get('format')!r}, version {d.get('version')!r})")
        for key in ("name", "kind"):
            if not isinstance(d.get(key), str):
                raise ValueError(f"a mapping needs a string {key!r}")
        channels = d.get("channels")
        if not isinstance(channels, list):
            raise ValueError("a mapping needs a list of channels")
        jaw = d.get("jaw_bone")
        if jaw is not None and not isinstance(jaw, str):
            raise ValueError(f"jaw_bone must be a bone name or null, got {jaw!r}")
        return cls(
            d["name"],
            d["kind"],
            [Channel.from_dict(c) for c in channels],
            jaw or None,
            str(d.get("description", "")),
            dict(d.get("meta", {})),
        )

    def save(self, path) -> Path:
        """Write the mapping as JSON (a file an artist can share); never a half-written file."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "Mapping":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read mapping {path}: {e}") from e
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e


def presets() -> dict[str, Mapping]:
    """The shipped mappings by name ("arkit52", "vrm_visemes", "thunder_exp")."""
    out = {}
    for path in sorted(PRESET_DIR.glob("*.json")):
        m = Mapping.load(path)
        out[m.name] = m
    return out


def _control_value(controls: dict, name: str):
    if name in controls:
        return np.asarray(controls[name], np.float64)
    if f"{name}_L" in controls and f"{name}_R" in controls:  # plain bilateral name: mean of its halves
        return 0.5 * (np.asarray(controls[f"{name}_L"], np.float64) + np.asarray(controls[f"{name}_R"], np.float64))
    return None


def apply(mapping: Mapping, controls: dict) -> dict[str, np.ndarray]:
    """Target name -> (T,) weights: in [0, 1] for "shape_keys", psi as is for "psi". Channels
    without sources are left out (nothing keys them); a source missing from `controls` is an error."""
    if not controls:
        raise ValueError("no control curves")
    T = len(next(iter(controls.values())))
    out = {}
    for ch in mapping.driven:
        total = ch.gain * _weighted(mapping, ch, ch.sources, controls, T)
        if ch.limit:
            total = np.minimum(total, _weighted(mapping, ch, ch.limit, controls, T))
        out[ch.target] = (np.clip(total, 0.0, 1.0) if mapping.kind == "shape_keys" else total).astype(np.float32)
    return out


def _weighted(mapping: Mapping, ch: Channel, weights: dict, controls: dict, T: int) -> np.ndarray:
    total = np.zeros(T)
    for src, coef in weights.items():
        v = _control_value(controls, src)
        if v is None:
            raise ValueError(f"mapping {mapping.name!r}: channel {ch.target!r} reads {src!r}, which the take lacks")
        if v.shape != (T,):
            raise ValueError(f"control {src!r} has shape {v.shape}, expected ({T},)")
        total += coef * v
    return total


# ---------------------------------------------------------------------------------------------
# Detecting a target's naming
# ---------------------------------------------------------------------------------------------

_SEP = r"[\s._\-:|]"
_PREFIX = re.compile(r"^(?:arkit|bs|blendshape\d*|blend_shape\d*|shape|sk|morph|mh|vrc|fcl)" + _SEP + "+", re.I)
_SIDE = (
    ("left", re.compile(_SEP + r"?(?:left)$", re.I)),
    ("right", re.compile(_SEP + r"?(?:right)$", re.I)),
    ("left", re.compile(_SEP + r"[lL]$|(?<=[a-z0-9])L$")),
    ("right", re.compile(_SEP + r"[rR]$|(?<=[a-z0-9])R$")),
)


def normalize_name(name: str) -> str:
    """A naming-neutral key: eyeBlinkLeft, eyeBlink_L, EyeBlinkLeft, eye_blink_left,
    ARKit_eyeBlinkLeft, blendShape1.eyeBlinkLeft, eyeBlink.L -> "eyeblink|left"."""
    s = name.strip()
    parts = [p for p in re.split(r"[.:|]", s) if p]
    if len(parts) > 1:  # "blendShape1.eyeBlinkLeft" -> "eyeBlinkLeft", but keep "eyeBlink.L"
        last = parts[-1]
        s = f"{parts[-2]}_{last}" if last.lower() in ("l", "r", "left", "right") else last
    while True:
        stripped = _PREFIX.sub("", s)
        if stripped == s or not stripped:
            break
        s = stripped
    side = ""
    for label, pattern in _SIDE:
        if pattern.search(s) and pattern.sub("", s):
            side, s = label, pattern.sub("", s)
            break
    core = re.sub(r"[^a-z0-9]", "", s.lower())
    return f"{core}|{side}" if side else core


# Bones a jaw goes by in common rigs (matched after normalize_name).
JAW_BONES = ("jaw", "jawbone", "jawroot", "ccbasejawroot", "facialcjaw", "defjaw", "mixamorigjaw", "lowerjaw")

MIN_MATCHED = {"thunder_exp": 10, "arkit52": 8, "vrm_visemes": 3}


def _bind(mapping: Mapping, by_norm: dict[str, str], exact: set[str]) -> tuple[Mapping, int]:
    channels, matched = [], 0
    for ch in mapping.channels:
        found = _bound_to(ch, by_norm, exact)
        if found is None:
            continue
        channels.append(Channel(found, dict(ch.sources), ch.gain, (), ch.note, dict(ch.limit)))
        matched += bool(ch.sources)
    bound = Mapping(mapping.name, mapping.kind, channels, None, mapping.description, {"preset": mapping.name})
    return bound, matched


def _index(names) -> tuple[dict[str, str], set[str]]:
    names = [str(n) for n in names if str(n).lower() != "basis"]
    by_norm: dict[str, str] = {}
    for n in names:
        by_norm.setdefault(normalize_name(n), n)
    return by_norm, set(names)


def bind(mapping: Mapping, shape_key_names, bone_names=()) -> tuple[Mapping, list[str]]:
    """A mapping (a preset, or a file saved from another character) bound to a target's names
    the way detect() binds presets (exact name, naming variant, alias). Returns the bound
    mapping (its name, kind and description kept; its jaw bone matched among `bone_names`,
    None when absent) and the targets it found no shape key for (dropped)."""
    by_norm, exact = _index(shape_key_names)
    bound, _ = _bind(mapping, by_norm, exact)
    bound.meta = dict(mapping.meta)
    dropped = [ch.target for ch in mapping.channels if _bound_to(ch, by_norm, exact) is None]
    if mapping.jaw_bone:
        bones = [str(b) for b in bone_names]
        norm = {normalize_name(b): b for b in bones}
        bound.jaw_bone = mapping.jaw_bone if mapping.jaw_bone in bones else norm.get(normalize_name(mapping.jaw_bone))
    return bound, dropped


def _bound_to(ch: Channel, by_norm: dict[str, str], exact: set[str]) -> str | None:
    """The target's own name for a channel (exact, then by naming variant; aliases too), or None."""
    for candidate in (ch.target, *ch.aliases):
        if candidate in exact:
            return candidate
    for candidate in (ch.target, *ch.aliases):
        found = by_norm.get(normalize_name(candidate))
        if found is not None:
            return found
    return None


def detect(shape_key_names, bone_names=()) -> Mapping | None:
    """The preset that best fits a target, bound to its actual names; None if nothing fits.

    A preset fits when enough of its driven channels find a shape key (exactly, or by
    `normalize_name`, or by one of its aliases); the best is the one with the largest share
    matched (ties: thunder_exp, arkit52, vrm_visemes). Channels whose target is absent are
    dropped. The jaw bone is bound only where no shape-key channel already opens the jaw
    (a jawOpen or viseme shape and a rotating bone would open it twice)."""
    by_norm, exact = _index(shape_key_names)
    best, best_share = None, 0.0
    for key, preset in sorted(presets().items(), key=lambda kv: _preset_rank(kv[0])):
        bound, matched = _bind(preset, by_norm, exact)
        if matched < MIN_MATCHED.get(key, 3):
            continue
        share = matched / max(len(preset.driven), 1)
        if share > best_share:
            best, best_share = bound, share
    if best is None:
        return None
    if not any(JAW_OPEN in ch.sources for ch in best.driven):
        bones = {normalize_name(b): str(b) for b in bone_names}
        best.jaw_bone = next((bones[j] for j in JAW_BONES if j in bones), None)
    best.meta["matched_share"] = round(best_share, 3)
    return best


def _preset_rank(name: str) -> int:
    return PRESET_ORDER.index(name) if name in PRESET_ORDER else len(PRESET_ORDER)


# ---------------------------------------------------------------------------------------------
# Live Link Face CSV
# ---------------------------------------------------------------------------------------------


def _timecode(t: float, fps: float) -> str:
    """HH:MM:SS:FF.mmm as Live Link Face writes it: FF the frame within the second at `fps`,
    .mmm the fraction of a frame (0 for a frame-aligned row)."""
    frames = t * fps
    whole = math.floor(frames + 1e-6)
    frac = max(frames - whole, 0.0)
    per_sec = int(round(fps))
    sec, ff = divmod(int(whole), per_sec) if abs(fps - per_sec) < 1e-9 else (int(t), int(whole - int(t) * fps))
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.{int(round(frac * 1000)) % 1000:03d}"


def write_live_link_csv(path, weights: dict, fps: float = FPS) -> Path:
    """Write ARKit weights (name -> (T,), names in any variant spelling) as a Live Link Face CSV:
    header Timecode,BlendShapeCount,<52 ARKit names>,<9 head/eye rotations>, one row per
    frame, BlendShapeCount 61, shapes not given and the rotations 0."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    index = {normalize_name(n): i for i, n in enumerate(ARKIT_52)}
    T = None
    cols = np.zeros((len(ARKIT_52), 0))
    for name, values in weights.items():
        i = index.get(normalize_name(name))
        if i is None:
            raise ValueError(f"{name!r} is not an ARKit blendshape")
        v = np.asarray(values, np.float64)
        if v.ndim != 1 or (T is not None and len(v) != T) or not np.all(np.isfinite(v)):
            raise ValueError(f"{name!r}: expected finite (frames,) curves of one length, got shape {v.shape}")
        if T is None:
            T = len(v)
            cols = np.zeros((len(ARKIT_52), T))
        cols[i] = v
    if T is None:
        raise ValueError("no ARKit weights to write")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(LLF_HEADER)
        zeros = ["0"] * len(LLF_ROTATIONS)
        for t in range(T):
            w.writerow([_timecode(t / fps, fps), LLF_COUNT, *(f"{x:.6f}" for x in cols[:, t]), *zeros])
    tmp.replace(path)
    return path


_TC = re.compile(r"^(\d+):(\d{2}):(\d{2})[:;](\d+)(?:\.(\d+))?$")
STANDARD_RATES = (24, 25, 30, 48, 50, 60, 120)


def read_live_link_csv(path, *, fps: float | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """Read a Live Link Face CSV: (fps, ARKit name (Apple's camelCase) -> (rows,) weights).

    The app's timecode counts frames within each second (HH:MM:SS:FF.fraction) without saying
    the rate: it is taken as the smallest standard rate above the largest FF seen, which is
    right for any take of a second or more; pass `fps` when it is known (e.g. from the take's
    JSON). One value per row, as recorded."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if not rows or [h.strip() for h in rows[0][:2]] != ["Timecode", "BlendShapeCount"]:
        raise ValueError(f"{path} is not a Live Link Face CSV (it must start with Timecode,BlendShapeCount)")
    header = [h.strip() for h in rows[0]]
    index = {normalize_name(n): n for n in ARKIT_52}
    columns = {}
    for j, h in enumerate(header[2:], start=2):
        name = index.get(normalize_name(h))
        if name is not None:
            columns[name] = j
    if not columns:
        raise ValueError(f"{path} has no ARKit columns")
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    frames = []
    data = np.zeros((len(body), len(columns)))
    for i, r in enumerate(body):
        if len(r) < len(header):
            raise ValueError(f"{path}: row {i + 2} has {len(r)} fields, the header {len(header)}")
        m = _TC.match(r[0].strip())
        if not m:
            raise ValueError(f"{path}: row {i + 2}: bad timecode {r[0]!r} (expected HH:MM:SS:FF.mmm)")
        frames.append(int(m.group(4)))
        try:
            data[i] = [float(r[j]) for j in columns.values()]
        except ValueError as e:
            raise ValueError(f"{path}: row {i + 2}: {e}") from e
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: non-finite weights")
    if fps is None:
        top = max(frames, default=0)
        fps = float(next((r for r in STANDARD_RATES if r > top), top + 1))
    return float(fps), {name: data[:, k] for k, name in enumerate(columns)}
