"""`thunder-train denoiser train --train-encoder` (the paper's -T variant): the speech encoder
is trained with the denoiser; its run folder gives the fine-tuned encoder back, and
evaluate / export / sample use it instead of --encoder."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from training.cli import main
from training.denoiser.train import is_joint_run, load_run, run_encoder
from training.speech.encoder import load_encoder

from .helpers import evaluate_args, run_log, train_args


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_corpus, tiny_encoder, head_dir):
    root = tmp_path_factory.mktemp("runs-T")
    common = train_args(tiny_corpus, tiny_encoder, head_dir)
    assert (
        main(
            [
                "denoiser",
                "train",
                *common,
                "--out",
                str(root / "T"),
                "--steps",
                "6",
                "--train-encoder",
                "--encoder-lr",
                "5e-4",
            ]
        )
        == 0
    )
    assert main(["denoiser", "train", *common, "--out", str(root / "frozen"), "--steps", "3"]) == 0
    return root


def test_encoder_weights_change_only_in_the_T_run(runs, tiny_encoder):
    start = load_encoder(tiny_encoder).state_dict()
    tuned = run_encoder(runs / "T")
    assert tuned is not None and not tuned.training
    assert all(not p.requires_grad for p in tuned.parameters())
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, start[k])]
    assert any(k.startswith("backbone.") for k in changed)
    assert not any(k.startswith("phone_head.") for k in changed)  # not in the optimiser
    # the frozen variant: no encoder in the run, its checkpoint is the plain denoiser format
    assert run_encoder(runs / "frozen") is None and not is_joint_run(runs / "frozen")
    ckpt = torch.load(runs / "frozen" / "last.pt", weights_only=False)
    assert not any(k.startswith(("encoder.", "denoiser.")) for k in ckpt["model"])
    assert "encoder" not in ckpt["config"] and len(ckpt["optimizer"]["param_groups"]) == 1
    assert all(torch.equal(v, start[k]) for k, v in load_encoder(tiny_encoder).state_dict().items())


def test_T_run_checkpoint_holds_both_with_their_learning_rates(runs):
    model, stats, ckpt = load_run(runs / "T")
    assert model.cfg.audio_dim == 32 and not model.training
    assert ckpt["config"]["encoder"]["trainable"] and ckpt["config"]["encoder"]["lr"] == 5e-4
    groups = ckpt["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["initial_lr"] == 5e-4 and groups[0]["initial_lr"] == 1e-3
    assert all(np.isfinite(r["val"]["loss"]) for r in run_log(runs / "T"))


def test_T_run_resumes_and_refuses_a_frozen_resume(runs, tiny_corpus, tiny_encoder, head_dir):
    run = runs / "T"
    before = run_encoder(run, "last.pt").state_dict()
    common = train_args(tiny_corpus, tiny_encoder, head_dir)
    with pytest.raises(ValueError, match="--train-encoder"):
        main(["denoiser", "train", *common, "--out", str(run), "--steps", "8"])
    assert (
        main(
            ["denoiser", "train", *common, "--out", str(run), "--steps", "8", "--train-encoder", "--encoder-lr", "5e-4"]
        )
        == 0
    )
    assert [r["step"] for r in run_log(run)] == [5, 6, 8]
    after = run_encoder(run, "last.pt").state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before)  # it kept training the encoder


def test_evaluate_and_sample_use_the_runs_own_encoder(runs, tiny_corpus, head_dir, tmp_path, monkeypatch):
    # --encoder of another width: the T run's denoiser (audio_dim 32) only works with its own encoder
    from training.speech.encoder import EncoderConfig, SpeechEncoder

    torch.manual_seed(1)
    other = SpeechEncoder(EncoderConfig(kind="logmel", hidden=16, layers=1, heads=2, ff=32))
    other_path = tmp_path / "other.pt"
    torch.save({"config": asdict(other.cfg), "model": other.state_dict()}, other_path)

    import training.denoiser.samplers as samplers

    seen = []
    real = samplers.sample_takes
    monkeypatch.setattr(
        samplers, "sample_takes", lambda m, feats, *a, **k: seen.append(feats) or real(m, feats, *a, **k)
    )
    stem = tmp_path / "eval"
    assert (
        main(evaluate_args(tiny_corpus, other_path, head_dir, {"T": runs / "T"}, "dpmpp2m:2", 2, limit=1, out=stem))
        == 0
    )
    assert np.isfinite(json.loads(stem.with_suffix(".json").read_text())["rows"][0]["metrics"]["lve"]["mean"])
    assert seen and seen[0].shape[-1] == 32
    from training.speech.data import load_audio, utterances

    u = utterances(tiny_corpus, "test")[0]
    audio = load_audio(tiny_corpus, u)[: len(seen[0]) * 640]
    with torch.no_grad():
        expected = run_encoder(runs / "T").features_25(torch.from_numpy(audio)[None])[0]
    torch.testing.assert_close(seen[0], expected)

    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, audio, 16000)
    out = tmp_path / "takes.npz"
    assert (
        main(
            [
                "denoiser",
                "sample",
                str(runs / "T"),
                str(wav),
                "--encoder",
                str(other_path),
                "--out",
                str(out),
                "--takes",
                "1",
                "--steps",
                "2",
            ]
        )
        == 0
    )
    assert np.load(out)["exp"].shape[0] == 1


def test_export_ships_the_fine_tuned_encoder(runs, tiny_encoder, head_dir, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "bundle"
    assert main(["export", "--out", str(out), "--denoiser", str(runs / "T"), "--head", str(head_dir)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "--train-encoder" in manifest["provenance"]["audio_encoder"]
    # the record goes back to the encoder the fine-tuning started from
    assert manifest["provenance"]["inputs"]["audio_encoder"]["path"] == str(tiny_encoder)
    audio = (np.random.default_rng(0).normal(0, 0.1, (1, 640 * 20))).astype(np.float32)
    sess = ort.InferenceSession(str(out / "audio_encoder.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"audio": audio})[0]
    with torch.no_grad():
        tuned = run_encoder(runs / "T").features_25(torch.from_numpy(audio)).numpy()
        start = load_encoder(tiny_encoder).features_25(torch.from_numpy(audio)).numpy()
    np.testing.assert_allclose(got, tuned, atol=1e-4, rtol=1e-3)
    assert np.abs(got - start).max() > 10 * np.abs(got - tuned).max()  # not the --encoder it started from
