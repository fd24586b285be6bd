"""A real take retargeted onto a character the project did not make (the MakeHuman Face Units
head, studio/characters/faceunits.py), measured in Blender on the character's own lips: where
the take closes the lips (an m/p/b) the character's lips close, where it opens them (a vowel)
the character's open. Fails when the mapping drives the wrong shapes, or the right shapes the
wrong way."""

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

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from backend.engine import Engine
    from backend.headfile import load_head_file
    from blender_thunder.core import retarget
    from studio import retarget_check as rc
    from studio.characters import faceunits

    cache, out = sys.argv[1], sys.argv[2]
    head = load_head_file(rc.BUNDLE / "head.npz")
    character = faceunits.load(faceunits.fetch(cache))
    mapping = retarget.detect(list(character.shapes))
    clip = rc.demo_clip()
    take = max(Engine(rc.BUNDLE, device="cpu").animate(clip["audio"], takes=4, seed=0).takes, key=lambda t: t.score)
    names = [str(s) for s in head["semantic_names"]]
    controls = retarget.solve_controls(take.exp, take.jaw, names, np.asarray(head["semantic_coeffs"], np.float64))
    weights = retarget.apply(mapping, controls)
    stage = rc.Stage(head, character)
    s_lips = (int(head["lip_upper"]), int(head["lip_lower"]))
    s = stage.standin_frames(take.exp, take.jaw, np.array(s_lips))
    t = stage.target_frames(weights, np.array(character.lips))
    json.dump({
        "mapping": mapping.name,
        "phones": clip["phones"],
        "standin_mm": (1000 * faceunits.lip_gap(s, (0, 1))).tolist(),
        "target_mm": (1000 * faceunits.lip_gap(t, (0, 1))).tolist(),
        "rest_mm": float(1000 * faceunits.lip_gap(character.verts[None], character.lips)[0]),
    }, open(out, "w"))
""")


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    cache = faceunits.default_cache()
    faceunits.fetch(cache)  # a clear error here when PyPI cannot be reached
    out = tmp_path_factory.mktemp("retarget") / "gaps.json"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cache), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_the_character_is_recognised_as_arkit(measured):
    assert measured["mapping"] == "arkit52"
    assert measured["rest_mm"] <= lipcheck.CLOSED_MM  # its lips are closed at rest


def test_a_closure_in_the_take_closes_the_characters_lips(measured):
    standin, target = np.array(measured["standin_mm"]), np.array(measured["target_mm"])
    spans = lipcheck.phone_spans(measured["phones"], lipcheck.BILABIAL, len(standin), slack=lipcheck.SLACK_FRAMES)
    closing = [s.start + int(np.argmin(standin[s])) for s in spans if standin[s].min() <= lipcheck.CLOSED_MM]
    assert closing, "the take itself never closes the stand-in's lips on an m/p/b: no closure to carry over"
    assert all(target[f] <= lipcheck.CLOSED_MM for f in closing), [round(float(target[f]), 1) for f in closing]


def test_an_open_vowel_opens_the_characters_lips(measured):
    standin, target = np.array(measured["standin_mm"]), np.array(measured["target_mm"])
    spans = lipcheck.phone_spans(measured["phones"], lipcheck.VOWELS, len(standin))
    frame = max((s.start + int(np.argmax(standin[s])) for s in spans), key=lambda f: standin[f])
    assert standin[frame] >= 8.0  # the take opens the mouth there
    assert target[frame] >= measured["rest_mm"] + 5.0, (float(standin[frame]), float(target[frame]))
