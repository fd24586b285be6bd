"""Speech encoder: training through the CLI, resume, 25 Hz features, pretrained folders, ONNX, units."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from training.cli import main as thunder_train
from training.config import load_config
from training.speech.data import load_audio, utterances
from training.speech.encoder import EncoderConfig, SpeechEncoder, load_encoder
from training.speech.export import export_audio_encoder
from training.speech.units import Units


def test_small_training_learns_and_records_provenance(encoder_run):
    log = [json.loads(line) for line in (encoder_run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 20
    assert log[-1]["val"]["loss"] < np.log(40)  # below the uniform guess over 40 phones
    prov = json.loads((encoder_run / "provenance.json").read_text())
    assert {"command", "seed", "data", "commit", "date"} <= set(prov)
    assert prov["data"]["manifest_sha256"]
    source = prov["training_config"]  # the config file that made the run, and what the command changed
    assert source["file"] == "training/configs/small.json" and source["sha256"] == load_config("small").sha256
    assert source["overrides"] == {"steps": 20, "val_every": 10} and source["resolved"]["steps"] == 20


def test_training_resumes(encoder_run, tiny_corpus, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(encoder_run, run)
    assert (
        thunder_train(
            [
                "encoder",
                "train",
                "--corpus",
                str(tiny_corpus),
                "--out",
                str(run),
                "--small",
                "--steps",
                "24",
                "--val-every",
                "2",
            ]
        )
        == 0
    )
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log][-2:] == [22, 24]  # continued from step 20, not from 0
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 24


def test_a_whisper_config_says_how_to_get_its_encoder(tiny_corpus, tmp_path):
    """full.json's encoder is Whisper (pretrained): `encoder train` with it says to convert it, or to
    pass --kind logmel, and writes nothing."""
    with pytest.raises(SystemExit, match="whisper convert.*--kind logmel"):
        thunder_train(["encoder", "train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("kind", ["wav2vec2", "logmel"])
def test_feature_rates(kind):
    enc = SpeechEncoder(EncoderConfig(kind=kind, hidden=32, layers=1, heads=2, ff=64, conv_dim=32)).eval()
    with torch.no_grad():
        h = enc.hidden_50(torch.randn(2, 640 * 13))
        f = enc.features_25(torch.randn(2, 640 * 13))
        logits = enc(torch.randn(1, 640 * 5))
    assert len(h) == 1 and h[0].shape == (2, 26, 32)
    assert f.shape == (2, 13, 32)
    assert logits.shape == (1, 10, 40)


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert"])
def test_pretrained_transformers_folder(tmp_path, model_type):
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

    cls, cfg_cls = (Wav2Vec2Model, Wav2Vec2Config) if model_type == "wav2vec2" else (HubertModel, HubertConfig)
    cfg = cfg_cls(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    cls(cfg).save_pretrained(tmp_path / model_type)
    enc = load_encoder(tmp_path / model_type)
    with torch.no_grad():
        f = enc.features_25(torch.randn(1, 640 * 20))
    assert enc.dim == 48 and f.shape == (1, 20, 48)
    with pytest.raises(FileNotFoundError):
        load_encoder(tmp_path / "missing")


def test_onnx_audio_encoder(encoder_run, tmp_path):
    enc = load_encoder(encoder_run)
    path = export_audio_encoder(enc, tmp_path / "audio_encoder.onnx")
    sess = ort.InferenceSession(str(path))
    assert [i.name for i in sess.get_inputs()] == ["audio"] and [o.name for o in sess.get_outputs()] == ["features"]
    rng = np.random.default_rng(0)
    for b, t in ((1, 30), (3, 77)):
        audio = (0.1 * rng.standard_normal((b, 640 * t))).astype(np.float32)
        out = sess.run(None, {"audio": audio})[0]
        with torch.no_grad():
            ref = enc.features_25(torch.from_numpy(audio)).numpy()
        assert out.shape == (b, t, enc.dim)
        assert np.abs(out - ref).max() < 1e-4


def test_units(units_dir, encoder_run, tiny_corpus):
    units = Units.load(units_dir)
    enc = load_encoder(encoder_run)
    audio = load_audio(tiny_corpus, utterances(tiny_corpus, "test")[0])[: 640 * 40]
    u = units.from_audio(enc, audio)
    assert units.n_units == 12 and u.shape == (80,) and u.dtype == np.int64
    assert 0 <= u.min() and u.max() < 12 and len(np.unique(u)) > 1
    np.testing.assert_array_equal(u, units.from_audio(enc, audio))
    assert (units_dir / "provenance.json").exists()
