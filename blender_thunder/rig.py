"""Build the THUNDER rig from a head file: a mesh with expression shape keys and a
5-bone armature (root, neck, jaw, eye_L, eye_R) skinned to it.

Head files are in FLAME's frame (metres, y up, face towards +z); Blender is z up
with the face towards -y, so (x, y, z) -> (x, -z, y). Axis-angle rotations map
the same way, which `flame_to_blender` applies to vectors of either kind.
"""

from __future__ import annotations

import numpy as np

import bpy

from .core.contract import HEAD_ID_PROP, JOINT_NAMES

SHAPE_KEY_RANGE = 10.0  # psi is ~N(0, 1); generous slider range


def flame_to_blender(a: np.ndarray) -> np.ndarray:
    """Points or axis-angle vectors (..., 3) from FLAME's frame to Blender's."""
    a = np.asarray(a, dtype=np.float64)
    return np.stack([a[..., 0], -a[..., 2], a[..., 1]], axis=-1)


def _bone_tails(joints: np.ndarray) -> np.ndarray:
    """Bone tail positions (FLAME frame): neck up, jaw to the chin, eyes forward."""
    root, neck, jaw, eye_l, eye_r = joints
    return np.stack([neck, neck + [0, 0.09, 0], jaw + [0, -0.06, 0.07], eye_l + [0, 0, 0.025], eye_r + [0, 0, 0.025]])


def _materials(mesh, n_skin: int, verts: np.ndarray, faces: np.ndarray) -> None:
    """Skin, eye white and iris/pupil materials, so renders read as a face."""

    def mat(name, rgba):
        m = bpy.data.materials.get(name) or bpy.data.materials.new(name)
        m.diffuse_color = rgba
        return m

    mats = [
        mat("THUNDER_skin", (0.80, 0.62, 0.52, 1)),
        mat("THUNDER_eye", (0.95, 0.95, 0.93, 1)),
        mat("THUNDER_iris", (0.12, 0.08, 0.05, 1)),
    ]
    for m in mats:
        mesh.materials.append(m)
    idx = np.zeros(len(faces), dtype=np.int32)
    eye = faces.min(1) >= n_skin
    idx[eye] = 1
    # iris: eyeball faces whose centre points forward (+z in FLAME frame) from their eyeball centre
    centre = verts[faces].mean(1)
    for lo, hi in ((n_skin, n_skin + (len(verts) - n_skin) // 2), (n_skin + (len(verts) - n_skin) // 2, len(verts))):
        sel = eye & (faces.min(1) >= lo) & (faces.max(1) < hi)
        c = verts[lo:hi].mean(0)
        d = centre[sel] - c
        front = d[:, 2] / np.linalg.norm(d, axis=1) > 0.82
        idx[np.nonzero(sel)[0][front]] = 2
    mesh.polygons.foreach_set("material_index", idx)


def build_rig(head: dict, name: str = "THUNDER_Head", collection=None):
    """Create mesh + armature from head-file arrays; returns (mesh_object, armature_object)."""
    collection = collection or bpy.context.scene.collection
    verts = np.asarray(head["v_template"], dtype=np.float64)
    faces = np.asarray(head["faces"], dtype=np.int64)
    exp_dirs = np.asarray(head["exp_dirs"], dtype=np.float64)
    weights = np.asarray(head["weights"], dtype=np.float64)
    joints = np.asarray(head["joints"], dtype=np.float64)
    n_skin = int(head["n_skin"]) if "n_skin" in head else _skin_count(head)

    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", flame_to_blender(verts).astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))
    mesh.update()
    mesh.validate()
    _materials(mesh, n_skin, verts, faces)
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj[HEAD_ID_PROP] = str(head["head_id"])

    obj.shape_key_add(name="Basis", from_mix=False)
    for k in range(exp_dirs.shape[2]):
        key = obj.shape_key_add(name=f"exp{k:03d}", from_mix=False)
        key.slider_min, key.slider_max = -SHAPE_KEY_RANGE, SHAPE_KEY_RANGE
        key.value = 0.0  # the rest face: Blender 5.0 starts new shape keys at 1.0 (4.x at 0.0)
        key.data.foreach_set("co", flame_to_blender(verts + exp_dirs[:, :, k]).astype(np.float32).ravel())

    arm_data = bpy.data.armatures.new(f"{name}_rig")
    arm = bpy.data.objects.new(f"{name}_rig", arm_data)
    collection.objects.link(arm)
    arm[HEAD_ID_PROP] = str(head["head_id"])
    _add_bones(arm, joints)
    for j, jname in enumerate(JOINT_NAMES):
        group = obj.vertex_groups.new(name=jname)
        nz = np.nonzero(weights[:, j] > 1e-6)[0]
        for w in np.unique(np.round(weights[nz, j], 4)):
            sel = nz[np.round(weights[nz, j], 4) == w]
            group.add(sel.tolist(), float(w), "REPLACE")
    obj.parent = arm
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    return obj, arm


def _skin_count(head: dict) -> int:
    """Vertices before the eyeballs: those not fully bound to an eye joint."""
    w = np.asarray(head["weights"])
    eye = (w[:, 3] + w[:, 4]) > 0.999
    return int(np.argmax(eye)) if eye.any() else len(w)


def _add_bones(arm, joints: np.ndarray) -> None:
    view_layer = bpy.context.view_layer
    view_layer.update()  # newly linked objects join the layer on update
    if arm.name not in view_layer.objects:
        raise RuntimeError("the armature must be in the active view layer")
    prev = view_layer.objects.active
    view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    heads, tails = flame_to_blender(joints), flame_to_blender(_bone_tails(joints))
    parents = (-1, 0, 1, 1, 1)
    bones = []
    for j, jname in enumerate(JOINT_NAMES):
        b = arm.data.edit_bones.new(jname)
        b.head, b.tail = heads[j].tolist(), tails[j].tolist()
        b.roll = 0.0
        if parents[j] >= 0:
            b.parent = bones[parents[j]]
        bones.append(b)
    bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = prev
    for pb in arm.pose.bones:
        pb.rotation_mode = "QUATERNION"


def _bone_axis_angle(axis_angle: np.ndarray, bone) -> tuple[np.ndarray, np.ndarray]:
    """FLAME-frame axis-angle (T, 3) -> (angle (T, 1), unit axis (T, 3)) in the bone's rest frame
    (zero axis where the angle is zero), for a bone whose parents are at rest."""
    aa = flame_to_blender(axis_angle)
    rest = np.array(bone.matrix_local.to_3x3())  # bone frame in armature space
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = np.divide(aa, angle, out=np.zeros_like(aa), where=angle > 1e-12)
    return angle, axis @ rest  # rest^T @ axis, row-wise


def axis_angle_to_bone_quaternions(axis_angle: np.ndarray, bone) -> np.ndarray:
    """FLAME-frame axis-angle (T, 3) of a joint -> pose-bone local quaternions (T, 4) wxyz,
    for a bone whose parents are at rest (the jaw under an unposed neck)."""
    angle, local_axis = _bone_axis_angle(axis_angle, bone)
    half = 0.5 * angle
    q = np.concatenate([np.cos(half), np.sin(half) * local_axis], axis=-1)
    q[angle[:, 0] <= 1e-12] = (1.0, 0.0, 0.0, 0.0)
    return q


EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")


def rotation_property(mode: str) -> str:
    """The pose-bone property a rotation mode reads."""
    if mode == "QUATERNION":
        return "rotation_quaternion"
    if mode == "AXIS_ANGLE":
        return "rotation_axis_angle"
    if mode in EULER_ORDERS:
        return "rotation_euler"
    raise ValueError(f"unknown rotation mode {mode!r}")


def bone_rotation_keys(axis_angle: np.ndarray, bone, mode: str) -> tuple[str, np.ndarray]:
    """FLAME-frame axis-angle (T, 3) of a joint -> (pose-bone property, values (T, C)) in the
    bone's own rotation mode: quaternions wxyz, Euler angles of that order kept continuous
    from frame to frame, or axis-angle (angle, x, y, z) without sign flips."""
    from mathutils import Quaternion

    q = axis_angle_to_bone_quaternions(axis_angle, bone)
    prop = rotation_property(mode)
    if mode == "QUATERNION":
        return prop, q
    if mode == "AXIS_ANGLE":
        # Straight from the take's axis-angle (no wrap). A zero rotation keeps the last axis, and
        # an axis turning back on itself becomes a negative angle, so keys interpolate smoothly.
        angle, axis = _bone_axis_angle(axis_angle, bone)
        out = np.empty((len(q), 4))
        last = None
        for i in range(len(q)):
            a, ax = float(angle[i, 0]), axis[i]
            if a <= 1e-12:
                ax = last if last is not None else np.array([1.0, 0.0, 0.0])
            elif last is not None and float(ax @ last) < 0.0:
                a, ax = -a, -ax
            out[i] = (a, *ax)
            last = ax
        return prop, out
    out = np.empty((len(q), 3))
    prev = None
    for i, qi in enumerate(q):
        e = Quaternion(qi).to_euler(mode, prev) if prev is not None else Quaternion(qi).to_euler(mode)
        out[i] = tuple(e)
        prev = e
    return prop, out
