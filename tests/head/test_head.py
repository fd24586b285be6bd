"""The stand-in head: smplx compatibility, jaw, expressions, regions, determinism."""

import pickle
from collections import Counter

import numpy as np
import pytest
import smplx
import torch

from training.head import load_head
from training.head.build import write_head_folder
from training.head.flame import HeadModel


def _params(n, exp=None, jaw=None):
    x = torch.zeros(n, 53)
    if exp is not None:
        x[:, :50] = torch.as_tensor(exp, dtype=torch.float32)
    if jaw is not None:
        x[:, 50:] = torch.as_tensor(jaw, dtype=torch.float32)
    return x


def test_loads_in_smplx_unchanged(head_dir):
    flame = smplx.FLAME(model_path=str(head_dir), gender="neutral", ext="npz", num_expression_coeffs=50)
    out = flame(expression=torch.zeros(1, 50))
    head = load_head(head_dir)
    assert out.vertices.shape[1] == len(head.v_template) >= 3000
    np.testing.assert_allclose(out.vertices[0].detach().numpy(), head.v_template, atol=1e-6)
    joints = (flame.J_regressor @ flame.v_template).detach().numpy()
    np.testing.assert_allclose(joints, head.joints, atol=1e-6)


def test_mesh_is_a_closed_head_with_mouth_and_eye_openings(head_dir):
    head = load_head(head_dir)
    v, f = head.v_template, head.faces
    directed = Counter(map(tuple, np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])))
    assert max(directed.values()) == 1, "inconsistently oriented triangles"
    undirected = Counter(tuple(sorted(e)) for e in directed)
    assert max(undirected.values()) == 2 or max(undirected.values()) == 1
    boundary = [e for e, n in undirected.items() if n == 1]
    # boundary edges form exactly three loops: the mouth and the two eyes
    parent = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for a, b in boundary:
        parent[find(a)] = find(b)
    loops = {find(a) for a, _ in boundary}
    assert len(loops) == 3
    centres = sorted(v[[a for a, b in boundary if find(a) == r]].mean(0)[1] for r in loops)
    assert centres[0] < -0.03 < 0.0 < centres[1]  # mouth low, eyes high
    volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert 0.003 < volume < 0.006  # outward-facing, head-sized (litres)


def test_jaw_rotation_opens_the_mouth_monotonically(head_dir):
    head, model = load_head(head_dir), HeadModel(head_dir)
    angles = torch.linspace(0, 0.4, 9)
    verts = model(_params(9, jaw=torch.stack([angles, 0 * angles, 0 * angles], 1)))
    dist = (verts[:, head.lip_upper] - verts[:, head.lip_lower]).norm(dim=-1).numpy()
    assert dist[0] < 0.001  # lips closed at rest
    assert np.all(np.diff(dist) > 0) and dist[-1] > 0.03
    # the skull does not move with the jaw; the chin does
    top = int(np.argmax(head.v_template[:, 1]))
    chin = int(np.argmin(head.v_template[:, 1] + 10 * (head.v_template[:, 2] < 0.05)))
    assert (verts[-1, top] - verts[0, top]).norm() < 1e-6
    assert (verts[-1, chin] - verts[0, chin]).norm() > 0.01


REGION_OF = {"brow": "upper_face", "blink": "eyes", "squint": "eyes", "eye_wide": "eyes", "nose": "upper_face"}


@pytest.mark.parametrize(
    "name",
    [
        "mouth_open",
        "lip_press",
        "pucker",
        "funnel",
        "spread",
        "smile",
        "frown",
        "lower_lip_tuck",
        "upper_lip_raise",
        "chin_raise",
        "lip_roll_in",
        "brow_raise",
        "brow_frown",
        "blink",
        "squint",
        "eye_wide",
        "smile_L",
        "blink_R",
    ],
)
def test_semantic_control_moves_its_region_not_the_skull(head_dir, name):
    head, model = load_head(head_dir), HeadModel(head_dir)
    verts = model(_params(2, exp=np.stack([np.zeros(50), head.semantic(name)])))
    disp = (verts[1] - verts[0]).norm(dim=-1).numpy()
    region = next((r for k, r in REGION_OF.items() if name.startswith(k)), "mouth")
    inside = disp[head.regions[region]]
    assert inside.max() > 0.002, f"{name} barely moves {region}"
    assert int(np.argmax(disp)) in set(head.regions[region].tolist()) | set(head.regions["lips"].tolist())
    skull = head.v_template[:, 2] < -0.03  # back half of the head and neck
    assert disp[skull].max() < 1e-4
    if name.endswith("_L"):  # one side only: +x is the subject's left
        assert disp[head.v_template[:, 0] < -0.01].max() < 0.15 * disp.max()


def test_regions_nonempty_and_disjoint_where_they_should_be(head_dir):
    r = load_head(head_dir).regions
    assert all(len(r[k]) > 0 for k in r)
    s = {k: set(v.tolist()) for k, v in r.items()}
    assert s["lips"] <= s["mouth"]
    assert not s["mouth"] & s["upper_face"]
    assert not s["eyes"] & s["forehead"] and not s["lips"] & s["eyes"]
    assert s["eyes"] <= s["upper_face"] and s["forehead"] <= s["upper_face"]


def test_semantic_table_reproduces_controls(head_dir):
    head = load_head(head_dir)
    summary = (head_dir / "head.json").read_text()
    assert '"semantic_fit_residual_max"' in summary
    assert head.semantic_coeffs.shape == (len(head.semantic_names), 50)
    both = head.semantic("smile")
    np.testing.assert_allclose(head.semantic("smile_L") + head.semantic("smile_R"), both, atol=1e-5)


def test_same_seed_identical_files_other_seed_differs(head_dir, tmp_path):
    # Two builds side by side (the session's head_dir may come from another thread setting).
    write_head_folder(tmp_path / "a", seed=0)
    write_head_folder(tmp_path / "a2", seed=0)
    for name in ("FLAME_NEUTRAL.npz", "flame_static_embedding.pkl", "head.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "a2" / name).read_bytes(), name
    assert load_head(tmp_path / "a").head_id == load_head(head_dir).head_id
    write_head_folder(tmp_path / "b", seed=3)
    assert load_head(tmp_path / "b").head_id != load_head(head_dir).head_id


def test_real_flame_layout_with_other_sizes_loads(tmp_path):
    """A FLAME-2020-like folder: pkl, different vertex count, 100 expression components."""
    from training.head.build import build_head, flame_dict
    from training.head.geometry import build_surface
    from training.head.expressions import build_basis
    from training.head import build as build_mod

    surf = build_surface(n_cols=48)
    basis = build_basis(surf)
    _, _, extra = build_head(0)
    rng = np.random.default_rng(0)
    V = len(surf.vertices)
    extra = dict(extra, weights=np.eye(5)[np.full(V, 1)], regressor=np.full((5, V), 1.0 / V))
    model = flame_dict(surf, basis, extra)
    model["shapedirs"][:, :, 350:400] = 1e-4 * rng.standard_normal((V, 3, 50))  # 100 expression components
    model["f"] = model["f"].astype(np.uint32)
    d = tmp_path / "flame2020"
    d.mkdir()
    with open(d / "FLAME_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(model, fh)
    with open(d / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": np.zeros(0, np.int64), "lmk_b_coords": np.zeros((0, 3))}, fh)
    hm = HeadModel(d)
    assert hm.n_vertices == V != 5766
    verts = hm(_params(3))
    assert verts.shape == (3, V, 3)
    assert build_mod.N_EXPR_SPACE == 100


def test_import_real_flame_folder_writes_a_head_file(head_dir, tmp_path):
    """`head import` on a FLAME-layout folder (pkl + FLAME_masks.pkl) gives a usable head.npz."""
    import shutil

    from training.head.build import build_head, flame_dict
    from training.head.flame_import import import_flame

    surf, basis, extra = build_head(0)
    d = tmp_path / "flame"
    d.mkdir()
    with open(d / "FLAME_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(flame_dict(surf, basis, extra), fh)
    shutil.copy(head_dir / "flame_static_embedding.pkl", d)
    r = load_head(head_dir).regions
    masks = {
        "lips": r["lips"],
        "face": np.arange(surf.n_skin),
        "forehead": r["forehead"],
        "left_eye_region": r["eyes"],
        "right_eye_region": r["eyes"],
        "nose": r["upper_face"][:10],
    }
    with open(d / "FLAME_masks.pkl", "wb") as fh:
        pickle.dump(masks, fh)
    imported = load_head(import_flame(d))
    ours = load_head(head_dir)
    assert imported.head_id == ours.head_id
    np.testing.assert_allclose(imported.exp_dirs, ours.exp_dirs, atol=1e-6)
    np.testing.assert_allclose(imported.joints, ours.joints, atol=1e-6)
    assert (imported.lip_upper, imported.lip_lower) == (ours.lip_upper, ours.lip_lower)
