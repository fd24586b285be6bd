"""Registration and the worker-thread / queue / main-thread machinery."""

from __future__ import annotations

import threading
import time

import addon_utils
import bpy

from common import ADDON, addon


def registration() -> dict:
    ops = [n for n in dir(bpy.ops.thunder)]
    prefs = bpy.context.preferences.addons[ADDON].preferences
    out = {
        "ops": sorted(ops),
        "scene_prop": hasattr(bpy.types.Scene, "thunder"),
        "prefs": {k: getattr(prefs, k) for k in ("backend_url", "auto_start", "device")},
        "panels": [
            c for c in ("THUNDER_PT_view3d", "THUNDER_PT_sequencer", "THUNDER_UL_takes") if hasattr(bpy.types, c)
        ],
    }
    addon_utils.disable(ADDON, default_set=True)
    out["after_disable"] = {
        "scene_prop": hasattr(bpy.types.Scene, "thunder"),
        "panels": [c for c in ("THUNDER_PT_view3d",) if hasattr(bpy.types, c)],
    }
    addon_utils.enable(ADDON, default_set=True)
    out["reenabled"] = hasattr(bpy.types.Scene, "thunder")
    return out


def _greyed(op) -> str:
    """Why a greyed-out operator is (its poll message), or "" when it runs."""
    try:
        op()
    except RuntimeError as exc:
        return str(exc)
    return ""


def jobs_flow() -> dict:
    jobs = addon("core.jobs")
    client = addon("core.client")
    main = threading.main_thread()
    seen = {"cancel_greyed": _greyed(bpy.ops.thunder.cancel)}

    def work(job):
        seen["work_thread_is_main"] = threading.current_thread() is main
        job.report(0.5, "half")
        time.sleep(0.2)
        return 41

    def apply(value):
        seen["apply_thread_is_main"] = threading.current_thread() is main
        bpy.context.scene["answer"] = value + 1
        return "applied"

    job = jobs.start("ok", work, apply)
    running_during = jobs.drain()
    jobs.wait(job, 10)
    out = {
        "ok_state": job.state,
        "ok_message": job.message,
        "answer": bpy.context.scene.get("answer"),
        "running_during": running_during,
        **seen,
        "timer_idle": jobs.tick() is None,
    }

    # Cancel while the worker blocks: apply must never run.
    gate = threading.Event()

    def slow(job):
        gate.wait(5)
        if job.cancel.is_set:
            raise client.Cancelled("cancelled")
        return 1

    job = jobs.start("slow", slow, lambda v: bpy.context.scene.__setitem__("slow", v) or "x")
    out["timer_running"] = jobs.tick() == jobs.POLL_S
    out["generate_greyed"] = _greyed(bpy.ops.thunder.generate)
    jobs.cancel(job.id)
    gate.set()
    jobs.wait(job, 10)
    out["cancel_state"], out["cancel_applied"] = job.state, "slow" in bpy.context.scene

    # A worker error and an apply error both end as "failed" and change nothing.
    job = jobs.wait(
        jobs.start("err", lambda j: (_ for _ in ()).throw(client.BackendError("bad_audio", "nope")), lambda v: "x"), 10
    )
    out["error_state"], out["error_message"] = job.state, job.message

    def bad_apply(v):
        raise RuntimeError("broken")

    job = jobs.wait(jobs.start("bad", lambda j: 1, bad_apply), 10)
    out["apply_error_state"] = job.state

    # Loading another file cancels what is running: results never land in the wrong file.
    gate = threading.Event()
    job = jobs.start("load", lambda j: gate.wait(5) and 1, lambda v: bpy.context.scene.__setitem__("late", v) or "x")
    bpy.ops.wm.read_homefile(use_empty=True)
    gate.set()
    jobs.wait(job, 10)
    out["load_state"], out["load_applied"] = job.state, "late" in bpy.context.scene
    return out


class RecordingLayout:
    """Stands in for bpy.types.UILayout (draw() never runs headless): records what the
    panel asks for, and checks every property and operator against Blender's RNA."""

    def __init__(self, log):
        self.log = log
        self.active = True

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.log)

    row = column = box = split = _child

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.log.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert name in data.bl_rna.properties and hasattr(search_data, search_name)
        self.log.append(("prop_search", name))

    def operator(self, idname, **kwargs):
        module, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, module), name), idname
        self.log.append(("operator", idname))
        return type("Props", (), {})()

    def label(self, **kwargs):
        self.log.append(("label", kwargs.get("text", "")))

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, **kwargs):
        assert hasattr(bpy.types, list_type) and prop in data.bl_rna.properties
        assert active_prop in active_data.bl_rna.properties
        self.log.append(("template_list", prop))

    def progress(self, **kwargs):
        self.log.append(("progress", kwargs.get("text", "")))

    def separator(self, **kwargs):
        pass


def panel_draw() -> dict:
    panels = addon("panels")
    prefs_mod = addon("preferences")
    scene = bpy.context.scene
    scene.sequence_editor_create()
    log = []
    panel = type("P", (), {"layout": RecordingLayout(log)})()
    panels.THUNDER_PT_view3d.draw(panel, bpy.context)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    plog = []

    class PrefsWithLayout:  # the real preferences, with the recording layout
        layout = RecordingLayout(plog)

        def __getattr__(self, name):
            return getattr(prefs, name)

    prefs_mod.ThunderPreferences.draw(PrefsWithLayout(), bpy.context)
    return {"panel": log, "prefs": plog}
