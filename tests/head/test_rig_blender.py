"""The Blender rig deforms exactly like smplx.FLAME (shape keys + armature = blendshapes + LBS)."""

import subprocess
import sys
import textwrap

import numpy as np
import torch

from training.head import load_head
from training.head.flame import HeadModel

SCRIPT = textwrap.dedent("""
    import sys, numpy as np, bpy
    from backend.headfile import load_head_file
    from blender_thunder.rig import build_rig, JOINT_NAMES
    from studio.render import new_scene, pose
    head_dir, out = sys.argv[1], sys.argv[2]
    data = np.load(out + '.in.npz')
    new_scene()
    mesh, arm = build_rig(load_head_file(head_dir + '/head.npz'))
    assert [k.name for k in mesh.data.shape_keys.key_blocks] == ['Basis'] + [f'exp{i:03d}' for i in range(50)]
    assert [b.name for b in arm.data.bones] == list(JOINT_NAMES)
    results = []
    for exp, jaw in zip(data['exp'], data['jaw']):
        pose(mesh, arm, exp, jaw)
        bpy.context.view_layer.update()
        dg = bpy.context.evaluated_depsgraph_get()
        ev = mesh.evaluated_get(dg).to_mesh()
        co = np.empty(len(ev.vertices) * 3, np.float32)
        ev.vertices.foreach_get('co', co)
        results.append(co.reshape(-1, 3))
    np.save(out, np.stack(results))
""")


def test_blender_rig_matches_smplx(head_dir, tmp_path):
    head = load_head(head_dir)
    rng = np.random.default_rng(0)
    exp = np.stack([np.zeros(50), head.semantic("smile"), 0.5 * rng.standard_normal(50)]).astype(np.float32)
    jaw = np.array([[0.0, 0, 0], [0.25, 0, 0], [0.15, 0.05, -0.03]], np.float32)
    out = tmp_path / "blender_verts.npy"
    np.savez(str(out) + ".in.npz", exp=exp, jaw=jaw)
    script = tmp_path / "rig.py"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, str(script), str(head_dir), str(out)], check=True, capture_output=True)
    got = np.load(out)
    want = HeadModel(head_dir)(torch.from_numpy(np.concatenate([exp, jaw], 1))).numpy()
    want_blender = np.stack([want[..., 0], -want[..., 2], want[..., 1]], -1)  # FLAME -> Blender axes
    np.testing.assert_allclose(got, want_blender, atol=2e-5)
