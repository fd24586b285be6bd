"""What an artist sees: rest face outside takes, the strip's Sound Offset, the jaw's own
rotation mode, an active Action over the takes, blends, one take per seed, Listen files."""

from __future__ import annotations


import bpy
import numpy as np
from mathutils import Quaternion

from common import ADDON, add_sound, addon, fresh_scene, real_rig, synthetic_take

EXP = [f"exp{i:03d}" for i in range(50)]


def _mods():
    return [
        addon(m) for m in ("utils.takes", "utils.strips", "utils.rigs", "utils.keying", "utils.compat", "core.messages")
    ]


def _show_take(rig, scene, strip: str, frame_start: int, take):
    takes, strips, _, _, compat, _ = _mods()
    info = strips.StripInfo(scene.name, strip, "", 0.0, (take.n_frames - 1) / 25, frame_start, compat.scene_fps(scene))
    acts = takes.create(rig, info, take)
    takes.show(rig, acts)
    return acts


def _exp_values(rig) -> list:
    return [rig.key.key_blocks[n].value for n in EXP]


def _curve_paths(act) -> list:
    compat = addon("utils.compat")
    if compat.SLOTTED_ACTIONS:
        return sorted(
            {
                (fc.data_path, fc.array_index)
                for layer in act.layers
                for st in layer.strips
                for bag in st.channelbags
                for fc in bag.fcurves
            }
        )
    return sorted({(fc.data_path, fc.array_index) for fc in act.fcurves})


def _tracks(idb) -> list:
    ad = idb.animation_data
    return [t.name for t in ad.nla_tracks] if ad else []


# --- 2. rest face outside takes -------------------------------------------------------------------------


def rest_face(head_path: str) -> dict:
    scene = fresh_scene("25")
    scene.frame_end = 120
    rigs = addon("utils.rigs")
    rig = rigs.resolve(real_rig(scene, head_path))
    built = _exp_values(rig)
    take_a = synthetic_take(1, 26)  # frames 20..45
    take_b = synthetic_take(2, 21)  # frames 60..80
    take_a.exp[:] += 0.6  # never zero inside a take
    take_b.exp[:] += 0.6
    _show_take(rig, scene, "a", 20, take_a)
    # The artist's slider on this rig is never set by showing a take.
    rig.key.key_blocks["exp007"].value = 0.45
    _show_take(rig, scene, "b", 60, take_b)
    static_after_show = rig.key.key_blocks["exp007"].value
    out = {
        "built_max": max(abs(v) for v in built),
        "static_after_show": static_after_show,
        "frames": {},
        "version": list(bpy.app.version),
        "key_tracks": _tracks(rig.key),
    }
    for f in (1, 19, 46, 50, 59, 81, 100):
        scene.frame_set(f)
        out["frames"][str(f)] = max(abs(v) for v in _exp_values(rig))
    scene.frame_set(32)
    out["inside"] = min(abs(v) for v in _exp_values(rig))
    return out


# --- 3. Sound Offset ------------------------------------------------------------------------------------


def _setup_backend(url: str, fps: str, head_path: str):
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_url, prefs.auto_start = url, False
    scene = fresh_scene(fps)
    arm = real_rig(scene, head_path)
    return scene, arm


def _generate(scene, arm, strip, takes: int, seed: int):
    jobs = addon("core.jobs")
    s = scene.thunder
    s.rig, s.takes_count, s.seed, s.preset, s.rank, s.strip = arm, takes, seed, "draft", False, strip.name
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 180)
    return job


class _NoOffset:
    """A sound strip as Blender versions without `sound_offset` show it."""

    def __init__(self, strip):
        object.__setattr__(self, "_s", strip)

    def __getattr__(self, name):
        if name == "sound_offset":
            raise AttributeError(name)
        return getattr(self._s, name)


def sound_offset(url: str, head_path: str, wav: str, mixdown: str) -> dict:
    scene, arm = _setup_backend(url, "25", head_path)
    takes, strips, rigs, keying, compat, _ = _mods()
    strip = add_sound(scene, wav, frame_start=5)
    strip.sound_offset = 0.5
    job = _generate(scene, arm, strip, 1, 21)
    out = {"state": job.state, "message": job.message, "version": list(bpy.app.version)}
    if job.state != "done":
        return out
    act = scene.thunder.takes[0].action
    m = takes.meta(act)
    out.update(
        frame_start=m["frame_start"],
        frame_end=m["frame_end"],
        audio_start=m["audio_start"],
        audio_end=m["audio_end"],
        exp25=takes.stored_take(act).exp.tolist(),
        keys0=keying.read_curve(act, 'key_blocks["exp000"].value').tolist(),
        strip_frames=[strip.frame_start, strip.frame_final_start, strip.frame_final_end],
    )
    # What the sequencer plays, mixed down: the test finds which source second is heard at each frame.
    scene.frame_start, scene.frame_end = 1, int(strip.frame_final_end) + 5
    res = bpy.ops.sound.mixdown(
        filepath=mixdown, container="WAV", codec="PCM", format="F32", mixrate=48000, accuracy=1024
    )
    out["mixdown"] = sorted(res)
    out["scene_frame_start"] = scene.frame_start
    # Other offsets and trims, straight from strip_info.
    infos = {}
    for off, trim in ((-0.3, 0), (-0.3, 4), (0.013, 0), (0.5, 20)):
        strip.sound_offset = off
        strip.frame_final_start = int(strip.frame_start) + trim
        info = strips.strip_info(scene, strip)
        infos[f"{off} {trim}"] = [info.frame_start, info.start_s, info.end_s]
    strip.frame_final_start = int(strip.frame_start)
    strip.sound_offset = 0.25
    info = strips.strip_info(scene, _NoOffset(strip))
    infos["absent"] = [info.frame_start, info.start_s, info.end_s]
    strip.sound_offset = 4.0  # pushed past the strip's end: nothing plays
    try:
        strips.strip_info(scene, strip)
        infos["nothing"] = ""
    except strips.StripError as exc:
        infos["nothing"] = str(exc)
    out["infos"] = infos
    out["strip_final"] = [strip.frame_start, strip.frame_final_start, strip.frame_final_end]
    return out


# --- 4. the jaw's own rotation mode ---------------------------------------------------------------------


def _sweep_take(n: int, bone):
    """A jaw turning far (0 -> 5 rad, mostly about the bone's own x axis, clear of gimbal lock):
    Euler angles jump by 2 pi at pi unless kept continuous."""
    messages = addon("core.messages")
    t = np.linspace(0.0, 1.0, n)[:, None]
    local = np.array([1.0, 0.15, 0.1])
    arm_axis = np.array(bone.matrix_local.to_3x3()) @ (local / np.linalg.norm(local))
    axis = np.array([[arm_axis[0], arm_axis[2], -arm_axis[1]]])  # Blender (x, y, z) -> FLAME (x, z, -y)
    jaw = (5.0 * t * axis).astype(np.float32)
    exp = np.zeros((n, 50), np.float32)
    return messages.Take(4, 0.5, exp, jaw)


def _bone_rotation(pb) -> np.ndarray:
    return np.array(pb.matrix_basis.to_3x3())


def jaw_modes(head_path: str, modes: list) -> dict:
    out = {}
    rig_mod = addon("rig")
    for mode in modes:
        scene = fresh_scene("25")
        scene.frame_end = 100
        takes, _, rigs, keying, _, _ = _mods()
        rig = rigs.resolve(real_rig(scene, head_path))
        pb = rig.armature.pose.bones["jaw"]
        pb.rotation_mode = mode
        take = _sweep_take(40, rig.armature.data.bones["jaw"])
        acts = _show_take(rig, scene, "line", 10, take)
        want_q = rig_mod.axis_angle_to_bone_quaternions(take.jaw.astype(np.float64), rig.armature.data.bones["jaw"])
        paths = sorted({p for act in acts for p, _ in _curve_paths(act) if "jaw" in p})
        errs, steps = [], []
        for k in range(5, 35):  # inside the take, clear of its blends
            scene.frame_set(10 + k)
            want = np.array(Quaternion(want_q[k]).to_matrix())
            errs.append(float(np.abs(_bone_rotation(pb) - want).max()))
        if mode not in ("QUATERNION", "AXIS_ANGLE"):  # the keys themselves: no 2 pi jumps
            eul = np.stack(
                [keying.read_curve(acts[-1], 'pose.bones["jaw"].rotation_euler', i)[:, 1] for i in range(3)], axis=1
            )
            steps = np.abs(np.diff(eul, axis=0)).max(axis=1).tolist()
        if mode == "AXIS_ANGLE":  # no axis flips either
            aa = np.stack(
                [keying.read_curve(acts[-1], 'pose.bones["jaw"].rotation_axis_angle', i)[:, 1] for i in range(4)],
                axis=1,
            )
            steps = np.abs(np.diff(aa, axis=0)).max(axis=1).tolist()
        res = {
            "mode_after": pb.rotation_mode,
            "paths": paths,
            "max_err": max(errs),
            "max_step": max(steps) if steps else 0.0,
            "meta_mode": takes.meta(acts[0]).get("jaw_mode"),
        }
        if mode != "QUATERNION":
            # A take keyed while the jaw was a quaternion, then the artist set it back to their mode:
            # showing it again keys the add-on's own take in the jaw's mode.
            pb.rotation_mode = "QUATERNION"
            old = _show_take(rig, scene, "other", 10, take)
            pb.rotation_mode = mode
            takes.unshow(rig, "line")
            takes.show(rig, old)
            scene.frame_set(10 + 20)
            want = np.array(Quaternion(want_q[20]).to_matrix())
            res["reshown_paths"] = sorted({p for act in old for p, _ in _curve_paths(act) if "jaw" in p})
            res["reshown_err"] = float(np.abs(_bone_rotation(pb) - want).max())
            res["reshown_mode"] = pb.rotation_mode
        out[mode] = res
    return out


def _fcurve(act, path: str, index: int = 0):
    if addon("utils.compat").SLOTTED_ACTIONS:
        for layer in act.layers:
            for st in layer.strips:
                for bag in st.channelbags:
                    fc = bag.fcurves.find(path, index=index)
                    if fc is not None:
                        return fc
        return None
    return act.fcurves.find(path, index=index)


class _Layout:
    """Records what a panel's draw() puts in the sidebar (a stand-in for Blender's UILayout,
    which only exists while a window draws)."""

    def __init__(self, log=None):
        self.log = [] if log is None else log

    def _sub(self, *args, **kwargs):
        return _Layout(self.log)

    column = row = box = split = _sub

    def label(self, text="", icon="NONE", **kwargs):
        self.log.append(("label", text, icon))

    def operator(self, idname, text="", icon="NONE", **kwargs):
        self.log.append(("operator", idname, text))

        class _Props:
            pass

        return _Props()

    def __getattr__(self, name):  # prop, prop_search, template_list, progress, separator…
        return lambda *args, **kwargs: None


def panel_lines(scene) -> list:
    from types import SimpleNamespace

    panels = addon("panels")
    layout = _Layout()
    panels._draw(SimpleNamespace(layout=layout), SimpleNamespace(scene=scene, active_object=None))
    return [list(x) for x in layout.log]


# --- 5. the artist's active Action ----------------------------------------------------------------------


def active_action(head_path: str) -> dict:
    scene = fresh_scene("25")
    scene.frame_end = 100
    takes, _, rigs, keying, _, _ = _mods()
    arm = real_rig(scene, head_path)
    scene.thunder.rig = arm
    rig = rigs.resolve(arm)
    kb = rig.key.key_blocks["exp000"]
    kb.value = 0.25
    kb.keyframe_insert("value", frame=1)
    kb.value = 0.35
    kb.keyframe_insert("value", frame=90)
    artist_key = rig.key.animation_data.action
    artist_key.name = "my face"
    pb = rig.armature.pose.bones["jaw"]
    pb.rotation_quaternion = Quaternion((1, 0, 0), 0.3)
    pb.keyframe_insert("rotation_quaternion", frame=1)
    artist_arm = rig.armature.animation_data.action
    artist_arm.name = "my body"
    keys_before = keying.read_curve(artist_key, 'key_blocks["exp000"].value').tolist()
    artist_at = {str(f): _fcurve(artist_key, 'key_blocks["exp000"].value').evaluate(f) for f in (5, 40, 95)}
    take = synthetic_take(3, 40)
    take.exp[:, 0] = 0.8
    _show_take(rig, scene, "line", 20, take)

    def evaluate(f):
        scene.frame_set(f)
        return [rig.key.key_blocks["exp000"].value, pb.rotation_quaternion.angle]

    out = {
        "warnings": [list(w) for w in takes.overriding_actions(rig)],
        "before_inside": evaluate(40),
        "before_outside": evaluate(5),
        "panel_before": panel_lines(scene),
    }
    bpy.ops.ed.undo_push(message="set up")
    out["result"] = sorted(bpy.ops.thunder.arrange_nla("EXEC_DEFAULT", True))  # undo=True: as a click does
    rig = rigs.resolve(scene.thunder.rig)
    pb = rig.armature.pose.bones["jaw"]
    artist_key, artist_arm = bpy.data.actions["my face"], bpy.data.actions["my body"]
    out.update(
        after_inside=evaluate(40),
        after_outside=evaluate(5),
        after_late=evaluate(95),
        warnings_after=[list(w) for w in takes.overriding_actions(rig)],
        key_tracks=_tracks(rig.key),
        arm_tracks=_tracks(rig.armature),
        key_action=rig.key.animation_data.action.name if rig.key.animation_data.action else None,
        arm_action=rig.armature.animation_data.action.name if rig.armature.animation_data.action else None,
        keys_same=keying.read_curve(artist_key, 'key_blocks["exp000"].value').tolist() == keys_before,
        take_inside=float(take.exp[20, 0]),
        artist_at=artist_at,
        panel_after=panel_lines(scene),
    )
    bpy.ops.ed.undo()
    rig = rigs.resolve(bpy.context.scene.thunder.rig)
    out["undo_key_action"] = rig.key.animation_data.action.name if rig.key.animation_data.action else None
    out["undo_key_tracks"] = _tracks(rig.key)
    return out


# --- 6. blends ------------------------------------------------------------------------------------------


def blends(head_path: str, fps: str) -> dict:
    scene = fresh_scene(fps)
    scene.frame_end = 300
    takes, _, rigs, keying, compat, _ = _mods()
    rig = rigs.resolve(real_rig(scene, head_path))
    long_take, short_take = synthetic_take(1, 40), synthetic_take(2, 5)
    long_take.exp[:, 0] = 0.8
    short_take.exp[:, 0] = 0.6
    acts = _show_take(rig, scene, "long", 10, long_take)
    _show_take(rig, scene, "short", 200, short_take)
    out = {"fps": compat.scene_fps(scene), "strips": {}}
    for idb, label in ((rig.key, "key"), (rig.armature, "arm")):
        for t in idb.animation_data.nla_tracks:
            if t.name.startswith("THUNDER ") and t.name in ("THUNDER long", "THUNDER short"):
                s = t.strips[0]
                out["strips"][f"{label} {t.name}"] = [
                    s.frame_start,
                    s.frame_end,
                    s.blend_in,
                    s.blend_out,
                    s.use_auto_blend,
                ]
    keys = keying.read_curve(acts[0], 'key_blocks["exp000"].value')
    f0 = float(keys[0, 0])
    out["probe"] = []
    for df in (0.0, 1.0, 2.0, 4.0):
        f = int(f0 + df)
        scene.frame_set(f)
        out["probe"].append([f, rig.key.key_blocks["exp000"].value, float(np.interp(f, keys[:, 0], keys[:, 1]))])
    last = float(keys[-1, 0])
    scene.frame_set(int(last - 1))
    out["probe_out"] = [
        int(last - 1),
        rig.key.key_blocks["exp000"].value,
        float(np.interp(last - 1, keys[:, 0], keys[:, 1])),
    ]
    return out


# --- 9. one take per seed; Listen files ----------------------------------------------------------------


def same_seed(url: str, head_path: str, wav: str, other_wav: str) -> dict:
    scene, arm = _setup_backend(url, "25", head_path)
    takes, strips, rigs, keying, compat, _ = _mods()
    strip = add_sound(scene, wav, frame_start=3)
    out = {}
    job = _generate(scene, arm, strip, 2, 5)
    out["first"] = {"state": job.state, "message": job.message, "names": [i.action.name for i in scene.thunder.takes]}
    # The artist keeps a copy of s5 (theirs from now on).
    copy = bpy.data.actions["line s5"].copy()
    copy_keys = keying.read_curve(copy, 'key_blocks["exp000"].value').tolist()
    bpy.ops.ed.undo_push(message="before second generate")
    before = sorted(a.name for a in bpy.data.actions)
    job = _generate(scene, arm, strip, 2, 5)
    owned = sorted(a.name for a in takes.scene_takes(scene, strip.name))
    out["again"] = {
        "state": job.state,
        "message": job.message,
        "names": [i.action.name for i in scene.thunder.takes],
        "owned": owned,
        "actions": sorted(a.name for a in bpy.data.actions),
        "copy_kept": copy.name in bpy.data.actions and not takes.is_owned(copy),
        "copy_same": keying.read_curve(copy, 'key_blocks["exp000"].value').tolist() == copy_keys,
        "shown": takes.shown(rigs.resolve(arm), strip.name).name,
        "active": scene.thunder.active_take,
        "list_seeds": [i.seed for i in scene.thunder.takes],
    }
    bpy.ops.ed.undo()
    out["undo_actions_same"] = sorted(a.name for a in bpy.data.actions) == before
    scene = bpy.context.scene
    arm = scene.thunder.rig
    strip = strips.find(scene, "line")
    job = _generate(scene, arm, strip, 2, 6)
    out["next"] = {
        "state": job.state,
        "names": [i.action.name for i in scene.thunder.takes],
        "owned": sorted(a.name for a in takes.scene_takes(scene, strip.name)),
    }
    # Listen: the same take twice reuses its file; another unsaved file's take of the same name
    # (other audio) gets its own file and leaves this one as it was.
    jobs = addon("core.jobs")
    files = []
    for _ in range(2):
        assert bpy.ops.thunder.listen_take(index=0) == {"FINISHED"}
        job = jobs.wait(jobs.latest(), 120)
        assert job.state == "done", job.message
        new = [s for s in compat.sound_strips(scene) if "thunder_listen" in s]
        files.append(bpy.path.abspath(new[-1].sound.filepath))
    first_bytes = open(files[0], "rb").read()
    scene, arm = _setup_backend(url, "25", head_path)
    strip = add_sound(scene, other_wav, frame_start=3)
    job = _generate(scene, arm, strip, 1, 5)
    assert job.state == "done", job.message
    assert bpy.ops.thunder.listen_take(index=0) == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 120)
    new = [s for s in compat.sound_strips(scene) if "thunder_listen" in s]
    other_file = bpy.path.abspath(new[-1].sound.filepath)
    out["listen"] = {
        "files": files,
        "other": other_file,
        "other_name": scene.thunder.takes[0].action.name,
        "first_unchanged": open(files[0], "rb").read() == first_bytes,
    }
    return out


def stale_jaw(head_path: str) -> dict:
    """The artist sets the jaw's rotation mode after Generate: the panel says the shown take's
    jaw was keyed in another mode, and Use Take (a click on it) re-keys it in the jaw's mode."""
    scene = fresh_scene("25")
    takes, _, rigs, _, _, _ = _mods()
    arm = real_rig(scene, head_path)
    scene.thunder.rig = arm
    rig = rigs.resolve(arm)
    acts = _show_take(rig, scene, "line", 10, synthetic_take(2, 30))
    addon("utils.generation")._add_to_list(scene, acts)
    scene.thunder.active_take = 0
    rig.armature.pose.bones["jaw"].rotation_mode = "YZX"
    before = panel_lines(scene)
    result = sorted(bpy.ops.thunder.use_take(index=0))
    return {
        "panel_before": before,
        "panel_after": panel_lines(scene),
        "result": result,
        "paths": sorted({p for a in acts for p, _ in _curve_paths(a) if "jaw" in p}),
        "mode": rig.armature.pose.bones["jaw"].rotation_mode,
    }
