"""Keying from arrays, at several scene fps, on the API path this Blender has."""
from __future__ import annotations

import bpy
import numpy as np

from common import addon, fresh_scene, jaw_to_bone, real_rig, synthetic_take

EXP_CHECK = (0, 17, 49)


def keys_at_fps(head_path: str, fps: str, n_frames: int = 40, frame_start: int = 7, seed: int = 3) -> dict:
    scene = fresh_scene(fps)
    takes, strips, rigs, keying, compat = (addon(f"utils.{m}") for m in ("takes", "strips", "rigs", "keying", "compat"))
    rig = rigs.resolve(real_rig(scene, head_path))
    info = strips.StripInfo(scene.name, "line", "", 0.0, n_frames / 25, frame_start, compat.scene_fps(scene))
    acts = takes.create(rig, info, synthetic_take(seed, n_frames))
    takes.show(rig, acts)
    exp = [keying.read_curve(acts[0], f'key_blocks["exp{i:03d}"].value').tolist() for i in EXP_CHECK]
    jaw = [keying.read_curve(acts[-1], 'pose.bones["jaw"].rotation_quaternion', i).tolist() for i in range(4)]
    frames = [int(f) for f, _ in exp[0]]
    evaluated = []
    for f in frames:
        scene.frame_set(f)
        kb = rig.key.key_blocks
        evaluated.append([kb[f"exp{i:03d}"].value for i in EXP_CHECK]
                         + list(rig.armature.pose.bones["jaw"].rotation_quaternion))
    n_curves = sum(len(bag.fcurves) for layer in acts[0].layers for strip in layer.strips
                   for bag in strip.channelbags) if compat.SLOTTED_ACTIONS else len(acts[0].fcurves)
    return {"exp": exp, "jaw": jaw, "evaluated": evaluated, "to_bone": jaw_to_bone(rig.armature),
            "slotted": compat.SLOTTED_ACTIONS, "n_actions": len(acts), "n_curves": n_curves,
            "fps": compat.scene_fps(scene), "frame_range": [scene.frame_start, scene.frame_end],
            "name": acts[0].name, "owned": takes.is_owned(acts[0]), "version": list(bpy.app.version)}


def ownership(head_path: str) -> dict:
    scene = fresh_scene("25")
    takes, strips, rigs, keying = (addon(f"utils.{m}") for m in ("takes", "strips", "rigs", "keying"))
    rig = rigs.resolve(real_rig(scene, head_path))
    # The artist's own animation on the same shape keys, as the active action.
    rig.key.key_blocks["exp000"].value = 0.25
    rig.key.key_blocks["exp000"].keyframe_insert("value", frame=1)
    artist = rig.key.animation_data.action
    artist_keys = keying.read_curve(artist, 'key_blocks["exp000"].value').tolist()
    scene.frame_end = 500
    info = strips.StripInfo(scene.name, "line", "", 0.0, 2.0, 20, 25.0)
    acts = takes.create(rig, info, addon("utils.messages").Take(5, 0.7, np.zeros((51, 50), "f4"),
                                                               np.zeros((51, 3), "f4")))
    takes.show(rig, acts)
    takes.extend_range(scene, 20, 70)
    out = {"owned": takes.is_owned(acts[0]), "artist_owned": takes.is_owned(artist),
           "range_kept": [scene.frame_start, scene.frame_end]}
    scene.frame_end = 30
    takes.extend_range(scene, 20, 70)
    out["range_grown"] = [scene.frame_start, scene.frame_end]
    copy = acts[0].copy()
    out["copy_owned"] = takes.is_owned(copy)
    refused = []
    for act in (artist, copy):
        try:
            takes.remove([act])
        except PermissionError:
            refused.append(act.name)
    out["refused"] = refused
    out["artist_still_active"] = rig.key.animation_data.action == artist
    out["artist_keys_same"] = keying.read_curve(artist, 'key_blocks["exp000"].value').tolist() == artist_keys
    out["tracks"] = [t.name for t in rig.key.animation_data.nla_tracks]
    acts[0].name = "my favourite take"
    out["renamed_owned"] = takes.is_owned(acts[0])
    acts[0].name = out_name = f"line s5"
    out["renamed_back_owned"] = takes.is_owned(bpy.data.actions[out_name])
    takes.unshow(rig, "line")
    takes.remove(acts)
    out["removed"] = out_name not in bpy.data.actions
    out["actions_left"] = sorted(a.name for a in bpy.data.actions)
    return out
