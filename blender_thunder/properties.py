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

from .core.contract import MAX_GUIDANCE, MAX_TAKES, PRESET_NAMES

# Labels of the backend's presets (core/contract.py names them; the backend defines them).
PRESET_LABELS = {
    "draft": ("Draft", "Fewest sampler steps: quick look"),
    "default": ("Default", "The bundle's default sampler and steps"),
    "high": ("High", "More sampler steps: final quality"),
}
PRESETS = [(name, *PRESET_LABELS[name]) for name in PRESET_NAMES]


def _is_target(self, obj) -> bool:
    """The stand-in rig (its armature or mesh) or any character: a mesh with shape keys."""
    from .utils.characters import is_target

    return is_target(obj)


def _on_target(self, context):
    """A character picked for the first time gets the mapping its shape-key names fit."""
    from .utils import characters

    obj = self.rig
    if not characters.is_character(obj) or len(obj.thunder_mapping.channels):
        return
    mapping = characters.detect(obj)
    if mapping is not None:
        characters.store_mapping(obj, mapping)


def _on_pick(self, context):
    """Clicking a take in the list makes it the one that plays."""
    from .utils import takes
    from .utils.characters import for_take
    from .utils.rigs import RigError

    if not 0 <= self.active_take < len(self.takes):
        return
    item = self.takes[self.active_take]
    if item.action is None:
        return
    try:
        rig = for_take(item.action)
    except (RigError, KeyError, ValueError):
        return
    if takes.shown(rig, item.strip) != item.action or takes.jaw_mode_stale(rig, item.action):
        takes.show(rig, takes.take_actions(item.action))  # also re-keys the jaw in the bone's mode


class ThunderTake(bpy.types.PropertyGroup):
    action: PointerProperty(type=bpy.types.Action, name="Action")
    seed: IntProperty(name="Seed")
    score: FloatProperty(name="Lip-sync score", description="M2S lip-sync score (higher is better)")
    duration: FloatProperty(name="Duration", unit="TIME_ABSOLUTE", subtype="TIME_ABSOLUTE")
    strip: StringProperty(name="Sound strip")
    rig: StringProperty(name="Target", description="Rig armature or character mesh the take was keyed on")


class ThunderSettings(bpy.types.PropertyGroup):
    strip: StringProperty(name="Sound strip", description="Sound strip to animate; empty: the active one")
    rig: PointerProperty(
        type=bpy.types.Object,
        name="Target",
        poll=_is_target,
        update=_on_target,
        description="What to key: the THUNDER head (armature or mesh) or any character's mesh with shape keys "
        "(ARKit 52, visemes, your own: through its mapping)",
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


def _preset_items(self, context):
    if not _PRESET_ITEMS:
        from .utils.characters import preset_names

        _PRESET_ITEMS.extend((n, PRESET_MAPPING_LABELS.get(n, n), "") for n in preset_names())
    return _PRESET_ITEMS


_PRESET_ITEMS: list = []  # Blender needs an items callback's strings kept alive


PRESET_MAPPING_LABELS = {"arkit52": "ARKit 52", "vrm_visemes": "VRM visemes", "thunder_exp": "THUNDER exp"}


def _is_armature(self, obj) -> bool:
    return obj.type == "ARMATURE"


class ThunderChannel(bpy.types.PropertyGroup):
    """One row of a character's mapping: a shape key and the controls that drive it."""

    target: StringProperty(name="Shape key", description="The character's shape key this row keys")
    sources: StringProperty(
        name="Controls",
        description="Controls driving it, each with an optional weight: 'smile_L 0.5, smile_R 0.5'",
    )
    gain: FloatProperty(name="Gain", default=1.0, min=0.0, soft_max=2.0, max=10.0, description="Scales the weight")
    limit: StringProperty(
        name="At most",
        description="Caps the weight at a sum of controls, same form (ARKit's mouthClose: 'jaw_open'); empty: no cap",
    )
    note: StringProperty(name="Note", description="Why the row is as it is (a row without controls keys nothing)")


class ThunderMapping(bpy.types.PropertyGroup):
    """A character's retargeting mapping (core/retarget.Mapping) as the panel edits it."""

    name: StringProperty(name="Mapping", default="custom")
    kind: StringProperty(name="Kind", default="shape_keys")
    preset: EnumProperty(name="Preset", items=_preset_items, description="Mapping preset to start from")
    channels: CollectionProperty(type=ThunderChannel)
    active_channel: IntProperty(name="Row", default=-1)
    jaw_armature: PointerProperty(
        type=bpy.types.Object,
        name="Jaw armature",
        poll=_is_armature,
        description="Armature of the jaw bone (empty: the mesh's own armature)",
    )
    jaw_bone: StringProperty(name="Jaw bone", description="Bone the take's jaw rotation keys (empty: none)")
    # What this mesh's shapes do to its lips (utils/characters.lip_seal): measured once per shape-key
    # state, kept with the mesh (not in the mapping: another mesh's lips move otherwise).
    lip_calibration: StringProperty(name="Lip calibration", options={"HIDDEN"})


CLASSES = (ThunderTake, ThunderSettings, ThunderChannel, ThunderMapping)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.thunder = PointerProperty(type=ThunderSettings)
    bpy.types.Object.thunder_mapping = PointerProperty(type=ThunderMapping)


def unregister() -> None:
    del bpy.types.Object.thunder_mapping
    del bpy.types.Scene.thunder
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
