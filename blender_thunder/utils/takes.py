"""Takes as add-on-owned Actions: create, show through the NLA, replace, remove.

Ownership: an Action is the add-on's when its `thunder_take` property says so
*and* records the Action's own name. A copy the artist makes (`.001`) or a take
the artist renames is theirs from then on: the add-on never edits or deletes it.
"""
from __future__ import annotations

import base64
import random

import bpy
import numpy as np

from . import keying, resample
from .compat import SLOTTED_ACTIONS
from .messages import Take
from ..rig import axis_angle_to_bone_quaternions
from .rigs import Rig
from .strips import StripInfo

OWNER = "thunder_take"
TRACK_PREFIX = "THUNDER "
SRC_FPS = 25.0


def is_owned(action) -> bool:
    meta = action.get(OWNER) if action is not None else None
    return meta is not None and meta.get("owner") == "thunder" and meta.get("name") == action.name


def meta(action) -> dict:
    m = action.get(OWNER)
    return m.to_dict() if m is not None else {}


def stored_take(action) -> Take:
    """The backend's 25 fps arrays kept in the take (for Listen and checks)."""
    m = action[OWNER]
    exp = np.frombuffer(base64.b64decode(m["exp_b64"]), dtype="<f4").reshape(-1, 50)
    jaw = np.frombuffer(base64.b64decode(m["jaw_b64"]), dtype="<f4").reshape(-1, 3)
    return Take(int(m["seed"]), float(m["score"]), exp, jaw)


def track_name(strip_name: str) -> str:
    return f"{TRACK_PREFIX}{strip_name}"[:63]


def create(rig: Rig, info: StripInfo, take: Take, extra: dict | None = None) -> list:
    """Key one take on new Action(s); returns them. Only adds datablocks."""
    exp = resample.resample(take.exp, SRC_FPS, info.fps)
    jaw = axis_angle_to_bone_quaternions(resample.resample(take.jaw, SRC_FPS, info.fps),
                                         rig.armature.data.bones["jaw"])
    frames = info.frame_start + np.arange(len(exp), dtype=np.float64)
    name = f"{info.strip} s{take.seed}"
    tc = keying.new_take_channels(name, {"KEY": rig.key.name, "OBJECT": rig.armature.name}, {"OBJECT": " jaw"})
    try:
        key_t, arm_t = tc.targets["KEY"], tc.targets["OBJECT"]
        for i in range(exp.shape[1]):
            keying.write_curves(key_t, f'key_blocks["exp{i:03d}"].value', frames, exp[:, i], "Expression")
        keying.write_curves(arm_t, 'pose.bones["jaw"].rotation_quaternion', frames, jaw, "jaw")
        record = {
            "owner": "thunder", "scene": info.scene, "strip": info.strip, "rig": rig.name,
            "seed": int(take.seed), "score": float(take.score), "n_frames": int(take.n_frames),
            "duration": float((take.n_frames - 1) / SRC_FPS), "fps": float(info.fps),
            "frame_start": float(frames[0]), "frame_end": float(frames[-1]),
            "audio_start": float(info.start_s), "audio_end": float(info.end_s),
            "exp_b64": base64.b64encode(take.exp.astype("<f4").tobytes()).decode(),
            "jaw_b64": base64.b64encode(take.jaw.astype("<f4").tobytes()).decode(),
            **(extra or {}),
        }
        for act in tc.actions:
            act[OWNER] = {**record, "name": act.name, "actions": [a.name for a in tc.actions]}
            act.use_fake_user = True  # unpicked takes must survive save + reload
    except Exception:
        for act in tc.actions:
            bpy.data.actions.remove(act)
        raise
    return tc.actions


def targets(actions) -> dict:
    """id_type -> keying.Target of a take's Action(s)."""
    out = {}
    for act in actions:
        if SLOTTED_ACTIONS:
            for slot in act.slots:
                out[slot.target_id_type] = keying.Target(slot.target_id_type, slot.name_display, act, slot)
        else:
            out[act.id_root] = keying.Target(act.id_root, act.name, act)
    return out


def show(rig: Rig, actions) -> None:
    """Make a take the one that plays: an add-on NLA track per rig datablock and strip."""
    m = meta(actions[0])
    tg = targets(actions)
    name = actions[0].name
    f0, f1 = m["frame_start"], max(m["frame_end"], m["frame_start"] + 1)
    rig.armature.pose.bones["jaw"].rotation_mode = "QUATERNION"
    widen_sliders(rig, stored_take(actions[0]).exp)
    keying.assign_nla(rig.key, track_name(m["strip"]), tg["KEY"], f0, f1, name)
    keying.assign_nla(rig.armature, track_name(m["strip"]), tg["OBJECT"], f0, f1, name)


def widen_sliders(rig: Rig, exp: np.ndarray) -> None:
    """Shape key values are clamped to the slider range (0..1 by default) and
    FLAME coefficients are signed: widen the range (Blender allows -10..10)."""
    lo, hi = float(np.floor(exp.min())), float(np.ceil(exp.max()))
    for name in rig.key.key_blocks.keys():
        if name.startswith("exp"):
            kb = rig.key.key_blocks[name]
            kb.slider_min = max(-10.0, min(kb.slider_min, lo))
            kb.slider_max = min(10.0, max(kb.slider_max, hi))


def shown(rig: Rig, strip_name: str):
    """The Action now played for a strip on this rig (None if none)."""
    ad = rig.key.animation_data
    track = ad.nla_tracks.get(track_name(strip_name)) if ad else None
    return track.strips[0].action if track is not None and len(track.strips) else None


def unshow(rig: Rig, strip_name: str) -> None:
    for idb in (rig.key, rig.armature):
        ad = idb.animation_data
        track = ad.nla_tracks.get(track_name(strip_name)) if ad else None
        if track is not None:
            ad.nla_tracks.remove(track)


def extend_range(scene, frame_start: float, frame_end: float) -> None:
    """Grow the scene range to hold a take; never shrink it."""
    scene.frame_start = min(scene.frame_start, int(np.floor(frame_start)))
    scene.frame_end = max(scene.frame_end, int(np.ceil(frame_end)))


def remove(actions) -> None:
    """Delete a take's Actions: only those the add-on owns."""
    for act in actions:
        if not is_owned(act):
            raise PermissionError(f"action {act.name!r} is not a THUNDER take: left alone")
    for act in list(actions):
        bpy.data.actions.remove(act)


def take_actions(action) -> list:
    """All Actions of the take `action` belongs to (several on legacy Blender)."""
    names = meta(action).get("actions") or [action.name]
    return [bpy.data.actions[n] for n in names if n in bpy.data.actions] or [action]


def new_seed() -> int:
    return random.SystemRandom().randrange(0, 2**31 - 1)


def scene_takes(scene, strip_name: str | None = None) -> list:
    """Owned take Actions of a scene (optionally of one strip), primary Action only."""
    out = []
    for act in bpy.data.actions:
        m = act.get(OWNER)
        if is_owned(act) and m.get("scene") == scene.name and (strip_name is None or m.get("strip") == strip_name) \
                and (m.get("actions") or [act.name])[0] == act.name:
            out.append(act)
    return out

