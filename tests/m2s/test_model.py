"""M2S: head vertices, shapes per variant, training (resume, best), ONNX, evaluation, listen."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch

from training.cli import main as thunder_train
from training.head import load_head
from training.head.flame import HeadModel
from training.m2s.export import export_m2s
from training.m2s.model import M2SConfig, M2SFromParams
from training.m2s.train import load_m2s
from training.m2s.vertices import RegionVertices


def _params(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    exp = torch.randn(b, t, 50, generator=g) * 0.5
    jaw = torch.randn(b, t, 3, generator=g) * 0.05
    jaw[..., 0] = torch.rand(b, t, generator=g) * 0.35
    return exp, jaw


def test_region_vertices_equal_flame(head_dir):
    mouth = load_head(head_dir).regions["mouth"]
    exp, jaw = _params(2, 7)
    x = torch.cat([exp, jaw], -1)
    with torch.no_grad():
        full = HeadModel(head_dir)(x)
        np.testing.assert_allclose(RegionVertices(head_dir, mouth)(x), full[..., mouth, :], atol=1e-6)
        np.testing.assert_allclose(RegionVertices(head_dir)(x), full, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        RegionVertices(head_dir, np.array([10**7]))


@pytest.mark.parametrize("variant", ["mouth2s", "face2s", "exp2s", "noface"])
def test_variant_shapes(head_dir, variant):
    cfg = M2SConfig(variant=variant, dim=32, layers=1, heads=2, n_units=7)
    model = M2SFromParams(cfg, head_dir, load_head(head_dir).regions["mouth"]).eval()
    for t in (9, 31):
        exp, jaw = _params(2, t)
        mel, logits = model(exp, jaw, torch.ones(2, 256) / 16)
        assert mel.shape == (2, 4 * t, 80) and logits.shape == (2, 2 * t, 7)
    with pytest.raises(ValueError, match="unknown M2S variant"):
        M2SFromParams(M2SConfig(variant="lips2s"))


def test_training_selects_best_and_resumes(mouth_run, tiny_corpus, tmp_path):
    log = [json.loads(line) for line in (mouth_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20]
    assert (mouth_run / "curves.png").stat().st_size > 1000  # every trainer draws its loss curves
    best = torch.load(mouth_run / "best.pt", weights_only=False)
    assert best["val"]["loss"] == min(r["val"]["loss"] for r in log)
    assert {"mel_l1", "ce", "unit_acc"} <= set(best["val"])
    assert json.loads((mouth_run / "provenance.json").read_text())["config"]["model"]["variant"] == "mouth2s"
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mouth_run, run, ignore=shutil.ignore_patterns("cache"))
    cfg = best["config"]
    assert (
        thunder_train(
            [
                "m2s",
                "train",
                "--corpus",
                str(tiny_corpus),
                "--head",
                cfg["head"],
                "--encoder",
                cfg["encoder"],
                "--units",
                cfg["units"],
                "--out",
                str(run),
                "--small",
                "--steps",
                "22",
                "--val-every",
                "2",
                "--cache",
                str(mouth_run.parent / "m2s-cache"),
            ]
        )
        == 0
    )
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()][-2:] == [20, 22]


def test_loading_refuses_another_head(mouth_run, tmp_path):
    from training.head.build import write_head_folder

    other = tmp_path / "other-head"
    write_head_folder(other, seed=3)
    with pytest.raises(ValueError, match="trained on head"):
        load_m2s(mouth_run, other)


def test_onnx_matches_torch(mouth_run, head_dir, tmp_path):
    model, _ = load_m2s(mouth_run)
    path = export_m2s(model, head_dir, tmp_path / "m2s.onnx")
    sess = ort.InferenceSession(str(path))
    assert [i.name for i in sess.get_inputs()] == ["exp", "jaw", "speaker"]
    assert [o.name for o in sess.get_outputs()] == ["mel", "unit_logits"]
    for b, t in ((1, 17), (3, 64)):
        exp, jaw = _params(b, t, seed=t)
        spk = torch.nn.functional.normalize(torch.rand(b, 256), dim=1)
        mel, units = sess.run(None, {"exp": exp.numpy(), "jaw": jaw.numpy(), "speaker": spk.numpy()})
        with torch.no_grad():
            ref_mel, ref_units = model(exp, jaw, spk)
        assert mel.shape == (b, 4 * t, 80) and units.shape == (b, 2 * t, model.cfg.n_units)
        assert np.abs(mel - ref_mel.numpy()).max() < 1e-4
        assert np.abs(units - ref_units.numpy()).max() < 1e-4
    # The rest pose (jaw exactly [0, 0, 0], the most common frame) is defined in the exported
    # graph itself, not only after the backend's load-time repair (backend/onnxfix.py).
    exp, jaw = _params(2, 9, seed=1)
    jaw[:, ::2] = 0.0
    spk = torch.nn.functional.normalize(torch.rand(2, 256), dim=1)
    mel, units = sess.run(None, {"exp": exp.numpy(), "jaw": jaw.numpy(), "speaker": spk.numpy()})
    assert np.isfinite(mel).all() and np.isfinite(units).all()


def test_rodrigues_is_smplx_away_from_rest_and_the_identity_at_rest():
    from smplx.lbs import batch_rodrigues

    from training.m2s.vertices import rodrigues

    v = torch.randn(64, 3, dtype=torch.float64) * 0.3
    torch.testing.assert_close(rodrigues(v), batch_rodrigues(v), atol=1e-6, rtol=0)
    torch.testing.assert_close(rodrigues(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))


def test_evaluate_and_listen(mouth_run, floor_run, tiny_corpus, tmp_path):
    report = tmp_path / "reports" / "m2s_eval"
    assert (
        thunder_train(
            [
                "m2s",
                "evaluate",
                "--corpus",
                str(tiny_corpus),
                "--model",
                f"mouth2s={mouth_run}",
                "--floor",
                str(floor_run),
                "--limit",
                "2",
                "--gl-iters",
                "8",
                "--report",
                str(report),
            ]
        )
        == 0
    )
    data = json.loads(report.with_suffix(".json").read_text())
    names = [r["name"] for r in data["rows"]]
    assert names == ["recorded audio", "GT mel + Griffin-Lim (ceiling)", "mouth2s", "no face (floor)"]
    ceiling, mouth = data["rows"][1], data["rows"][2]
    assert ceiling["stoi"] > 0.8 and ceiling["mel_l1"] == 0.0
    for key in ("stoi", "estoi", "pesq_wb", "pesq_nb", "unit_acc", "mel_l1", "wer"):
        assert mouth[key] is not None
    assert data["commit"] and data["machine"] and data["date"]
    assert "| mouth2s |" in report.with_suffix(".md").read_text()
    utt = data["per_utterance"]["mouth2s"][0]["id"]
    wav = tmp_path / "listen.wav"
    assert (
        thunder_train(
            [
                "m2s",
                "listen",
                utt,
                "--corpus",
                str(tiny_corpus),
                "--model",
                str(mouth_run),
                "--out",
                str(wav),
                "--gl-iters",
                "4",
            ]
        )
        == 0
    )
    audio, sr = sf.read(wav)
    n_frames = next(u for u in json.loads((tiny_corpus / "manifest.json").read_text())["utterances"] if u["id"] == utt)[
        "n_frames"
    ]
    assert sr == 16000 and len(audio) == n_frames * 640
