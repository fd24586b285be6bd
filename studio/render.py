"""Headless renders of the head rig through bpy (Workbench): stills, contact sheets, and
the Blender head renderer of `thunder-train corpus preview`. The rig is the add-on's
(blender_thunder.rig), so what these show is what an artist gets."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from backend.headfile import load_head_file


def new_scene(resolution=(320, 320)):
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "MATERIAL"
    scene.display.shading.show_cavity = True
    scene.view_settings.view_transform = "Standard"
    scene.world = bpy.data.worlds.new("World")
    return scene


def add_camera(scene, azimuth_deg=20.0, elevation_deg=5.0, distance=0.78, target=(0.0, 0.0, 0.0), lens=85):
    import bpy
    import mathutils

    cam = bpy.data.objects.new("THUNDER_camera", bpy.data.cameras.new("THUNDER_camera"))
    cam.data.lens = lens
    scene.collection.objects.link(cam)
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    t = mathutils.Vector(target)
    cam.location = t + mathutils.Vector(
        (distance * math.sin(a) * math.cos(e), -distance * math.cos(a) * math.cos(e), distance * math.sin(e))
    )
    cam.rotation_euler = (t - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    return cam


def pose(mesh_obj, arm_obj, exp: np.ndarray, jaw: np.ndarray) -> None:
    """Set one frame's psi on the shape keys and the jaw axis-angle on the jaw bone."""
    from blender_thunder.rig import axis_angle_to_bone_quaternions

    keys = mesh_obj.data.shape_keys.key_blocks
    for k, value in enumerate(exp):
        keys[f"exp{k:03d}"].value = float(value)
    pb = arm_obj.pose.bones["jaw"]
    pb.rotation_quaternion = axis_angle_to_bone_quaternions(np.asarray(jaw)[None], arm_obj.data.bones["jaw"])[0]


def render_still(scene, path: str | Path) -> Path:
    import bpy

    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return Path(path)


def contact_sheet(images: list[Path], labels: list[str], out: str | Path, columns: int = 3) -> Path:
    from PIL import Image, ImageDraw

    tiles = [Image.open(p).convert("RGB") for p in images]
    w, h = tiles[0].size
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + 22)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        x, y = (i % columns) * w, (i // columns) * (h + 22)
        sheet.paste(tile, (x, y))
        draw.text((x + 8, y + h + 4), label, fill=(0, 0, 0))
    sheet.save(out)
    return Path(out)


# the demo poses: (label, {semantic control: amount}, jaw opening in radians)
DEMO_POSES = [
    ("neutral", {}, 0.0),
    ("jaw open", {}, 0.30),
    ("pucker", {"pucker": 1.0}, 0.0),
    ("smile", {"smile": 1.5}, 0.0),
    ("blink", {"blink": 1.0}, 0.0),
    ("brow raise", {"brow_raise": 1.0}, 0.0),
]


def render_head_sheet(
    head_dir: str | Path,
    out_png: str | Path,
    blend_path: str | Path | None = None,
    poses=DEMO_POSES,
    resolution=(320, 320),
) -> Path:
    """Render the head in the demo poses as one PNG; optionally save the rigged .blend."""
    import bpy

    from blender_thunder.rig import build_rig

    head = load_head_file(Path(head_dir) / "head.npz")
    names = [str(s) for s in head["semantic_names"]]
    coeffs = head["semantic_coeffs"]
    scene = new_scene(resolution)
    mesh_obj, arm_obj = build_rig(head)
    add_camera(scene, target=(0.0, 0.0, -0.005))
    out_png = Path(out_png)
    tmp = out_png.parent / f".{out_png.stem}_tiles"
    tmp.mkdir(parents=True, exist_ok=True)
    tiles, labels = [], []
    for i, (label, controls, jaw_open) in enumerate(poses):
        psi = sum((amount * coeffs[names.index(c)] for c, amount in controls.items()), np.zeros(coeffs.shape[1]))
        pose(mesh_obj, arm_obj, psi, np.array([jaw_open, 0.0, 0.0]))
        tiles.append(render_still(scene, tmp / f"{i:02d}.png"))
        labels.append(label)
    sheet = contact_sheet(tiles, labels, out_png)
    for p in tiles:
        p.unlink()
    tmp.rmdir()
    if blend_path is not None:
        pose(mesh_obj, arm_obj, np.zeros(coeffs.shape[1]), np.zeros(3))
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(blend_path).resolve()))
    return sheet


class BlenderHeadRenderer:
    """Workbench render of the rigged head (blender_thunder.rig), one still a frame: the
    `blender` renderer of `corpus preview` (an entry point: training never imports this)."""

    def __init__(self, head_dir: str, size: int = 320, yaw_deg: float = 20.0):
        from blender_thunder.rig import build_rig

        self.scene = new_scene((size, size))
        self.mesh, self.arm = build_rig(load_head_file(Path(head_dir) / "head.npz"))
        add_camera(self.scene, azimuth_deg=yaw_deg, distance=0.48, target=(0.0, -0.01, -0.03))
        self._tmp = tempfile.TemporaryDirectory(prefix="thunder-preview-")  # removed with the renderer

    @staticmethod
    def available() -> bool:
        """bpy imports here (the add-on's rig builder needs it)."""
        try:
            import bpy  # noqa: F401

            import blender_thunder.rig  # noqa: F401
        except ImportError:
            return False
        return True

    def __call__(self, exp: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        from PIL import Image

        pose(self.mesh, self.arm, exp, jaw)
        path = render_still(self.scene, os.path.join(self._tmp.name, "frame.png"))
        return np.asarray(Image.open(path).convert("RGB"))
