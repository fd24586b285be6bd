"""Make and inspect .blend files for the batch tests."""

from __future__ import annotations

import bpy

from common import add_sound, addon, fresh_scene, real_rig


def make_blend(path: str, head_path: str, wavs: list, rig: bool = True, fps: str = "24") -> dict:
    scene = fresh_scene(fps)
    if rig:
        real_rig(scene, head_path)
    for i, wav in enumerate(wavs):
        add_sound(scene, wav, frame_start=1 + 60 * i, channel=1 + i, name=f"line{i + 1}")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    return {"saved": path}


def inspect(path: str) -> dict:
    bpy.ops.wm.open_mainfile(filepath=path)
    takes_mod = addon("utils.takes")
    out = {}
    for scene in bpy.data.scenes:
        for act in takes_mod.scene_takes(scene):
            m = takes_mod.meta(act)
            out.setdefault(m["strip"], []).append([act.name, m["seed"], m["frame_start"]])
    return {"takes": out, "list": [i.action.name for s in bpy.data.scenes for i in s.thunder.takes]}


def make_blends(specs: list, head_path: str) -> dict:
    """make_blend for several files in one process."""
    return {s["path"]: make_blend(head_path=head_path, **s) for s in specs}


def inspect_many(paths: list) -> dict:
    return {p: inspect(p)["takes"] for p in paths}
