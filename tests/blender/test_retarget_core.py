"""The retargeting core (blender_thunder/core/retarget.py), bpy-free: the control solve on the
stand-in head, presets and naming variants, mappings as files, Live Link Face CSV."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blender_thunder.core import retarget
from blender_thunder.core.contract import SHAPE_KEY_NAMES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def head(head_npz):
    z = np.load(head_npz)
    return {k: z[k] for k in z.files}


def _names(head):
    return [str(s) for s in head["semantic_names"]]


def _smooth_weights(rng, basis, frames, share=0.5):
    """Smooth non-negative curves on a random share of the basis, the mouth shift on one side."""
    W = np.zeros((frames, len(basis)))
    for k, name in enumerate(basis):
        if name == "mouth_right" or rng.random() > share:
            continue
        x = np.convolve(rng.normal(size=frames + 50), np.hanning(25), "same")[25 : 25 + frames]
        W[:, k] = np.clip(0.35 * x / x.std() + rng.uniform(-0.2, 0.4), 0.0, 1.2)
    return W


def _basis_coeffs(head):
    names = _names(head)
    basis = retarget.solve_basis(names)
    return basis, np.asarray(head["semantic_coeffs"], np.float64)[[names.index(b) for b in basis]]


def test_solve_basis_is_the_sided_halves_and_unilateral_controls(head):
    basis = retarget.solve_basis(_names(head))
    assert "smile" not in basis and {"smile_L", "smile_R", "mouth_open", "pucker", "mouth_left"} <= set(basis)
    assert len(basis) == 45  # 7 unilateral + 18 x 2 halves + mouth_left / mouth_right


def test_solve_recovers_known_weights(head):
    """psi built from known control curves comes back: exactly without regularisation, and within
    0.005 rms / 0.06 max with the defaults and the vertex metric (measured ~0.0014 / 0.03)."""
    rng = np.random.default_rng(1)
    basis, C = _basis_coeffs(head)
    W = _smooth_weights(rng, basis, 300)
    shift = 0.3 * np.sin(2 * np.pi * np.arange(300) / 300)  # the mouth shifts left, then right
    W[:, basis.index("mouth_left")], W[:, basis.index("mouth_right")] = np.maximum(shift, 0), np.maximum(-shift, 0)
    psi = W @ C
    jaw = np.zeros((300, 3))
    jaw[:, 0] = np.linspace(0.0, 0.35, 300)
    exact = retarget.solve_controls(psi, jaw, _names(head), head["semantic_coeffs"], smooth=0.0, ridge=0.0)
    got = np.stack([exact[b] for b in basis], 1)
    assert np.abs(got - W).max() < 1e-3
    np.testing.assert_allclose(exact["jaw_open"], jaw[:, 0] / retarget.JAW_OPEN_RAD, atol=1e-6)
    default = retarget.solve_for_head(psi, jaw, head)
    err = np.stack([default[b] for b in basis], 1) - W
    assert np.sqrt(np.mean(err**2)) < 0.005 and np.abs(err).max() < 0.06
    rebuilt = retarget.controls_to_psi(default, _names(head), head["semantic_coeffs"])
    mm = np.linalg.norm(np.einsum("vcp,tp->tvc", head["exp_dirs"][head["region_lips"]], rebuilt - psi), axis=-1)
    assert 1000 * np.sqrt(np.mean(mm**2)) < 0.05  # lips within 0.05 mm rms


def test_solve_respects_bounds(head):
    """Psi past the bounds (3 x a full smile, a negative pucker, a jaw past wide open) gives
    controls in [0, upper]; mouth_left and mouth_right are never both on."""
    names, C = _names(head), np.asarray(head["semantic_coeffs"], np.float64)
    T = 50
    psi = np.zeros((T, 50))
    psi[:20] = 3.0 * C[names.index("smile_L")]
    psi[20:40] = -1.0 * C[names.index("pucker")]
    psi[40:] = 0.5 * C[names.index("mouth_left")] + 0.5 * C[names.index("mouth_right")] + C[names.index("blink")]
    jaw = np.zeros((T, 3))
    jaw[:, 0] = np.linspace(-0.1, 0.8, T)
    out = retarget.solve_for_head(psi, jaw, head)
    for name, v in out.items():
        assert v.shape == (T,) and v.min() >= 0.0 and v.max() <= retarget.UPPER + 1e-6, name
    assert out["smile_L"][:20].min() > retarget.UPPER - 0.05  # pinned at the bound, not wrapped
    assert not np.any((out["mouth_left"] > 0) & (out["mouth_right"] > 0))
    assert out["jaw_open"][0] == 0.0 and out["jaw_open"][-1] == pytest.approx(retarget.UPPER)
    assert out["blink_L"][45] == pytest.approx(1.0, abs=0.05) and out["blink_R"][45] == pytest.approx(1.0, abs=0.05)
    assert "smile" not in out and "blink" not in out  # plain bilateral names come as halves only


def test_solve_is_smooth_and_fast(head):
    """Frame noise on psi: the second-difference penalty cuts the curves' chatter, more with a
    larger weight; a 60 s take (1500 frames) solves in well under the 3 s allowed here."""
    rng = np.random.default_rng(2)
    basis, C = _basis_coeffs(head)
    W = _smooth_weights(rng, basis, 1500)
    psi = W @ C + 0.05 * rng.normal(size=(1500, 50))
    jaw = np.zeros((1500, 3))

    def chatter(out):
        return float(np.mean(np.abs(np.diff(np.stack([out[b] for b in basis], 1), 2, axis=0))))

    t0 = time.perf_counter()
    smooth = retarget.solve_for_head(psi, jaw, head)
    seconds = time.perf_counter() - t0
    rough = retarget.solve_for_head(psi, jaw, head, smooth=0.0)
    smoother = retarget.solve_for_head(psi, jaw, head, smooth=2.0)
    assert chatter(smoother) < chatter(smooth) < 0.8 * chatter(rough)
    assert seconds < 3.0


def test_solve_refuses_bad_input_clearly(head):
    names, coeffs = _names(head), head["semantic_coeffs"]
    exp, jaw = np.zeros((10, 50)), np.zeros((10, 3))
    with pytest.raises(ValueError, match="no semantic controls"):
        retarget.solve_controls(exp, jaw, [], np.zeros((0, 50)))
    with pytest.raises(ValueError, match="exp must be"):
        retarget.solve_controls(np.zeros((10, 40)), jaw, names, coeffs)
    with pytest.raises(ValueError, match="jaw must be"):
        retarget.solve_controls(exp, np.zeros((9, 3)), names, coeffs)
    bad = exp.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        retarget.solve_controls(bad, jaw, names, coeffs)
    with pytest.raises(ValueError, match="lacks 'exp_dirs'"):
        retarget.solve_for_head(exp, jaw, {"semantic_names": names, "semantic_coeffs": coeffs})


def test_control_sides_are_the_characters_own_like_arkit(head):
    """`_L` is the character's left, +x in FLAME's frame (eye_L sits at x > 0), which is ARKit's
    "Left" (relative to the face): the presets map blink_L -> eyeBlinkLeft."""
    names = _names(head)
    assert head["joints"][list(head["joint_names"]).index("eye_L"), 0] > 0
    for control in ("blink_L", "smile_L", "brow_raise_L"):
        d = np.linalg.norm(head["exp_dirs"] @ head["semantic_coeffs"][names.index(control)], axis=1)
        moved = d > 0.5 * d.max()
        assert np.all(head["v_template"][moved, 0] > 0), control
    arkit = retarget.presets()["arkit52"]
    src = {c.target: c.sources for c in arkit.channels}
    assert src["eyeBlinkLeft"] == {"blink_L": 1.0} and src["mouthSmileRight"] == {"smile_R": 1.0}


def test_presets_are_complete_and_name_real_controls(head):
    p = retarget.presets()
    assert set(p) == {"arkit52", "vrm_visemes", "thunder_exp"}
    assert tuple(c.target for c in p["arkit52"].channels) == retarget.ARKIT_52
    assert len(set(retarget.ARKIT_52)) == 52
    undriven = {c.target for c in p["arkit52"].channels if not c.sources}
    assert {"eyeLookUpLeft", "tongueOut", "jawForward"} <= undriven and "jawOpen" not in undriven
    assert all(c.note for c in p["arkit52"].channels if not c.sources)  # says why it is not driven
    assert tuple(c.target for c in p["thunder_exp"].channels) == SHAPE_KEY_NAMES
    assert p["thunder_exp"].kind == "psi" and p["thunder_exp"].jaw_bone == "jaw"
    vrm = {c.target for c in p["vrm_visemes"].channels}
    assert {"aa", "ih", "ou", "ee", "oh", "blink", "blink_l", "blink_r"} <= vrm
    # every source is a curve solve_controls returns (or a plain bilateral name, read as its halves)
    out = retarget.solve_controls(np.zeros((3, 50)), np.zeros((3, 3)), _names(head), head["semantic_coeffs"])
    plain = {n[:-2] for n in out if n.endswith("_L")}
    for m in (p["arkit52"], p["vrm_visemes"]):
        for c in m.channels:
            for s in c.sources:
                assert s in out or s in plain, (m.name, c.target, s)
    rng = np.random.default_rng(4)
    curves = {k: rng.uniform(0, 1, 20) for k in out}
    arkit = retarget.apply(p["arkit52"], curves)
    assert set(arkit) == {c.target for c in p["arkit52"].driven}
    assert np.all(arkit["mouthClose"] <= arkit["jawOpen"] + 1e-6)  # lips close against the jaw, never past it
    assert set(retarget.apply(p["vrm_visemes"], curves)) == {c.target for c in p["vrm_visemes"].driven}


def test_preset_files_round_trip():
    for path in sorted(retarget.PRESET_DIR.glob("*.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        m = retarget.Mapping.from_dict(d)
        assert m.to_dict() == d, path.name  # the files are what to_dict writes: nothing lost
        assert retarget.Mapping.from_dict(m.to_dict()) == m


@pytest.mark.parametrize(
    "spell",
    [
        lambda n: n,  # eyeBlinkLeft
        lambda n: n[0].upper() + n[1:],  # EyeBlinkLeft (Live Link Face, Unreal)
        lambda n: re.sub(r"(Left|Right)$", lambda m: "_" + m.group(1)[0], n),  # eyeBlink_L
        lambda n: re.sub(r"(?<=[a-z])([A-Z])", r"_\1", n).lower(),  # eye_blink_left
        lambda n: "ARKit_" + n,
        lambda n: "blendShape1." + n,  # FBX/glTF imports
        lambda n: "BS_" + n,
    ],
)
def test_detect_arkit_variants(spell):
    names = ["Basis"] + [spell(n) for n in retarget.ARKIT_52]
    m = retarget.detect(names, bone_names=("root", "jaw"))
    assert m is not None and m.name == "arkit52" and m.kind == "shape_keys"
    by_src = {json.dumps(c.sources, sort_keys=True): c.target for c in m.channels}
    assert by_src[json.dumps({"blink_L": 1.0})] == spell("eyeBlinkLeft")  # bound to the target's own names
    assert len(m.driven) == 40 and {c.target for c in m.channels} <= set(names)
    assert m.jaw_bone is None  # jawOpen already opens the jaw: a bone too would open it twice


def test_detect_partial_arkit_drops_absent_targets():
    names = ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "mouthFunnel"]
    names += ["mouthPucker", "mouthClose", "browInnerUp", "Cube_key"]
    m = retarget.detect(names)
    assert m.name == "arkit52" and sorted(c.target for c in m.channels) == sorted(names[:-1])


def test_detect_vrm_vrchat_and_exp_keys():
    vrm = retarget.detect(["Basis", "aa", "ih", "ou", "ee", "oh", "blink", "blink_l", "blink_r"])
    assert vrm.name == "vrm_visemes" and len(vrm.channels) == 8
    vrm0 = retarget.detect(["A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R"])
    assert vrm0.name == "vrm_visemes" and {c.target for c in vrm0.driven} >= {"A", "O", "Blink_L"}
    visemes = ("sil", "pp", "ff", "th", "dd", "kk", "ch", "ss", "nn", "rr", "aa", "e", "ih", "oh", "ou")
    vrc = retarget.detect([f"vrc.v_{v}" for v in visemes])
    assert vrc.name == "vrm_visemes"
    assert {c.target for c in vrc.driven} == {f"vrc.v_{v}" for v in ("aa", "ih", "ou", "e", "oh", "pp", "ff")}
    own = retarget.detect(["Basis", *SHAPE_KEY_NAMES], bone_names=("root", "neck", "jaw", "eye_L", "eye_R"))
    assert own.name == "thunder_exp" and own.kind == "psi" and own.jaw_bone == "jaw" and len(own.channels) == 50


def test_bind_a_saved_mapping_to_another_characters_names():
    """A mapping saved on one character (ARKit spelling) binds to another's (CC-style `_L`
    suffixes, a `Jaw` bone): gains and limits kept, absent targets reported."""
    m = retarget.presets()["arkit52"]
    m.jaw_bone = "jaw"
    m.channels[17].gain = 0.7  # jawOpen
    names = ["Basis", "jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthClose", "mouthSmile_L"]
    bound, dropped = retarget.bind(m, names, bone_names=("root", "Jaw"))
    assert bound.name == "arkit52" and bound.jaw_bone == "Jaw"
    by_target = {c.target: c for c in bound.channels}
    assert set(by_target) == set(names[1:]) and by_target["jawOpen"].gain == 0.7
    assert by_target["mouthClose"].limit == {"jaw_open": 1.0} and by_target["eyeBlink_L"].sources == {"blink_L": 1.0}
    assert len(dropped) == 52 - 5 and "mouthSmileRight" in dropped and "eyeBlinkLeft" not in dropped
    assert retarget.bind(m, names, bone_names=("root",))[0].jaw_bone is None


def test_detect_gives_none_for_unrelated_names():
    assert retarget.detect([]) is None
    assert retarget.detect(["Basis", "Key 1", "Key 2", "smile", "fat", "thin", "Left", "L"]) is None
    assert retarget.detect(["jawOpen", "eyeBlinkLeft"]) is None  # too few to call it an ARKit rig


def test_normalize_name_variants():
    key = retarget.normalize_name("eyeBlinkLeft")
    for v in ("eyeBlink_L", "EyeBlinkLeft", "eye_blink_left", "eyeBlink.L", "ARKit_eyeBlinkLeft", "eyeBlinkL"):
        assert retarget.normalize_name(v) == key, v
    assert retarget.normalize_name("eyeBlinkRight") != key
    assert retarget.normalize_name("mouthRollLower") == "mouthrolllower"  # no side taken from "Lower"


def test_apply_clips_and_reads_plain_names():
    ctl = {"smile_L": np.array([-0.5, 0.3, 2.0]), "smile_R": np.array([0.1, 0.1, 0.1]), "jaw_open": np.zeros(3)}
    m = retarget.Mapping(
        "t",
        "shape_keys",
        [
            retarget.Channel("SmileL", {"smile_L": 1.0}),
            retarget.Channel("Smile", {"smile": 1.0}, gain=2.0),  # plain name: the halves' mean
            retarget.Channel("Unused", {}, note="not driven"),
        ],
    )
    w = retarget.apply(m, ctl)
    assert set(w) == {"SmileL", "Smile"}  # no sources: nothing keyed
    np.testing.assert_allclose(w["SmileL"], [0.0, 0.3, 1.0])
    np.testing.assert_allclose(w["Smile"], [0.0, 0.4, 1.0], atol=1e-6)
    close = retarget.Channel("Close", {"smile_L": 1.0}, limit={"jaw_open": 1.0, "smile_R": 1.0})
    limited = retarget.apply(retarget.Mapping("t", "shape_keys", [close]), ctl)["Close"]
    np.testing.assert_allclose(limited, [0.0, 0.1, 0.1], atol=1e-6)
    with pytest.raises(ValueError, match="reads 'pucker'"):
        retarget.apply(retarget.Mapping("t", "shape_keys", [retarget.Channel("P", {"pucker": 1.0})]), ctl)
    psi = retarget.psi_controls(np.full((4, 50), -2.5))
    own = retarget.apply(retarget.presets()["thunder_exp"], psi)
    assert set(own) == set(SHAPE_KEY_NAMES) and float(own["exp007"][0]) == -2.5  # psi is not clipped


def test_mapping_save_load_and_bad_files(tmp_path):
    m = retarget.presets()["arkit52"]
    m.channels[0].sources["squint_L"] = 0.25
    m.channels[0].gain = 0.8
    m.jaw_bone = "Jaw"
    path = m.save(tmp_path / "mine.json")
    assert retarget.Mapping.load(path) == m
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json"):
        retarget.Mapping.load(tmp_path / "broken.json")
    d = m.to_dict()
    d["channels"][1]["gain"] = "loud"
    with pytest.raises(ValueError, match="gain"):
        retarget.Mapping.from_dict(d)
    d = m.to_dict()
    d["kind"] = "bones"
    with pytest.raises(ValueError, match="kind"):
        retarget.Mapping.from_dict(d)
    d = m.to_dict()
    d["channels"].append(dict(d["channels"][0]))
    with pytest.raises(ValueError, match="listed twice"):
        retarget.Mapping.from_dict(d)
    nan = retarget.Mapping("x", "shape_keys", [retarget.Channel("a", {"smile_L": float("nan")})])
    with pytest.raises(ValueError):
        nan.save(tmp_path / "n.json")
    assert not (tmp_path / "n.json").exists()


def test_live_link_face_csv_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    T = 80  # 3.2 s at 25 fps
    weights = {n: rng.uniform(0, 1, T) for n in (*retarget.ARKIT_52[::3], "jawOpen")}
    weights["eyeBlink_L"] = weights.pop("eyeBlinkLeft")  # any spelling detect() knows
    path = retarget.write_live_link_csv(tmp_path / "take.csv", weights, fps=25)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert len(header) == 63 and header[:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"]
    assert header[-9:] == list(retarget.LLF_ROTATIONS) and header[18:20] == ["JawLeft", "JawOpen"]
    assert len(rows) == T + 1 and all(len(r) == 63 and r[1] == "61" for r in rows[1:])
    assert rows[1][0] == "00:00:00:00.000" and rows[26][0] == "00:00:01:00.000" and rows[80][0] == "00:00:03:04.000"
    fps, back = retarget.read_live_link_csv(path)
    assert fps == 25.0 and set(back) == set(retarget.ARKIT_52)
    np.testing.assert_allclose(back["eyeBlinkLeft"], weights["eyeBlink_L"], atol=1e-6)
    np.testing.assert_allclose(back["jawOpen"], weights["jawOpen"], atol=1e-6)
    assert not back["eyeLookUpRight"].any()  # not given: written as 0


def test_live_link_face_csv_reads_the_apps_files_and_refuses_others(tmp_path):
    """A file as the app writes it (60 fps, sub-frame fractions, a short take with its rate
    given) reads back; a CSV that is not Live Link Face's is refused clearly."""
    header = ",".join(retarget.LLF_HEADER)
    lines = [header] + [f"14:03:52:{f:02d}.207,61," + ",".join(["0.5"] * 61) for f in range(0, 60, 2)]
    lines += [f"14:03:53:{f:02d}.207,61," + ",".join(["0.25"] * 61) for f in range(0, 60, 2)]
    (tmp_path / "app.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fps, back = retarget.read_live_link_csv(tmp_path / "app.csv")
    assert fps == 60.0  # the smallest standard rate above the largest frame number seen
    assert len(back["mouthClose"]) == 60 and back["mouthClose"][-1] == 0.25
    fps, _ = retarget.read_live_link_csv(tmp_path / "app.csv", fps=60)
    assert fps == 60
    (tmp_path / "other.csv").write_text("time,a,b\n0,1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a Live Link Face CSV"):
        retarget.read_live_link_csv(tmp_path / "other.csv")
    with pytest.raises(ValueError, match="not an ARKit blendshape"):
        retarget.write_live_link_csv(tmp_path / "x.csv", {"smile_L": np.zeros(3)})


def test_retarget_imports_without_bpy():
    code = (
        "import sys\n"
        "for n in ('bpy', 'mathutils', 'bmesh', 'addon_utils', 'bpy_extras'): sys.modules[n] = None\n"
        "from blender_thunder.core import retarget\n"
        "assert len(retarget.presets()) == 3\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bpy', 'mathutils', 'scipy') and sys.modules[m]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
