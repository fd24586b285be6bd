"""`thunder-train unpack`: the shipped bundle's weights back in torch runs that the trainers
and the exporter read, reproducing the shipped graphs."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.cli import main
from training.errors import TrainingError
from training.unpack import TOLERANCE, unpack

SHIPPED = Path(__file__).resolve().parents[2] / "backend" / "models" / "thunder-base"


@pytest.fixture(scope="module")
def unpacked(head_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unpacked")
    assert main(["unpack", "--bundle", str(SHIPPED), "--head", str(head_dir), "--out", str(out)]) == 0
    return out


def test_the_runs_load_where_training_and_export_read_them(unpacked, head_dir):
    from training.denoiser.train import load_run
    from training.export import mean_speaker
    from training.m2s.train import load_m2s

    model, stats, ckpt = load_run(unpacked / "denoiser")
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert model.cfg.to_dict() == manifest["graphs"]["denoiser"]["config"]
    shipped_stats = np.load(SHIPPED / "stats.npz")
    np.testing.assert_array_equal(stats["chol_inv"], shipped_stats["chol_inv"])
    m2s, _ = load_m2s(unpacked / "m2s", head_dir)
    assert m2s.cfg.variant == "mouth2s"
    np.testing.assert_array_equal(mean_speaker(unpacked / "m2s")["speaker_mean"], shipped_stats["speaker_mean"])
    prov = json.loads((unpacked / "denoiser" / "provenance.json").read_text())
    assert prov["original"]["command"] == manifest["provenance"]["command"]
    assert max(prov["unpacked"]["check_max_abs_diff"].values()) <= TOLERANCE


def test_a_real_audio_step_matches_the_shipped_graph(unpacked):
    """Beyond unpack's own random-input check: features of the demo's speech shape, guided and not."""
    from training.denoiser.train import load_run

    model, _, _ = load_run(unpacked / "denoiser")
    rng = np.random.default_rng(3)
    audio = rng.standard_normal((2, 250, model.cfg.audio_dim)).astype(np.float32)
    null = np.array([0.0, 1.0], np.float32)
    ctx_sess = ort.InferenceSession(str(SHIPPED / "denoiser_context.onnx"), providers=["CPUExecutionProvider"])
    step_sess = ort.InferenceSession(str(SHIPPED / "denoiser.onnx"), providers=["CPUExecutionProvider"])
    ctx = ctx_sess.run(None, {"audio": audio, "null": null})[0]
    x = rng.standard_normal((2, 250, model.cfg.n_params)).astype(np.float32)
    t = np.array([700, 20], np.int64)
    want = step_sess.run(None, {"x": x, "t": t, "ctx": ctx})[0]
    with torch.no_grad():
        got = model.step(
            torch.from_numpy(x), torch.from_numpy(t), model.context(torch.from_numpy(audio), torch.tensor(null))
        )
    assert np.abs(got.numpy() - want).max() < 1e-4


def test_a_bundle_from_another_exporter_is_refused(tmp_path):
    """An initializer the template names but the bundle lacks: a clear error, nothing written."""
    bundle = tmp_path / "bundle"
    shutil.copytree(SHIPPED, bundle)
    graph = onnx.load(str(bundle / "denoiser.onnx"))
    anonymous = next(i for i in graph.graph.initializer if i.name.startswith("onnx::MatMul"))
    old = anonymous.name
    anonymous.name = "renamed_by_another_exporter"
    for node in graph.graph.node:
        node.input[:] = ["renamed_by_another_exporter" if n == old else n for n in node.input]
    onnx.save(graph, str(bundle / "denoiser.onnx"))
    with pytest.raises(TrainingError, match="another version of the exporter"):
        unpack(bundle, None, tmp_path / "out")
    assert not (tmp_path / "out" / "denoiser" / "best.pt").exists()


def test_not_a_bundle(tmp_path):
    with pytest.raises(Exception, match="not a model bundle"):
        unpack(tmp_path, None, tmp_path / "out")


def test_the_m2s_loss_refuses_units_other_than_the_m2s_was_trained_on(unpacked, head_dir, tmp_path):
    from training.denoiser.m2s_loss import build_m2s_loss
    from training.errors import ConfigError

    units = tmp_path / "units.npz"
    np.savez(units, centroids=np.random.default_rng(0).standard_normal((100, 384)).astype(np.float32))
    with pytest.raises(ConfigError, match="trained on speech units"):
        build_m2s_loss(unpacked / "m2s", head_dir, tmp_path, tmp_path / "encoder", units, tmp_path / "cache")


def _m2s_run_with_units(tmp_path, units_file) -> Path:
    """An M2S run folder's record as the M2S trainer writes it: its units path and their sha256."""
    from backend.bundle import sha256_file

    run = tmp_path / "m2s"
    run.mkdir()
    record = {"config": {"units": str(units_file.parent)}, "data": {"units_sha256": sha256_file(units_file)}}
    (run / "provenance.json").write_text(json.dumps(record))
    return run


def test_a_bundle_carries_the_units_its_m2s_was_trained_on_and_unpack_gives_them_back(tmp_path):
    """export finds the units by the M2S run's record and ships them only if unchanged; unpack
    writes them back, checked against the manifest, where --units reads them."""
    from training.export import UNITS_FILE, m2s_units
    from training.speech.units import Units
    from training.unpack import unpack_units

    units = Units(np.random.default_rng(0).standard_normal((100, 384)), layer=-2).save(tmp_path / "units")
    run = _m2s_run_with_units(tmp_path, units)
    assert m2s_units(run) == units
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copyfile(units, bundle / UNITS_FILE)
    from backend.bundle import sha256_file

    manifest = {"units": {"file": UNITS_FILE, "sha256": sha256_file(units)}}
    assert unpack_units(bundle, manifest, tmp_path / "out" / "units") == manifest["units"]["sha256"][:12]
    back = Units.load(tmp_path / "out" / "units")
    np.testing.assert_array_equal(back.centroids, Units.load(units).centroids)
    assert sha256_file(tmp_path / "out" / "units" / "units.npz") == manifest["units"]["sha256"]

    (bundle / UNITS_FILE).write_bytes(b"tampered")
    with pytest.raises(Exception, match="sha256"):
        unpack_units(bundle, manifest, tmp_path / "again")
    Units(np.zeros((100, 384)), layer=-2).save(tmp_path / "units")  # refitted since M2S trained
    assert m2s_units(run) is None
