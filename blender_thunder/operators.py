"""Operators: generate / cancel, take list actions, backend start / stop, add head."""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlsplit

import bpy
from bpy.props import IntProperty

from . import preferences
from .core import jobs, launcher
from .core.client import BackendError
from .utils import generation, takes
from .utils.characters import find_in_scene, for_take, resolve
from .utils.compat import active_strip
from .utils.rigs import RigError
from .utils.strips import StripError, find as find_strip

# Last /v1/health answer (or error), shown by the panel; the panel never does network I/O.
backend_status = {"text": "not checked", "ok": False}
BUSY = "THUNDER is busy: wait for the running job, or Cancel it"
log = logging.getLogger(__name__)


def reports(*errors: type[Exception]):
    """An execute() whose `errors` are the user's to fix: reported (and logged), the operator
    cancelled, instead of a traceback."""

    def decorate(execute):
        @functools.wraps(execute)
        def run(self, context):
            try:
                return execute(self, context)
            except errors as exc:
                log.error("%s: %s", self.bl_label, exc)
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}

        return run

    return decorate


def why_not(cls, ok: bool, reason: str) -> bool:
    """poll()'s answer; when False, Blender shows `reason` on the greyed-out button (3.0+)."""
    if not ok and hasattr(cls, "poll_message_set"):
        cls.poll_message_set(reason)
    return ok


def _launch(context, force: bool = False) -> dict | None:
    """launcher.start arguments from the preferences; None when auto-start is off (unless forced)."""
    prefs = preferences.get(context)
    if not (prefs.auto_start or force):
        return None
    return {
        "python": bpy.path.abspath(prefs.python) if prefs.python else "",
        "bundle": bpy.path.abspath(prefs.bundle) if prefs.bundle else "",
        "port": urlsplit(prefs.backend_url).port or 8765,
        "device": prefs.device,
    }


def _strip(context):
    scene, settings = context.scene, context.scene.thunder
    return find_strip(scene, settings.strip) if settings.strip else active_strip(scene)


def _take_index(self, context) -> int:
    n = len(context.scene.thunder.takes)
    i = self.index if self.index >= 0 else context.scene.thunder.active_take
    if not 0 <= i < n:
        raise IndexError("no take selected")
    return i


class THUNDER_OT_generate(bpy.types.Operator):
    """Generate takes for the sound strip on the rig (runs in the background)"""

    bl_idname = "thunder.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}  # the scene changes later, in one undo step, when the takes arrive

    @classmethod
    def poll(cls, context):
        if context.scene is None:
            return why_not(cls, False, "no scene")
        return why_not(cls, not jobs.active(), BUSY)

    @reports(RigError, StripError, BackendError, ValueError)
    def execute(self, context):
        s = context.scene.thunder
        options = generation.Options(
            takes=s.takes_count, seed=s.seed, preset=s.preset, guidance=s.guidance, rank=s.rank
        )
        rig = find_in_scene(context.scene, context.active_object)
        job = generation.start_generate(
            context.scene,
            _strip(context),
            rig,
            options,
            preferences.client(context),
            launch=_launch(context),
            replace=True,
        )
        self.report({"INFO"}, f"THUNDER: {job.label}…")
        return {"FINISHED"}


class THUNDER_OT_cancel(bpy.types.Operator):
    """Cancel the running generation; the scene stays as it was"""

    bl_idname = "thunder.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return why_not(cls, bool(jobs.active()), "nothing is running")

    def execute(self, context):
        jobs.cancel()
        return {"FINISHED"}


class _TakeOperator:
    index: IntProperty(default=-1, options={"SKIP_SAVE"})


class THUNDER_OT_use_take(_TakeOperator, bpy.types.Operator):
    """Make this take the one that plays"""

    bl_idname = "thunder.use_take"
    bl_label = "Use Take"
    bl_options = {"REGISTER", "UNDO"}

    @reports(IndexError)
    def execute(self, context):
        context.scene.thunder.active_take = _take_index(self, context)  # its update shows the take
        return {"FINISHED"}


class _TakeJob(_TakeOperator):
    """A take operator that starts a backend job on its take: not while another job runs."""

    @classmethod
    def poll(cls, context):
        return why_not(cls, not jobs.active(), BUSY)

    def start(self, context, start_job) -> set:
        start_job(context.scene, _take_index(self, context), preferences.client(context), launch=_launch(context))
        return {"FINISHED"}


class THUNDER_OT_resample_take(_TakeJob, bpy.types.Operator):
    """Replace this take with one from a new random seed"""

    bl_idname = "thunder.resample_take"
    bl_label = "Resample"

    @reports(IndexError, RigError, StripError, BackendError, ValueError)
    def execute(self, context):
        return self.start(context, generation.start_resample)


class THUNDER_OT_remap_take(_TakeJob, bpy.types.Operator):
    """Key this character's take again with the mapping as it is now (the same motion, no new sampling)"""

    bl_idname = "thunder.remap_take"
    bl_label = "Re-map"

    @reports(IndexError, RigError, BackendError, ValueError)
    def execute(self, context):
        return self.start(context, generation.start_remap)


class THUNDER_OT_listen_take(_TakeJob, bpy.types.Operator):
    """Add what the face says (the M2S model's audio of this take) as a sound strip"""

    bl_idname = "thunder.listen_take"
    bl_label = "Listen"

    @reports(IndexError, BackendError, ValueError)
    def execute(self, context):
        return self.start(context, generation.start_listen)


class THUNDER_OT_remove_take(_TakeOperator, bpy.types.Operator):
    """Delete this take (only takes THUNDER made; renamed or copied ones are left alone)"""

    bl_idname = "thunder.remove_take"
    bl_label = "Remove Take"
    bl_options = {"REGISTER", "UNDO"}

    @reports(IndexError)
    def execute(self, context):
        settings = context.scene.thunder
        i = _take_index(self, context)
        item = settings.takes[i]
        act = item.action
        if act is not None:
            if not takes.is_owned(act):
                kept = f"{act.name!r} is not THUNDER's any more: removed from the list, kept"
                log.warning(kept)
                self.report({"WARNING"}, kept)
            else:
                try:
                    rig = for_take(act)
                    if takes.shown(rig, item.strip) == act:
                        takes.unshow(rig, item.strip)
                except (RigError, KeyError, ValueError):
                    pass
                takes.remove(takes.take_actions(act))
        settings.takes.remove(i)
        settings.active_take = min(settings.active_take, len(settings.takes) - 1)
        return {"FINISHED"}


def panel_rig(context):
    """The target the panel talks about, rig or character (None when there is none, it is
    ambiguous or its mapping is broken)."""
    try:
        return resolve(find_in_scene(context.scene, context.active_object))
    except (RigError, ValueError):
        return None


class THUNDER_OT_arrange_nla(bpy.types.Operator):
    """Let the takes play: move the target's active Action (yours, which Blender plays over every
    NLA track) into an NLA track right under the THUNDER tracks. The Action itself is unchanged"""

    bl_idname = "thunder.arrange_nla"
    bl_label = "Let Takes Play"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return why_not(cls, context.scene is not None, "no scene")

    @reports(RigError, RuntimeError)
    def execute(self, context):
        rig = resolve(find_in_scene(context.scene, context.active_object))
        moved = takes.arrange(rig)
        if not moved:
            self.report({"INFO"}, "nothing to arrange: no active Action plays over the takes")
            return {"CANCELLED"}
        self.report({"INFO"}, f"moved {', '.join(repr(n) for n in moved)} under the THUNDER tracks")
        return {"FINISHED"}


class THUNDER_OT_backend_start(bpy.types.Operator):
    """Start the backend bundled with the add-on"""

    bl_idname = "thunder.backend_start"
    bl_label = "Start Backend"

    def execute(self, context):
        launch = _launch(context, force=True)
        client = preferences.client(context)

        def work(job):
            job.report(0.1, "starting the backend")
            launcher.start(**launch)
            return launcher.wait_ready(client, timeout=120.0, cancel=job.cancel)

        jobs.start("Start backend", work, _health_applied)
        return {"FINISHED"}


def _health_applied(health: dict) -> str:
    backend_status["ok"] = health.get("status") == "ok"
    backend_status["text"] = f"{health.get('status')} · {health.get('bundle')} · {health.get('device')}"
    return f"backend: {backend_status['text']}"


class THUNDER_OT_backend_stop(bpy.types.Operator):
    """Stop the backend this add-on started"""

    bl_idname = "thunder.backend_stop"
    bl_label = "Stop Backend"

    @classmethod
    def poll(cls, context):
        return why_not(cls, launcher.running(), "no backend started by THUNDER is running")

    def execute(self, context):
        launcher.stop()
        backend_status.update(text="stopped", ok=False)
        return {"FINISHED"}


class THUNDER_OT_backend_check(bpy.types.Operator):
    """Ask the backend whether it is up"""

    bl_idname = "thunder.backend_check"
    bl_label = "Check Backend"

    def execute(self, context):
        client = preferences.client(context)

        def work(job):
            try:
                return client.health()
            except BackendError as exc:
                return {"status": "unreachable", "bundle": str(exc)[:60], "device": "-"}

        jobs.start("Check backend", work, _health_applied)
        return {"FINISHED"}


class THUNDER_OT_add_head(bpy.types.Operator):
    """Add the THUNDER head rig (mesh with expression shape keys, jaw armature) of the backend's model"""

    bl_idname = "thunder.add_head"
    bl_label = "Add THUNDER Head"
    bl_options = {"REGISTER"}

    @reports(RigError)
    def execute(self, context):
        client, launch = preferences.client(context), _launch(context)
        flame_dir = bpy.path.abspath(preferences.get(context).flame_dir or "")
        scene_name = context.scene.name
        if flame_dir:  # the user's own FLAME: a local file, no backend needed
            arm = generation.add_head(context.scene, None, flame_dir)
            self.report({"INFO"}, f"added {arm.name!r} from {flame_dir}")
            return {"FINISHED"}

        def work(job):
            generation.ensure_backend(job, client, launch)
            job.report(0.3, "fetching the head")
            return client.head()

        def apply(head_bytes: bytes) -> str:
            arm = generation.add_head(bpy.data.scenes[scene_name], head_bytes, flame_dir)
            return f"added {arm.name!r}"

        jobs.start("Add head", work, apply)
        return {"FINISHED"}


CLASSES = (
    THUNDER_OT_add_head,
    THUNDER_OT_generate,
    THUNDER_OT_cancel,
    THUNDER_OT_use_take,
    THUNDER_OT_resample_take,
    THUNDER_OT_listen_take,
    THUNDER_OT_remap_take,
    THUNDER_OT_remove_take,
    THUNDER_OT_arrange_nla,
    THUNDER_OT_backend_start,
    THUNDER_OT_backend_stop,
    THUNDER_OT_backend_check,
)
