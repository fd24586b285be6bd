"""A take out to game engines: glTF with morph-target animation (Blender's own exporter)
and Live Link Face CSV (ARKit characters, core/retarget.write_live_link_csv).

Both read the take as it is keyed (the Action's curves at the scene's frames), so
what an engine gets is what Blender plays. Nothing of the artist's is left changed:
the glTF export plays the take for the export's length, then puts the scene's frame
range, current frame, selection and the take that played back as they were.
"""

from __future__ import annotations

import contextlib
import logging
import os

import bpy
import numpy as np

from ..core import retarget
from . import characters, keying, takes

log = logging.getLogger(__name__)


class ExportError(ValueError):
    pass


def _owned_take(action):
    if action is None or not takes.is_owned(action):
        raise ExportError("pick one of THUNDER's takes to export")
    return takes.take_actions(action)


def take_frames(action) -> np.ndarray:
    m = takes.meta(action)
    return np.arange(round(m["frame_start"]), round(m["frame_end"]) + 1, dtype=np.float64)


def take_weights(action) -> tuple[float, dict[str, np.ndarray]]:
    """(scene fps, shape key -> value at each of the take's frames) as the take keys them."""
    actions = _owned_take(action)
    m = takes.meta(actions[0])
    key_t = takes.targets(actions)["KEY"]
    names = m.get("channels") or [f"exp{i:03d}" for i in range(50)]
    frames = take_frames(actions[0])
    out = {}
    for name in names:
        curve = keying.read_curve(key_t.action, takes.shape_key_path(name), slot=key_t.slot)
        out[name] = np.interp(frames, curve[:, 0], curve[:, 1])
    return float(m["fps"]), out


def write_live_link_csv(action, path: str) -> str:
    """An ARKit character's take as a Live Link Face CSV (Unreal's Live Link Face importers,
    MetaHuman Animator). ExportError when the take's shape keys are not ARKit's."""
    fps, weights = take_weights(action)
    arkit = {retarget.normalize_name(n) for n in retarget.ARKIT_52}
    foreign = [n for n in weights if retarget.normalize_name(n) not in arkit]
    if foreign or not weights:
        shown = ", ".join(repr(n) for n in foreign[:4]) or "none"
        raise ExportError(
            f"not an ARKit take: shape keys {shown} are not ARKit blendshapes (Live Link Face has only those)"
        )
    retarget.write_live_link_csv(path, weights, fps)
    return path


@contextlib.contextmanager
def _only_take(scene, target, action):
    """The scene as the glTF exporter should sample it for one take: the take playing (as the
    panel shows it: its NLA strip over the rest track), the take's frame range, the target's
    objects selected. All put back after."""
    actions = takes.take_actions(action)
    m = takes.meta(actions[0])
    saved_range = (scene.frame_start, scene.frame_end, scene.frame_current)
    view_layer = bpy.context.view_layer
    saved_sel = [o for o in view_layer.objects if o.select_get()]
    saved_active = view_layer.objects.active
    shown_before = takes.shown(target, m["strip"])
    try:
        takes.show(target, actions)
        scene.frame_start, scene.frame_end = int(round(m["frame_start"])), int(round(m["frame_end"]))
        for o in saved_sel:
            o.select_set(False)
        objects = [target.mesh] + ([target.armature] if target.jaw_bone else [])
        for o in objects:
            o.select_set(True)
        view_layer.objects.active = target.mesh
        yield objects
    finally:
        if shown_before is not None and shown_before != actions[0]:
            takes.show(target, takes.take_actions(shown_before))
        elif shown_before is None:
            takes.unshow(target, m["strip"])
        for o in view_layer.objects:
            o.select_set(o in saved_sel)
        view_layer.objects.active = saved_active
        scene.frame_start, scene.frame_end = saved_range[:2]
        scene.frame_set(saved_range[2])


def export_gltf(scene, action, path: str) -> str:
    """Bake a take onto its target and write glTF (.glb or .gltf) through Blender's exporter:
    the target's mesh with its shape keys as morph targets and one animation of their
    weights (plus the jaw bone, when the take keys one), sampled at every frame of the take."""
    actions = _owned_take(action)
    target = characters.for_take(actions[0])
    if not hasattr(bpy.ops.export_scene, "gltf"):
        raise ExportError("Blender's glTF exporter (io_scene_gltf2) is not enabled")
    fmt = "GLB" if path.lower().endswith(".glb") else "GLTF_SEPARATE"
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    with _only_take(scene, target, actions[0]):
        result = bpy.ops.export_scene.gltf(
            filepath=path,
            export_format=fmt,
            use_selection=True,
            export_animations=True,
            export_animation_mode="SCENE",  # what plays, NLA and all: the take as Blender shows it
            export_force_sampling=True,
            export_frame_range=True,
            export_frame_step=1,
            export_anim_slide_to_zero=True,
            export_morph=True,
            export_morph_animation=True,
            export_skins=bool(target.jaw_bone),
            export_materials="EXPORT",
        )
    if "FINISHED" not in result:
        raise ExportError(f"the glTF exporter did not finish ({', '.join(result)})")
    log.info("exported %s to %s", actions[0].name, path)
    return path
