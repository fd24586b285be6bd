"""Find the THUNDER rig (mesh + armature) an artist points at, and check it.

A rig is a mesh with shape keys `exp000`…`exp049` skinned to an armature with
the bones root/neck/jaw/eye_L/eye_R (core/contract.py names them). Built by `rig.py` or by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


import bpy
import numpy as np

from ..core import contract
from ..core.contract import HEAD_ID_PROP, JOINT_NAMES as BONES, SHAPE_KEY_NAMES as SHAPE_KEYS  # noqa: F401


class RigError(ValueError):
    pass


@dataclass
class Rig:
    """The stand-in head: takes key its exp shape keys with the backend's psi as is (signed,
    so the sliders are widened) and its `jaw` bone. A character (utils/characters.py) is the
    other kind of target; utils/takes.py keys either through the same attributes."""

    mesh: bpy.types.Object
    armature: bpy.types.Object
    jaw_bone = "jaw"
    shape_key_names = SHAPE_KEYS
    signed_keys = True  # psi, not 0..1 weights
    mapping = None  # no retargeting: psi goes to exp000… as is

    @property
    def key(self) -> bpy.types.Key:
        return self.mesh.data.shape_keys

    def jaw_in_armature(self, axis_angle: np.ndarray) -> np.ndarray:
        """The take's jaw (FLAME-frame axis-angle) as rig.bone_rotation_keys wants it: as is,
        the stand-in's armature being the head's own frame."""
        return axis_angle

    @property
    def name(self) -> str:
        return self.armature.name

    @property
    def head_id(self) -> str:
        """The head the rig was built from: as recorded by Add THUNDER Head, else
        computed from the mesh (a rig made by hand from the same head file matches)."""
        for owner in (self.mesh.data, self.mesh, self.armature, self.armature.data):
            value = owner.get(HEAD_ID_PROP)
            if isinstance(value, str) and value:
                return value
        return mesh_head_id(self.mesh)


def mesh_head_id(mesh_obj) -> str:
    """docs/bundle.md's head_id of the mesh's rest shape (Basis), back in FLAME's
    frame: Blender (x, -z, y) -> FLAME (x, y, z). Exact: only swaps and negations."""
    me = mesh_obj.data
    basis = me.shape_keys.reference_key.data if me.shape_keys else me.vertices
    co = np.empty(len(basis) * 3, dtype=np.float32)
    basis.foreach_get("co", co)
    co = co.reshape(-1, 3)
    flame = np.stack([co[:, 0], co[:, 2], -co[:, 1]], axis=1)
    if any(len(p.vertices) != 3 for p in me.polygons):
        return ""  # not the head's triangle mesh
    faces = np.empty(len(me.polygons) * 3, dtype=np.int32)
    me.polygons.foreach_get("vertices", faces)
    return contract.head_id(flame, faces)


def armature_of(mesh: bpy.types.Object):
    for mod in mesh.modifiers:
        if mod.type == "ARMATURE" and mod.object is not None:
            return mod.object
    if mesh.parent is not None and mesh.parent.type == "ARMATURE":
        return mesh.parent
    return None


def _mesh_of(arm: bpy.types.Object):
    candidates = [c for c in arm.children_recursive if c.type == "MESH"]
    candidates += [o for o in bpy.data.objects if o.type == "MESH" and o not in candidates]
    for ob in candidates:
        if armature_of(ob) is arm and _has_keys(ob):
            return ob
    return None


def _has_keys(mesh: bpy.types.Object) -> bool:
    key = mesh.data.shape_keys
    return key is not None and all(n in key.key_blocks for n in SHAPE_KEYS)


def resolve(obj) -> Rig:
    """The rig an object belongs to (its armature or its mesh); RigError says what is missing."""
    if obj is None:
        raise RigError("no target rig: pick the THUNDER head's armature (or add one with Add THUNDER Head)")
    if obj.type == "ARMATURE":
        arm, mesh = obj, _mesh_of(obj)
        if mesh is None:
            raise RigError(f"armature {obj.name!r} has no mesh with shape keys exp000…exp049 skinned to it")
    elif obj.type == "MESH":
        mesh, arm = obj, armature_of(obj)
        if arm is None:
            raise RigError(f"mesh {obj.name!r} is not skinned to an armature (Armature modifier)")
    else:
        raise RigError(f"{obj.name!r} is a {obj.type.lower()}, not a THUNDER rig (armature or head mesh)")
    if not _has_keys(mesh):
        missing = [n for n in SHAPE_KEYS if mesh.data.shape_keys is None or n not in mesh.data.shape_keys.key_blocks]
        raise RigError(f"mesh {mesh.name!r} lacks shape keys {missing[0]}…{missing[-1]} ({len(missing)} missing)")
    missing = [b for b in BONES if b not in arm.data.bones]
    if missing:
        raise RigError(f"armature {arm.name!r} lacks bones {', '.join(missing)}")
    return Rig(mesh, arm)


def find_in_scene(scene, preferred=None):
    """The rig to key: the panel's choice, else the active object's rig, else the
    scene's only one. RigError says what to do when that is ambiguous."""
    for obj in (scene.thunder.rig, preferred):
        if obj is not None:
            try:
                return resolve(obj).armature
            except RigError:
                if obj is scene.thunder.rig:
                    raise
    found = []
    for obj in scene.objects:
        if obj.type == "ARMATURE":
            try:
                found.append(resolve(obj).armature)
            except RigError:
                pass
    if len(found) != 1:
        raise RigError(
            f"scene {scene.name!r} has {len(found)} THUNDER rigs: set the panel's Rig to the one to key"
            + (" (or add one with Add THUNDER Head)" if not found else "")
        )
    return found[0]


def check_head_ids(rig_name: str, have: str, want: str) -> None:
    """Refuse a rig built from another head than the bundle was trained on.
    Plain strings, no bpy: the worker thread calls it once /v1/model answers."""
    if have != want:
        raise RigError(
            f"rig {rig_name!r} was built from head {have[:12] or 'unknown'}… but the backend's "
            f"model was trained on head {want[:12]}…: add a new head with Add THUNDER Head "
            "(or point the backend at a bundle trained on this head)"
        )
