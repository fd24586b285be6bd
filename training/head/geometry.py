"""The stand-in head's surface: an implicit head shape sampled by a warped ray grid.

Metres, y up, the face looks along +z, +x is the subject's left (FLAME's frame).
The skin is one lat-long grid whose rows are ray fans from an axis through the
head and neck, so its topology is a closed sphere; the mouth and the two eyes are
slits cut between two grid rows, with the rows warped so that the slit's edges
become lips and lids. The eyeballs are separate closed spheres, as in FLAME.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_COLS = 80
HEAD_ORIGIN = np.array([0.0, 0.01, -0.012])
NECK_AXIS_Z = -0.015
NECK_BOTTOM_Y = -0.175
EYE_CENTERS = np.array([[0.0315, 0.025, 0.060], [-0.0315, 0.025, 0.060]])  # L (+x), R
EYE_RADIUS = 0.0125
MOUTH_POINT = np.array([0.0, -0.044, 0.09])
MOUTH_HALF_WIDTH = 0.025


@dataclass
class Proportions:
    """Overall proportions; `seed` jitters them a little so heads can vary."""

    skull: float = 1.0
    face_width: float = 1.0
    jaw_width: float = 1.0
    nose: float = 1.0
    lips: float = 1.0

    @classmethod
    def from_seed(cls, seed: int) -> "Proportions":
        if seed == 0:
            return cls()
        rng = np.random.default_rng(seed)
        return cls(*(1.0 + 0.04 * rng.standard_normal(5)))


# ---------------------------------------------------------------- implicit shape
def _ellipsoid(p, c, r):
    """Approximate signed distance to an ellipsoid (good near its surface)."""
    q = (p - c) / r
    return (np.linalg.norm(q, axis=-1) - 1.0) * np.min(r)


def _capsule(p, a, b, r):
    pa, ba = p - a, b - a
    h = np.clip((pa @ ba) / (ba @ ba), 0.0, 1.0)
    return np.linalg.norm(pa - h[..., None] * ba, axis=-1) - r


def _smin(a, b, k):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a, b, k):
    return -_smin(-a, -b, k)


def head_sdf(p: np.ndarray, prop: Proportions = Proportions()) -> np.ndarray:
    """Negative inside the head. p: (..., 3)."""
    fw, jw = prop.face_width, prop.jaw_width
    d = _ellipsoid(p, np.array([0, 0.028, -0.018]), np.array([0.074, 0.088, 0.094]) * prop.skull)
    d = _smin(d, _ellipsoid(p, np.array([0, 0.0, 0.022]), np.array([0.064 * fw, 0.072, 0.068])), 0.02)
    d = _smin(d, _ellipsoid(p, np.array([0, -0.048, 0.018]), np.array([0.056 * jw, 0.040, 0.066])), 0.02)
    d = _smin(d, _ellipsoid(p, np.array([0, -0.074, 0.058]), np.array([0.021, 0.017, 0.019])), 0.012)
    # neck: a vertical capsule cut flat at the bottom
    neck = _capsule(p, np.array([0, -0.25, NECK_AXIS_Z]), np.array([0, -0.02, -0.025]), 0.05)
    neck = _smax(neck, -(p[..., 1] - NECK_BOTTOM_Y), 0.004)
    d = _smin(d, neck, 0.025)
    # cheekbones and brow ridge
    for sx in (1, -1):
        d = _smin(d, _ellipsoid(p, np.array([0.046 * sx * fw, 0.004, 0.058]), np.array([0.02, 0.014, 0.02])), 0.012)
        d = _smin(
            d, _capsule(p, np.array([0.012 * sx, 0.045, 0.082]), np.array([0.045 * sx, 0.043, 0.066]), 0.009), 0.01
        )
    # eye sockets carved, then the lids wrap the eyeballs
    for c in EYE_CENTERS:
        d = _smax(d, -_ellipsoid(p, c + np.array([0, 0.002, 0.012]), np.array([0.019, 0.015, 0.014])), 0.006)
        d = _smin(d, np.linalg.norm(p - c, axis=-1) - (EYE_RADIUS + 0.0022), 0.004)
    # nose: bridge, tip, alae
    n = prop.nose
    nose = _capsule(p, np.array([0, 0.03, 0.078]), np.array([0, -0.004, 0.078 + 0.03 * n]), 0.0065)
    nose = _smin(nose, _ellipsoid(p, np.array([0, -0.008, 0.075 + 0.03 * n]), np.array([0.012, 0.011, 0.012])), 0.006)
    for sx in (1, -1):
        nose = _smin(
            nose, _ellipsoid(p, np.array([0.0135 * sx, -0.014, 0.092]), np.array([0.008, 0.007, 0.008])), 0.004
        )
    d = _smin(d, nose, 0.008)
    # lips: upper and lower, with a philtrum dip left to the smooth union
    lp = prop.lips
    d = _smin(d, _ellipsoid(p, np.array([0, -0.0385, 0.086]), np.array([0.025, 0.0065 * lp, 0.010])), 0.006)
    d = _smin(d, _ellipsoid(p, np.array([0, -0.0505, 0.084]), np.array([0.022, 0.0075 * lp, 0.010])), 0.006)
    # ears: flattened discs on the sides
    for sx in (1, -1):
        d = _smin(d, _ellipsoid(p, np.array([0.072 * sx, 0.008, -0.012]), np.array([0.012, 0.03, 0.018])), 0.008)
    return d


def cast_rays(
    origins: np.ndarray, dirs: np.ndarray, prop: Proportions, t_max: float = 0.3, n_samples: int = 400
) -> np.ndarray:
    """Distance along each ray to the OUTERMOST surface crossing (bisection-refined)."""
    t = np.linspace(0.0, t_max, n_samples)
    pts = origins[:, None, :] + t[None, :, None] * dirs[:, None, :]
    inside = head_sdf(pts, prop) < 0
    # last inside sample along each ray
    last = n_samples - 1 - np.argmax(inside[:, ::-1], axis=1)
    if not inside.any(axis=1).all():
        raise RuntimeError("a ray missed the head")
    lo, hi = t[last], t[np.minimum(last + 1, n_samples - 1)]
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        f = head_sdf(origins + mid[:, None] * dirs, prop)
        lo, hi = np.where(f < 0, mid, lo), np.where(f < 0, hi, mid)
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------- the ray grid
def _angle_to(point: np.ndarray) -> tuple[float, float]:
    """(azimuth, elevation) of a point seen from the head origin."""
    q = point - HEAD_ORIGIN
    return float(np.arctan2(q[0], q[2])), float(np.arctan2(q[1], np.hypot(q[0], q[2])))


def column_azimuths(n_cols: int = N_COLS, front_density: float = 0.45) -> np.ndarray:
    """Azimuths (radians, 0 = front), denser over the face than behind the head."""
    s = -1.0 + 2.0 * np.arange(n_cols) / n_cols
    return np.pi * (front_density * s + (1 - front_density) * s**3)


@dataclass
class Slit:
    """A hole between grid rows `row` and `row + 1` over columns `cols`."""

    name: str
    row: int
    cols: np.ndarray


@dataclass
class Surface:
    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3)
    grid_shape: tuple[int, int]  # (rows, cols) of the skin grid (after the top pole)
    theta: np.ndarray  # (cols,)
    slits: dict[str, Slit]
    eyeballs: dict[str, np.ndarray] = field(default_factory=dict)  # name -> vertex indices
    n_skin: int = 0

    def grid_index(self, row, col):
        """Vertex index of grid (row, col); the top pole is vertex 0."""
        return 1 + np.asarray(row) * self.grid_shape[1] + np.asarray(col) % self.grid_shape[1]


def _row_plan(alpha_mouth: float, alpha_eye: float):
    """Base elevations of the head rows (from the head origin), top to bottom.

    The mouth and eye slit lines fall exactly half-way between two base rows."""
    n_between = 19  # rows between the eye and mouth slits
    step = (alpha_eye - alpha_mouth) / n_between
    face = alpha_mouth + (np.arange(-12, 44)[::-1] + 0.5) * step  # ~ -52 deg .. +86 deg in face spacing
    face = face[face < np.radians(47)]
    top = np.linspace(np.radians(84), face[0] + 1.6 * step, 9)
    rows = np.concatenate([top, face])
    rows = rows[rows > np.radians(-50)]
    r_mouth = int(np.argmin(np.abs(rows - (alpha_mouth + 0.5 * step))))
    r_eye = int(np.argmin(np.abs(rows - (alpha_eye + 0.5 * step))))
    return rows, r_mouth, r_eye, step


def _warp(base: np.ndarray, knots_from, knots_to, weight):
    """Monotone piecewise-linear remap of one column's row elevations, blended by weight."""
    kf, kt = np.asarray(knots_from), np.asarray(knots_to)
    order = np.argsort(kf)
    inside = (base >= kf.min()) & (base <= kf.max())
    mapped = np.where(inside, np.interp(base, kf[order], kt[order]), base)
    return base + weight * (mapped - base)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def build_surface(prop: Proportions = Proportions(), n_cols: int = N_COLS) -> Surface:
    theta = column_azimuths(n_cols)
    th_m, al_m = _angle_to(MOUTH_POINT)
    th_e, al_e = _angle_to(EYE_CENTERS[0] + np.array([0, 0, EYE_RADIUS]))
    rows, r_m, r_e, step = _row_plan(al_m, al_e)
    alpha = np.repeat(rows[:, None], n_cols, axis=1)

    # mouth: the two slit rows meet at the lip line across the mouth's width
    th_corner = np.arctan2(MOUTH_HALF_WIDTH, MOUTH_POINT[2] - HEAD_ORIGIN[2])
    w_mouth = 1.0 - _smoothstep((np.abs(theta) - th_corner) / (4 * np.diff(theta[n_cols // 2 :][:2])[0]))
    band = 6 * step
    eps = np.radians(0.05)
    curve = al_m + np.radians(1.2) * (theta / th_corner) ** 2  # corners slightly up
    for j in range(n_cols):
        kf = [al_m - band, rows[r_m + 1], rows[r_m], al_m + band]
        kt = [al_m - band, curve[j] - eps, curve[j] + eps, al_m + band]
        alpha[:, j] = _warp(alpha[:, j], kf, kt, w_mouth[j])

    # eyes: almond openings, upper lid higher than the lower lid is low
    half_w = np.arctan2(0.0135, EYE_CENTERS[0, 2] + EYE_RADIUS - HEAD_ORIGIN[2])
    dcol = np.diff(theta[n_cols // 2 :][:2])[0]
    eye_cols = {}
    for name, sx in (("eye_L", 1.0), ("eye_R", -1.0)):
        u = (theta - sx * th_e) / half_w  # -1..1 across the eye
        prof = np.sqrt(np.clip(1 - u**2, 0, 1)) * (1 + 0.15 * sx * u)  # outer corner higher
        w_eye = 1.0 - _smoothstep((np.abs(u) - 1.0) * half_w / (3 * dcol))
        eband = 5 * step
        for j in np.nonzero(w_eye > 0)[0]:
            up, lo = np.radians(4.0) * prof[j], np.radians(2.4) * prof[j]
            kf = [al_e - eband, rows[r_e + 1], rows[r_e], al_e + eband]
            kt = [al_e - eband, al_e - lo - eps, al_e + up + eps, al_e + eband]
            alpha[:, j] = _warp(alpha[:, j], kf, kt, w_eye[j])
        eye_cols[name] = np.nonzero(np.abs(u) < 1.0 - 1e-6)[0]

    # rays: head rows fan from the head origin; neck rows slide down the axis
    n_neck, n_cap = 7, 3
    dirs, origins = [], []
    cos_a = np.cos(alpha)
    head_dirs = np.stack([np.sin(theta)[None] * cos_a, np.sin(alpha), np.cos(theta)[None] * cos_a], -1)
    dirs.append(head_dirs.reshape(-1, 3))
    origins.append(np.repeat(HEAD_ORIGIN[None], head_dirs.shape[0] * n_cols, 0))
    a_last = rows[-1]
    for k in range(1, n_neck + 1):
        f = k / n_neck
        a = a_last * (1 - f) ** 1.3
        o = np.array([0.0, HEAD_ORIGIN[1] + (NECK_BOTTOM_Y + 0.012 - HEAD_ORIGIN[1]) * f**0.9, NECK_AXIS_Z])
        d = np.stack([np.sin(theta) * np.cos(a), np.full(n_cols, np.sin(a)), np.cos(theta) * np.cos(a)], -1)
        dirs.append(d), origins.append(np.repeat(o[None], n_cols, 0))
    for k in range(1, n_cap + 1):
        a = -np.pi / 2 * k / (n_cap + 1)
        o = np.array([0.0, NECK_BOTTOM_Y + 0.012, NECK_AXIS_Z])
        d = np.stack([np.sin(theta) * np.cos(a), np.full(n_cols, np.sin(a)), np.cos(theta) * np.cos(a)], -1)
        dirs.append(d), origins.append(np.repeat(o[None], n_cols, 0))
    dirs = np.concatenate(dirs)
    origins = np.concatenate(origins)
    t = cast_rays(origins, dirs, prop)
    grid = origins + t[:, None] * dirs
    n_rows = grid.shape[0] // n_cols
    top = HEAD_ORIGIN + cast_rays(HEAD_ORIGIN[None], np.array([[0, 1.0, 0]]), prop)[0] * np.array([0, 1.0, 0])
    bo = np.array([0.0, NECK_BOTTOM_Y + 0.012, NECK_AXIS_Z])
    bottom = bo + cast_rays(bo[None], np.array([[0, -1.0, 0]]), prop)[0] * np.array([0, -1.0, 0])
    verts = np.concatenate([top[None], grid, bottom[None]])

    mouth_cols = np.nonzero(np.abs(theta) < th_corner * (1 - 1e-6))[0]
    slits = {
        "mouth": Slit("mouth", r_m, mouth_cols),
        "eye_L": Slit("eye_L", r_e, eye_cols["eye_L"]),
        "eye_R": Slit("eye_R", r_e, eye_cols["eye_R"]),
    }
    surf = Surface(verts, np.zeros((0, 3), np.int64), (n_rows, n_cols), theta, slits)
    _shape_slit_edges(surf)
    surf.faces = _grid_faces(n_rows, n_cols, slits)
    surf.n_skin = len(surf.vertices)
    _add_eyeballs(surf)
    return surf


def _shape_slit_edges(surf: Surface) -> None:
    """Roll the lip edges into the mouth and seat the lid edges on the eyeballs."""
    v = surf.vertices
    m = surf.slits["mouth"]
    for row in (m.row, m.row + 1):
        for depth, r in ((0.0035, row), (0.0012, row + (-1 if row == m.row else 1))):
            idx = surf.grid_index(r, m.cols)
            taper = np.sin(np.linspace(0, np.pi, len(m.cols) + 2)[1:-1]) ** 0.5
            v[idx, 2] -= depth * taper
    for name, c in (("eye_L", EYE_CENTERS[0]), ("eye_R", EYE_CENTERS[1])):
        s = surf.slits[name]
        for row in (s.row, s.row + 1):
            idx = surf.grid_index(row, s.cols)
            off = v[idx] - c
            v[idx] = c + off / np.linalg.norm(off, axis=1, keepdims=True) * (EYE_RADIUS + 0.0006)


def _grid_faces(n_rows: int, n_cols: int, slits: dict[str, Slit]) -> np.ndarray:
    """Triangles of the closed grid (poles included) minus the slit quads, outward facing."""

    def gi(r, c):
        return 1 + r * n_cols + (c % n_cols)

    holes = {(s.row, int(c)) for s in slits.values() for c in s.cols[:-1]}
    faces = []
    for c in range(n_cols):  # top cap
        faces.append((0, gi(0, c), gi(0, c + 1)))
    for r in range(n_rows - 1):
        for c in range(n_cols):
            if (r, c) in holes:
                continue
            a, b, cc, d = gi(r, c), gi(r, c + 1), gi(r + 1, c + 1), gi(r + 1, c)
            faces += [(a, cc, b), (a, d, cc)]
    bottom = 1 + n_rows * n_cols
    for c in range(n_cols):
        faces.append((bottom, gi(n_rows - 1, c + 1), gi(n_rows - 1, c)))
    return np.asarray(faces, dtype=np.int64)


def _add_eyeballs(surf: Surface, n_lat: int = 10, n_lon: int = 16) -> None:
    """Two closed UV spheres (outward facing), appended after the skin."""
    verts, faces = [surf.vertices], [surf.faces]
    base = len(surf.vertices)
    for name, c in (("eye_L", EYE_CENTERS[0]), ("eye_R", EYE_CENTERS[1])):
        # poles along z so the front pole is the pupil centre
        lat = np.linspace(0, np.pi, n_lat + 2)[1:-1]
        lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
        ring = np.stack(
            [
                np.sin(lat)[:, None] * np.cos(lon)[None],
                np.sin(lat)[:, None] * np.sin(lon)[None],
                np.cos(lat)[:, None] * np.ones_like(lon)[None],
            ],
            -1,
        ).reshape(-1, 3)
        pts = np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]]) * EYE_RADIUS + c
        n = len(pts)

        def gi(r, k):
            return base + 1 + r * n_lon + (k % n_lon)

        f = [(base, gi(0, k), gi(0, k + 1)) for k in range(n_lon)]
        for r in range(n_lat - 1):
            for k in range(n_lon):
                a, b, cc, d = gi(r, k), gi(r, k + 1), gi(r + 1, k + 1), gi(r + 1, k)
                f += [(a, d, cc), (a, cc, b)]
        last = base + n - 1
        f += [(last, gi(n_lat - 1, k + 1), gi(n_lat - 1, k)) for k in range(n_lon)]
        verts.append(pts)
        faces.append(np.asarray(f))
        surf.eyeballs[name] = np.arange(base, base + n)
        base += n
    surf.vertices = np.concatenate(verts)
    surf.faces = np.concatenate(faces).astype(np.int64)
