"""Blender 4.2 LTS to 5.x differences, in one place.

- Actions: legacy `Action.fcurves` (<= 4.3) versus slotted actions with layers,
  strips and channelbags (4.4+, the only API in 5.0).
- Sequencer: `sequence_editor.sequences` (<= 4.5) versus `strips` (4.5+, only these in 5.0).
"""

from __future__ import annotations

import bpy

SLOTTED_ACTIONS = bpy.app.version >= (4, 4, 0)


def sequencer_strips(scene, create: bool = False):
    """All strips of the scene's sequencer (top level and in meta strips)."""
    se = scene.sequence_editor
    if se is None:
        if not create:
            return []
        se = scene.sequence_editor_create()
    return se.strips_all if hasattr(se, "strips_all") else se.sequences_all


def top_strips(scene):
    """The collection to create new strips in (`new_sound` lives there)."""
    se = scene.sequence_editor or scene.sequence_editor_create()
    return se.strips if hasattr(se, "strips") else se.sequences


def sound_strips(scene) -> list:
    return [s for s in sequencer_strips(scene) if s.type == "SOUND" and s.sound is not None]


def active_strip(scene):
    se = scene.sequence_editor
    if se is None:
        return None
    return getattr(se, "active_strip", None)


def scene_fps(scene) -> float:
    """The scene's real frame rate (23.976 is fps=24, fps_base=1.001)."""
    return scene.render.fps / scene.render.fps_base
