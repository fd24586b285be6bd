"""End to end against a real backend subprocess (URL in the add-on's preferences)."""

from __future__ import annotations

import time

import bpy

from common import ADDON, add_sound, addon, fresh_scene, jaw_to_bone, real_rig

EXP_CHECK = (0, 3, 49)


def _setup(
    url: str, fps: str, head_path: str, wav: str, frame_start: int, takes: int, seed: int, use_add_head: bool = False
):
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.backend_url, prefs.auto_start = url, False
    scene = fresh_scene(fps)
    jobs = addon("core.jobs")
    if use_add_head:
        assert bpy.ops.thunder.add_head() == {"FINISHED"}
        job = jobs.wait(jobs.latest(), 120)
        assert job.state == "done", job.message
        arm = scene.thunder.rig
    else:
        arm = real_rig(scene, head_path)
    strip = add_sound(scene, wav, frame_start=frame_start)
    s = scene.thunder
    s.rig, s.takes_count, s.seed, s.preset, s.rank = arm, takes, seed, "draft", False
    s.strip = strip.name
    return scene, strip, arm


def snapshot() -> dict:
    """What a failed or cancelled generation must leave unchanged."""

    def curves(act):
        out = []
        for layer in act.layers:
            for st in layer.strips:
                for bag in st.channelbags:
                    for fc in bag.fcurves:
                        out.append((fc.data_path, fc.array_index, len(fc.keyframe_points)))
        return sorted(out)

    nla = []
    for idb in list(bpy.data.shape_keys) + list(bpy.data.objects):
        ad = getattr(idb, "animation_data", None)
        if ad:
            nla.append(
                (
                    idb.name,
                    ad.action.name if ad.action else None,
                    [
                        (
                            t.name,
                            [
                                (s.name, s.action.name if s.action else None, s.frame_start, s.frame_end)
                                for s in t.strips
                            ],
                        )
                        for t in ad.nla_tracks
                    ],
                )
            )
    scene = bpy.context.scene
    compat = addon("utils.compat")
    return {
        "actions": sorted((a.name, a.users, curves(a)) for a in bpy.data.actions),
        "objects": sorted(o.name for o in bpy.data.objects),
        "nla": sorted(nla, key=str),
        "sounds": sorted(s.name for s in bpy.data.sounds),
        "strips": sorted(s.name for s in compat.sequencer_strips(scene)),
        "range": [scene.frame_start, scene.frame_end],
        "takes": len(scene.thunder.takes),
        "jaw_mode": [o.pose.bones["jaw"].rotation_mode for o in bpy.data.objects if o.type == "ARMATURE"],
    }


def generate(
    url: str,
    fps: str,
    head_path: str,
    wav: str,
    frame_start: int = 5,
    takes: int = 2,
    seed: int = 11,
    save_as: str = "",
    use_add_head: bool = False,
) -> dict:
    scene, strip, arm = _setup(url, fps, head_path, wav, frame_start, takes, seed, use_add_head)
    scene.frame_end = 12
    jobs, keying, takes_mod, compat = (addon(m) for m in ("core.jobs", "utils.keying", "utils.takes", "utils.compat"))
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 180)
    out = {
        "state": job.state,
        "message": job.message,
        "fps": compat.scene_fps(scene),
        "range": [scene.frame_start, scene.frame_end],
        "to_bone": jaw_to_bone(arm),
        "strip_frames": [strip.frame_final_start, strip.frame_final_end],
    }
    items = []
    for item in scene.thunder.takes:
        act = item.action
        m = takes_mod.meta(act)
        stored = takes_mod.stored_take(act)
        items.append(
            {
                "name": act.name,
                "seed": item.seed,
                "score": item.score,
                "duration": item.duration,
                "owned": takes_mod.is_owned(act),
                "fake_user": act.use_fake_user,
                "frame_start": m["frame_start"],
                "frame_end": m["frame_end"],
                "exp25": stored.exp.tolist(),
                "jaw25": stored.jaw.tolist(),
                "exp_keys": [keying.read_curve(act, f'key_blocks["exp{i:03d}"].value').tolist() for i in EXP_CHECK],
                "jaw_keys": [
                    keying.read_curve(act, 'pose.bones["jaw"].rotation_quaternion', i).tolist() for i in range(4)
                ],
            }
        )
    out["takes"] = items
    out["active_take"] = scene.thunder.active_take
    shown = takes_mod.shown(addon("utils.rigs").resolve(arm), strip.name)
    out["shown"] = shown.name if shown else None
    # Picking another take switches what plays.
    if len(items) > 1:
        scene.thunder.active_take = 1
        out["shown_after_pick"] = takes_mod.shown(addon("utils.rigs").resolve(arm), strip.name).name
        f = int((items[1]["frame_start"] + items[1]["frame_end"]) / 2)  # clear of the strip's blends
        scene.frame_set(f)
        out["evaluated_pick"] = [arm.children[0].data.shape_keys.key_blocks[f"exp{i:03d}"].value for i in EXP_CHECK]
        out["evaluated_frame"] = f
    if save_as:
        bpy.ops.wm.save_as_mainfile(filepath=save_as)
    return out


def reopen(path: str) -> dict:
    bpy.ops.wm.open_mainfile(filepath=path)
    scene = bpy.context.scene
    takes_mod, rigs = addon("utils.takes"), addon("utils.rigs")
    arm = scene.thunder.rig
    items = [
        {
            "name": i.action.name if i.action else None,
            "seed": i.seed,
            "owned": takes_mod.is_owned(i.action),
            "strip": i.strip,
        }
        for i in scene.thunder.takes
    ]
    shown = takes_mod.shown(rigs.resolve(arm), items[0]["strip"])
    item = scene.thunder.takes[scene.thunder.active_take]
    f = int(takes_mod.meta(item.action)["frame_start"]) + 3
    scene.frame_set(f)
    key = rigs.resolve(arm).key
    return {
        "takes": items,
        "active_take": scene.thunder.active_take,
        "shown": shown.name if shown else None,
        "evaluated": [key.key_blocks[f"exp{i:03d}"].value for i in EXP_CHECK],
        "frame": f,
    }


def failures(url: str, head_path: str, wav: str, bad_wav: str, long_wav: str) -> dict:
    """Backend error, head mismatch and cancel: each leaves the scene exactly as it was."""
    scene, strip, arm = _setup(url, "24", head_path, wav, 3, 2, 0)
    jobs = addon("core.jobs")
    # Some existing state that must survive untouched: the artist's own keys.
    key = arm.children[0].data.shape_keys
    key.key_blocks["exp001"].value = 0.5
    key.key_blocks["exp001"].keyframe_insert("value", frame=2)
    out = {}

    bad = add_sound(scene, bad_wav, frame_start=40, channel=2, name="broken")
    scene.thunder.strip = bad.name
    before_bad = snapshot()
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 60)
    out["bad_audio"] = {"state": job.state, "message": job.message, "same": snapshot() == before_bad}
    compat = addon("utils.compat")
    compat.top_strips(scene).remove(bad)
    scene.thunder.strip = strip.name

    arm.children[0]["thunder_head_id"] = "0" * 64
    arm["thunder_head_id"] = "0" * 64
    before = snapshot()
    bpy.ops.thunder.generate()
    job = jobs.latest()
    if job is not None and job.running:
        jobs.wait(job, 60)
    out["mismatch"] = {
        "state": job.state if job else None,
        "message": job.message if job else "",
        "same": snapshot() == before,
    }
    real = addon("utils.generation").head_arrays(open(head_path, "rb").read())["head_id"]
    arm.children[0]["thunder_head_id"] = real
    arm["thunder_head_id"] = real

    long_strip = add_sound(scene, long_wav, frame_start=100, channel=3, name="long")
    scene.thunder.strip, scene.thunder.takes_count, scene.thunder.preset = long_strip.name, 8, "high"
    before_long = snapshot()
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.latest()
    while job.stage != "sampling 8 take(s)" and job.running:
        jobs.drain()
        time.sleep(0.01)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert bpy.ops.thunder.cancel() == {"FINISHED"}
    jobs.wait(job, 60)
    out["cancel"] = {
        "state": job.state,
        "message": job.message,
        "same": snapshot() == before_long,
        "seconds_to_cancel": time.monotonic() - t0,
    }
    return out


def take_ops(url: str, head_path: str, wav: str, listen: bool = True) -> dict:
    """Resample one take, Listen to one, remove one; an artist-adopted take is never deleted."""
    scene, strip, arm = _setup(url, "25", head_path, wav, 10, 3, 100)
    jobs = addon("core.jobs")
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    assert jobs.wait(jobs.latest(), 120).state == "done"
    out = {"before": [(i.action.name, i.seed) for i in scene.thunder.takes]}
    old_name = scene.thunder.takes[1].action.name
    assert bpy.ops.thunder.resample_take(index=1) == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 120)
    out["resample"] = {
        "state": job.state,
        "message": job.message,
        "takes": [(i.action.name, i.seed) for i in scene.thunder.takes],
        "old_gone": old_name not in bpy.data.actions,
    }
    if listen:
        n_strips = len(addon("utils.compat").sound_strips(scene))
        assert bpy.ops.thunder.listen_take(index=0) == {"FINISHED"}
        job = jobs.wait(jobs.latest(), 120)
        strips = addon("utils.compat").sound_strips(scene)
        new = [s for s in strips if "thunder_listen" in s]
        out["listen"] = {
            "state": job.state,
            "message": job.message,
            "added": len(strips) - n_strips,
            "strip": [new[0].name, new[0].frame_final_start, new[0].channel] if new else None,
            "file": bpy.path.abspath(new[0].sound.filepath) if new else None,
        }
    # The artist renames take 2 (adopts it): removing it from the list keeps the Action.
    adopted = scene.thunder.takes[2].action
    adopted.name = "keeper"
    assert bpy.ops.thunder.remove_take(index=2) == {"FINISHED"}
    first = scene.thunder.takes[0].action.name
    assert bpy.ops.thunder.remove_take(index=0) == {"FINISHED"}
    out["remove"] = {
        "keeper_kept": "keeper" in bpy.data.actions,
        "first_gone": first not in bpy.data.actions,
        "left": [i.action.name for i in scene.thunder.takes],
    }
    return out


def bundled_backend(head_path: str, wav: str, port: int, backend_python: str = "") -> dict:
    """No backend answers: Generate starts the backend and model shipped inside the extension,
    then Stop stops it."""
    launcher = addon("core.launcher")
    scene, strip, arm = _setup(f"http://127.0.0.1:{port}", "25", head_path, wav, 1, 1, 3)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.auto_start, prefs.bundle, prefs.device, prefs.python = True, "", "cpu", backend_python
    cmd, env = launcher.command(python=backend_python, port=port, device="cpu")
    jobs = addon("core.jobs")
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 180)
    out = {
        "state": job.state,
        "message": job.message,
        "running": launcher.running(),
        "backend_root": str(launcher.backend_root()),
        "cmd": cmd,
        "bundle": str(launcher.default_bundle()),
        "takes": len(scene.thunder.takes),
        "log": launcher.log_tail(4000),
    }
    assert bpy.ops.thunder.backend_stop() == {"FINISHED"}
    out["stopped"] = not launcher.running()
    try:
        addon("core.client").Client(f"http://127.0.0.1:{port}").health(timeout=1)
        out["answers_after_stop"] = True
    except addon("core.client").BackendError:
        out["answers_after_stop"] = False
    return out


def generate_many(fps_list: list, save_fps: str = "", add_head_fps: str = "", save_as: str = "", **kwargs) -> dict:
    """generate() at several frame rates in one process (one bpy start-up)."""
    return {
        fps: generate(fps=fps, save_as=save_as if fps == save_fps else "", use_add_head=fps == add_head_fps, **kwargs)
        for fps in fps_list
    }


def undo_redo(url: str, head_path: str, wav: str) -> dict:
    """Generate is one undo step: undo removes every take, redo brings them back.
    The panel's Rig is left empty: Generate finds the scene's only rig itself."""
    scene, _, _ = _setup(url, "25", head_path, wav, 1, 2, 7)
    scene.thunder.rig = None
    bpy.ops.ed.undo_push(message="set up")
    before = snapshot()
    jobs = addon("core.jobs")
    assert bpy.ops.thunder.generate() == {"FINISHED"}
    job = jobs.wait(jobs.latest(), 120)
    after = snapshot()
    bpy.ops.ed.undo()
    undone = snapshot()
    bpy.ops.ed.redo()
    redone = snapshot()
    return {
        "state": job.state,
        "message": job.message,
        "changed": after != before,
        "undo_restores": undone == before,
        "redo_restores": redone == after,
        "takes_after_redo": [i.action.name for i in bpy.context.scene.thunder.takes],
    }
