"""Find the THUNDER rig (mesh + armature) an artist points at, and check it.

A rig is a mesh with shape keys `exp000`…`exp049` skinned to an armature with
the bones root/neck/jaw/eye_L/eye_R (DESIGN.md). Built by `rig.py` or by hand.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy

SHAPE_KEYS = tuple(f"exp{i:03d}" for i in range(50))
BONES = ("root", "neck", "jaw", "eye_L", "eye_R")
HEAD_ID_PROP = "thunder_head_id"


class RigError(ValueError):
    pass


@dataclass
class Rig:
    mesh: bpy.types.Object
    armature: bpy.types.Object

    @property
    def key(self) -> bpy.types.Key:
        return self.mesh.data.shape_keys

    @property
    def name(self) -> str:
        return self.armature.name

    @property
    def head_id(self) -> str:
        for owner in (self.mesh.data, self.mesh, self.armature, self.armature.data):
            value = owner.get(HEAD_ID_PROP)
            if isinstance(value, str) and value:
                return value
        return ""


def _armature_of(mesh: bpy.types.Object):
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
        if _armature_of(ob) is arm and _has_keys(ob):
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
        mesh, arm = obj, _armature_of(obj)
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


def check_head(rig: Rig, bundle_head_id: str) -> None:
    """Refuse a rig built from another head than the bundle was trained on."""
    have = rig.head_id
    if not have:
        raise RigError(f"rig {rig.name!r} does not record which head it was built from; "
                       "delete it and use Add THUNDER Head so it matches the backend's model")
    if have != bundle_head_id:
        raise RigError(f"rig {rig.name!r} was built from head {have[:12]}… but the backend's model was "
                       f"trained on head {bundle_head_id[:12]}…: add a new head with Add THUNDER Head "
                       "(or point the backend at a bundle trained on this head)")
