"""The THUNDER tab in the 3D View and Sequencer sidebars."""

from __future__ import annotations

import bpy

from .character_ops import character
from .core import jobs, launcher
from .operators import backend_status, panel_rig
from .utils import characters, takes


class THUNDER_UL_takes(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        owned = item.action is not None and takes.is_owned(item.action)
        row = layout.row(align=True)
        row.label(text=f"seed {item.seed}", icon="ACTION" if owned else "ERROR")
        row.label(text=f"{item.score:.3f}")
        row.label(text=f"{item.duration:.1f} s")
        row.label(text=item.strip)


class THUNDER_UL_mapping(bpy.types.UIList):
    """A character's mapping rows: its shape key, the controls driving it, a gain."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        key = data.id_data.data.shape_keys
        present = key is not None and item.target in key.key_blocks
        row = layout.row(align=True)
        split = row.split(factor=0.38, align=True)
        if key is not None:
            split.prop_search(item, "target", key, "key_blocks", text="", icon="SHAPEKEY_DATA" if present else "ERROR")
        else:
            split.prop(item, "target", text="", icon="ERROR")
        sub = split.split(factor=0.72, align=True)
        sub.prop(item, "sources", text="", emboss=True)
        sub.prop(item, "gain", text="")


def _draw_mapping(layout, context) -> None:
    """A character target's mapping: preset, rows, jaw bone, preset files."""
    obj = character(context)
    if obj is None:
        return
    props = obj.thunder_mapping
    box = layout.box()
    row = box.row(align=True)
    row.label(text=f"Mapping: {props.name}" if len(props.channels) else "Mapping: none yet", icon="SHAPEKEY_DATA")
    row.operator("thunder.mapping_detect", text="", icon="VIEWZOOM")
    row = box.row(align=True)
    row.prop(props, "preset", text="")
    row.operator("thunder.mapping_preset", text="Use")
    row = box.row()
    row.template_list("THUNDER_UL_mapping", "", props, "channels", props, "active_channel", rows=4)
    col = row.column(align=True)
    col.operator("thunder.mapping_add", text="", icon="ADD")
    col.operator("thunder.mapping_remove", text="", icon="REMOVE")
    if 0 <= props.active_channel < len(props.channels):  # the selected row in full
        sel = props.channels[props.active_channel]
        sub = box.column(align=True)
        sub.prop(sel, "sources")
        sub.prop(sel, "limit")
        if sel.note:
            sub.label(text=sel.note[:120], icon="INFO")
    box.prop(props, "jaw_armature")
    arm = characters.jaw_armature(obj)
    if arm is not None:
        box.prop_search(props, "jaw_bone", arm.data, "bones", icon="BONE_DATA")
    try:
        characters.resolve(obj)
    except ValueError as exc:  # RigError included: what keeps Generate from running
        box.label(text=str(exc)[:120], icon="ERROR")
    row = box.row(align=True)
    row.operator("thunder.mapping_load", icon="IMPORT")
    row.operator("thunder.mapping_save", icon="EXPORT")


def _draw_rig_notes(col, context) -> None:
    """What about the rig keeps takes from playing, and how the jaw is keyed."""
    rig = panel_rig(context)
    if rig is None:
        return
    over = takes.overriding_actions(rig)
    if over:
        box = col.box()
        for what, name in over:
            box.label(text=f"Active Action {name!r} ({what}) plays over the takes", icon="ERROR")
        box.operator("thunder.arrange_nla", icon="NLA_PUSHDOWN")
    if not rig.jaw_bone:
        return
    mode = rig.armature.pose.bones[rig.jaw_bone].rotation_mode
    shown = f"{mode} Euler" if len(mode) == 3 else mode.replace("_", " ").title()
    col.label(text=f"Jaw keyed in its own mode: {shown}", icon="BONE_DATA")
    s = context.scene.thunder
    item = s.takes[s.active_take] if 0 <= s.active_take < len(s.takes) else None
    if item is not None and item.rig == rig.name and takes.jaw_mode_stale(rig, item.action):
        row = col.row()
        row.label(text="This take's jaw was keyed in another rotation mode", icon="ERROR")
        row.operator("thunder.use_take", text="Re-key Jaw").index = s.active_take


def _draw(self, context):
    layout = self.layout
    s = context.scene.thunder
    col = layout.column()
    se = context.scene.sequence_editor
    if se is None:
        col.label(text="No sound strips: add one in the Sequencer")
    else:
        col.prop_search(
            s, "strip", se, "strips_all" if hasattr(se, "strips_all") else "sequences_all", text="Strip", icon="SOUND"
        )
    col.prop(s, "rig")
    _draw_mapping(col, context)
    _draw_rig_notes(col, context)
    row = col.row(align=True)
    row.prop(s, "seed")
    row.prop(s, "takes_count")
    col.prop(s, "guidance")
    row = col.row(align=True)
    row.prop(s, "preset", expand=True)
    col.prop(s, "rank")

    running = jobs.active()
    if running:
        job = running[0]
        row = col.row(align=True)
        if hasattr(row, "progress"):  # 4.0+
            row.progress(factor=job.progress, type="BAR", text=f"{job.stage} · {job.elapsed:.0f} s")
        else:
            row.label(text=f"{job.stage} · {job.elapsed:.0f} s")
        row.operator("thunder.cancel", text="", icon="CANCEL")
    else:
        col.operator("thunder.generate", icon="PLAY_SOUND")
        last = jobs.latest()
        if last is not None and last.message:
            col.label(text=last.message, icon="INFO" if last.state == "done" else "ERROR")

    layout.label(text="Takes")
    layout.template_list("THUNDER_UL_takes", "", s, "takes", s, "active_take", rows=3)
    row = layout.row(align=True)
    row.operator("thunder.resample_take", icon="FILE_REFRESH")
    row.operator("thunder.listen_take", icon="SPEAKER")
    if character(context) is not None:
        row.operator("thunder.remap_take", icon="SHAPEKEY_DATA")
    row.operator("thunder.remove_take", text="", icon="X")
    row = layout.row(align=True)
    row.operator("thunder.export_gltf", text="glTF", icon="EXPORT")
    row.operator("thunder.export_live_link", text="Live Link CSV", icon="EXPORT")

    box = layout.box()
    row = box.row(align=True)
    row.label(text=f"Backend: {backend_status['text']}", icon="CHECKMARK" if backend_status["ok"] else "QUESTION")
    row.operator("thunder.backend_check", text="", icon="FILE_REFRESH")
    if launcher.running():
        row.operator("thunder.backend_stop", text="", icon="PAUSE")
    else:
        row.operator("thunder.backend_start", text="", icon="PLAY")
    box.operator("thunder.add_head", icon="MONKEY")


class _SidebarPanel:
    """The THUNDER tab of a sidebar; each panel names its editor (bl_space_type)."""

    bl_label = "THUNDER"
    bl_region_type = "UI"
    bl_category = "THUNDER"
    draw = _draw


class THUNDER_PT_view3d(_SidebarPanel, bpy.types.Panel):
    bl_space_type = "VIEW_3D"


class THUNDER_PT_sequencer(_SidebarPanel, bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"


def redraw() -> None:
    """Jobs changed: redraw sidebars so progress and results show."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "SEQUENCE_EDITOR"}:
                area.tag_redraw()


CLASSES = (THUNDER_UL_takes, THUNDER_UL_mapping, THUNDER_PT_view3d, THUNDER_PT_sequencer)
