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
        evaluated.append(
            [kb[f"exp{i:03d}"].value for i in EXP_CHECK] + list(rig.armature.pose.bones["jaw"].rotation_quaternion)
        )
    n_curves = (
        sum(len(bag.fcurves) for layer in acts[0].layers for strip in layer.strips for bag in strip.channelbags)
        if compat.SLOTTED_ACTIONS
        else len(acts[0].fcurves)
    )
    return {
        "exp": exp,
        "jaw": jaw,
        "evaluated": evaluated,
        "to_bone": jaw_to_bone(rig.armature),
        "slotted": compat.SLOTTED_ACTIONS,
        "n_actions": len(acts),
        "n_curves": n_curves,
        "fps": compat.scene_fps(scene),
        "frame_range": [scene.frame_start, scene.frame_end],
        "name": acts[0].name,
        "owned": takes.is_owned(acts[0]),
        "version": list(bpy.app.version),
    }


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
    acts = takes.create(
        rig, info, addon("core.messages").Take(5, 0.7, np.zeros((51, 50), "f4"), np.zeros((51, 3), "f4"))
    )
    takes.show(rig, acts)
    takes.extend_range(scene, 20, 70)
    out = {
        "owned": takes.is_owned(acts[0]),
        "artist_owned": takes.is_owned(artist),
        "range_kept": [scene.frame_start, scene.frame_end],
    }
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
    out["rest_needed"] = takes.REST_NEEDED
    acts[0].name = "my favourite take"
    out["renamed_owned"] = takes.is_owned(acts[0])
    acts[0].name = out_name = "line s5"
    out["renamed_back_owned"] = takes.is_owned(bpy.data.actions[out_name])
    takes.unshow(rig, "line")
    takes.remove(acts)
    out["removed"] = out_name not in bpy.data.actions
    out["actions_left"] = sorted(a.name for a in bpy.data.actions)
    return out


def head_ids(head_path: str) -> dict:
    """A rig without the recorded id is recognised by its geometry; an edited one is not."""
    scene = fresh_scene("25")
    rigs = addon("utils.rigs")
    rig = rigs.resolve(real_rig(scene, head_path))
    recorded = rig.head_id
    for owner in (rig.mesh, rig.armature):
        del owner["thunder_head_id"]
    computed = rig.head_id
    rig.key.reference_key.data[0].co.x += 0.001
    edited = rig.head_id
    try:
        rigs.check_head_ids(rig.name, edited, recorded)
        refused = ""
    except rigs.RigError as exc:
        refused = str(exc)
    return {"recorded": recorded, "computed": computed, "edited": edited, "refused": refused}


def keys_at_many(head_path: str, fps_list: list, **kwargs) -> dict:
    """keys_at_fps for several frame rates in one process (one bpy start-up)."""
    return {fps: keys_at_fps(head_path, fps, **kwargs) for fps in fps_list}


def flame_folder(head_dir: str, pkl_only_dir: str) -> dict:
    """Preferences › FLAME model folder: Add THUNDER Head builds from its head.npz, no backend."""
    scene = fresh_scene("25")
    prefs = bpy.context.preferences.addons["bl_ext.user_default.thunder"].preferences
    prefs.flame_dir, prefs.auto_start, prefs.backend_url = head_dir, False, "http://127.0.0.1:9"
    result = bpy.ops.thunder.add_head()
    rig = addon("utils.rigs").resolve(scene.thunder.rig)
    prefs.flame_dir = pkl_only_dir
    try:
        bpy.ops.thunder.add_head()
        refused = ""
    except RuntimeError as exc:  # operator errors surface as RuntimeError in Python
        refused = str(exc)
    return {
        "result": sorted(result),
        "head_id": rig.head_id,
        "n_rigs": len([o for o in bpy.data.objects if o.type == "ARMATURE"]),
        "refused": refused,
    }
