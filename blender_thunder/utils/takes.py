"""Takes as add-on-owned Actions: create, show through the NLA, replace, remove.

Ownership: an Action is the add-on's when its `thunder_take` property says so
*and* records the Action's own name. A copy the artist makes (`.001`) or a take
the artist renames is theirs from then on: the add-on never edits or deletes it.

NLA layout per rig datablock, bottom to top: the rest track (shape keys: a character's
always, holding the artist's values; the stand-in's only on Blender versions whose NLA
would otherwise rest shape keys at 1.0), the artist's tracks, then a `THUNDER <strip>`
track per sound strip. The datablock's active Action (the artist's) plays over all of
them: `arrange` pushes it into a track right under the THUNDER tracks so the takes play.
"""

from __future__ import annotations

import hashlib
import json
import random

import bpy
import numpy as np

from ..core import resample
from ..core.contract import FPS, N_EXP, N_JAW
from ..core.messages import Take, decode_array, encode_array
from ..rig import bone_rotation_keys, rotation_property
from . import keying
from .compat import SLOTTED_ACTIONS
from .rigs import SHAPE_KEYS, Rig
from .strips import StripInfo

OWNER = "thunder_take"
REST_OWNER = "thunder_rest"
TRACK_PREFIX = "THUNDER "
REST_TRACK = "THUNDER rest face"
REST_ACTION = "THUNDER rest face"
SRC_FPS = float(FPS)  # the backend's motion rate
BLEND_S = 0.1  # take strips blend in and out over this long (at most a quarter of the strip)
JAW = Rig.jaw_bone  # the stand-in's jaw bone
# Blender 5.0 gives a shape key's value an RNA default of 1.0 (0.0 before), and the NLA
# evaluates a channel that no strip covers at that default: every take frame would be
# framed by a crumpled face. A held rest strip under everything brings back 0.0.
REST_NEEDED = bpy.types.ShapeKey.bl_rna.properties["value"].default != 0.0


def is_owned(action) -> bool:
    meta = action.get(OWNER) if action is not None else None
    return meta is not None and meta.get("owner") == "thunder" and meta.get("name") == action.name


def meta(action) -> dict:
    m = action.get(OWNER)
    return m.to_dict() if m is not None else {}


def stored_take(action) -> Take:
    """The backend's 25 fps arrays kept in the take (for Listen and checks)."""
    m = action[OWNER]
    exp, jaw = decode_array(m["exp_b64"], N_EXP), decode_array(m["jaw_b64"], N_JAW)
    return Take(int(m["seed"]), float(m["score"]), exp, jaw)


def track_name(strip_name: str) -> str:
    return f"{TRACK_PREFIX}{strip_name}"[:63]


def create(rig, info: StripInfo, take: Take, extra: dict | None = None, weights: dict | None = None) -> list:
    """Key one take on new Action(s); returns them. Only adds datablocks.
    `rig`: the stand-in Rig (psi on its exp keys) or a Character, whose shape keys get
    `weights` (target shape key -> (T,) at 25 fps, the retargeted take: utils/characters.py)."""
    if weights is None:
        exp = resample.resample(take.exp, SRC_FPS, info.fps)
        channels = [(f"exp{i:03d}", exp[:, i]) for i in range(exp.shape[1])]
    else:
        names = list(weights)
        values = resample.resample(np.stack([weights[n] for n in names], axis=1), SRC_FPS, info.fps)
        channels = [(n, values[:, j]) for j, n in enumerate(names)]
    frames = info.frame_start + np.arange(len(channels[0][1]), dtype=np.float64)
    name = f"{info.strip} s{take.seed}"
    jaw_bone = rig.jaw_bone
    slots = {"KEY": rig.key.name, **({"OBJECT": rig.armature.name} if jaw_bone else {})}
    tc = keying.new_take_channels(name, slots, {"OBJECT": " jaw"})
    try:
        key_t = tc.targets["KEY"]
        for key_name, values in channels:
            keying.write_curves(key_t, shape_key_path(key_name), frames, values, "Expression")
        record = {
            "owner": "thunder",
            "scene": info.scene,
            "strip": info.strip,
            "rig": rig.name,
            "seed": int(take.seed),
            "score": float(take.score),
            "n_frames": int(take.n_frames),
            "duration": float((take.n_frames - 1) / SRC_FPS),
            "fps": float(info.fps),
            "frame_start": float(frames[0]),
            "frame_end": float(frames[-1]),
            "audio_start": float(info.start_s),
            "audio_end": float(info.end_s),
            "exp_b64": encode_array(take.exp),
            "jaw_b64": encode_array(take.jaw),
            **(extra or {}),
        }
        if jaw_bone:
            jaw_mode = rig.armature.pose.bones[jaw_bone].rotation_mode
            jaw_prop, jaw = _jaw_keys(rig, take.jaw, info.fps, jaw_mode)
            keying.write_curves(tc.targets["OBJECT"], bone_path(jaw_bone, jaw_prop), frames, jaw, jaw_bone)
            record["jaw_mode"] = jaw_mode
        if weights is not None:  # a character: what was keyed, to show and export it later
            record.update(target="character", channels=[n for n, _ in channels], jaw_bone=jaw_bone or "")
            record["jaw_armature"] = rig.armature.name if jaw_bone else ""
            record["mapping_json"] = json.dumps(rig.mapping.to_dict())
        for act in tc.actions:
            act[OWNER] = {**record, "name": act.name, "actions": [a.name for a in tc.actions]}
            act.use_fake_user = True  # unpicked takes must survive save + reload
    except Exception:
        for act in tc.actions:
            bpy.data.actions.remove(act)
        raise
    return tc.actions


def shape_key_path(name: str) -> str:
    return f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'


def bone_path(bone: str, prop: str) -> str:
    return f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{prop}'


def _jaw_keys(rig, jaw25: np.ndarray, fps: float, mode: str) -> tuple[str, np.ndarray]:
    """The jaw's keys at the scene fps, in the bone's rotation mode: (property, values)."""
    jaw = rig.jaw_in_armature(resample.resample(jaw25, SRC_FPS, fps))
    return bone_rotation_keys(jaw, rig.armature.data.bones[rig.jaw_bone], mode)


def content_hash(action) -> str:
    """A short digest of a take's stored arrays: two takes share it only if they are the same take."""
    m = action[OWNER]
    return hashlib.sha256((m["exp_b64"] + "|" + m["jaw_b64"]).encode()).hexdigest()[:12]


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


def blend_frames(frame_start: float, frame_end: float, fps: float) -> float:
    """Blend in / out of a take strip: BLEND_S seconds, never more than a quarter of the strip."""
    return float(min(BLEND_S * fps, max(frame_end - frame_start, 0.0) / 4.0))


def show(rig, actions) -> None:
    """Make a take the one that plays: an add-on NLA track per rig datablock and strip.
    The rig's settings stay as they are (the jaw's rotation mode included): an add-on
    take keyed in another jaw rotation mode is re-keyed in the jaw's mode first."""
    m = meta(actions[0])
    tg = targets(actions)
    name = actions[0].name
    f0, f1 = m["frame_start"], max(m["frame_end"], m["frame_start"] + 1)
    rekey_jaw(rig, actions)
    if rig.signed_keys:
        widen_sliders(rig, stored_take(actions[0]).exp)
    blend = blend_frames(f0, f1, float(m.get("fps") or SRC_FPS))
    track = track_name(m["strip"])
    if REST_NEEDED or rig.mapping is not None:  # a character's keys rest at the artist's values, not 0
        ensure_rest(rig.key, m.get("channels") or SHAPE_KEYS)
    keying.assign_nla(rig.key, track, tg["KEY"], f0, f1, name, blend=blend)
    if "OBJECT" in tg and rig.jaw_bone:
        keying.assign_nla(rig.armature, track, tg["OBJECT"], f0, f1, name, blend=blend)


def jaw_mode_stale(rig, action) -> bool:
    """An add-on take keyed in another jaw rotation mode than the jaw bone has now."""
    if action is None or not is_owned(action) or not rig.jaw_bone:
        return False
    return meta(action).get("jaw_mode", "QUATERNION") != rig.armature.pose.bones[rig.jaw_bone].rotation_mode


def rekey_jaw(rig, actions) -> bool:
    """Key an add-on take's jaw again in the jaw bone's rotation mode, if it was keyed in
    another one (the artist changed the mode). Artists' takes are left alone."""
    if not jaw_mode_stale(rig, actions[0]) or not all(is_owned(a) for a in actions):
        return False
    jaw_bone = rig.jaw_bone
    mode = rig.armature.pose.bones[jaw_bone].rotation_mode
    m = meta(actions[0])
    arm_t = targets(actions)["OBJECT"]
    keying.remove_curves(arm_t, bone_path(jaw_bone, rotation_property(m.get("jaw_mode", "QUATERNION"))))
    prop, values = _jaw_keys(rig, stored_take(actions[0]).jaw, float(m["fps"]), mode)
    frames = float(m["frame_start"]) + np.arange(len(values), dtype=np.float64)
    keying.write_curves(arm_t, bone_path(jaw_bone, prop), frames, values, jaw_bone)
    for act in actions:
        rec = act[OWNER]
        rec["jaw_mode"] = mode
    return True


def _is_take_track(track) -> bool:
    return track.name.startswith(TRACK_PREFIX) and track.name != REST_TRACK


def _lowest_take_track(idb):
    ad = idb.animation_data
    for t in ad.nla_tracks if ad else ():
        if _is_take_track(t):
            return t
    return None


def rest_action(key=None, names=SHAPE_KEYS):
    """The add-on's Action holding shape keys at rest (created when missing). The stand-in's
    exp keys rest at 0: one Action shared by every rig. A character's keys (`key`, `names`:
    those its takes key) rest at the values the artist gave them: one Action per Key, which
    grows when a take keys more of them (those rest at 0: by then their value is the NLA's)."""
    character = key is not None and not set(names) <= set(SHAPE_KEYS)
    for act in bpy.data.actions:
        rec = act.get(REST_OWNER)
        if rec is not None and rec.get("owner") == "thunder" and rec.get("name") == act.name:
            if rec.get("key", "") == (key.name if character else ""):
                if character:
                    _rest_channels(act, key, names)
                return act
    label = f"{REST_ACTION} {key.name}" if character else REST_ACTION
    tc = keying.new_take_channels(label, {"KEY": "rest face"})
    act = tc.actions[0]
    act[REST_OWNER] = {"owner": "thunder", "name": act.name, **({"key": key.name} if character else {})}
    if character:
        _rest_channels(act, key, names, initial=True)
    else:
        for name in SHAPE_KEYS:
            keying.write_curves(tc.targets["KEY"], shape_key_path(name), np.zeros(1), np.zeros(1))
    return act


def _rest_channels(act, key, names, initial: bool = False) -> None:
    """Key each of `names` the rest Action lacks, at its value now (`initial`: the artist's,
    no take plays yet) or at 0."""
    target = targets([act])["KEY"]
    have = keying.channel_paths(act, target.slot)
    for name in names:
        path = shape_key_path(name)
        if path not in have:
            kb = key.key_blocks.get(name)
            value = float(kb.value) if initial and kb is not None else 0.0
            keying.write_curves(target, path, np.zeros(1), np.full(1, value))


def _rest_track(key):
    ad = key.animation_data
    track = ad.nla_tracks.get(REST_TRACK) if ad else None
    if track is None or len(track.strips) != 1:
        return None
    act = track.strips[0].action
    rec = act.get(REST_OWNER) if act is not None else None
    return track if rec is not None and rec.get("owner") == "thunder" else None


def ensure_rest(key, names=SHAPE_KEYS) -> bool:
    """Put the rest track at the bottom of the shape keys' NLA stack. Only where it can go
    under everything: never over an artist's track (their animation would be hidden).
    `names`: the shape keys the takes key (a character's grow its rest Action)."""
    ad = key.animation_data or key.animation_data_create()
    track = _rest_track(key)
    if track is not None:
        rest_action(key, names)  # a character's: holds `names` too from now on
        return True
    tracks = list(ad.nla_tracks)
    if tracks and not _is_take_track(tracks[0]):
        return False  # an artist's track is at the bottom: theirs stays the base
    act = rest_action(key, names)
    tg = targets([act])["KEY"]
    track = keying.new_track_below(ad, tracks[0]) if tracks else ad.nla_tracks.new()
    track.name = REST_TRACK
    strip = track.strips.new(REST_TRACK, 0, act)
    if SLOTTED_ACTIONS:
        strip.action_slot = tg.slot
    for _ in range(2):
        strip.action_frame_end, strip.action_frame_start = 1.0, 0.0
        strip.frame_end, strip.frame_start = 1.0, 0.0
    strip.extrapolation = "HOLD"  # before and after: the whole timeline
    track.lock = True
    return True


def _drop_rest(key) -> None:
    """No take track left on the shape keys: the rest track goes too (and its Action when unused)."""
    ad = key.animation_data
    if ad is None or any(_is_take_track(t) for t in ad.nla_tracks):
        return
    track = _rest_track(key)
    if track is None:
        return
    act = track.strips[0].action
    ad.nla_tracks.remove(track)
    if act is not None and act.users == 0 and act[REST_OWNER].get("name") == act.name:
        bpy.data.actions.remove(act)  # only the add-on's own, under its own name


def widen_sliders(rig, exp: np.ndarray) -> None:
    """Shape key values are clamped to the slider range (0..1 by default) and
    FLAME coefficients are signed: widen the range (Blender allows -10..10)."""
    lo, hi = float(np.floor(exp.min())), float(np.ceil(exp.max()))
    for name in rig.key.key_blocks.keys():
        if name.startswith("exp"):
            kb = rig.key.key_blocks[name]
            kb.slider_min = max(-10.0, min(kb.slider_min, lo))
            kb.slider_max = min(10.0, max(kb.slider_max, hi))


def shown(rig, strip_name: str):
    """The Action now played for a strip on this rig (None if none)."""
    ad = rig.key.animation_data
    track = ad.nla_tracks.get(track_name(strip_name)) if ad else None
    return track.strips[0].action if track is not None and len(track.strips) else None


def datablocks(rig) -> list:
    """(datablock, what) a target's takes animate: its shape keys, and the jaw's armature."""
    return [(rig.key, "shape keys")] + ([(rig.armature, "armature")] if rig.jaw_bone else [])


def unshow(rig, strip_name: str) -> None:
    for idb, _ in datablocks(rig):
        ad = idb.animation_data
        track = ad.nla_tracks.get(track_name(strip_name)) if ad else None
        if track is not None:
            ad.nla_tracks.remove(track)
    _drop_rest(rig.key)


def _take_paths(rig, idb) -> set:
    if idb == rig.key:
        return {shape_key_path(n) for n in rig.shape_key_names}
    return {bone_path(rig.jaw_bone, p) for p in ("rotation_quaternion", "rotation_euler", "rotation_axis_angle")}


def overriding_actions(rig) -> list:
    """(what, Action name) for each active Action of the rig that plays over the takes'
    channels: Blender evaluates a datablock's active Action after its NLA tracks."""
    out = []
    for idb, what in datablocks(rig):
        ad = idb.animation_data
        if ad is None or ad.action is None or _lowest_take_track(idb) is None:
            continue
        slot = getattr(ad, "action_slot", None) if SLOTTED_ACTIONS else None
        if SLOTTED_ACTIONS and slot is None:
            continue  # no slot assigned: the Action animates nothing here
        if keying.channel_paths(ad.action, slot) & _take_paths(rig, idb):
            out.append((what, ad.action.name))
    return out


def arrange(rig) -> list:
    """Let the takes play: each active Action of the rig that overrides them moves into an
    NLA track right under the THUNDER tracks (the Action itself untouched), like Blender's
    Push Down but under the takes. Returns the Actions moved."""
    moved = []
    for idb, what in datablocks(rig):
        if not any(w == what for w, _ in overriding_actions(rig)):
            continue
        ad = idb.animation_data
        if ad.use_tweak_mode:
            raise RuntimeError(f"the {what} are in NLA tweak mode: leave it first (Tab in the NLA editor)")
        act = ad.action
        slot = ad.action_slot if SLOTTED_ACTIONS else None
        track = keying.new_track_below(ad, _lowest_take_track(idb))
        track.name = act.name
        strip = track.strips.new(act.name, int(round(act.frame_range[0])), act)
        if SLOTTED_ACTIONS:
            strip.action_slot = slot
        strip.blend_type = ad.action_blend_type
        strip.extrapolation = ad.action_extrapolation
        if ad.action_influence < 1.0:  # as Blender's Push Down: keyed influence keeps the mix
            strip.influence = ad.action_influence
            strip.use_animated_influence = True
        ad.action = None
        moved.append(act.name)
    return moved


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
        if (
            is_owned(act)
            and m.get("scene") == scene.name
            and (strip_name is None or m.get("strip") == strip_name)
            and (m.get("actions") or [act.name])[0] == act.name
        ):
            out.append(act)
    return out


def same_seed_takes(scene, strip_name: str, rig_name: str, seeds) -> dict:
    """seed -> [take's Actions, …]: the add-on's takes of a strip on a rig with those seeds
    (oldest first; more than one only in files from before Generate replaced them)."""
    seeds = {int(s) for s in seeds}
    out: dict = {}
    for act in scene_takes(scene, strip_name):
        m = meta(act)
        if m.get("rig") == rig_name and int(m.get("seed", -1)) in seeds:
            out.setdefault(int(m["seed"]), []).append(take_actions(act))
    for found in out.values():
        found.sort(key=lambda acts: (len(acts[0].name), acts[0].name))
    return out


def rename(actions, names) -> None:
    """Rename a take's Actions (the add-on's) and keep their ownership records in step."""
    for act, name in zip(actions, names):
        act.name = name
    final = [a.name for a in actions]
    for act in actions:
        rec = act[OWNER]
        rec["name"] = act.name
        rec["actions"] = final
