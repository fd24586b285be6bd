"""What ties the bpy-free core to Blender's event loop: the timer that drains the jobs'
queue, the sidebar redraw after each drain, and cancelling jobs when another file loads."""

from __future__ import annotations

import bpy

from . import panels
from .core import jobs, launcher


def _wake() -> None:
    """A job started: drain its queue from a main-thread timer until no job runs."""
    if not bpy.app.timers.is_registered(jobs.tick):
        bpy.app.timers.register(jobs.tick, first_interval=jobs.POLL_S)


@bpy.app.handlers.persistent
def _cancel_on_load(*_args) -> None:
    """A job must never land in another file that happens to have the same names."""
    jobs.cancel()
    jobs.drain()


def register() -> None:
    jobs.listen(panels.redraw)
    jobs.set_waker(None if bpy.app.background else _wake)  # no event loop runs timers headless: callers drain()
    bpy.app.handlers.load_pre.append(_cancel_on_load)


def unregister() -> None:
    if _cancel_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_on_load)
    jobs.shutdown()
    if bpy.app.timers.is_registered(jobs.tick):
        bpy.app.timers.unregister(jobs.tick)
    launcher.stop()
    jobs.unlisten(panels.redraw)
