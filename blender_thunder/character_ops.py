"""Operators of a character target: its mapping (detect, preset, rows, save / load a preset
file) and the take's exports (glTF, Live Link Face CSV). The keying itself goes through
the same Generate / Resample / Listen operators as the stand-in rig (operators.py)."""

from __future__ import annotations

import logging

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .core import retarget
from .operators import reports, why_not
from .utils import characters, exports, rigs

log = logging.getLogger(__name__)


def character(context):
    """The panel's target when it is a character's mesh (not the stand-in rig), else None."""
    obj = context.scene.thunder.rig if context.scene is not None else None
    return obj if characters.is_character(obj) else None


def _with_character(cls, context) -> bool:
    return why_not(cls, character(context) is not None, "pick a character's mesh (with shape keys) as the Target")


def _stored(obj, mapping, dropped=()) -> str:
    characters.store_mapping(obj, mapping)
    msg = f"{obj.name!r}: {len(mapping.channels)} shape keys mapped ({mapping.name})"
    if mapping.jaw_bone:
        msg += f", jaw bone {mapping.jaw_bone!r}"
    if dropped:
        msg += f"; {len(dropped)} rows left out, no such shape key: {', '.join(dropped[:5])}"
    return msg


class THUNDER_OT_mapping_detect(bpy.types.Operator):
    """Map the character's shape keys from their names (the preset that fits them best)"""

    bl_idname = "thunder.mapping_detect"
    bl_label = "Detect Mapping"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _with_character(cls, context)

    @reports(rigs.RigError, ValueError)
    def execute(self, context):
        obj = character(context)
        mapping = characters.detect(obj)
        if mapping is None:
            raise rigs.RigError(
                f"{obj.name!r}: no preset fits its shape-key names (ARKit 52, VRM visemes, exp000…): "
                "add rows by hand or load a mapping file"
            )
        self.report({"INFO"}, _stored(obj, mapping))
        return {"FINISHED"}


class THUNDER_OT_mapping_preset(bpy.types.Operator):
    """Map the character's shape keys with the chosen preset (rows it has no shape key for are left out)"""

    bl_idname = "thunder.mapping_preset"
    bl_label = "Use Preset"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _with_character(cls, context)

    @reports(rigs.RigError, ValueError, KeyError)
    def execute(self, context):
        obj = character(context)
        preset = retarget.presets()[obj.thunder_mapping.preset]
        mapping, dropped = characters.bind(preset, obj)
        if not mapping.driven:
            raise rigs.RigError(f"{obj.name!r} has none of the shape keys preset {preset.name!r} drives")
        self.report({"INFO"}, _stored(obj, mapping, dropped))
        return {"FINISHED"}


class THUNDER_OT_mapping_add(bpy.types.Operator):
    """Add a row: one more shape key for the takes to key"""

    bl_idname = "thunder.mapping_add"
    bl_label = "Add Mapping Row"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _with_character(cls, context)

    def execute(self, context):
        props = character(context).thunder_mapping
        row = props.channels.add()
        row.gain = 1.0
        props.active_channel = len(props.channels) - 1
        return {"FINISHED"}


class THUNDER_OT_mapping_remove(bpy.types.Operator):
    """Remove the selected row (the shape key is keyed by no take made from now on)"""

    bl_idname = "thunder.mapping_remove"
    bl_label = "Remove Mapping Row"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = character(context)
        ok = obj is not None and 0 <= obj.thunder_mapping.active_channel < len(obj.thunder_mapping.channels)
        return why_not(cls, ok, "select a row of the mapping")

    def execute(self, context):
        props = character(context).thunder_mapping
        props.channels.remove(props.active_channel)
        props.active_channel = min(props.active_channel, len(props.channels) - 1)
        return {"FINISHED"}


class THUNDER_OT_mapping_save(bpy.types.Operator, ExportHelper):
    """Save the character's mapping as a preset file (JSON) to share or load on another character"""

    bl_idname = "thunder.mapping_save"
    bl_label = "Save Mapping"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _with_character(cls, context)

    @reports(rigs.RigError, ValueError, OSError)
    def execute(self, context):
        obj = character(context)
        mapping = characters.stored_mapping(obj)
        if mapping is None:
            raise rigs.RigError(f"{obj.name!r} has no mapping rows to save")
        path = mapping.save(bpy.path.abspath(self.filepath))
        self.report({"INFO"}, f"saved {len(mapping.channels)} rows to {path}")
        return {"FINISHED"}


class THUNDER_OT_mapping_load(bpy.types.Operator, ImportHelper):
    """Load a mapping preset file (JSON) onto the character, matching its shape-key names"""

    bl_idname = "thunder.mapping_load"
    bl_label = "Load Mapping"
    bl_options = {"REGISTER", "UNDO"}
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _with_character(cls, context)

    @reports(rigs.RigError, ValueError)
    def execute(self, context):
        obj = character(context)
        mapping, dropped = characters.bind(retarget.Mapping.load(bpy.path.abspath(self.filepath)), obj)
        if not mapping.channels:
            raise rigs.RigError(f"none of the file's {len(dropped)} rows names a shape key {obj.name!r} has")
        self.report({"WARNING"} if dropped else {"INFO"}, _stored(obj, mapping, dropped))
        return {"FINISHED"}


def _active_take(context):
    s = context.scene.thunder
    item = s.takes[s.active_take] if 0 <= s.active_take < len(s.takes) else None
    return item.action if item is not None else None


class _TakeExport(ExportHelper):
    @classmethod
    def poll(cls, context):
        return why_not(cls, context.scene is not None and _active_take(context) is not None, "select a take")


class THUNDER_OT_export_gltf(_TakeExport, bpy.types.Operator):
    """Export the selected take on its target as glTF: the mesh, its shape keys as morph targets, their animation"""

    bl_idname = "thunder.export_gltf"
    bl_label = "Export glTF"
    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb;*.gltf", options={"HIDDEN"})

    @reports(exports.ExportError, rigs.RigError, ValueError, OSError)
    def execute(self, context):
        path = exports.export_gltf(context.scene, _active_take(context), bpy.path.abspath(self.filepath))
        self.report({"INFO"}, f"exported {path}")
        return {"FINISHED"}


class THUNDER_OT_export_live_link(_TakeExport, bpy.types.Operator):
    """Write the selected take of an ARKit character as a Live Link Face CSV (Unreal, MetaHuman)"""

    bl_idname = "thunder.export_live_link"
    bl_label = "Export Live Link CSV"
    filename_ext = ".csv"
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})

    @reports(exports.ExportError, ValueError, KeyError, OSError)
    def execute(self, context):
        path = exports.write_live_link_csv(_active_take(context), bpy.path.abspath(self.filepath))
        self.report({"INFO"}, f"wrote {path}")
        return {"FINISHED"}


CLASSES = (
    THUNDER_OT_mapping_detect,
    THUNDER_OT_mapping_preset,
    THUNDER_OT_mapping_add,
    THUNDER_OT_mapping_remove,
    THUNDER_OT_mapping_save,
    THUNDER_OT_mapping_load,
    THUNDER_OT_export_gltf,
    THUNDER_OT_export_live_link,
)
