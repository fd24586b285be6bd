"""Scene settings and the take list (saved in the .blend)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .core.contract import MAX_GUIDANCE, MAX_TAKES, PRESET_NAMES, SHAPE_KEY_NAMES as SHAPE_KEYS

# Labels of the backend's presets (core/contract.py names them; the backend defines them).
PRESET_LABELS = {
    "draft": ("Draft", "Fewest sampler steps: quick look"),
    "default": ("Default", "The bundle's default sampler and steps"),
    "high": ("High", "More sampler steps: final quality"),
}
PRESETS = [(name, *PRESET_LABELS[name]) for name in PRESET_NAMES]


def _is_rig(self, obj) -> bool:
    if obj.type == "ARMATURE":
        return True
    key = obj.data.shape_keys if obj.type == "MESH" else None
    return key is not None and SHAPE_KEYS[0] in key.key_blocks


def _on_pick(self, context):
    """Clicking a take in the list makes it the one that plays."""
    from .utils import takes
    from .utils.rigs import RigError, resolve

    if not 0 <= self.active_take < len(self.takes):
        return
    item = self.takes[self.active_take]
    if item.action is None:
        return
    try:
        rig = resolve(bpy.data.objects.get(item.rig))
    except RigError:
        return
    if takes.shown(rig, item.strip) != item.action or takes.jaw_mode_stale(rig, item.action):
        takes.show(rig, takes.take_actions(item.action))  # also re-keys the jaw in the bone's mode


class ThunderTake(bpy.types.PropertyGroup):
    action: PointerProperty(type=bpy.types.Action, name="Action")
    seed: IntProperty(name="Seed")
    score: FloatProperty(name="Lip-sync score", description="M2S lip-sync score (higher is better)")
    duration: FloatProperty(name="Duration", unit="TIME_ABSOLUTE", subtype="TIME_ABSOLUTE")
    strip: StringProperty(name="Sound strip")
    rig: StringProperty(name="Rig", description="Armature the take was keyed on")


class ThunderSettings(bpy.types.PropertyGroup):
    strip: StringProperty(name="Sound strip", description="Sound strip to animate; empty: the active one")
    rig: PointerProperty(
        type=bpy.types.Object, name="Rig", poll=_is_rig, description="THUNDER head (armature or mesh) to key"
    )
    seed: IntProperty(name="Seed", min=0, default=0, description="First seed; take i uses seed + i")
    takes_count: IntProperty(name="Takes", min=1, max=MAX_TAKES, default=4, description="Takes to generate")
    guidance: FloatProperty(
        name="Guidance",
        min=0.0,
        max=MAX_GUIDANCE,
        default=1.0,
        description="Classifier-free guidance scale on the audio",
    )
    preset: EnumProperty(name="Quality", items=PRESETS, default="default")
    rank: BoolProperty(name="Best first", default=True, description="Sort takes by lip-sync score")
    takes: CollectionProperty(type=ThunderTake)
    active_take: IntProperty(name="Take", default=-1, update=_on_pick)


CLASSES = (ThunderTake, ThunderSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.thunder = PointerProperty(type=ThunderSettings)


def unregister() -> None:
    del bpy.types.Scene.thunder
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
