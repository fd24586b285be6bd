"""Any character as a target: a mesh with shape keys (ARKit 52, visemes, a studio's own),
optionally with a jaw bone, keyed through a retargeting mapping (core/retarget.py).

A take's psi and jaw are solved to the head's semantic controls (head.npz's
`semantic_names` / `semantic_coeffs`, fitted in the metric of its `exp_dirs`:
retarget.solve_for_head; the head is fetched once per head from the backend and
cached), the mapping turns controls into the target's shape-key weights, and
utils/takes.py keys them exactly as it keys the stand-in rig (owned Actions, NLA,
any fps, the rest track): a `Character` answers the same attributes as a `rigs.Rig`.

The mapping lives on the mesh object (`Object.thunder_mapping`, properties.py):
detected from the shape-key names when the target is picked, edited in the panel's
list, saved to and loaded from a preset JSON an artist can share.

A mapping with ARKit's jaw opener and lip closer (jawOpen, mouthClose) also gets the
character's lips sealed as the take's (core/lipseal.py): `lip_seal` measures on the main
thread what each driven shape does to the character's own lips (from the shape keys' data,
never by changing a value) and `weights` seals on the worker.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import threading
from dataclasses import dataclass

import bpy
import numpy as np

from ..core import lipseal, retarget
from ..core.mapping_rows import format_sources, parse_sources
from ..core.messages import Take
from ..rig import flame_to_blender
from . import rigs
from .rigs import RigError

log = logging.getLogger(__name__)


@dataclass
class Character:
    """A mesh with shape keys keyed through `mapping`; `armature` holds the mapping's jaw bone."""

    mesh: bpy.types.Object
    mapping: retarget.Mapping
    armature: bpy.types.Object | None = None
    head_id = None  # any head: the controls are the backend head's, whatever the mesh

    @property
    def key(self) -> bpy.types.Key:
        return self.mesh.data.shape_keys

    @property
    def name(self) -> str:
        return self.mesh.name

    @property
    def jaw_bone(self) -> str | None:
        return self.mapping.jaw_bone if self.armature is not None and self.mapping.jaw_bone else None

    @property
    def shape_key_names(self) -> list[str]:
        return [c.target for c in self.mapping.channels]

    @property
    def signed_keys(self) -> bool:
        return self.mapping.kind == "psi"  # the project's own exp keys take psi as is

    def jaw_in_armature(self, axis_angle: np.ndarray) -> np.ndarray:
        """The take's jaw (FLAME-frame axis-angle, the face looking along +z) for
        rig.bone_rotation_keys, which reads the armature's space as Blender's world (face
        towards -y, z up): a rotated armature object gets the rotation taken out."""
        rot = np.array(self.armature.matrix_world.to_3x3().normalized())
        to_blender = flame_to_blender(np.eye(3)).T  # columns: FLAME axes in Blender's frame
        m = to_blender.T @ rot.T @ to_blender  # FLAME frame -> armature space, in FLAME terms
        return np.asarray(axis_angle, dtype=np.float64) @ m.T


def shape_key_names(obj) -> list[str]:
    """A mesh's shape keys other than its reference (Basis)."""
    key = obj.data.shape_keys if obj is not None and obj.type == "MESH" else None
    if key is None:
        return []
    return [kb.name for kb in key.key_blocks if kb != key.reference_key]


def is_character(obj) -> bool:
    """A mesh with shape keys that is not the stand-in rig (which needs no mapping)."""
    if not shape_key_names(obj):
        return False
    try:
        rigs.resolve(obj)
    except RigError:
        return True
    return False


def is_target(obj) -> bool:
    """Something takes can be keyed on: an armature (the stand-in rig) or a mesh with shape keys."""
    return obj is not None and (obj.type == "ARMATURE" or bool(shape_key_names(obj)))


def jaw_armature(obj):
    """The armature holding a character's jaw bone: the one picked for the mapping, else the
    mesh's (Armature modifier, parent)."""
    picked = obj.thunder_mapping.jaw_armature
    return picked if picked is not None else rigs.armature_of(obj)


def bone_names(obj) -> list[str]:
    arm = jaw_armature(obj)
    return [b.name for b in arm.data.bones] if arm is not None else []


# ---- the mapping on the object (properties.py) and as retarget.Mapping ----


def stored_mapping(obj) -> retarget.Mapping | None:
    """The mapping the object's properties hold (None when none was set up yet).
    ValueError names the list row whose sources do not parse."""
    props = obj.thunder_mapping
    if not len(props.channels):
        return None
    channels = []
    for i, row in enumerate(props.channels):
        try:
            sources, limit = parse_sources(row.sources), parse_sources(row.limit)
        except ValueError as exc:
            raise ValueError(f"mapping row {i + 1} ({row.target or 'no shape key'}): {exc}") from None
        if row.target:
            channels.append(retarget.Channel(row.target, sources, float(row.gain), (), row.note, limit))
    return retarget.Mapping(props.name or "custom", props.kind or "shape_keys", channels, props.jaw_bone or None)


def store_mapping(obj, mapping: retarget.Mapping) -> None:
    """Write a mapping into the object's properties (the panel's list)."""
    props = obj.thunder_mapping
    props.channels.clear()
    for ch in mapping.channels:
        row = props.channels.add()
        row.target, row.sources, row.gain = ch.target, format_sources(ch.sources), float(ch.gain)
        row.limit, row.note = format_sources(ch.limit), ch.note
    props.name, props.kind = mapping.name, mapping.kind
    props.jaw_bone = mapping.jaw_bone or ""
    props.active_channel = 0 if len(props.channels) else -1


@functools.lru_cache(maxsize=1)
def preset_names() -> tuple[str, ...]:
    """The shipped presets' names (read once: the panel's menu asks on every redraw)."""
    return tuple(retarget.presets())


def detect(obj) -> retarget.Mapping | None:
    """The preset that fits the object's shape keys (and jaw armature's bones) best, bound to its names."""
    return retarget.detect(shape_key_names(obj), bone_names(obj))


def bind(mapping: retarget.Mapping, obj) -> tuple[retarget.Mapping, list[str]]:
    """A mapping (a preset, or a file saved from another character) bound to this object's
    shape-key and jaw-armature bone names (retarget.bind); also the rows it had no shape
    key for, so the caller can say which."""
    return retarget.bind(mapping, shape_key_names(obj), bone_names(obj))


def mapping_of(obj) -> retarget.Mapping:
    """The object's mapping: the stored one, else the detected one (not stored: the panel
    draws through here and may not write). RigError when nothing fits."""
    mapping = stored_mapping(obj)
    if mapping is None:
        mapping = detect(obj)
    if mapping is None or not mapping.channels:
        raise RigError(
            f"no mapping for {obj.name!r}: none of its shape keys has a name a preset knows (ARKit 52, "
            "VRM visemes, exp000…): add rows to its mapping list or load a preset file"
        )
    return mapping


def _check(obj, mapping: retarget.Mapping, arm) -> None:
    have = set(shape_key_names(obj))
    missing = [c.target for c in mapping.channels if c.target not in have]
    if missing:
        raise RigError(
            f"mesh {obj.name!r} has no shape key {', '.join(repr(n) for n in missing[:4])}"
            f"{' …' if len(missing) > 4 else ''} that its mapping drives: fix the rows (or detect the mapping again)"
        )
    if mapping.jaw_bone and (arm is None or mapping.jaw_bone not in arm.data.bones):
        where = f"armature {arm.name!r}" if arm is not None else f"{obj.name!r}'s armature (none found)"
        raise RigError(f"the mapping's jaw bone {mapping.jaw_bone!r} is not in {where}: pick the jaw's armature")


def resolve(obj, mapping: retarget.Mapping | None = None):
    """The target an object is: the stand-in rig (rigs.Rig, today's path) or a Character with
    `mapping` (default: the object's own). RigError says what is missing."""
    try:
        return rigs.resolve(obj)
    except RigError as not_rig:
        if obj is None or obj.type != "MESH" or not shape_key_names(obj):
            if obj is not None and obj.type == "ARMATURE":
                raise RigError(
                    f"{obj.name!r} is not a THUNDER rig: to key a character, pick its mesh (the one with the "
                    "shape keys); its jaw bone goes in the mapping"
                ) from None
            raise not_rig from None
    mapping = mapping or mapping_of(obj)
    arm = jaw_armature(obj) if mapping.jaw_bone else None
    _check(obj, mapping, arm)
    return Character(obj, mapping, arm)


def for_take(action):
    """The target a take was keyed on, as its record says (the character's mapping and jaw
    bone of that take, whatever the object's mapping is now)."""
    from .takes import meta

    m = meta(action)
    obj = bpy.data.objects.get(m.get("rig", ""))
    if m.get("target") != "character":
        return rigs.resolve(obj)
    if obj is None or obj.type != "MESH" or obj.data.shape_keys is None:
        raise RigError(f"the take's character {m.get('rig')!r} is gone")
    mapping = retarget.Mapping.from_dict(json.loads(m["mapping_json"]))
    arm = bpy.data.objects.get(m.get("jaw_armature", "")) if m.get("jaw_bone") else None
    if m.get("jaw_bone") and (arm is None or m["jaw_bone"] not in arm.data.bones):
        arm = None  # the bone is gone: the shape keys still play
    return Character(obj, mapping, arm)


def find_in_scene(scene, preferred=None):
    """The object to key: the panel's target (a rig or a character), else rigs.find_in_scene."""
    picked = scene.thunder.rig
    if picked is not None:
        resolve(picked)
        return picked
    return rigs.find_in_scene(scene, preferred)


# ---- the character's lips (main thread) ----


def _key_offsets(obj, names, scene) -> tuple[np.ndarray, dict]:
    """The mesh's basis and each named shape key's offset from the key it is relative to, both
    (V, 3) in metres in world orientation (the object's rotation and scale, the scene's unit
    scale), read from the keys' data: linear in the weights, whatever values the sliders hold
    now. A muted key moves nothing; a key limited to a vertex group moves by its weights."""
    key = obj.data.shape_keys
    if not key.use_relative:
        raise ValueError("its shape keys are absolute (not relative to a basis)")
    n = len(obj.data.vertices)

    def co(kb) -> np.ndarray:
        flat = np.empty(n * 3, np.float32)
        kb.data.foreach_get("co", flat)
        return flat.reshape(n, 3).astype(np.float64)

    basis = co(key.reference_key)
    offsets = {}
    for name in names:
        kb = key.key_blocks[name]
        d = np.zeros((n, 3)) if kb.mute else co(kb) - co(kb.relative_key)
        if kb.vertex_group and not kb.mute:
            d *= _group_weights(obj, kb.vertex_group)[:, None]
        offsets[name] = d
    to_world = np.array(obj.matrix_world.to_3x3()) * scene.unit_settings.scale_length
    return basis @ to_world.T, {k: v @ to_world.T for k, v in offsets.items()}


def _group_weights(obj, group: str) -> np.ndarray:
    out = np.zeros(len(obj.data.vertices))
    vg = obj.vertex_groups.get(group)
    if vg is not None:
        for v in obj.data.vertices:
            for g in v.groups:
                if g.group == vg.index:
                    out[v.index] = g.weight
    return out


def lip_seal(character, scene) -> tuple[lipseal.LipCalibration | None, str]:
    """The character's lip calibration for its mapping (None for the stand-in rig and when the
    mapping has no jaw opener and lip closer: visemes, psi, a studio's own), and why it could not
    be measured ('' when it was or was not needed). Main thread: reads the mesh's shape keys
    (lipseal.find_lips picks its lip pair, lipseal.calibrate measures each driven shape on it);
    kept on the object under a hash of what it was measured from, so a later take reuses it
    until the shapes or the mapping change."""
    mapping = character.mapping
    pair = lipseal.seal_channels(mapping) if mapping is not None and mapping.kind != "psi" else None
    if pair is None:
        return None, ""
    obj = character.mesh
    props = obj.thunder_mapping
    try:
        names = sorted({c.target for c in mapping.driven} | set(pair))
        basis, offsets = _key_offsets(obj, names, scene)
        digest = hashlib.sha256(json.dumps(names).encode())
        for a in (basis, *(offsets[k] for k in names)):
            digest.update(np.ascontiguousarray(a, np.float64).tobytes())
        digest = digest.hexdigest()[:16]
        try:
            kept = json.loads(props.lip_calibration) if props.lip_calibration else {}
            if kept.get("hash") == digest:
                return lipseal.LipCalibration.from_dict(kept["calibration"]), ""
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: measured again
        lips = list(lipseal.find_lips(basis, offsets[pair[0]], offsets[pair[1]]))
        cal = lipseal.calibrate(mapping, basis[lips], {k: v[lips] for k, v in offsets.items()})
    except ValueError as exc:
        log.warning("%s: lips not sealed: %s", obj.name, exc)
        return None, f"{obj.name}'s lips not sealed ({exc})"
    props.lip_calibration = json.dumps({"hash": digest, "lips": lips, "calibration": cal.to_dict()})
    return cal, ""


# ---- from takes to weights (worker thread: no bpy) ----

_heads: dict[str, dict] = {}
_heads_lock = threading.Lock()
SOLVE_KEYS = ("semantic_names", "semantic_coeffs", "exp_dirs")  # what retarget.solve_for_head reads
HEAD_KEYS = tuple(dict.fromkeys((*SOLVE_KEYS, *lipseal.HEAD_KEYS)))  # and lipseal.source_lips


def head_controls(client, head_id: str) -> dict:
    """The backend head's semantic controls, expression basis and lip rig (head.npz's HEAD_KEYS,
    plus the solve's vertex metric computed once), fetched once per head (GET /v1/model/head,
    as Add Head does) and kept for the session. Worker thread."""
    with _heads_lock:
        if head_id in _heads:
            return _heads[head_id]
    with np.load(io.BytesIO(client.head()), allow_pickle=False) as z:
        head = {k: z[k] for k in HEAD_KEYS if k in z.files}
    # A head without controls (a FLAME import) stays so: solve_for_head says what it lacks.
    if all(k in head for k in SOLVE_KEYS) and len(head["semantic_names"]):
        head["metric"] = retarget.vertex_metric(head["exp_dirs"])
    with _heads_lock:
        _heads[head_id] = head
    return head


def weights(take: Take, mapping: retarget.Mapping, head: dict | None, lips=None) -> dict:
    """Target shape key -> (T,) weight at 25 fps for one take (a "psi" mapping: psi itself).
    `lips`: the character's lip calibration (lip_seal): its lips are then sealed as the take's
    on the head (lipseal.seal: closed where the stand-in's are, open as far elsewhere)."""
    if mapping.kind == "psi":
        controls = retarget.psi_controls(take.exp)
    else:
        metric = {"metric": head["metric"]} if "metric" in head else {}
        controls = retarget.solve_for_head(take.exp, take.jaw, head, **metric)
    out = retarget.apply(mapping, controls)
    if lips is None or mapping.kind == "psi":
        return out
    return lipseal.seal(out, lipseal.source_lips(take.exp, take.jaw, head), lips)


def retarget_takes(client, head_id: str, found: list, mapping: retarget.Mapping, lips=None) -> list[dict]:
    """weights() of each take, the head fetched (once) from the backend."""
    head = head_controls(client, head_id) if mapping.kind != "psi" else None
    return [weights(take, mapping, head, lips) for take in found]
