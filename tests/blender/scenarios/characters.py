"""Any character as a target: a small mesh with ARKit-named shape keys (made here), its
mapping, Generate / Resample / Listen on it against a real backend, batch files, exports."""

from __future__ import annotations

import json

import arkit_face  # the scenarios folder is on sys.path (bpy_runner)
import bpy
import numpy as np
from arkit_face import arkit_name

from common import ADDON, add_sound, addon, fresh_scene, jaw_to_bone

ARKIT_CHECK = ("jawOpen", "mouthClose", "mouthPressLeft", "eyeBlinkLeft", "mouthSmileRight", "browInnerUp")


def make_face(scene, name: str = "Face", style: str = "suffix", jaw: bool = True, extra=("myCustomShape",)):
    """The test character (arkit_face.py: a sheet of skin and a mouth) with the 52 ARKit shape
    keys, all at 0 as an artist leaves them, and optionally an armature with a `jaw` bone
    (XYZ Euler) the sheet's lower half is skinned to."""
    verts, faces, shapes = arkit_face.geometry(addon("core.retarget").ARKIT_52, style, extra)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts.tolist(), [], faces)
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)
    for shape, co in shapes.items():
        kb = obj.shape_key_add(name=shape, from_mix=False)
        kb.data.foreach_set("co", co.ravel())
        kb.value = 0.0  # Blender 5.0 starts new keys at 1.0; an artist's character rests at 0
    if not jaw:
        return obj, None
    arm = bpy.data.objects.new(f"{name}_rig", bpy.data.armatures.new(f"{name}_rig"))
    scene.collection.objects.link(arm)
    bpy.context.view_layer.update()
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    b = arm.data.edit_bones.new("jaw")
    b.head, b.tail, b.roll = (0.0, 0.0, 0.0), (0.0, -0.08, -0.04), 0.3
    bpy.ops.object.mode_set(mode="OBJECT")
    arm.pose.bones["jaw"].rotation_mode = "XYZ"
    group = obj.vertex_groups.new(name="jaw")
    group.add(list(range(arkit_face.GRID**2 // 2)), 1.0, "REPLACE")
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    return obj, arm


def _curves(act) -> list:
    out = []
    for layer in act.layers:
        for st in layer.strips:
            for bag in st.channelbags:
                for fc in bag.fcurves:
                    co = np.empty(2 * len(fc.keyframe_points), np.float32)
                    fc.keyframe_points.foreach_get("co", co)
                    out.append([fc.data_path, fc.array_index, co.round(6).tolist()])
    return sorted(out)


def _artist_setup(face):
    """What the artist already has on the character: a static value, an active Action on the
    shape keys (their own shape), a spare Action on a take channel."""
    key = face.data.shape_keys
    key.key_blocks["browInnerUp"].value = 0.3
    custom = key.key_blocks["myCustomShape"]
    custom.value = 0.0
    custom.keyframe_insert("value", frame=1)  # Blender makes the Key an active Action: the artist's
    made = key.animation_data.action
    made.name = "Artist custom"
    custom.value = 0.8
    custom.keyframe_insert("value", frame=40)
    spare = bpy.data.actions.new("Artist spare")
    slot = spare.slots.new(id_type="KEY", name="spare")
    fc = spare.layers.new("L").strips.new(type="KEYFRAME").channelbag(slot, ensure=True).fcurves
    curve = fc.new('key_blocks["jawOpen"].value')
    curve.keyframe_points.add(2)
    curve.keyframe_points.foreach_set("co", [3.0, 0.25, 9.0, 0.75])
    spare.use_fake_user = True
    return {
        "active": made.name,
        "curves": {a.name: _curves(a) for a in (made, spare)},
        "sliders": [(kb.name, kb.slider_min, kb.slider_max) for kb in key.key_blocks],
    }


def _take_out(act, face, arm, names) -> dict:
    keying, takes_mod = addon("utils.keying"), addon("utils.takes")
    from mathutils import Euler

    m = takes_mod.meta(act)
    stored = takes_mod.stored_take(act)
    tg = takes_mod.targets(takes_mod.take_actions(act))
    out = {
        "name": act.name,
        "owned": takes_mod.is_owned(act),
        "seed": m["seed"],
        "slots": sorted(tg),
        "frame_start": m["frame_start"],
        "frame_end": m["frame_end"],
        "mapping_json": m["mapping_json"],
        "channels": m["channels"],
        "lip_seal": m.get("lip_seal", False),
        "exp25": stored.exp.tolist(),
        "jaw25": stored.jaw.tolist(),
        "keys": {n: keying.read_curve(act, takes_mod.shape_key_path(n)).tolist() for n in names},
        "paths": sorted(keying.channel_paths(act)),
    }
    if arm is not None:
        eul = np.array([keying.read_curve(act, 'pose.bones["jaw"].rotation_euler', i)[:, 1] for i in range(3)]).T
        out["jaw_quats"] = [list(Euler(e, "XYZ").to_quaternion()) for e in eul]
    return out


def generate(
    url: str, wav: str, fps: str, seed: int = 11, takes: int = 2, glb: str = "", csv: str = "", save_as: str = ""
) -> dict:
    """Generate onto an ARKit character (variant names, jaw bone set by hand in its mapping)
    with the artist's own Action and values on it; optionally export and save."""
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_url, prefs.auto_start = url, False
    scene = fresh_scene(fps)
    scene.frame_end = 12
    face, arm = make_face(scene)
    artist = _artist_setup(face)
    strip = add_sound(scene, wav, frame_start=5)
    s = scene.thunder
    s.rig = face  # picking it detects the mapping
    props = face.thunder_mapping
    detected = {"name": props.name, "rows": len(props.channels), "jaw_bone": props.jaw_bone}
    props.jaw_armature, props.jaw_bone = arm, "jaw"  # ARKit's jawOpen is a shape; this rig's jaw also turns
    s.takes_count, s.seed, s.preset, s.rank, s.strip = takes, seed, "draft", False, strip.name
    jobs, takes_mod = addon("core.jobs"), addon("utils.takes")
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 180)
    key = face.data.shape_keys
    names = [arkit_name(n, "suffix") for n in ARKIT_CHECK]
    out = {
        "state": job.state,
        "message": job.message,
        "detected": detected,
        "fps": addon("utils.compat").scene_fps(scene),
        "to_bone": jaw_to_bone(arm),
        "strip_frames": [strip.frame_final_start, strip.frame_final_end],
        "takes": [_take_out(i.action, face, arm, names) for i in scene.thunder.takes],
        "check_names": names,
        "key_tracks": [t.name for t in key.animation_data.nla_tracks],
        "arm_tracks": [t.name for t in arm.animation_data.nla_tracks] if arm.animation_data else [],
        "key_active": key.animation_data.action.name if key.animation_data.action else None,
        "artist_before": artist,
        "artist_after": {
            "active": key.animation_data.action.name,
            "curves": {n: _curves(bpy.data.actions[n]) for n in artist["curves"]},
            "sliders": [(kb.name, kb.slider_min, kb.slider_max) for kb in key.key_blocks],
        },
        "jaw_mode": arm.pose.bones["jaw"].rotation_mode,
        "lip_calibration": props.lip_calibration,
        "foreign_actions": sorted(
            a.name
            for a in bpy.data.actions
            if a.name not in artist["curves"] and not takes_mod.is_owned(a) and "thunder_rest" not in a
        ),
        "overriding": takes_mod.overriding_actions(addon("utils.characters").resolve(face)),
    }
    # What plays: the artist's values outside the take (the rest track holds them), the take inside.
    first = scene.thunder.takes[scene.thunder.active_take].action
    m = takes_mod.meta(first)
    evaluated = {}
    for f in (2, int((m["frame_start"] + m["frame_end"]) / 2), int(m["frame_end"]) + 5):
        scene.frame_set(f)
        evaluated[f] = {kb.name: kb.value for kb in key.key_blocks if kb != key.reference_key}
    out["evaluated"] = evaluated
    out["shown"] = first.name
    if glb:
        before = (
            scene.frame_start,
            scene.frame_end,
            scene.frame_current,
            [o.name for o in scene.objects if o.select_get()],
        )
        out["gltf"] = sorted(bpy.ops.thunder.export_gltf(filepath=glb))
        out["after_export"] = [
            scene.frame_start,
            scene.frame_end,
            scene.frame_current,
            [o.name for o in scene.objects if o.select_get()],
        ] == list(before)
        out["shown_after_export"] = takes_mod.shown(addon("utils.characters").for_take(first), strip.name).name
        out["morph_count"] = len(key.key_blocks) - 1
    if csv:
        out["csv"] = sorted(bpy.ops.thunder.export_live_link(filepath=csv))
        fps, weights = addon("utils.exports").take_weights(first)
        out["csv_reference"] = {n: w.tolist() for n, w in weights.items()}
    if save_as:
        bpy.ops.wm.save_as_mainfile(filepath=save_as)
    return out


def generate_many(fps_list: list, **kw) -> dict:
    """generate() at each fps in one process; exports and saving only at the first."""
    out = {}
    for i, fps in enumerate(fps_list):
        extra = kw if i == 0 else {k: v for k, v in kw.items() if k not in ("glb", "csv", "save_as")}
        out[fps] = generate(fps=fps, **extra)
    return out


def _lip_gaps(scene, face, pair) -> list:
    """The lip gap (mm) between the vertices `pair` of the evaluated mesh at each frame of the
    scene's range: what Blender shows."""
    gaps = []
    for f in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(f)
        ev = face.evaluated_get(bpy.context.evaluated_depsgraph_get())
        me = ev.to_mesh()
        co = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        up, lo = co.reshape(-1, 3)[pair]
        gaps.append(1000.0 * float(np.linalg.norm(up - lo)))
    return gaps


def seal_closure(url: str, wav: str, pair: list, takes: int = 2) -> dict:
    """Generate real takes onto the test character (ARKit names, no jaw bone: jawOpen opens it) at
    25 fps; each take played in turn and its lips measured on the evaluated mesh."""
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_url, prefs.auto_start = url, False
    scene = fresh_scene("25")
    face, _ = make_face(scene, style="apple", jaw=False)
    strip = add_sound(scene, wav, frame_start=1)
    s = scene.thunder
    s.rig, s.takes_count, s.seed, s.preset, s.rank, s.strip = face, takes, 0, "default", False, strip.name
    jobs, takes_mod, characters = addon("core.jobs"), addon("utils.takes"), addon("utils.characters")
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 300)
    out = {"state": job.state, "message": job.message, "takes": []}
    if job.state != "done":
        return out
    target = characters.resolve(face)
    for item in s.takes:
        actions = takes_mod.take_actions(item.action)
        takes_mod.show(target, actions)
        m = takes_mod.meta(actions[0])
        scene.frame_start, scene.frame_end = int(m["frame_start"]), int(m["frame_end"])
        stored = takes_mod.stored_take(actions[0])
        out["takes"].append(
            {
                "seed": m["seed"],
                "lip_seal": m.get("lip_seal", False),
                "exp25": stored.exp.tolist(),
                "jaw25": stored.jaw.tolist(),
                "gap_mm": _lip_gaps(scene, face, pair),
            }
        )
    out["lip_calibration"] = face.thunder_mapping.lip_calibration
    return out


def lip_measures(url: str, wav: str) -> dict:
    """The lip calibration kept on the mesh: Generate with a slider of the artist's set (it plays
    no part), Resample after a lip shape was sculpted further (measured again), Generate after
    mouthClose was flattened (no closer: keyed unsealed, and the message says so)."""
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_url, prefs.auto_start = url, False
    scene = fresh_scene("25")
    face, _ = make_face(scene, style="apple", jaw=False)
    key = face.data.shape_keys.key_blocks
    key["mouthSmileLeft"].value = 0.7
    strip = add_sound(scene, wav, frame_start=1)
    s = scene.thunder
    s.rig, s.takes_count, s.seed, s.preset, s.rank, s.strip = face, 1, 5, "draft", False, strip.name
    jobs, takes_mod = addon("core.jobs"), addon("utils.takes")
    props = face.thunder_mapping
    out = {}

    def step(name, op, **kw):
        assert op(**kw) == {"FINISHED"}
        job = jobs.wait(jobs.latest(), 180)
        act = s.takes[max(s.active_take, 0)].action  # the new take (Generate selects it, Resample keeps the row)
        out[name] = {
            "state": job.state,
            "message": job.message,
            "kept": props.lip_calibration,
            "lip_seal": takes_mod.meta(act).get("lip_seal", False),
            "smile_slider": key["mouthSmileLeft"].value,
        }

    step("first", bpy.ops.thunder.generate)
    press = key["mouthPressLeft"]
    co = np.empty(len(press.data) * 3, np.float32)
    press.data.foreach_get("co", co)
    basis = np.empty_like(co)
    key["Basis"].data.foreach_get("co", basis)
    press.data.foreach_set("co", basis + 2.0 * (co - basis))  # the artist sculpts the press further
    step("sculpted", bpy.ops.thunder.resample_take, index=0)
    key["mouthClose"].data.foreach_set("co", basis)
    step("no_closer", bpy.ops.thunder.generate)
    return out


def take_ops(url: str, wav: str, listen: bool) -> dict:
    """Resample and Listen on a character's take, then remove one."""
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_url, prefs.auto_start = url, False
    scene = fresh_scene("25")
    face, _ = make_face(scene, style="apple", jaw=False)
    strip = add_sound(scene, wav, frame_start=3)
    s = scene.thunder
    s.rig, s.takes_count, s.seed, s.preset, s.rank, s.strip = face, 2, 40, "draft", False, strip.name
    jobs, takes_mod = addon("core.jobs"), addon("utils.takes")
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 180)
    out = {"generate": [job.state, job.message], "before": [(i.action.name, i.seed) for i in s.takes]}
    old = s.takes[1].action.name
    assert bpy.ops.thunder.resample_take(index=1) == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 180)
    new = s.takes[1].action
    out["resample"] = {
        "state": job.state,
        "message": job.message,
        "takes": [(i.action.name, i.seed) for i in s.takes],
        "old_gone": old not in bpy.data.actions,
        "new_owned": takes_mod.is_owned(new),
        "new_target": takes_mod.meta(new).get("rig"),
        "new_has_jawOpen": 'key_blocks["jawOpen"].value' in addon("utils.keying").channel_paths(new),
    }
    if listen:
        assert bpy.ops.thunder.listen_take(index=0) == {"FINISHED"}
        job = jobs.wait(jobs.latest(), 180)
        added = [x for x in addon("utils.compat").sound_strips(scene) if "thunder_listen" in x]
        out["listen"] = {"state": job.state, "message": job.message, "added": [x.name for x in added]}
    # Re-map: the mapping edited (jawOpen at half gain, eyeBlinkLeft's row removed), the take
    # keyed again from its own motion, in place.
    keying = addon("utils.keying")
    s.active_take = 0  # clicked: it plays
    act = s.takes[0].action
    name, seed = act.name, s.takes[0].seed
    jaw_before = keying.read_curve(act, 'key_blocks["jawOpen"].value').tolist()
    rows = face.thunder_mapping.channels
    next(r for r in rows if r.target == "jawOpen").gain = 0.5
    rows.remove(next(i for i, r in enumerate(rows) if r.target == "eyeBlinkLeft"))
    assert bpy.ops.thunder.remap_take(index=0) == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 180)
    act = s.takes[0].action
    out["remap"] = {
        "state": job.state,
        "message": job.message,
        "same_row": [act.name, s.takes[0].seed] == [name, seed],
        "owned": takes_mod.is_owned(act),
        "jaw_before": jaw_before,
        "jaw_after": keying.read_curve(act, 'key_blocks["jawOpen"].value').tolist(),
        "blink_keyed": 'key_blocks["eyeBlinkLeft"].value' in keying.channel_paths(act),
        "shown": takes_mod.shown(addon("utils.characters").for_take(act), strip.name) == act,
        "actions": sorted(a.name for a in bpy.data.actions if takes_mod.is_owned(a)),
    }
    first = s.takes[0].action.name
    assert bpy.ops.thunder.remove_take(index=0) == {"FINISHED"}
    key = face.data.shape_keys
    out["remove"] = {
        "gone": first not in bpy.data.actions,
        "left": [i.action.name for i in s.takes],
        "key_tracks": [t.name for t in key.animation_data.nla_tracks],
        "shown": takes_mod.shown(addon("utils.characters").resolve(face), strip.name).name,
    }
    return out


def _op_error(op, **kw) -> str:
    """The error an operator reports (headless Blender raises it as RuntimeError); '' if none."""
    try:
        op(**kw)
    except RuntimeError as exc:
        return str(exc)
    return ""


def mapping_round_trip(path: str) -> dict:
    """Detect on one character, edit a row, save the preset file; load it on another character
    whose names are spelled otherwise; a broken row stops Generate with a clear message."""
    scene = fresh_scene("24")
    a, _ = make_face(scene, name="A", style="suffix", jaw=False)
    b, _ = make_face(scene, name="B", style="pascal", jaw=False, extra=("studioSneer",))
    s = scene.thunder
    s.rig = a
    rows = a.thunder_mapping.channels
    detected = [(r.target, r.sources, r.gain) for r in rows]
    smile = next(r for r in rows if r.target == "mouthSmile_L")
    smile.gain, smile.sources = 0.7, "smile_L 0.8, smile_R 0.2"
    out = {"detected": detected, "name": a.thunder_mapping.name}
    out["save"] = sorted(bpy.ops.thunder.mapping_save(filepath=path))
    a_rows = [(r.target, r.sources, round(r.gain, 6), r.limit) for r in rows]
    s.rig = b
    auto_b = len(b.thunder_mapping.channels)
    out["load"] = sorted(bpy.ops.thunder.mapping_load(filepath=path))
    b_rows = [(r.target, r.sources, round(r.gain, 6), r.limit) for r in b.thunder_mapping.channels]
    out.update(a_rows=a_rows, b_rows=b_rows, auto_b=auto_b)
    # A row the artist mistyped: Generate refuses it and says which row, before any network.
    smile_b = next(r for r in b.thunder_mapping.channels if r.target == "MouthSmileLeft")
    smile_b.sources = "smile_L lots"
    out["bad_row"] = _op_error(bpy.ops.thunder.generate)
    # Presets: VRM visemes fit none of an ARKit face's keys; ARKit 52 binds all 52.
    b.thunder_mapping.preset = "vrm_visemes"
    out["vrm"] = _op_error(bpy.ops.thunder.mapping_preset)
    b.thunder_mapping.preset = "arkit52"
    out["arkit"] = sorted(bpy.ops.thunder.mapping_preset())
    out["arkit_rows"] = len(b.thunder_mapping.channels)
    return out


def make_character_blend(path: str, wav: str) -> dict:
    scene = fresh_scene("30")
    make_face(scene, name="Hero", style="pascal", jaw=False)
    add_sound(scene, wav, frame_start=1, name="line1")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    return {"saved": path}


def inspect_character(path: str) -> dict:
    bpy.ops.wm.open_mainfile(filepath=path)
    takes_mod = addon("utils.takes")
    out = {}
    for scene in bpy.data.scenes:
        for act in takes_mod.scene_takes(scene):
            m = takes_mod.meta(act)
            paths = addon("utils.keying").channel_paths(act)
            out[act.name] = {
                "rig": m["rig"],
                "mapping": addon("core.retarget").Mapping.from_dict(json.loads(m["mapping_json"])).name,
                "channels": len(m["channels"]),
                "paths": len(paths),
                "fps": m["fps"],
                "lip_seal": m.get("lip_seal", False),
            }
    hero = bpy.data.objects["Hero"].thunder_mapping
    return {"takes": out, "stored": [hero.name, len(hero.channels)], "lip_calibration": hero.lip_calibration}


def reopen(path: str) -> dict:
    """A saved file: the character's mapping and takes are there; clicking a take plays it."""
    bpy.ops.wm.open_mainfile(filepath=path)
    scene = bpy.context.scene
    s, takes_mod, characters = scene.thunder, addon("utils.takes"), addon("utils.characters")
    face = s.rig
    s.active_take = 1 - s.active_take
    act = s.takes[s.active_take].action
    return {
        "target": face.name,
        "rows": len(face.thunder_mapping.channels),
        "jaw_bone": face.thunder_mapping.jaw_bone,
        "takes": [(i.action.name, takes_mod.is_owned(i.action), i.rig) for i in s.takes],
        "shown": takes_mod.shown(characters.for_take(act), s.takes[s.active_take].strip).name,
        "picked": act.name,
    }


def panel_draw() -> dict:
    """The sidebar drawn (through machinery's RecordingLayout: draw() never runs headless) with
    a character as the target and a take selected; then with a row naming no shape key."""
    from machinery import RecordingLayout

    scene = fresh_scene("24")
    scene.sequence_editor_create()
    face, arm = make_face(scene)
    s = scene.thunder
    s.rig = face
    props = face.thunder_mapping
    props.jaw_armature = arm
    s.takes.add()  # a row is enough for the take buttons to show
    s.active_take = 0
    panels = addon("panels")

    def draw():
        log = []
        panels.THUNDER_PT_view3d.draw(type("P", (), {"layout": RecordingLayout(log)})(), bpy.context)
        return log

    ok = draw()
    rows = []
    first = props.channels[0]
    panels.THUNDER_UL_mapping.draw_item(None, bpy.context, RecordingLayout(rows), props, first, 0, None, "", 0)
    props.channels[0].target = "noSuchShape"
    broken = draw()
    return {"panel": ok, "row": rows, "broken": broken}
