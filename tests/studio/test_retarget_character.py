"""Takes retargeted onto a character the project did not make (the MakeHuman Face Units head,
studio/characters/faceunits.py), measured in Blender on the character's own lips: where the
take closes the lips (an m/p/b) the character's lips close, where it opens them (a vowel) the
character's open. Two motions: the shipped bundle's take of the demo sentence, and the corpus
articulation (pseudo-truth: on it the stand-in closes on every m/p/b) of the demo and ten real
prompts. Fails when the mapping drives the wrong shapes, or the right shapes the wrong way, or
when the lip seal (core/lipseal.py, calibrated on the character in Blender, or on the lip pair
lipseal.find_lips picks) loses closures."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from backend import lipcheck
from studio.characters import faceunits

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = 10

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from backend.engine import Engine
    from backend.headfile import load_head_file
    from blender_thunder.core import lipseal, retarget
    from studio import retarget_check as rc
    from studio.characters import faceunits
    from training.corpus.face import Face, clean_motion
    from training.corpus.cli import resolve_head
    from training.peers.allphone import NEUTRAL_STYLE

    cache, out, prompts = sys.argv[1], sys.argv[2], int(sys.argv[3])
    head = load_head_file(rc.BUNDLE / "head.npz")
    face = Face.load(resolve_head(None, cache))
    character = faceunits.load(faceunits.fetch(cache))
    mapping = retarget.detect(list(character.shapes))
    stage = rc.Stage(head, character)
    cal = stage.lip_calibration(mapping)
    # as the add-on would calibrate a mesh whose lips no one marked: the pair found from its shapes
    found = lipseal.find_lips(character.verts, character.shapes["jawOpen"], character.shapes["mouthClose"])
    pair = list(found)
    found_cal = lipseal.calibrate(
        mapping, character.verts[pair], {c.target: character.shapes[c.target][pair] for c in mapping.driven}
    )
    s_lips, t_lips = np.array((int(head["lip_upper"]), int(head["lip_lower"]))), np.array(character.lips)

    def gaps(exp, jaw):
        weights = retarget.apply(mapping, retarget.solve_for_head(exp, jaw, head))
        source = lipseal.source_lips(exp, jaw, head)
        sealed = lipseal.seal(weights, source, cal)
        mm = lambda f: (1000 * faceunits.lip_gap(f, (0, 1))).tolist()
        return {
            "standin_mm": mm(stage.standin_frames(exp, jaw, s_lips)),
            "preset_mm": mm(stage.target_frames(weights, t_lips)),
            "sealed_mm": mm(stage.target_frames(sealed, t_lips)),
            "found_mm": mm(stage.target_frames(lipseal.seal(weights, source, found_cal), t_lips)),
            "untouched": sorted(k for k in weights if np.array_equal(weights[k], sealed[k])),
        }

    clips = [rc.demo_clip(), *rc.real_clips(cache, prompts)]
    take = max(Engine(rc.BUNDLE, device="cpu").animate(clips[0]["audio"], takes=4, seed=0).takes, key=lambda t: t.score)
    res = {"mapping": mapping.name, "calibrated": cal is not None, "demo_phones": clips[0]["phones"]}
    res["demo_model"] = gaps(take.exp, take.jaw)
    res["articulation"] = []
    for clip in clips:
        seconds = len(clip["audio"]) / 16000
        T = int(round(seconds * 25))
        psi, jaw = clean_motion(face, clip["phones"], seconds, NEUTRAL_STYLE, np.random.default_rng(0))
        res["articulation"].append({"phones": clip["phones"], **gaps(psi[:T], jaw[:T])})
    res["found"] = [character.verts[v].tolist() for v in found]
    res["marked"] = [character.verts[v].tolist() for v in character.lips]
    res["rest_mm"] = float(1000 * faceunits.lip_gap(character.verts[None], character.lips)[0])
    json.dump(res, open(out, "w"))
""")


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    cache = faceunits.default_cache()
    faceunits.fetch(cache)  # a clear error here when PyPI cannot be reached
    out = tmp_path_factory.mktemp("retarget") / "gaps.json"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cache), str(out), str(PROMPTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_the_character_is_recognised_as_arkit_and_calibrated(measured):
    assert measured["mapping"] == "arkit52" and measured["calibrated"]
    assert measured["rest_mm"] <= lipcheck.CLOSED_MM  # its lips are closed at rest


def test_a_closure_in_the_take_closes_the_characters_lips(measured):
    take = measured["demo_model"]
    standin, target = np.array(take["standin_mm"]), np.array(take["sealed_mm"])
    phones = measured["demo_phones"]
    spans = lipcheck.phone_spans(phones, lipcheck.BILABIAL, len(standin), slack=lipcheck.SLACK_FRAMES)
    closing = [s.start + int(np.argmin(standin[s])) for s in spans if standin[s].min() <= lipcheck.CLOSED_MM]
    assert closing, "the take itself never closes the stand-in's lips on an m/p/b: no closure to carry over"
    assert all(target[f] <= lipcheck.CLOSED_MM for f in closing), [round(float(target[f]), 1) for f in closing]


def test_an_open_vowel_opens_the_characters_lips(measured):
    take = measured["demo_model"]
    standin, target = np.array(take["standin_mm"]), np.array(take["sealed_mm"])
    spans = lipcheck.phone_spans(measured["demo_phones"], lipcheck.VOWELS, len(standin))
    frame = max((s.start + int(np.argmax(standin[s])) for s in spans), key=lambda f: standin[f])
    assert standin[frame] >= 8.0  # the take opens the mouth there
    assert target[frame] >= measured["rest_mm"] + 5.0, (float(standin[frame]), float(target[frame]))


def test_pseudo_truth_closures_carry_over_to_the_character(measured):
    """On the articulation the stand-in closes on every m/p/b; the sealed character on >= 95 %
    of them (the mapping alone: 71-84 % in reports/retarget-character.md), and its vowels stay
    open; the seal leaves the eyes and brows as the mapping keys them."""
    clips = measured["articulation"]
    phones = [c["phones"] for c in clips]
    closure = {
        k: lipcheck.summarise([np.array(c[f"{k}_mm"]) for c in clips], phones)
        for k in ("standin", "preset", "sealed", "found")
    }
    assert closure["standin"]["bilabials"] >= 15 and closure["standin"]["closure"] == 1.0, closure["standin"]
    assert closure["sealed"]["closure"] >= 0.95, closure
    assert closure["found"]["closure"] >= 0.95, closure  # calibrated on the lip pair find_lips picks
    assert closure["sealed"]["closure"] >= closure["preset"]["closure"], closure
    assert closure["sealed"]["vowel_gap_mm"] >= measured["rest_mm"] + 5.0, closure
    for c in clips:
        untouched = set(c["untouched"])
        assert {"eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "browDownLeft", "jawOpen"} <= untouched, untouched


def test_the_lips_are_found_from_what_the_shapes_do(measured):
    """lipseal.find_lips picks a pair on the mouth's midline near the one the studio marks from the
    profile (it may sit a few mm further in, where the lips also meet)."""
    found, marked = np.array(measured["found"]), np.array(measured["marked"])
    assert abs(found[:, 0]).max() < 1e-3  # on the midline
    assert np.linalg.norm(found - marked, axis=1).max() < 0.01
    assert np.linalg.norm(found[0] - found[1]) <= lipcheck.CLOSED_MM / 1000  # touching at rest
