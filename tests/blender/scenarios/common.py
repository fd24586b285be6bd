"""Helpers shared by the scenarios (run inside bpy)."""

from __future__ import annotations

import importlib

import bpy
import numpy as np
from takes import take_arrays  # the scenarios folder is on sys.path (bpy_runner)

ADDON = "bl_ext.user_default.thunder"
FPS = {"23.976": (24, 1.001), "24": (24, 1.0), "25": (25, 1.0), "30": (30, 1.0), "60": (60, 1.0)}


def addon(sub: str = ""):
    return importlib.import_module(f"{ADDON}.{sub}" if sub else ADDON)


def fresh_scene(fps: str = "25"):
    bpy.ops.wm.read_homefile(use_empty=True)  # keeps the preferences (the add-on stays enabled)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS[fps]
    scene.frame_start, scene.frame_end = 1, 10
    return scene


def real_rig(scene, head_path: str):
    """The rig Add THUNDER Head builds (rig.py), from a head.npz."""
    with open(head_path, "rb") as fh:
        return addon("utils.generation").add_head(scene, fh.read())


def jaw_to_bone(arm) -> list:
    """Head frame -> jaw bone rest frame, for the tests' own quaternion reference."""
    flame_to_blender = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    rest = np.array(arm.data.bones["jaw"].matrix_local.to_3x3())
    return (rest.T @ flame_to_blender).tolist()


def add_sound(scene, path: str, frame_start: int = 1, channel: int = 1, name: str = "line"):
    compat = addon("utils.compat")
    return compat.top_strips(scene).new_sound(name, path, channel=channel, frame_start=frame_start)


def synthetic_take(seed: int, n_frames: int):
    """A smooth deterministic take (the tests recompute it outside Blender)."""
    exp, jaw = take_arrays(seed, n_frames)
    return addon("core.messages").Take(seed, 0.5 + 0.01 * seed, exp, jaw)
