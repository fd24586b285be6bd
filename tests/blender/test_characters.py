"""Any character (issue #17) in the installed add-on against a real backend: Generate onto an
ARKit-named mesh keys only owned Actions on its Key (and its jaw bone, in the bone's mode),
equal to the backend's takes retargeted and lip-sealed outside Blender (core/lipseal.py, the
calibration computed here from the test character's geometry); a real take's m/p/b closes the
character's own lips where the mapping alone leaves them apart; the artist's Actions and values
stay; Resample / Listen / Remove; the mapping's preset file round trip; batch with --target and
--mapping; glTF and Live Link Face CSV exports read back."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from backend import lipcheck
from blender_thunder.core import lipseal, retarget
from tests.serve import thunder_serve

from .conftest import ROOT, batch
from .scenarios import arkit_face
from .test_e2e import animate
from .test_keying import quats, resampled

pytestmark = pytest.mark.blender
FPS = ["24", "30"]
EXTRA = ("myCustomShape",)  # the scenarios' make_face: a shape of the studio's own
SHIPPED_BUNDLE = ROOT / "backend" / "models" / "thunder-base"
BILABIALS = "Bob may bump the map, maybe by May."


def head_file(head_npz) -> dict:
    with np.load(head_npz) as z:
        return {k: z[k] for k in z.files}


def character_lips(mapping: retarget.Mapping, style: str) -> tuple[list, lipseal.LipCalibration]:
    """What the add-on should measure on the scenarios' test character, computed here from the
    same geometry (arkit_face.py): its lip pair and lip calibration."""
    verts, _, shapes = arkit_face.geometry(retarget.ARKIT_52, style, EXTRA)
    off = arkit_face.offsets(verts, shapes)
    opener, closer = lipseal.seal_channels(mapping)
    pair = list(lipseal.find_lips(verts, off[opener], off[closer]))
    return pair, lipseal.calibrate(mapping, verts[pair], {c.target: off[c.target][pair] for c in mapping.driven})


def lip_gap_mm(weights: dict, style: str, pair: list) -> np.ndarray:
    """The test character's lip gap (mm) under these shape-key weights (shape keys add)."""
    verts, _, shapes = arkit_face.geometry(retarget.ARKIT_52, style, EXTRA)
    off = arkit_face.offsets(verts, shapes)
    lips = verts[pair].astype(np.float64)[None] + sum(
        np.asarray(w, np.float64)[:, None, None] * off[k][pair][None] for k, w in weights.items()
    )
    return 1000.0 * np.linalg.norm(lips[:, 0] - lips[:, 1], axis=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("characters")
    return {"glb": str(d / "take.glb"), "csv": str(d / "take.csv"), "blend": str(d / "face.blend")}


@pytest.fixture(scope="module")
def generated(installed, backend, wavs, files):
    from .conftest import run_bpy_in

    return run_bpy_in(
        installed,
        "characters",
        "generate_many",
        timeout=400,
        fps_list=FPS,
        url=backend["url"],
        wav=wavs["speech"],
        glb=files["glb"],
        csv=files["csv"],
        save_as=files["blend"],
    )


@pytest.mark.parametrize("fps", FPS)
def test_generate_onto_arkit_character(generated, backend, wavs, head_npz, fps):
    out = generated[fps]
    assert out["state"] == "done", out["message"]
    assert out["detected"]["name"] == "arkit52" and out["detected"]["rows"] == 52
    assert out["detected"]["jaw_bone"] == ""  # jawOpen is a shape: detect binds no bone that would open it twice
    takes = out["takes"]
    assert [t["seed"] for t in takes] == [11, 12] and all(t["owned"] for t in takes)
    assert all(t["slots"] == ["KEY", "OBJECT"] for t in takes)
    # The backend's own takes for the same audio and options, retargeted here with the same core.
    start, end = 0.0, (out["strip_frames"][1] - out["strip_frames"][0]) / out["fps"]
    ref = animate(
        backend,
        wavs["speech"],
        takes=2,
        seed=11,
        preset="draft",
        guidance=1.0,
        rank="false",
        encoding="json",
        start=round(start, 6),
        end=round(end, 6),
    )
    head = head_file(head_npz)
    mapping = retarget.Mapping.from_dict(json.loads(takes[0]["mapping_json"]))
    pair, cal = character_lips(mapping, "suffix")
    kept = json.loads(out["lip_calibration"])  # measured once at Generate, kept on the mesh
    assert kept["lips"] == pair
    measured = lipseal.LipCalibration.from_dict(kept["calibration"])
    assert (measured.opener, measured.closer) == (cal.opener, cal.closer) == ("jawOpen", "mouthClose")
    assert measured.moves_mm.keys() == cal.moves_mm.keys()
    for name, move in cal.moves_mm.items():
        np.testing.assert_allclose(measured.moves_mm[name], move, atol=1e-6, err_msg=name)
    for take, want in zip(takes, ref["takes"]):
        exp25, jaw25 = np.array(want["exp"]), np.array(want["jaw"])
        np.testing.assert_allclose(np.array(take["exp25"]), exp25, atol=1e-5)  # Listen's arrays, kept in the take
        mapping = retarget.Mapping.from_dict(json.loads(take["mapping_json"]))
        assert mapping.jaw_bone == "jaw" and len(take["channels"]) == len(mapping.driven)
        plain = retarget.apply(mapping, retarget.solve_for_head(exp25, jaw25, head))
        weights = lipseal.seal(plain, lipseal.source_lips(exp25, jaw25, head), cal)
        assert take["lip_seal"]
        # the seal is there to see on the checked lip shapes (so keying the mapping alone fails)
        assert max(np.abs(weights[k] - plain[k]).max() for k in ("mouthClose", "mouthPress_L")) > 0.01
        n = len(resampled(exp25, out["fps"]))
        for name in out["check_names"]:
            got = np.array(take["keys"][name])
            np.testing.assert_array_equal(got[:, 0], 5 + np.arange(n))  # from the strip's start
            np.testing.assert_allclose(got[:, 1], resampled(weights[name][:, None], out["fps"])[:, 0], atol=2e-4)
        assert max(np.max(np.array(take["keys"][n])[:, 1]) for n in out["check_names"]) > 0.01  # not a flat take
        # Only the mapping's shape keys and the jaw bone (XYZ Euler, the bone's own mode) are keyed.
        key_paths = {f'key_blocks["{c}"].value' for c in take["channels"]}
        assert set(take["paths"]) == key_paths | {'pose.bones["jaw"].rotation_euler'}
        want_q = quats(resampled(jaw25, out["fps"]), np.array(out["to_bone"]))
        got_q = np.array(take["jaw_quats"])
        np.testing.assert_allclose(np.abs(np.sum(got_q * want_q, axis=1)), 1.0, atol=1e-5)
    assert out["jaw_mode"] == "XYZ"


@pytest.mark.parametrize("fps", FPS)
def test_artists_actions_and_values_untouched(generated, fps):
    out = generated[fps]
    before, after = out["artist_before"], out["artist_after"]
    assert after["active"] == before["active"] == out["key_active"] == "Artist custom"
    assert after["curves"] == before["curves"]  # both of the artist's Actions, key for key
    assert after["sliders"] == before["sliders"]  # 0..1 weights: no slider widened
    assert out["foreign_actions"] == []  # every other Action is THUNDER's own (takes, rest)
    assert out["overriding"] == []  # the artist's Action animates its own shape, not the takes'
    assert out["key_tracks"] == ["THUNDER rest face", "THUNDER line"] and out["arm_tracks"] == ["THUNDER line"]
    ev = out["evaluated"]
    before_take, inside, after_take = (ev[k] for k in sorted(ev, key=int))
    # Outside the take: the artist's values (browInnerUp 0.3, the rest 0; their own Action plays).
    for frame in (before_take, after_take):
        assert frame["browInnerUp"] == pytest.approx(0.3, abs=1e-6)
        assert max(abs(v) for k, v in frame.items() if k not in ("browInnerUp", "myCustomShape")) < 1e-6
    assert after_take["myCustomShape"] == pytest.approx(0.8, abs=1e-6)  # their Action, past its last key
    assert any(abs(v) > 1e-3 for k, v in inside.items() if k not in ("browInnerUp", "myCustomShape"))


def test_exports_read_back(generated, files):
    out = generated[FPS[0]]
    assert out["gltf"] == ["FINISHED"] and out["csv"] == ["FINISHED"]
    assert out["after_export"]  # frame range, current frame and selection as they were
    assert out["shown_after_export"] == out["shown"]
    ref = {k: np.array(v) for k, v in out["csv_reference"].items()}
    n_frames = len(next(iter(ref.values())))

    # glTF: the binary container's JSON chunk and its buffer, read with struct and numpy.
    blob = open(files["glb"], "rb").read()
    magic, version, _ = struct.unpack_from("<4sII", blob, 0)
    assert magic == b"glTF" and version == 2
    json_len, json_type = struct.unpack_from("<II", blob, 12)
    gltf = json.loads(blob[20 : 20 + json_len])
    bin_len, _ = struct.unpack_from("<II", blob, 20 + json_len)
    buffer = blob[28 + json_len : 28 + json_len + bin_len]

    def accessor(i):
        acc = gltf["accessors"][i]
        view = gltf["bufferViews"][acc["bufferView"]]
        assert acc["componentType"] == 5126  # FLOAT
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc["type"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        return np.frombuffer(buffer, "<f4", acc["count"] * width, start).reshape(acc["count"], width)

    mesh = next(m for m in gltf["meshes"] if m["primitives"][0].get("targets"))
    n_targets = len(mesh["primitives"][0]["targets"])
    assert n_targets == out["morph_count"]
    channels = [(a, c) for a in gltf["animations"] for c in a["channels"] if c["target"]["path"] == "weights"]
    assert len(channels) == 1
    anim, ch = channels[0]
    sampler = anim["samplers"][ch["sampler"]]
    times, values = accessor(sampler["input"])[:, 0], accessor(sampler["output"])[:, 0]
    assert len(times) == n_frames and len(values) == n_frames * n_targets
    np.testing.assert_allclose(np.diff(times), 1.0 / float(FPS[0]), atol=1e-5)
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.max() > 0.01
    # The morph targets in glTF are the shape keys in order: the jawOpen column is the take's jawOpen.
    names = mesh["extras"]["targetNames"]
    assert len(names) == n_targets
    got = values.reshape(n_frames, n_targets)[:, names.index("jawOpen")]
    inner = slice(3, n_frames - 3)  # clear of the 0.1 s blends at the take's ends
    np.testing.assert_allclose(got[inner], ref["jawOpen"][inner], atol=1e-4)
    assert got[inner].max() > 0.01

    # Live Link Face CSV: 52 ARKit columns, the take's weights row by row.
    fps, csv = retarget.read_live_link_csv(files["csv"], fps=float(FPS[0]))
    assert fps == float(FPS[0]) and len(csv) == 52
    apple = {retarget.normalize_name(a): a for a in retarget.ARKIT_52}
    for name, want in ref.items():
        np.testing.assert_allclose(csv[apple[retarget.normalize_name(name)]], want, atol=1e-5)


@pytest.fixture(scope="module")
def shipped_backend(installed, tmp_path_factory):
    """`thunder serve` with the shipped bundle: real takes, whose m/p/b close the stand-in's lips."""
    log = tmp_path_factory.mktemp("shipped") / "backend.log"
    with thunder_serve("--bundle", SHIPPED_BUNDLE, "--log-level", "warning", env=installed, log=log, cwd=ROOT) as url:
        yield url


@pytest.fixture(scope="module")
def bilabial_speech(tmp_path_factory) -> str:
    """A sentence full of m/p/b, spoken by espeak-ng (from a fresh library state: the same audio each run)."""
    import soundfile as sf

    from training.corpus import espeak

    espeak.reset()
    syn = espeak.synthesize(BILABIALS, "en-us", rate=150)
    path = tmp_path_factory.mktemp("speech") / "bilabials.wav"
    sf.write(str(path), syn.audio, syn.sample_rate)
    return str(path)


def test_generate_closes_the_characters_own_lips(run_bpy, shipped_backend, bilabial_speech):
    """Real takes of bilabial speech generated onto the test character, whose mouthPress and
    mouthSmile lift its lower lip past the upper one: on every frame where the take closes the
    stand-in's lips (<= lipcheck.CLOSED_MM) and the mapping alone would leave the character's
    apart, the character's own lips (the pair lipseal.find_lips picks, on the mesh Blender
    evaluates) are closed; >= 95 % of all the stand-in's closed frames are; the widest opening
    stays open; what Blender shows is the core's sealed weights."""
    head = head_file(SHIPPED_BUNDLE / "head.npz")
    _, _, shapes = arkit_face.geometry(retarget.ARKIT_52, "apple", EXTRA)
    mapping = retarget.detect(list(shapes))  # as picking the mesh as the target detects it
    pair, cal = character_lips(mapping, "apple")
    out = run_bpy("characters", "seal_closure", timeout=400, url=shipped_backend, wav=bilabial_speech, pair=pair)
    assert out["state"] == "done", out["message"]
    assert json.loads(out["lip_calibration"])["lips"] == pair
    rest_mm = float(lip_gap_mm({}, "apple", pair)[0])
    rescued, closed_ok, closed_all = 0, 0, 0
    for take in out["takes"]:
        assert take["lip_seal"]
        exp, jaw = np.array(take["exp25"]), np.array(take["jaw25"])
        shown = np.array(take["gap_mm"])
        assert len(shown) == len(exp)  # 25 fps: one frame per sample
        standin = 1000.0 * np.linalg.norm(np.diff(lipseal._head_lips(exp, jaw, head), axis=1)[:, 0], axis=1)
        plain = retarget.apply(mapping, retarget.solve_for_head(exp, jaw, head))
        sealed = lipseal.seal(plain, lipseal.source_lips(exp, jaw, head), cal)
        inner = np.zeros(len(exp), bool)
        inner[3:-3] = True  # clear of the 0.1 s blends at the take's ends
        np.testing.assert_allclose(shown[inner], lip_gap_mm(sealed, "apple", pair)[inner], atol=0.01)
        closed = inner & (standin <= lipcheck.CLOSED_MM)
        apart = closed & (lip_gap_mm(plain, "apple", pair) > lipcheck.CLOSED_MM)
        assert np.all(shown[apart] <= lipcheck.CLOSED_MM), (take["seed"], np.round(shown[apart], 2).tolist())
        rescued += int(apart.sum())
        closed_ok += int((shown[closed] <= lipcheck.CLOSED_MM).sum())
        closed_all += int(closed.sum())
        widest = int(np.argmax(np.where(inner, standin, -np.inf)))
        assert standin[widest] >= 8.0 and shown[widest] >= rest_mm + 5.0, (standin[widest], shown[widest])
    assert rescued >= 3, "no closure the mapping alone leaves open: nothing here tests the seal"
    assert closed_ok >= 0.95 * closed_all, (closed_ok, closed_all)


def test_lip_calibration_is_kept_on_the_mesh_and_measured_again(run_bpy, backend, wavs):
    out = run_bpy("characters", "lip_measures", timeout=400, url=backend["url"], wav=wavs["speech"])
    first, sculpted, flat = out["first"], out["sculpted"], out["no_closer"]
    assert first["state"] == sculpted["state"] == flat["state"] == "done", out
    mapping = retarget.detect(list(arkit_face.geometry(retarget.ARKIT_52, "apple", EXTRA)[2]))
    pair, cal = character_lips(mapping, "apple")
    kept = json.loads(first["kept"])
    assert kept["lips"] == pair and first["lip_seal"] and "not sealed" not in first["message"]
    # measured from the shapes' data: the artist's slider (0.7) neither counts nor changes
    np.testing.assert_allclose(kept["calibration"]["moves_mm"]["mouthSmileLeft"], cal.moves_mm["mouthSmileLeft"])
    assert first["smile_slider"] == sculpted["smile_slider"] == pytest.approx(0.7)
    again = json.loads(sculpted["kept"])
    assert again["hash"] != kept["hash"] and sculpted["lip_seal"]
    np.testing.assert_allclose(
        again["calibration"]["moves_mm"]["mouthPressLeft"], 2.0 * np.asarray(cal.moves_mm["mouthPressLeft"]), atol=1e-4
    )
    assert not flat["lip_seal"] and "Face's lips not sealed" in flat["message"], flat["message"]


def test_resample_listen_remove_on_a_character(run_bpy, backend, wavs, tiny_bundle):
    has_m2s = "m2s" in json.loads((tiny_bundle / "manifest.json").read_text())["graphs"]
    out = run_bpy("characters", "take_ops", timeout=400, url=backend["url"], wav=wavs["speech"], listen=has_m2s)
    assert out["generate"][0] == "done", out["generate"]
    assert out["before"] == [["line s40", 40], ["line s41", 41]]
    r = out["resample"]
    assert r["state"] == "done", r["message"]
    assert r["old_gone"] and r["new_owned"] and r["new_target"] == "Face" and r["new_has_jawOpen"]
    assert r["takes"][0] == ["line s40", 40] and r["takes"][1][1] != 41
    if has_m2s:
        assert out["listen"]["state"] == "done", out["listen"]["message"]
        assert len(out["listen"]["added"]) == 1
    m = out["remap"]
    assert m["state"] == "done", m["message"]
    assert m["same_row"] and m["owned"] and m["shown"] and not m["blink_keyed"]
    before, after = np.array(m["jaw_before"]), np.array(m["jaw_after"])
    np.testing.assert_array_equal(after[:, 0], before[:, 0])
    open_ = before[:, 1] < 0.999  # unclipped: half the gain, half the weight
    assert open_.any() and before[:, 1].max() > 0.01
    np.testing.assert_allclose(after[open_, 1], 0.5 * before[open_, 1], atol=1e-5)
    assert len(m["actions"]) == 2  # the re-mapped take replaced the old one: no twin
    assert out["remove"]["gone"] and len(out["remove"]["left"]) == 1
    # The take that is left plays now (the list's selection moved to it), over the rest track.
    assert out["remove"]["key_tracks"] == ["THUNDER rest face", "THUNDER line"]
    assert out["remove"]["shown"] == out["remove"]["left"][0]


def test_mapping_preset_file_round_trip(run_bpy, tmp_path):
    path = tmp_path / "hero.json"
    out = run_bpy("characters", "mapping_round_trip", path=str(path))
    assert out["name"] == "arkit52" and len(out["detected"]) == 52
    assert out["save"] == ["FINISHED"] and out["load"] == ["FINISHED"]
    saved = retarget.Mapping.load(path)  # what an artist shares: the plain JSON the core reads
    assert [c.target for c in saved.channels] == [r[0] for r in out["a_rows"]]
    smile = next(c for c in saved.channels if c.target == "mouthSmile_L")
    assert smile.gain == pytest.approx(0.7) and smile.sources == {"smile_L": 0.8, "smile_R": 0.2}
    close = next(c for c in saved.channels if c.target == "mouthClose")
    assert close.limit == {"jaw_open": 1.0} and close.sources  # the preset's cap survives the list
    # On B (EyeBlinkLeft spelling) every row binds to B's own name, edits kept.
    assert out["auto_b"] == 52
    b = {t: rest for t, *rest in out["b_rows"]}
    assert len(b) == 52 and "MouthSmileLeft" in b and "mouthSmile_L" not in b
    assert b["MouthSmileLeft"] == ["smile_L 0.8, smile_R 0.2", pytest.approx(0.7), ""]
    assert b["MouthClose"][2] == "jaw_open"
    a = {retarget.normalize_name(t): rest for t, *rest in out["a_rows"]}
    assert all(a[retarget.normalize_name(t)] == rest for t, rest in b.items())
    assert (
        "mapping row" in out["bad_row"]
        and "(MouthSmileLeft)" in out["bad_row"]
        and "'lots' is not a number" in out["bad_row"]
    )
    assert "none of the shape keys" in out["vrm"] and out["arkit"] == ["FINISHED"] and out["arkit_rows"] == 52


def test_batch_with_target_and_mapping(run_bpy, installed, backend, wavs, tmp_path):
    a, b = tmp_path / "a.blend", tmp_path / "b.blend"
    for path in (a, b):
        run_bpy("characters", "make_character_blend", path=str(path), wav=wavs["other"])
    custom = retarget.Mapping(
        "hero_lips", "shape_keys", [retarget.Channel("jawOpen", {"jaw_open": 1.0}), retarget.Channel("mouthClose", {})]
    )
    custom.save(tmp_path / "lips.json")  # a studio's own file: two rows, one of them not driven

    bad = batch(installed, backend, a, "--target", "Hero", "--mapping", tmp_path / "nope.json")
    assert bad.returncode != 0 and "not a preset" in bad.stderr, bad.stdout + bad.stderr

    first = batch(installed, backend, a, "--target", "Hero", "--mapping", "arkit52", "--takes", 1, "--preset", "draft")
    assert first.returncode == 0 and "1 keyed" in first.stdout, first.stdout + first.stderr
    second = batch(
        installed,
        backend,
        b,
        "--target",
        "Hero",
        "--mapping",
        tmp_path / "lips.json",
        "--takes",
        1,
        "--preset",
        "draft",
    )
    assert second.returncode == 0 and "1 keyed" in second.stdout, second.stdout + second.stderr
    missing = batch(installed, backend, b, "--target", "Villain", "--force", "--takes", 1, "--preset", "draft")
    assert missing.returncode == 1 and "no object 'Villain'" in missing.stdout, missing.stdout

    got_a = run_bpy("characters", "inspect_character", path=str(a))
    (take_a,) = got_a["takes"].values()
    assert take_a["rig"] == "Hero" and take_a["mapping"] == "arkit52" and take_a["fps"] == 30.0
    assert take_a["channels"] == take_a["paths"] > 30  # the driven ARKit shapes, no jaw bone
    assert got_a["stored"] == ["arkit52", 52]
    assert take_a["lip_seal"] and json.loads(got_a["lip_calibration"])["calibration"]["closer"] == "MouthClose"
    got_b = run_bpy("characters", "inspect_character", path=str(b))
    (take_b,) = got_b["takes"].values()
    assert take_b["mapping"] == "hero_lips" and take_b["channels"] == take_b["paths"] == 1  # mouthClose: no sources
    assert got_b["stored"] == ["hero_lips", 2]
    assert not take_b["lip_seal"]  # mouthClose not limited by jaw_open: no closer to seal with


def test_reopen_saved_file(run_bpy, generated, files):
    out = run_bpy("characters", "reopen", path=files["blend"])
    assert out["target"] == "Face" and out["rows"] == 52 and out["jaw_bone"] == "jaw"
    assert out["takes"] == [["line s11", True, "Face"], ["line s12", True, "Face"]]
    assert out["shown"] == out["picked"]


def test_panel_draws_the_mapping(run_bpy):
    out = run_bpy("characters", "panel_draw")
    panel = [tuple(x) for x in out["panel"]]
    for item in [
        ("prop", "rig"),
        ("operator", "thunder.mapping_detect"),
        ("prop", "preset"),
        ("operator", "thunder.mapping_preset"),
        ("template_list", "channels"),
        ("operator", "thunder.mapping_add"),
        ("operator", "thunder.mapping_remove"),
        ("prop", "sources"),
        ("prop", "limit"),
        ("prop", "jaw_armature"),
        ("prop_search", "jaw_bone"),
        ("operator", "thunder.mapping_load"),
        ("operator", "thunder.mapping_save"),
        ("operator", "thunder.remap_take"),
        ("operator", "thunder.export_gltf"),
        ("operator", "thunder.export_live_link"),
    ]:
        assert item in panel, item
    assert not [x for x in panel if x[0] == "label" and "no shape key" in x[1]]
    assert [tuple(x) for x in out["row"]] == [("prop_search", "target"), ("prop", "sources"), ("prop", "gain")]
    errors = [x[1] for x in out["broken"] if x[0] == "label" and "no shape key" in x[1]]
    assert errors and "'noSuchShape'" in errors[0]
