"""Log-mel (numpy vs torch), Griffin-Lim, augmentation."""

import librosa
import numpy as np
import pytest
import torch
from pystoi import stoi

from backend.contracts import FeatureConfig
from backend.features import log_mel, mel_filterbank
from backend.vocoder import vocode
from training.speech.augment import augment, speed
from training.speech.features import LogMel


def test_filterbank_is_librosas():
    cfg = FeatureConfig()
    ours = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    np.testing.assert_allclose(ours, ref, atol=1e-7)


@pytest.mark.parametrize("n", [16000, 16000 * 2 + 123, 640 * 37])
def test_numpy_and_torch_log_mel_agree(speech, n):
    rng = np.random.default_rng(n)
    audio = np.resize(speech, n) + 0.003 * rng.standard_normal(n).astype(np.float32)
    audio[n // 3 : n // 3 + 2000] = 0.0  # digital silence hits the floor on both sides
    ref = log_mel(audio)
    out = LogMel()(torch.from_numpy(audio)[None])[0].numpy()
    assert ref.shape == out.shape == (n // 160, 80)
    assert np.abs(ref - out).max() < 1e-4


def test_log_mel_is_framed_at_100_hz_and_matches_librosa(speech):
    cfg = FeatureConfig()
    ref = librosa.feature.melspectrogram(
        y=speech.astype(np.float64),
        sr=16000,
        n_fft=640,
        hop_length=160,
        win_length=640,
        n_mels=80,
        fmin=0,
        fmax=8000,
        power=1.0,
        center=True,
        pad_mode="constant",
    ).T
    ours = log_mel(speech, cfg)
    assert len(ours) == len(speech) // 160
    np.testing.assert_allclose(ours, np.log(np.maximum(ref[: len(ours)], cfg.log_floor)), atol=1e-4)
    with pytest.raises(ValueError, match="too short"):
        log_mel(np.zeros(100, np.float32))


def test_griffin_lim_is_intelligible(speech):
    audio = vocode(log_mel(speech), n_iter=16)
    assert audio.dtype == np.float32 and len(audio) == len(speech) // 160 * 160
    assert np.abs(audio).max() <= 1.0
    assert stoi(speech[: len(audio)], audio, 16000) > 0.85
    with pytest.raises(ValueError, match="log-mel"):
        vocode(np.zeros((10, 40)))


def test_augment_keeps_labels_in_step(speech):
    assert abs(len(speed(speech, 1.25)) - len(speech) / 1.25) < 5
    rng = np.random.default_rng(0)
    for _ in range(6):
        out, stretch = augment(speech, rng)
        assert out.dtype == np.float32 and np.abs(out).max() <= 1.0
        assert abs(len(out) / len(speech) - stretch) < 0.01  # the timeline stretch the labels follow


def test_evaluation_subsets_spread_over_speakers():
    from training.speech.data import spread_over_speakers

    entries = [{"id": f"{s}{i}", "speaker": s} for s in "abc" for i in range(4)]  # manifest order: by speaker
    picked = spread_over_speakers(entries, 5)
    assert [e["id"] for e in picked] == ["a0", "b0", "c0", "a1", "b1"]
    assert spread_over_speakers(entries, None) == entries and len(spread_over_speakers(entries, 99)) == 12
