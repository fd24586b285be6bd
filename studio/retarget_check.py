"""Real-world check of retargeting (issue #17): takes keyed onto a character the project did
not make, measured on that character's own vertices.

    python -m studio.retarget_check [--prompts 20] [--bundle DIR] [--out reports/retarget-character]

Speech: the demo sentence (assets/speech/demo.wav; its phones from the espeak-ng front-end
that synthesised it) and real speech (Asterisk's English prompts, force-aligned: see
`real_clips` for how far they are held out).
Motion per clip, two sources: the shipped bundle's best-scoring take, and the corpus engine's
articulation of the clip's phones (pseudo-ground truth: what the model is trained to imitate),
so that what the retargeting loses is told apart from what the model never made.
Each motion is retargeted (`retarget.solve_for_head` + `apply` with the mapping `detect`
finds on the character, as the add-on does; then, for "lip_seal", `lipseal.seal` with the
character's lip calibration measured in Blender at bind time) onto the MakeHuman Face Units
head (studio/characters/faceunits.py) and, unchanged, posed on the stand-in rig the add-on
builds; both are evaluated by Blender and measured the same way: the lip gap between the
lips' contact pair (backend/lipcheck: m/p/b closure at <= 2 mm, median vowel gap), the lid
opening in front of each pupil (blinks) and the height of a brow point (brows).
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from backend import lipcheck
from backend.bench import commit, machine
from backend.headfile import load_head_file
from backend.jsonio import finite, write_json
from blender_thunder.core import lipseal, retarget
from studio.characters import faceunits

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "backend" / "models" / "thunder-base"
DEMO_WAV = ROOT / "assets" / "speech" / "demo.wav"
DEMO_TEXT = "Thunder turns your voice into a talking head, right inside Blender."  # assets/speech/README.md
DEMO_RATE = 165
CLOSED = 0.5  # a lid counts as closed past half its rest opening
SOURCES = ("model", "articulation")
# The detected preset's weights as they are, and with the character's lips sealed as the take's
# (blender_thunder/core/lipseal.py, calibrated on the character).
VARIANTS = ("preset", "lip_seal")


def variant_weights(weights: dict, variant: str, source=None, cal=None) -> dict:
    """The preset's weights, or (lip_seal) those weights through lipseal.seal."""
    return lipseal.seal(weights, source, cal) if variant == "lip_seal" else dict(weights)


# ---- speech ------------------------------------------------------------------------------
def demo_clip() -> dict:
    """The demo sentence with the phones of the synthesis that made it (same text, voice, rate)."""
    import soundfile as sf

    from training.corpus import espeak
    from training.corpus.phones import espeak_to_arpa
    from training.corpus.sources import tidy

    audio, sr = sf.read(DEMO_WAV, dtype="float32")
    syn = espeak.synthesize(DEMO_TEXT, "en-us", rate=DEMO_RATE)
    n = len(syn.audio)
    if abs(n / syn.sample_rate - len(audio) / sr) > 0.02:
        raise RuntimeError(f"{DEMO_WAV} is not the synthesis its README describes (durations differ)")
    raw = [
        (s / syn.sample_rate, (syn.phones[k + 1][0] if k + 1 < len(syn.phones) else n) / syn.sample_rate, name)
        for k, (s, name) in enumerate(syn.phones)
    ]
    phones, _ = tidy([(s, e, espeak_to_arpa(lab)) for s, e, lab in raw], len(audio) / sr)
    return {"name": "demo", "audio": audio, "phones": phones}


def real_clips(cache: str, count: int) -> list[dict]:
    """The last `count` prompts (file-name order) of Asterisk's English speaker that align.

    Real speech, but not a new voice to the shipped bundle: its corpus took 0.05 h of this
    speaker, from the start of the same order and split 70/15/15 by utterance, so these are
    likely (not provably) outside its training split."""
    if count <= 0:
        return []
    from training.corpus.recordings import aligned, load_audio

    prompts = aligned(cache, "asterisk-en")
    return [
        {"name": Path(p["path"]).name, "audio": load_audio(p["path"]), "phones": [tuple(x) for x in p["phones"]]}
        for p in prompts[-count:]
    ]


# ---- motion ------------------------------------------------------------------------------
def motions(engine, face, clip: dict, takes: int) -> dict:
    """source -> (exp (T,50), jaw (T,3)) for one clip."""
    from training.corpus.face import clean_motion
    from training.peers.allphone import NEUTRAL_STYLE

    res = engine.animate(clip["audio"], takes=takes, seed=0)
    best = max(res.takes, key=lambda t: t.score)
    T = best.exp.shape[0]
    psi, jaw = clean_motion(face, clip["phones"], len(clip["audio"]) / 16000, NEUTRAL_STYLE, np.random.default_rng(0))
    return {"model": (best.exp, best.jaw), "articulation": (psi[:T], jaw[:T])}, best.seed


# ---- the two heads in Blender ----------------------------------------------------------
def standin_landmarks(head: dict) -> dict:
    """The stand-in's lips (head.npz's mid-points) and lids/brows found as on the character."""
    w = np.asarray(head["weights"])
    V = np.asarray(head["v_template"], np.float64)
    eyes = {s: np.nonzero(w[:, 3 + i] > 0.999)[0] for i, s in enumerate(("L", "R"))}
    skin = np.nonzero((w[:, 3] + w[:, 4]) < 0.999)[0]
    lids, brows = faceunits.find_lids_and_brows(V, skin, eyes)
    return {"lips": (int(head["lip_upper"]), int(head["lip_lower"])), "lids": lids, "brows": brows}


def _picks(marks: dict) -> np.ndarray:
    lids = [np.concatenate(v) for v in marks["lids"].values()]
    return np.unique(np.concatenate([list(marks["lips"]), *lids, list(marks["brows"].values())]))


class Stage:
    """One Blender scene holding the stand-in rig (the add-on's builder) and the character."""

    def __init__(self, head: dict, character: faceunits.Character):
        import bpy

        from blender_thunder.rig import build_rig
        from studio.render import new_scene

        self.scene = new_scene()
        self.head, self.character = head, character
        self.standin, self.arm = build_rig(head)
        self.target = faceunits.build(character)
        self.depsgraph = bpy.context.evaluated_depsgraph_get()

    def _evaluate(self, obj, picks: np.ndarray) -> np.ndarray:
        self.depsgraph.update()
        ev = obj.evaluated_get(self.depsgraph)
        me = ev.to_mesh()
        co = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        return co.reshape(-1, 3)[picks].astype(np.float64)

    def standin_frames(self, exp, jaw, picks) -> np.ndarray:
        from studio.render import pose

        out = np.empty((len(exp), len(picks), 3))
        for t in range(len(exp)):
            pose(self.standin, self.arm, exp[t], jaw[t])
            out[t] = self._evaluate(self.standin, picks)
        pose(self.standin, self.arm, np.zeros(exp.shape[1]), np.zeros(3))
        return out

    def lip_calibration(self, mapping: retarget.Mapping) -> lipseal.LipCalibration | None:
        """The character's lip calibration, measured as the add-on's bind step would: its lip
        points evaluated at rest and with each driven shape alone at full weight."""
        lips = np.array(self.character.lips)
        targets = [c.target for c in mapping.driven]
        rest = self.target_frames({targets[0]: np.zeros(1)}, lips)[0]
        moved = {t: self.target_frames({t: np.ones(1)}, lips)[0] - rest for t in targets}
        return lipseal.calibrate(mapping, rest, moved)

    def target_frames(self, weights: dict, picks) -> np.ndarray:
        keys = self.target.data.shape_keys.key_blocks
        T = len(next(iter(weights.values())))
        out = np.empty((T, len(picks), 3))
        for t in range(T):
            for name, w in weights.items():
                keys[name].value = float(w[t])
            out[t] = self._evaluate(self.target, picks)
        for name in weights:
            keys[name].value = 0.0
        return out


def measures(frames: np.ndarray, marks: dict, picks: np.ndarray) -> dict:
    """Per-frame lip gap (mm), lid closure per side (0 open as at rest .. 1 shut) and brow lift (mm)."""
    at = {int(v): i for i, v in enumerate(picks)}

    def local(idx):
        return np.array([at[int(v)] for v in np.atleast_1d(idx)])

    lips = (at[marks["lips"][0]], at[marks["lips"][1]])
    out = {"lip_mm": 1000 * faceunits.lip_gap(frames, lips)}
    for side, (up, lo) in marks["lids"].items():
        ap = faceunits.lid_aperture(frames, (local(up), local(lo)))
        out[f"lid_{side}"] = 1.0 - ap / max(float(marks["rest_aperture"][side]), 1e-9)
        out[f"brow_{side}_mm"] = 1000 * (frames[:, at[marks["brows"][side]], 2] - marks["rest_brow"][side])
    return out


def rest_levels(frames_rest: np.ndarray, marks: dict, picks: np.ndarray) -> None:
    """Rest lid openings and brow heights (the first argument: the rest frame, (1, n, 3))."""
    at = {int(v): i for i, v in enumerate(picks)}
    local = {s: tuple(np.array([at[int(v)] for v in part]) for part in pair) for s, pair in marks["lids"].items()}
    marks["rest_aperture"] = {s: float(faceunits.lid_aperture(frames_rest, pair)[0]) for s, pair in local.items()}
    marks["rest_brow"] = {s: float(frames_rest[0, at[b], 2]) for s, b in marks["brows"].items()}


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def carry_over(ref: dict, tgt: dict) -> dict:
    """Blinks and brows of the target against the stand-in on the same frames."""
    out = {}
    for side in ("L", "R"):
        r, t = ref[f"lid_{side}"], tgt[f"lid_{side}"]
        shut = r >= CLOSED
        out[f"blink_{side}"] = {
            "corr": _corr(r, t),
            "standin_closed_frames": int(shut.sum()),
            "target_closed_when_standin_closed": float((t[shut] >= CLOSED).mean()) if shut.any() else None,
            "target_closed_when_standin_open": float((t[~shut] >= CLOSED).mean()) if (~shut).any() else None,
        }
        rb, tb = ref[f"brow_{side}_mm"], tgt[f"brow_{side}_mm"]
        out[f"brow_{side}"] = {
            "corr": _corr(rb, tb),
            "standin_range_mm": float(np.ptp(rb)),
            "target_range_mm": float(np.ptp(tb)),
        }
    return out


# ---- driver -------------------------------------------------------------------------------
def run(args) -> dict:
    from backend.engine import Engine
    from training.corpus.cli import resolve_head
    from training.corpus.face import Face

    t0 = time.perf_counter()
    bundle = Path(args.bundle)
    head = load_head_file(bundle / "head.npz")
    head_dir = resolve_head(None, args.cache)
    face = Face.load(head_dir)
    if face.head_id != str(head["head_id"]):
        raise RuntimeError(f"the stand-in head in {head_dir} is not the bundle's head ({bundle})")
    character = faceunits.load(faceunits.fetch(args.cache))
    mapping = retarget.detect(list(character.shapes))
    if mapping is None:
        raise RuntimeError("no retargeting preset recognises the character's shape keys")

    clips = [demo_clip(), *real_clips(args.cache, args.prompts)]
    engine = Engine(bundle, device="cpu")
    stage = Stage(head, character)
    s_marks = standin_landmarks(head)
    t_marks = {"lips": character.lips, "lids": character.lids, "brows": character.brows}
    s_picks, t_picks = _picks(s_marks), _picks(t_marks)
    rest_levels(stage.standin_frames(np.zeros((1, 50)), np.zeros((1, 3)), s_picks), s_marks, s_picks)
    rest_levels(stage.target_frames({n: np.zeros(1) for n in character.shapes}, t_picks), t_marks, t_picks)
    cal = stage.lip_calibration(mapping)
    if cal is None:
        raise RuntimeError(f"mapping {mapping.name!r} has no jaw opener / lip closer pair to calibrate")

    rows = {src: {"standin": [], "phones": [], **{v: [] for v in VARIANTS}} for src in SOURCES}
    per_clip = []
    for clip in clips:
        moved, seed = motions(engine, face, clip, args.takes)
        entry = {"clip": clip["name"], "frames": int(moved["model"][0].shape[0]), "seed": seed}
        for src, (exp, jaw) in moved.items():
            weights = retarget.apply(mapping, retarget.solve_for_head(exp, jaw, head))
            source = lipseal.source_lips(exp, jaw, head)
            ref = measures(stage.standin_frames(exp, jaw, s_picks), s_marks, s_picks)
            rows[src]["standin"].append(ref)
            rows[src]["phones"].append(clip["phones"])
            entry[f"{src}_standin_closure"] = lipcheck.closure(ref["lip_mm"], clip["phones"])[0]
            for v in VARIANTS:
                tgt = measures(stage.target_frames(variant_weights(weights, v, source, cal), t_picks), t_marks, t_picks)
                rows[src][v].append(tgt)
                entry[f"{src}_{v}_closure"] = lipcheck.closure(tgt["lip_mm"], clip["phones"])[0]
            entry[f"{src}_bilabials"] = lipcheck.closure(ref["lip_mm"], clip["phones"])[1]
        per_clip.append(entry)
        log.info("%s: %s", clip["name"], entry)

    summary = {}
    for src in SOURCES:
        r = rows[src]
        heads = ("standin", *VARIANTS)
        cat = {k: {key: np.concatenate([m[key] for m in r[k]]) for key in r[k][0]} for k in heads}
        summary[src] = {
            part: {k: lipcheck.summarise([m["lip_mm"] for m in r[k][sl]], r["phones"][sl]) for k in heads}
            for part, sl in (("all", slice(None)), ("demo", slice(0, 1)), ("real", slice(1, None)))
        }
        summary[src]["lip_gap_corr"] = {v: _corr(cat["standin"]["lip_mm"], cat[v]["lip_mm"]) for v in VARIANTS}
        summary[src]["carry_over"] = {v: carry_over(cat["standin"], cat[v]) for v in VARIANTS}
    return {
        "kind": "retarget-character",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "bundle": bundle.name,
        "character": {
            "name": character.name,
            "vertices": len(character.verts),
            "polygons": len(character.polygons),
            "shape_keys": len(character.shapes),
            "source": character.source,
            "lips": list(character.lips),
            "rest_lip_gap_mm": float(1000 * faceunits.lip_gap(character.verts[None], character.lips)[0]),
        },
        "standin": {"vertices": int(len(head["v_template"]))},
        "mapping": {"name": mapping.name, "channels": len(mapping.channels)},
        "lip_calibration": {**cal.to_dict(), "jaw_mm": cal.jaw_mm, "contact_mm": cal.contact_mm},
        "clips": {"demo": 1, "real": len(clips) - 1},
        "takes": args.takes,
        "closed_mm": lipcheck.CLOSED_MM,
        "summary": summary,
        "per_clip": per_clip,
        "seconds": time.perf_counter() - t0,
    }


# ---- picture ------------------------------------------------------------------------------
def render_sheet(args) -> Path:
    """The demo take on the stand-in (left) and the character (right), Workbench: the take's
    clearest m/p/b closure, its widest vowel and its deepest blink (the articulation's, when the
    model's take does not blink), with the preset's weights; and the closure again with the
    character's lips sealed as the take's (lip_seal)."""
    from backend.engine import Engine
    from studio.render import add_camera, contact_sheet, pose, render_still
    from training.corpus.cli import resolve_head
    from training.corpus.face import Face

    bundle = Path(args.bundle)
    head = load_head_file(bundle / "head.npz")
    face = Face.load(resolve_head(None, args.cache))
    character = faceunits.load(faceunits.fetch(args.cache))
    mapping = retarget.detect(list(character.shapes))
    clip = demo_clip()
    moved, _ = motions(Engine(bundle, device="cpu"), face, clip, args.takes)
    stage = Stage(head, character)
    s_marks = standin_landmarks(head)
    picks = _picks(s_marks)
    rest_levels(stage.standin_frames(np.zeros((1, 50)), np.zeros((1, 3)), picks), s_marks, picks)
    cal = stage.lip_calibration(mapping)  # before the character is moved aside (any place would do)
    # the character beside the stand-in, lips at the same height
    s_lip = stage.standin_frames(np.zeros((1, 50)), np.zeros((1, 3)), np.array([s_marks["lips"][0]]))[0, 0]
    stage.target.location = tuple(s_lip - character.verts[character.lips[0]] + np.array([0.21, 0.0, 0.0]))
    add_camera(stage.scene, azimuth_deg=0.0, elevation_deg=3.0, distance=1.05, target=tuple(s_lip + [0.105, 0, 0.03]))
    stage.scene.render.resolution_x, stage.scene.render.resolution_y = 640, 360

    def frame_of(src):
        exp, jaw = moved[src]
        m = measures(stage.standin_frames(exp, jaw, picks), s_marks, picks)
        return exp, jaw, m

    exp, jaw, m = frame_of("model")
    spans = lipcheck.phone_spans(clip["phones"], lipcheck.BILABIAL, len(exp), slack=lipcheck.SLACK_FRAMES)
    closure = min((s.start + int(np.argmin(m["lip_mm"][s])) for s in spans), key=lambda f: m["lip_mm"][f])
    vowels = lipcheck.phone_spans(clip["phones"], lipcheck.VOWELS, len(exp))
    vowel = max((s.start + int(np.argmax(m["lip_mm"][s])) for s in vowels), key=lambda f: m["lip_mm"][f])
    blink_src = "model" if max(m["lid_L"].max(), m["lid_R"].max()) >= CLOSED else "articulation"
    b_exp, b_jaw, b_m = frame_of(blink_src)
    blink = int(np.argmax(b_m["lid_L"] + b_m["lid_R"]))
    shots = [
        ("model", closure, "preset", f"m/p/b closure (frame {closure})"),
        ("model", vowel, "preset", f"open vowel (frame {vowel})"),
        (blink_src, blink, "preset", f"blink (frame {blink}, {blink_src})"),
        ("model", closure, "lip_seal", f"closure, lips sealed (frame {closure})"),
    ]
    out = Path(args.render)
    tmp = out.parent / f".{out.stem}_tiles"
    tmp.mkdir(parents=True, exist_ok=True)
    tiles, labels = [], []
    keys = stage.target.data.shape_keys.key_blocks
    for i, (src, f, variant, label) in enumerate(shots):
        exp, jaw = moved[src]
        weights = retarget.apply(mapping, retarget.solve_for_head(exp, jaw, head))
        weights = variant_weights(weights, variant, lipseal.source_lips(exp, jaw, head), cal)
        pose(stage.standin, stage.arm, exp[f], jaw[f])
        for name, w in weights.items():
            keys[name].value = float(w[f])
        tiles.append(render_still(stage.scene, tmp / f"{i:02d}.png"))
        labels.append(f"{label}: stand-in | Face Units head")
    contact_sheet(tiles, labels, out, columns=2)
    for t in tiles:
        t.unlink()
    tmp.rmdir()
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def _mm(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def _r(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(rep: dict) -> str:
    m, c, cal = rep["machine"], rep["character"], rep["lip_calibration"]
    direction = np.asarray(cal["moves_mm"][cal["opener"]]) / cal["jaw_mm"]
    opening = {k: float(np.asarray(v) @ direction) for k, v in cal["moves_mm"].items()}
    moves = ", ".join(f"{k} {v:+.1f}" for k, v in sorted(opening.items(), key=lambda kv: kv[1]) if abs(v) >= 0.5)
    lines = [
        f"# thunder retarget-character: {rep['bundle']} onto {c['name']}",
        "",
        " · ".join(
            [rep["date"], f"commit {rep['commit']}", f"{m['cpu']} ({m['cores']} cores)", f"load {m['load_average']}"]
        ),
        "",
        f"Character: MakeHuman HM08 head with the 52 ARKit Face Units (CC0, from `{c['source']['package']}`), "
        f"{c['vertices']} vertices, {c['polygons']} polygons, rest lip gap {c['rest_lip_gap_mm']:.2f} mm; "
        f"mapping detected: `{rep['mapping']['name']}` ({rep['mapping']['channels']} channels). "
        f"Clips: the demo sentence + {rep['clips']['real']} real prompts (Asterisk English, the last in file order); "
        f"take: the best-scoring of {rep['takes']}. Closed = lip gap <= {rep['closed_mm']} mm.",
        "",
        f"Heads: `preset` = the detected mapping's weights (mouthClose from lip_press, capped at jawOpen); "
        f"`lip_seal` = those weights through `lipseal.seal` with the character's lip calibration "
        f"(jawOpen opens its lips {cal['jaw_mm']:.1f} mm, closed up to {cal['contact_mm']:.2f} mm of opening; "
        f"per full weight, mm of opening: {moves}).",
        "",
        "| motion | clips | head | m/p/b closure | bilabials | median vowel gap mm |",
        "|---|---|---|---|---|---|",
    ]
    for src, s in rep["summary"].items():
        for part in ("demo", "real"):
            for head_name in ("standin", *VARIANTS):
                x = s[part][head_name]
                label = "stand-in" if head_name == "standin" else f"target ({head_name})"
                lines.append(
                    f"| {src} | {part} | {label} | {_pct(x['closure'])} | {x['bilabials']} | {_mm(x['vowel_gap_mm'])} |"
                )
    lines += [
        "",
        "| motion | head | lip gap r | blink L r | blink L recall | blink R r | blink R recall | brow L r | brow R r |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for src, s in rep["summary"].items():
        for v in VARIANTS:
            co = s["carry_over"][v]
            lines.append(
                f"| {src} | {v} | {_r(s['lip_gap_corr'][v])} | {_r(co['blink_L']['corr'])} | "
                f"{_pct(co['blink_L']['target_closed_when_standin_closed'])} | {_r(co['blink_R']['corr'])} | "
                f"{_pct(co['blink_R']['target_closed_when_standin_closed'])} | {_r(co['brow_L']['corr'])} | "
                f"{_r(co['brow_R']['corr'])} |"
            )
    lines += ["", f"{rep['seconds']:.0f} s in all.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from training.corpus.cli import default_cache

    p = argparse.ArgumentParser(prog="python -m studio.retarget_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(BUNDLE))
    p.add_argument("--prompts", type=int, default=20, help="real prompts (default 20)")
    p.add_argument("--takes", type=int, default=4)
    p.add_argument("--cache", default=default_cache())
    p.add_argument("--out", default=str(ROOT / "reports" / "retarget-character"), help="report path without suffix")
    p.add_argument("--render", default=None, help="only render the side-by-side contact sheet to this PNG")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.render:
        log.info("wrote %s", render_sheet(args))
        return 0
    rep = finite(run(args))
    write_json(f"{args.out}.json", rep)
    Path(f"{args.out}.md").write_text(markdown(rep))
    log.info("%s", markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
