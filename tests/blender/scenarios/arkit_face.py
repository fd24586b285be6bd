"""The test character's geometry (numpy only: the scenarios build it in Blender, the tests
compute from the same arrays what the add-on should key on it).

A 6 x 6 sheet of skin (each ARKit shape that is not about the mouth moves one of its vertices,
so every shape key is its own deformation) and, in front of it, a mouth: an upper and a lower
lip, five vertices wide and two rows deep, whose edges are 1.5 mm apart at rest, the upper lip
overhanging, with the Face Units head's lip moves (studio/characters/faceunits.py,
tests/blender/test_lipseal.py) where they matter: jawOpen drops the lower lip and chin 38 mm,
mouthClose brings the lower lip (not the chin) back, and mouthPress / mouthSmile lift the lower
lip at the middle into and past the upper one, more than on the Face Units head (4 and 2.5 mm
per side there against 1.4-1.7), so that a real take's m/p/b (lips pressed, a hint of a smile)
leaves this character's lips apart unless the add-on seals them.
"""

from __future__ import annotations

import numpy as np

GRID = 6
LIP_X = np.linspace(-0.025, 0.025, 5)
LIP_Y, LIP_Z = -0.02, -0.03  # the lower lip's edge (m): in front of the sheet, below its middle
REST_MM = (0.0, -1.34, 0.67)  # upper-minus-lower lip edge at rest: 1.5 mm apart
JAW_DROP_MM = (0.4, 17.0, -34.5)  # where jawOpen moves the lower lip and chin
LIFT_MM = {"mouthPress": 4.0, "mouthSmile": 2.5}  # per side, at the middle of the lower lip
MOUTH = ("jawOpen", "mouthClose", "mouthPressLeft", "mouthPressRight", "mouthSmileLeft", "mouthSmileRight")


def arkit_name(name: str, style: str) -> str:
    """ARKit's name in a rig's own spelling: 'apple' eyeBlinkLeft, 'suffix' eyeBlink_L, 'pascal' EyeBlinkLeft."""
    if style == "suffix":
        return name.replace("Left", "_L").replace("Right", "_R")
    if style == "pascal":
        return name[0].upper() + name[1:]
    return name


def geometry(names, style: str = "suffix", extra=()) -> tuple[np.ndarray, list, dict]:
    """(basis (V, 3) float32, quads, shape key (in `style`'s spelling) -> its vertices (V, 3) float32,
    as Blender stores them) for ARKit's `names` (retarget.ARKIT_52) and `extra` shapes of the
    studio's own."""
    xs, zs = np.meshgrid(np.linspace(-0.1, 0.1, GRID), np.linspace(-0.1, 0.1, GRID))
    sheet = np.stack([xs.ravel(), np.zeros(GRID * GRID), zs.ravel()], 1)
    faces = [
        (i * GRID + j, i * GRID + j + 1, (i + 1) * GRID + j + 1, (i + 1) * GRID + j)
        for i in range(GRID - 1)
        for j in range(GRID - 1)
    ]
    n, w = len(sheet), len(LIP_X)
    rest = np.asarray(REST_MM) / 1000.0
    row = np.stack([LIP_X, np.full(w, LIP_Y), np.full(w, LIP_Z)], 1)
    # rows: upper lip's top, upper lip's edge, lower lip's edge, chin
    rows = [row + rest + [0.0, 0.0, 0.008], row + rest, row, row - [0.0, 0.0, 0.008]]
    mouth = np.concatenate(rows)
    up_top, up_edge, lo_edge, chin = (n + k * w + np.arange(w) for k in range(4))
    faces += [(a[j], a[j + 1], b[j + 1], b[j]) for a, b in ((up_top, up_edge), (lo_edge, chin)) for j in range(w - 1)]
    verts = np.concatenate([sheet, mouth]).astype(np.float32)

    drop = np.asarray(JAW_DROP_MM) / 1000.0
    side = {"Left": np.clip(0.5 + LIP_X / 0.05, 0.0, 1.0), "Right": np.clip(0.5 - LIP_X / 0.05, 0.0, 1.0)}
    shapes = {}
    for k, name in enumerate((*names, *extra)):
        d = np.zeros_like(verts)
        if name == "jawOpen":
            d[lo_edge] = d[chin] = drop
        elif name == "mouthClose":
            d[lo_edge] = -drop
        elif name in MOUTH:
            base = name.replace("Left", "").replace("Right", "")
            # the character's left is +x: its left shape lifts the lower lip most there, half at the middle
            d[lo_edge, 2] = 2.0 * side[name[len(base) :]] * LIFT_MM[base] / 1000.0
        else:
            d[k % n, 1] -= 0.01 * (1 + k % 5)
        shapes[arkit_name(name, style) if name in names else name] = (verts + d).astype(np.float32)
    return verts, faces, shapes


def offsets(verts: np.ndarray, shapes: dict) -> dict:
    """Each shape key's offset from the basis (V, 3), in float64 as the add-on reads them."""
    return {k: v.astype(np.float64) - verts.astype(np.float64) for k, v in shapes.items()}
