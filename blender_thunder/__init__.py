"""THUNDER for Blender: speech-driven FLAME face animation from a sound strip.

Only registration lives here (Node Wrangler style), and no bpy at import: the
bpy-free core (`core/`: client, messages, contract, resample, launcher, jobs)
imports in any Python. The Blender layer: properties.py, operators.py, character_ops.py
(a character's mapping, exports), panels.py, preferences.py, handlers.py (timer, load
handler), rig.py, headless.py, and utils/ (rigs, characters, strips, keying, takes,
generation, exports).
"""

from __future__ import annotations


def _classes() -> tuple:
    from . import character_ops, operators, panels, preferences

    return (*preferences.CLASSES, *operators.CLASSES, *character_ops.CLASSES, *panels.CLASSES)


def register() -> None:
    import bpy

    from . import handlers, properties

    properties.register()
    for cls in _classes():
        bpy.utils.register_class(cls)
    handlers.register()


def unregister() -> None:
    import bpy

    from . import handlers, properties

    handlers.unregister()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
    properties.unregister()
