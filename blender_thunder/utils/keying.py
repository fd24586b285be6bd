"""Write keyframes in bulk on either Action API.

4.4+ (slotted): one Action holds a slot per animated datablock (here the shape
Key and the armature Object), keys live in layer -> keyframe strip -> channelbag.
<= 4.3 (legacy): an Action animates one ID type, so a take needs one Action per
datablock. `TakeChannels` hides the difference from the rest of the add-on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np

from .compat import SLOTTED_ACTIONS

LINEAR = 1  # keyframe interpolation enum value, for foreach_set


@dataclass
class Target:
    """One datablock a take animates: `id_type` 'KEY' or 'OBJECT'."""

    id_type: str
    slot_name: str
    action: bpy.types.Action
    slot: object = None  # ActionSlot on 4.4+, None on legacy


@dataclass
class TakeChannels:
    actions: list = field(default_factory=list)
    targets: dict = field(default_factory=dict)  # id_type -> Target


def _fcurves_for(target: Target):
    act = target.action
    if SLOTTED_ACTIONS:
        layer = act.layers[0] if len(act.layers) else act.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        return strip.channelbag(target.slot, ensure=True).fcurves
    return act.fcurves


def new_take_channels(name: str, id_types: dict[str, str], legacy_suffix: dict[str, str] | None = None) -> TakeChannels:
    """Create the Action(s) of one take. `id_types`: id_type -> slot name.
    Legacy Blender makes one Action per id_type, named `name` + `legacy_suffix[id_type]`."""
    tc = TakeChannels()
    if SLOTTED_ACTIONS:
        act = bpy.data.actions.new(name)
        tc.actions.append(act)
        for id_type, slot_name in id_types.items():
            slot = act.slots.new(id_type=id_type, name=slot_name)
            tc.targets[id_type] = Target(id_type, slot_name, act, slot)
    else:
        for id_type, slot_name in id_types.items():
            act = bpy.data.actions.new(name + (legacy_suffix or {}).get(id_type, ""))
            act.id_root = id_type
            tc.actions.append(act)
            tc.targets[id_type] = Target(id_type, slot_name, act)
    return tc


def write_curves(
    target: Target, data_path: str, frames: np.ndarray, values: np.ndarray, group: str | None = None
) -> None:
    """Key `values (N, C)` at `frames (N,)` into `data_path[0..C-1]`, in bulk."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    frames = np.asarray(frames, dtype=np.float32)
    n = len(frames)
    fcurves = _fcurves_for(target)
    for index in range(values.shape[1]):
        fc = fcurves.new(data_path, index=index)
        if group:
            _set_group(target, fc, group)
        co = np.empty(2 * n, dtype=np.float32)
        co[0::2] = frames
        co[1::2] = values[:, index]
        fc.keyframe_points.add(n)
        fc.keyframe_points.foreach_set("co", co)
        fc.keyframe_points.foreach_set("interpolation", np.full(n, LINEAR, dtype=np.int32))
        fc.update()


def _set_group(target: Target, fc, name: str) -> None:
    if SLOTTED_ACTIONS:
        bag = fc.id_data.layers[0].strips[0].channelbag(target.slot)
        grp = bag.groups.get(name) or bag.groups.new(name)
    else:
        grp = target.action.groups.get(name) or target.action.groups.new(name)
    fc.group = grp


def read_curve(action: bpy.types.Action, data_path: str, index: int = 0, slot=None) -> np.ndarray:
    """(N, 2) [frame, value] of one F-Curve (tests and checks read keys back this way)."""
    if SLOTTED_ACTIONS:
        fc = None
        for layer in action.layers:
            for strip in layer.strips:
                slots = [slot] if slot is not None else list(action.slots)
                for s in slots:
                    bag = strip.channelbag(s)
                    if bag is not None:
                        fc = bag.fcurves.find(data_path, index=index) or fc
    else:
        fc = action.fcurves.find(data_path, index=index)
    if fc is None:
        raise KeyError(f"{action.name}: no F-Curve {data_path}[{index}]")
    co = np.empty(2 * len(fc.keyframe_points), dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def remove_curves(target: Target, data_path: str) -> int:
    """Delete every F-Curve of `data_path` from a target's channels; returns how many."""
    fcurves = _fcurves_for(target)
    doomed = [fc for fc in fcurves if fc.data_path == data_path]
    for fc in doomed:
        fcurves.remove(fc)
    return len(doomed)


def channel_paths(action, slot=None) -> set:
    """The data paths an Action animates (on 4.4+: those of `slot`, or of every slot)."""
    if action is None:
        return set()
    if SLOTTED_ACTIONS:
        out = set()
        for layer in action.layers:
            for strip in layer.strips:
                for s in [slot] if slot is not None else list(action.slots):
                    bag = strip.channelbag(s) if s is not None else None
                    if bag is not None:
                        out.update(fc.data_path for fc in bag.fcurves)
        return out
    return {fc.data_path for fc in action.fcurves}


def assign_nla(
    id_block,
    track_name: str,
    target: Target,
    frame_start: float,
    frame_end: float,
    strip_name: str,
    blend: float = 0.0,
    extrapolation: str = "NOTHING",
):
    """Show `target`'s action on `id_block` through an NLA track the add-on owns (a new
    one goes on top). The track holds exactly this strip; the datablock's active action
    (the artist's) is never touched. `blend`: blend in and out, in frames."""
    ad = id_block.animation_data or id_block.animation_data_create()
    track = ad.nla_tracks.get(track_name)
    if track is None:
        track = ad.nla_tracks.new()
        track.name = track_name
    for old in list(track.strips):
        track.strips.remove(old)
    strip = track.strips.new(strip_name, int(round(frame_start)), target.action)
    if SLOTTED_ACTIONS:
        strip.action_slot = target.slot
    # Set the range explicitly: with several slots Blender guesses it wrong.
    # Each setter clamps against the others' current values: set twice.
    for _ in range(2):
        strip.action_frame_end = frame_end
        strip.action_frame_start = frame_start
        strip.frame_end = frame_end
        strip.frame_start = frame_start
    strip.extrapolation = extrapolation  # NOTHING: rest pose outside the take, not its first/last frame
    strip.use_auto_blend = False
    strip.blend_in = blend
    strip.blend_out = blend
    return track, strip


_STRIP_SETTINGS = (
    "extrapolation",
    "blend_type",
    "use_auto_blend",
    "blend_in",
    "blend_out",
    "mute",
    "use_reverse",
    "use_animated_influence",
    "influence",
)


def _clone_strip(src, track):
    """A copy of one of the add-on's own strips (action, slot, ranges, blends) in `track`."""
    new = track.strips.new(src.name, int(round(src.frame_start)), src.action)
    if SLOTTED_ACTIONS and src.action_slot is not None:
        new.action_slot = src.action_slot
    for _ in range(2):
        new.action_frame_end, new.action_frame_start = src.action_frame_end, src.action_frame_start
        new.frame_end, new.frame_start = src.frame_end, src.frame_start
    for name in _STRIP_SETTINGS:
        try:
            setattr(new, name, getattr(src, name))
        except (AttributeError, TypeError, RuntimeError):
            pass
    return new


def new_track_below(ad, above):
    """A new, empty NLA track right under `above`, one of the add-on's own tracks.

    Python can only add a track on top or after another one, never at the bottom:
    when `above` is the bottom track, its strips (the add-on's) move up into a new
    track right after it and the emptied bottom track is the one returned. Other
    tracks are never moved or rebuilt."""
    tracks = list(ad.nla_tracks)
    i = tracks.index(above)
    if i > 0:
        return ad.nla_tracks.new(prev=tracks[i - 1])
    moved = ad.nla_tracks.new(prev=above)
    for st in list(above.strips):
        _clone_strip(st, moved)
        above.strips.remove(st)
    name, mute, lock, solo = above.name, above.mute, above.lock, above.is_solo
    above.name = "THUNDER (moving)"
    moved.name, moved.mute, moved.lock = name, mute, lock
    if solo:
        moved.is_solo = True
    above.mute = above.lock = False
    return above
