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


def new_take_channels(name: str, id_types: dict[str, str], legacy_suffix: dict[str, str] | None = None
                      ) -> TakeChannels:
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


def write_curves(target: Target, data_path: str, frames: np.ndarray, values: np.ndarray,
                 group: str | None = None) -> None:
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


def assign_nla(id_block, track_name: str, target: Target, frame_start: float, frame_end: float,
               strip_name: str):
    """Show `target`'s action on `id_block` through an NLA track the add-on owns.
    The track holds exactly this strip; the datablock's active action (the
    artist's) is never touched."""
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
    strip.extrapolation = "NOTHING"  # rest pose outside the take, not its first/last frame
    return track, strip
