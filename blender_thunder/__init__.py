"""THUNDER for Blender: speech-driven FLAME face animation from a sound strip.

Only registration lives here (Node Wrangler style): properties.py, operators.py,
panels.py, preferences.py, and utils/ for everything else.
"""
from __future__ import annotations

import bpy

from . import operators, panels, preferences, properties
from .utils import jobs, launcher

_CLASSES = (*preferences.CLASSES, *operators.CLASSES, *panels.CLASSES)


@bpy.app.handlers.persistent
def _cancel_on_load(*_args) -> None:
    """A job must never land in another file that happens to have the same names."""
    jobs.cancel()
    jobs.drain()


def register() -> None:
    properties.register()
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    jobs._listeners.append(panels.redraw)
    jobs.enable_timer(not bpy.app.background)  # no event loop runs timers headless: callers drain()
    bpy.app.handlers.load_pre.append(_cancel_on_load)


def unregister() -> None:
    if _cancel_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_on_load)
    jobs.shutdown()
    launcher.stop()
    if panels.redraw in jobs._listeners:
        jobs._listeners.remove(panels.redraw)
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
