"""Bundle loading refuses missing, corrupt and mismatched bundles clearly."""

import json
import shutil

import numpy as np
import pytest

from backend.bundle import BundleError, load_bundle, read_manifest, sha256_file
from backend.engine import Engine


@pytest.fixture
def copy(tiny_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


def test_manifest_names_everything_with_hashes(tiny_bundle):
    m = read_manifest(tiny_bundle)
    assert m["fps"] == 25 and m["sample_rate"] == 16000 and m["schedule"]["steps"] == 1000
    for entry in m["graphs"].values():
        assert sha256_file(tiny_bundle / entry["file"]) == entry["sha256"]
        assert entry["inputs"] and entry["outputs"]
    assert {"audio_encoder", "denoiser_context", "denoiser", "speaker"} <= set(m["graphs"])
    assert m["provenance"]["command"] and "commit" in m["provenance"]
    with np.load(tiny_bundle / "stats.npz") as z:
        cov = z["chol"] @ z["chol"].T
        np.testing.assert_allclose(cov, z["cov"], atol=1e-4 * np.abs(z["cov"]).max())


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        Engine(tmp_path / "nope")
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Engine(tmp_path)


def test_corrupt_graph_is_refused(copy):
    path = copy / "denoiser.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupt"):
        Engine(copy)


def test_missing_graph_file_and_bad_manifest(copy):
    (copy / "audio_encoder.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(copy)


def test_head_mismatch_is_refused(copy):
    m = json.loads((copy / "manifest.json").read_text())
    m["head"]["head_id"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="head mismatch"):
        Engine(copy)


@pytest.mark.parametrize("draws", [0, 2.5, "four", True])
def test_a_preset_with_bad_lip_draws_is_refused_at_load(copy, draws):
    m = json.loads((copy / "manifest.json").read_text())
    m["presets"]["default"].update({"lips": "mean", "lip_draws": draws})
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="preset 'default'.*lip_draws must be a whole number"):
        Engine(copy)


@pytest.mark.parametrize("along", ["jaw", "", None, 1])
def test_a_preset_with_a_bad_lip_guidance_direction_is_refused_at_load(copy, along):
    m = json.loads((copy / "manifest.json").read_text())
    m["presets"]["default"]["lip_guidance_along"] = along
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="preset 'default'.*lip_guidance_along must be one of all, opening"):
        Engine(copy)


@pytest.mark.parametrize("target", [0, -2.5, "6", None])
def test_a_preset_with_a_bad_articulation_target_is_refused_at_load(copy, target):
    m = json.loads((copy / "manifest.json").read_text())
    m["presets"]["default"]["lip_opening_std_mm"] = target
    (copy / "manifest.json").write_text(json.dumps(m))
    if target is None:  # null: the key unset, the full guidance
        Engine(copy)
        return
    with pytest.raises(BundleError, match="preset 'default'.*lip_opening_std_mm must be a number > 0"):
        Engine(copy)


def test_cuda_request_without_cuda(tiny_bundle):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert Engine(tiny_bundle, device="cuda").device == "cuda"
    else:
        with pytest.raises(BundleError, match="CUDA"):
            Engine(tiny_bundle, device="cuda")
    assert Engine(tiny_bundle, device="auto").device in ("cpu", "cuda")
