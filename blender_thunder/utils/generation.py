"""Generate / resample / listen as jobs: what runs on the worker thread and what
the main thread then does to the scene. Operators and the headless batch runner
both come through here, so tests of one are tests of the other.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import bpy

from ..core import contract, jobs
from ..core.client import BackendError, Client
from ..core.messages import check_model, encode_take, parse_animate
from . import characters, takes as takes_mod
from .compat import top_strips
from .rigs import RigError, check_head_ids
from .strips import StripInfo, find as find_strip, free_channel, strip_info


@dataclass(frozen=True)
class Options:
    takes: int = 4
    seed: int = 0
    preset: str = "default"
    guidance: float = 1.0
    rank: bool = True

    def form(self) -> dict:
        return {
            "takes": self.takes,
            "seed": self.seed,
            "preset": self.preset,
            "guidance": round(float(self.guidance), 4),
            "rank": self.rank,
            "encoding": "b64",
        }


def ensure_backend(job: jobs.Job, client: Client, launch: dict | None) -> None:
    """Worker thread: make sure a backend answers, starting the bundled one if allowed.
    `launch`: keyword arguments of launcher.start (captured from the preferences), or None."""
    from ..core import launcher

    try:
        client.health()
        return
    except BackendError:
        if launch is None:
            raise
    job.report(0.02, "starting the backend")
    launcher.start(**launch)
    launcher.wait_ready(client, timeout=120.0, cancel=job.cancel)


def _fetch(
    job: jobs.Job,
    client: Client,
    info: StripInfo,
    options: Options,
    rig_head: tuple | None,
    launch: dict | None = None,
    mapping=None,
    lips=None,
):
    """Worker thread. `rig_head`: (rig name, its head_id) to check against the bundle, or None.
    `mapping`: a character's (retarget.Mapping): each take's weights come back too, else Nones;
    `lips`: its lip calibration (characters.lip_seal), to seal its lips as the take's."""
    ensure_backend(job, client, launch)
    job.report(0.05, "checking the model")
    model = check_model(client.model())
    if rig_head is not None:
        check_head_ids(*rig_head, model["head"]["head_id"])
    job.report(0.1, "reading audio")
    with open(info.audio_path, "rb") as fh:
        audio = fh.read()
    form = {**options.form(), "start": round(info.start_s, 6), "end": round(info.end_s, 6)}
    job.report(0.2, f"sampling {options.takes} take(s)")
    from ..core.client import progress_text

    def sampling(event: dict) -> None:
        """The backend's progress (window, step, time left) fills the bar from 0.2 to 0.9;
        an older backend sends none and the bar waits at 0.2 as before."""
        job.report(0.2 + 0.7 * float(event.get("fraction", 0.0)), progress_text(event))

    reply = client.animate(audio, os.path.basename(info.audio_path), form, cancel=job.cancel, progress=sampling)
    job.report(0.9, "decoding")
    found, meta = parse_animate(reply, expect_takes=options.takes)
    if mapping is None:
        return found, meta, model, [None] * len(found)
    job.report(0.95, "retargeting")
    return found, meta, model, characters.retarget_takes(client, model["head"]["head_id"], found, mapping, lips)


PUSH_UNDO = True  # headless batch turns it off: no one undoes there, and steps cost memory


def _undo_push(message: str) -> None:
    """The scene changed outside an operator (in the timer): make it one undo step."""
    if PUSH_UNDO:
        try:
            bpy.ops.ed.undo_push(message=message)
        except RuntimeError:  # no undo system in this context
            pass


def _add_to_list(scene, actions) -> None:
    m = takes_mod.meta(actions[0])
    item = scene.thunder.takes.add()
    item.action = actions[0]
    item.seed, item.score, item.duration = m["seed"], m["score"], m["duration"]
    item.strip, item.rig = m["strip"], m["rig"]


def _extra(model: dict, options: Options, lips=None) -> dict:
    """What each take records about how it was made (`lip_seal`: a character's lips were sealed)."""
    return {
        "bundle": str(model.get("name", "")),
        "head_id": model["head"]["head_id"],
        "preset": options.preset,
        "guidance": float(options.guidance),
        **({"lip_seal": True} if lips is not None else {}),
    }


def _with_note(message: str, note: str) -> str:
    return f"{message}; {note}" if note else message


def _list_index(scene, action) -> int:
    for i, item in enumerate(scene.thunder.takes):
        if item.action == action:
            return i
    return -1


def start_generate(
    scene,
    strip,
    rig_obj,
    options: Options,
    client: Client,
    check_rig: bool = True,
    launch: dict | None = None,
    replace: bool = False,
) -> jobs.Job:
    """Validate on the main thread, then generate on a worker; `apply` keys the takes.
    `replace`: a seed that already has an add-on take of this strip on this rig gets the new
    take in its place (same name, same list row) instead of a `.001` twin; the artist's
    copies and renamed takes are never touched. The Generate button replaces."""
    rig = characters.resolve(rig_obj)
    info = strip_info(scene, strip)
    rig_name, scene_name, mapping = rig.name, scene.name, rig.mapping
    lips, lips_note = characters.lip_seal(rig, scene)
    rig_head = (rig.name, rig.head_id) if check_rig and rig.head_id is not None else None

    def apply(result) -> str:
        found, meta, model, weights = result
        scn = bpy.data.scenes.get(scene_name)
        if scn is None:
            raise RuntimeError(f"scene {scene_name!r} is gone")
        rg = characters.resolve(bpy.data.objects.get(rig_name), mapping)
        created, list_len = [], len(scn.thunder.takes)
        before = takes_mod.shown(rg, info.strip)
        rng = (scn.frame_start, scn.frame_end)
        old = takes_mod.same_seed_takes(scn, info.strip, rg.name, [t.seed for t in found]) if replace else {}
        try:
            for take, w in zip(found, weights):
                created.append(takes_mod.create(rg, info, take, _extra(model, options, lips), w))
            # The best lip-sync score plays first (the first one on ties, as the backend ranked them).
            best = max(created, key=lambda a: takes_mod.meta(a[0])["score"])
            takes_mod.show(rg, best)
            m = takes_mod.meta(best[0])
            takes_mod.extend_range(scn, m["frame_start"], m["frame_end"])
            n_replaced = 0
            for actions in created:
                olds = old.get(takes_mod.meta(actions[0])["seed"], [])
                if _replace_in_list(scn, olds, actions):
                    n_replaced += 1
                else:
                    _add_to_list(scn, actions)
            if n_replaced:
                takes_mod.show(rg, best)  # the NLA strip takes the take's final name
            scn.thunder.active_take = _list_index(scn, best[0])
        except Exception:
            _rollback(scn, rg, info.strip, created, list_len, before, rng)
            raise
        _undo_push("THUNDER: generate takes")
        again = f", {n_replaced} replaced" if n_replaced else ""
        seconds = meta.get("timings", {}).get("total", 0)
        return _with_note(f"{len(created)} take(s) for {info.strip!r}{again} in {seconds:.1f} s", lips_note)

    return jobs.start(
        f"Generate {info.strip}",
        lambda job: _fetch(job, client, info, options, rig_head, launch, mapping, lips),
        apply,
    )


def _replace_in_list(scene, olds: list, actions) -> bool:
    """Put a new take where the add-on's takes of the same seed were: the first one's list row
    and names; the others (older `.001` twins) go. False when there is nothing to replace."""
    olds = [o for o in olds if takes_mod.is_owned(o[0])]
    if not olds:
        return False
    first = olds[0]
    names = [a.name for a in first]
    row = _list_index(scene, first[0])
    for twin in olds[1:]:
        i = _list_index(scene, twin[0])
        if i >= 0:
            scene.thunder.takes.remove(i)
            row = _list_index(scene, first[0])
    for twin in olds:
        takes_mod.remove(twin)
    if row >= 0:
        item = scene.thunder.takes[row]
        m = takes_mod.meta(actions[0])
        item.action, item.seed, item.score, item.duration = actions[0], m["seed"], m["score"], m["duration"]
        item.strip, item.rig = m["strip"], m["rig"]
    else:
        _add_to_list(scene, actions)
    if len(names) == len(actions):
        takes_mod.rename(actions, names)
    return True


def _rollback(scene, rig, strip_name, created, list_len, before, rng) -> None:
    while len(scene.thunder.takes) > list_len:
        scene.thunder.takes.remove(len(scene.thunder.takes) - 1)
    takes_mod.unshow(rig, strip_name)
    if before is not None:
        takes_mod.show(rig, takes_mod.take_actions(before))
    for actions in created:
        takes_mod.remove(actions)
    scene.frame_start, scene.frame_end = rng


def start_resample(scene, index: int, client: Client, launch: dict | None = None) -> jobs.Job:
    """Replace one take by a take with a fresh seed (the old one is deleted if the add-on owns it)."""
    item = scene.thunder.takes[index]
    old = item.action
    if old is None:
        raise ValueError("this take's action is gone")
    m = takes_mod.meta(old)
    strip = find_strip(scene, m["strip"])
    rig_obj = bpy.data.objects.get(item.rig)
    options = Options(
        takes=1,
        seed=takes_mod.new_seed(),
        preset=m.get("preset", "default"),
        guidance=m.get("guidance", 1.0),
        rank=False,
    )
    rig = characters.resolve(rig_obj)  # a character's mapping as the panel has it now
    info = strip_info(scene, strip)
    scene_name, old_name, rig_name, mapping = scene.name, old.name, rig.name, rig.mapping
    lips, lips_note = characters.lip_seal(rig, scene)

    def apply(result) -> str:
        found, meta, model, weights = result
        scn = bpy.data.scenes[scene_name]
        rg = characters.resolve(bpy.data.objects.get(rig_name), mapping)
        old_act = bpy.data.actions.get(old_name)
        was_shown = old_act is not None and takes_mod.shown(rg, info.strip) == old_act
        actions = takes_mod.create(rg, info, found[0], _extra(model, options, lips), weights[0])
        try:
            if was_shown:
                takes_mod.show(rg, actions)
        except Exception:
            takes_mod.remove(actions)
            raise
        i = _list_index(scn, old_act) if old_act is not None else -1
        if i < 0:
            _add_to_list(scn, actions)
        else:
            it = scn.thunder.takes[i]
            am = takes_mod.meta(actions[0])
            it.action, it.seed, it.score, it.duration = actions[0], am["seed"], am["score"], am["duration"]
        if old_act is not None and takes_mod.is_owned(old_act):
            takes_mod.remove(takes_mod.take_actions(old_act))
        _undo_push("THUNDER: resample take")
        return _with_note(f"new take seed {found[0].seed} (score {found[0].score:.3f})", lips_note)

    rig_head = (rig.name, rig.head_id) if rig.head_id is not None else None
    return jobs.start(
        f"Resample {old_name}",
        lambda job: _fetch(job, client, info, options, rig_head, launch, mapping, lips),
        apply,
    )


def start_remap(scene, index: int, client: Client, launch: dict | None = None) -> jobs.Job:
    """Key a character's take again with the character's mapping as it is now: the same motion
    (the take's own psi and jaw, no new sampling) retargeted again, in place of the old take
    (same name, same row; playing if the old one played)."""
    item = scene.thunder.takes[index]
    old = item.action
    if old is None or not takes_mod.is_owned(old):
        raise ValueError("this take is not THUNDER's (renamed or copied): it is left as it is")
    m = takes_mod.meta(old)
    if m.get("target") != "character":
        raise ValueError("only a character's take has a mapping to apply again")
    rig = characters.resolve(bpy.data.objects.get(m["rig"]))
    take, mapping = takes_mod.stored_take(old), rig.mapping
    info = StripInfo(
        m["scene"], m["strip"], "", m["audio_start"], m["audio_end"], int(round(m["frame_start"])), m["fps"]
    )
    lips, lips_note = characters.lip_seal(rig, scene)
    extra = {k: m[k] for k in ("bundle", "head_id", "preset", "guidance") if k in m}
    extra.update({"lip_seal": True} if lips is not None else {})
    scene_name, old_name, rig_name = scene.name, old.name, rig.name

    def work(job):
        if mapping.kind == "psi":
            return characters.weights(take, mapping, None)
        ensure_backend(job, client, launch)
        job.report(0.3, "fetching the head's controls")
        head_id = check_model(client.model())["head"]["head_id"]
        if extra.get("head_id", head_id) != head_id:
            raise RigError("the backend's model has another head than the take was made with: Resample it instead")
        return characters.retarget_takes(client, head_id, [take], mapping, lips)[0]

    def apply(weights) -> str:
        scn = bpy.data.scenes[scene_name]
        rg = characters.resolve(bpy.data.objects.get(rig_name), mapping)
        old_act = bpy.data.actions.get(old_name)
        if old_act is None or not takes_mod.is_owned(old_act):
            raise ValueError(f"take {old_name!r} is gone or no longer THUNDER's")
        was_shown = takes_mod.shown(rg, info.strip) == old_act
        actions = takes_mod.create(rg, info, take, extra, weights)
        _replace_in_list(scn, [takes_mod.take_actions(old_act)], actions)
        if was_shown:
            takes_mod.show(rg, actions)
        _undo_push("THUNDER: re-map take")
        done = f"{actions[0].name!r} keyed again with mapping {mapping.name!r} ({len(weights)} shape keys)"
        return _with_note(done, lips_note)

    return jobs.start(f"Re-map {old_name}", work, apply)


def head_arrays(head_bytes: bytes | None = None, flame_dir: str = "") -> dict:
    """The head file's arrays: the user's FLAME folder (converted to head.npz) when
    set, else the bundle's head as sent by the backend. Checked against its head_id."""
    import io

    import numpy as np

    if flame_dir:
        path = os.path.join(flame_dir, "head.npz")
        if not os.path.isfile(path):
            has_pkl = os.path.isfile(os.path.join(flame_dir, "FLAME_NEUTRAL.pkl"))
            hint = " (it holds FLAME_NEUTRAL.pkl)" if has_pkl else ""
            raise RigError(
                f"no head.npz in the FLAME folder {flame_dir}{hint}: convert it once with "
                f"`thunder-train head import --flame {flame_dir}`"
            )
        source = path
    elif head_bytes:
        source = io.BytesIO(head_bytes)
    else:
        raise RigError("no head: the backend sent none and no FLAME folder is set")
    with np.load(source, allow_pickle=False) as z:
        head = {k: z[k] for k in z.files}
    missing = [k for k in ("v_template", "faces", "exp_dirs", "joints", "weights", "head_id") if k not in head]
    if missing:
        raise RigError(f"not a THUNDER head file (missing {', '.join(missing)})")
    digest = contract.head_id(head["v_template"], head["faces"])
    if digest != str(head["head_id"]):
        raise RigError("the head file is damaged: its vertices and faces do not match its head_id")
    head["head_id"] = digest
    return head


def add_head(scene, head_bytes: bytes | None, flame_dir: str = ""):
    """Main thread: build the rig (rig.py) and make it the panel's target."""
    from .. import rig

    mesh, arm = rig.build_rig(head_arrays(head_bytes, flame_dir), collection=scene.collection)
    scene.thunder.rig = arm
    _undo_push("THUNDER: add head")
    return arm


def listen_dir() -> str:
    """Next to the .blend when saved (files permission), else the temp folder."""
    if bpy.data.filepath:
        return bpy.path.abspath("//thunder_listen")
    return os.path.join(tempfile.gettempdir(), "thunder_listen")


def write_listen_file(out_dir: str, stem: str, wav: bytes) -> str:
    """`stem`.wav in `out_dir` (the stem names the take's content). An existing file is
    never overwritten: the same bytes are reused, other bytes get `stem-2.wav`, `-3`…"""
    os.makedirs(out_dir, exist_ok=True)
    n = 1
    while True:
        path = os.path.join(out_dir, f"{stem}.wav" if n == 1 else f"{stem}-{n}.wav")
        try:
            with open(path, "xb") as fh:  # exclusive: another Blender writing the same name loses the race
                fh.write(wav)
            return path
        except FileExistsError:
            with open(path, "rb") as fh:
                if fh.read() == wav:
                    return path
        n += 1


def start_listen(scene, index: int, client: Client, launch: dict | None = None) -> jobs.Job:
    """Add the M2S audio of a take (what the face 'says') as a sound strip."""
    item = scene.thunder.takes[index]
    act = item.action
    if act is None or takes_mod.OWNER not in act:
        raise ValueError("this take has no THUNDER data to listen to")
    take = takes_mod.stored_take(act)
    m = takes_mod.meta(act)
    scene_name, name = scene.name, act.name
    digest = takes_mod.content_hash(act)
    out_dir = listen_dir()

    def work(job):
        ensure_backend(job, client, launch)
        job.report(0.2, "synthesising audio")
        return client.listen(encode_take(take), cancel=job.cancel)

    def apply(wav: bytes) -> str:
        if not wav.startswith(b"RIFF"):
            raise ValueError("the backend's listen reply is not a WAV file")
        scn = bpy.data.scenes[scene_name]
        path = write_listen_file(out_dir, f"{bpy.path.clean_name(name)}_{digest}_m2s", wav)
        f0 = int(m["frame_start"])
        channel = free_channel(scn, f0, int(m["frame_end"]) + 1)
        strip = top_strips(scn).new_sound(f"{name} M2S", path, channel=channel, frame_start=f0)
        strip["thunder_listen"] = name
        _undo_push("THUNDER: listen")
        return f"added {strip.name!r} on channel {channel}"

    return jobs.start(f"Listen {name}", work, apply)
