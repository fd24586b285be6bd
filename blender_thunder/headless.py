"""Key every sound strip of every scene in the open .blend, without a UI.

`thunder batch FILE.blend…` runs this inside Blender (or the bpy module). On a
render farm with the extension installed:

    blender -b shot.blend --python-exit-code 2 --python-expr \\
        "import bl_ext.user_default.thunder.headless as h; h.main({'takes': 4})"

The same operators' code path (utils.generation) does the work; this module only
walks the scenes, skips strips that already have takes (unless `force`), saves
after every keyed strip (so a crash loses at most one strip and a rerun
resumes), and writes a JSON report when `report` names a file.

`target` names the object to key in every scene that holds it (a character's mesh, or
the stand-in rig); `mapping` is a preset name (arkit52, vrm_visemes, thunder_exp) or a
mapping JSON file, bound to the character's shape-key names and kept on it as its
mapping (what the panel shows). Without them: the scene's THUNDER rig, or the panel's
target with its own mapping.
"""

from __future__ import annotations

import json
import logging
import os
import time

import bpy

from .core import jobs
from .core.client import DEFAULT_URL, BackendError, Client
from .core import retarget
from .utils import characters, generation, takes
from .utils.compat import sound_strips
from .utils.rigs import RigError
from .utils.strips import StripError

log = logging.getLogger(__name__)
DEFAULTS = {
    "takes": 4,
    "seed": 0,
    "preset": "default",
    "guidance": 1.0,
    "force": False,
    "url": None,
    "token_file": None,
    "report": None,
    "timeout": 1800.0,
    "save": True,
    "target": None,
    "mapping": None,
}


def _ensure_registered() -> None:
    if not hasattr(bpy.types.Scene, "thunder"):
        from . import register

        register()


def _drop(scene, old_actions) -> None:
    """--force: the strip's previous takes of other seeds (the add-on's own only) go once new
    ones exist (those of the same seeds were replaced in place by Generate)."""
    names = {a.name for a in old_actions}
    for i in reversed(range(len(scene.thunder.takes))):
        act = scene.thunder.takes[i].action
        if act is not None and act.name in names:
            scene.thunder.takes.remove(i)
    for act in old_actions:
        if takes.is_owned(act):
            takes.remove(takes.take_actions(act))


def _row(scene, strip, status: str = "", message: str = "") -> dict:
    return {
        "scene": scene.name,
        "strip": strip.name,
        "status": status,
        "takes": 0,
        "best_score": None,
        "seconds": 0.0,
        "message": message,
    }


def key_strip(scene, strip, rig_obj, options, client, force: bool, timeout: float) -> dict:
    row = _row(scene, strip)
    old = takes.scene_takes(scene, strip.name)
    if old and not force:
        row.update(status="skipped", takes=len(old), message="already keyed (use --force to redo)")
        return row
    # By name and seed: Generate replaces same-seed takes in place, so those datablocks go.
    old_seeds = {a.name: int(takes.meta(a)["seed"]) for a in old}
    t0 = time.monotonic()
    job = generation.start_generate(scene, strip, rig_obj, options, client, replace=True)
    jobs.wait(job, timeout)
    row["seconds"] = round(time.monotonic() - t0, 2)
    if job.state != "done":
        row.update(status="failed", message=job.message)
        return row
    new_seeds = {options.seed + i for i in range(options.takes)}
    stale = [bpy.data.actions[n] for n, seed in old_seeds.items() if seed not in new_seeds and n in bpy.data.actions]
    if stale:
        _drop(scene, stale)
    new = takes.scene_takes(scene, strip.name)
    best = max(new, key=lambda a: takes.meta(a)["score"])
    row.update(
        status="keyed",
        takes=len(new),
        message=job.message,
        best_score=takes.meta(best)["score"],
        best_seed=takes.meta(best)["seed"],
        best_action=best.name,
    )
    return row


def load_mapping(spec: str) -> retarget.Mapping:
    """A preset's name or a mapping file's path."""
    found = retarget.presets()
    if spec in found:
        return found[spec]
    if not os.path.isfile(spec):
        raise ValueError(f"mapping {spec!r} is neither a preset ({', '.join(found)}) nor a file")
    return retarget.Mapping.load(spec)


def scene_target(scene, target: str | None, mapping: retarget.Mapping | None):
    """The object to key in `scene`: `target` by name (its mapping set from `mapping`), else
    the panel's target or the scene's only rig. RigError says why not."""
    if not target:
        return characters.find_in_scene(scene)
    obj = scene.objects.get(target)
    if obj is None:
        raise RigError(f"scene {scene.name!r} has no object {target!r} (--target)")
    if mapping is not None:
        if not characters.is_character(obj):
            raise RigError(f"{target!r} is not a character's mesh with shape keys: --mapping needs one")
        bound, dropped = characters.bind(mapping, obj)
        if not bound.driven:
            raise RigError(f"{target!r} has none of the shape keys mapping {mapping.name!r} drives")
        if dropped:
            log.info("%s: %d mapping rows left out (no such shape key)", target, len(dropped))
        characters.store_mapping(obj, bound)
    characters.resolve(obj)
    return obj


def main(config: dict | None = None) -> dict:
    cfg = {**DEFAULTS, **(config or {})}
    _ensure_registered()
    generation.PUSH_UNDO = False
    client = Client(
        cfg["url"] or DEFAULT_URL, os.environ.get("THUNDER_TOKEN"), timeout=cfg["timeout"], token_file=cfg["token_file"]
    )
    options = generation.Options(
        takes=int(cfg["takes"]), seed=int(cfg["seed"]), preset=cfg["preset"], guidance=float(cfg["guidance"]), rank=True
    )
    mapping, bad_mapping = None, None
    try:
        mapping = load_mapping(cfg["mapping"]) if cfg["mapping"] else None
    except ValueError as exc:
        bad_mapping = RigError(str(exc))  # every strip fails with it: nothing is keyed with another mapping
    rows = []
    for scene in bpy.data.scenes:
        strips = [s for s in sound_strips(scene) if "thunder_listen" not in s]
        if not strips:
            continue
        try:
            if bad_mapping is not None:
                raise bad_mapping
            rig_obj = scene_target(scene, cfg["target"], mapping)
        except (RigError, ValueError) as exc:
            rows += [_row(scene, s, "failed", str(exc)) for s in strips]
            continue
        for strip in strips:
            try:
                row = key_strip(scene, strip, rig_obj, options, client, bool(cfg["force"]), float(cfg["timeout"]))
            except (RigError, StripError, BackendError, ValueError, TimeoutError) as exc:
                row = _row(scene, strip, "failed", str(exc))
            rows.append(row)
            if row["status"] == "failed":
                log.warning("%s / %s: %s", scene.name, strip.name, row["message"])
            if row["status"] == "keyed" and cfg["save"] and bpy.data.filepath:
                bpy.ops.wm.save_mainfile()  # after every strip: a crash loses at most one
    report = {"file": bpy.data.filepath, "rows": rows, "ok": all(r["status"] != "failed" for r in rows)}
    if cfg["report"]:
        with open(cfg["report"], "w") as fh:
            json.dump(report, fh, indent=1)
    return report
