"""Speaker embedding input, prepared in numpy exactly as Resemblyzer does it.

Resemblyzer (GE2E, 256-d) embeds an utterance as the L2-normalised mean of the
embeddings of 1.6 s partial windows of a 40-band power mel (25 ms / 10 ms).
`speaker_mels` reproduces `preprocess_wav` + `embed_utterance`'s slicing and
mel, so the backend only runs the exported LSTM (`speaker.onnx`: `mel`
[B, 160, 40] -> `embedding` [B, 256]) and `combine_partials`. Training uses the
same function (training.speech.speaker), so both sides see identical inputs.

Silence trimming uses webrtcvad when it is importable (as Resemblyzer does);
without it the audio is used untrimmed (embeddings move by ~1e-2 cosine).
"""

from __future__ import annotations

import numpy as np

from backend.features import mel_filterbank, stft

SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 40  # 25 ms window, 10 ms step
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
TARGET_DBFS = -30.0
VAD_WINDOW_MS, VAD_AVG_WIDTH, VAD_MAX_SILENCE = 30, 8, 6
INT16_MAX = 2**15 - 1


def normalize_volume(audio: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise (never lower) the level to target_dbfs, as Resemblyzer's increase_only."""
    rms = np.sqrt(np.mean((audio * INT16_MAX) ** 2))
    if rms == 0:
        return audio
    change = target_dbfs - 20 * np.log10(rms / INT16_MAX)
    return audio if change < 0 else audio * (10 ** (change / 20))


def trim_long_silences(audio: np.ndarray) -> np.ndarray:
    """Resemblyzer's VAD trim (webrtcvad mode 3, 30 ms windows); identity without webrtcvad."""
    try:
        import webrtcvad
    except ImportError:
        return audio
    from scipy.ndimage import binary_dilation

    win = VAD_WINDOW_MS * SAMPLE_RATE // 1000
    audio = audio[: len(audio) - len(audio) % win]
    pcm = np.round(audio * INT16_MAX).astype("<i2").tobytes()
    vad = webrtcvad.Vad(3)
    flags = np.array(
        [vad.is_speech(pcm[i * 2 : (i + win) * 2], SAMPLE_RATE) for i in range(0, len(audio), win)], dtype=float
    )
    if flags.size == 0:
        return audio
    w = VAD_AVG_WIDTH
    padded = np.concatenate([np.zeros((w - 1) // 2), flags, np.zeros(w // 2)])
    csum = np.cumsum(padded)
    csum[w:] = csum[w:] - csum[:-w]
    mask = np.round(csum[w - 1 :] / w).astype(bool)
    mask = binary_dilation(mask, np.ones(VAD_MAX_SILENCE + 1))
    return audio[np.repeat(mask, win)]


def power_mel(audio: np.ndarray) -> np.ndarray:
    """(1 + N // 160, 40) float32 power mel = resemblyzer.audio.wav_to_mel_spectrogram."""
    spec = np.abs(stft(audio, N_FFT, HOP)) ** 2
    return (spec @ mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, 0.0, SAMPLE_RATE / 2).T).astype(np.float32)


def partial_slices(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[slice]:
    """Mel-frame slices of the partial utterances (VoiceEncoder.compute_partial_slices)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / rate) / HOP))
    starts = range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in starts]
    coverage = (n_samples - slices[-1].start * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


def speaker_mels(audio: np.ndarray, preprocess: bool = True) -> np.ndarray:
    """16 kHz mono audio -> (n_partials, 160, 40) float32: the speaker model's input."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected non-empty mono audio, got shape {audio.shape}")
    if preprocess:
        audio = trim_long_silences(normalize_volume(audio))
        if audio.size == 0:
            raise ValueError("no speech found in the audio (all of it trimmed as silence)")
    slices = partial_slices(len(audio))
    need = slices[-1].stop * HOP
    if need >= len(audio):
        audio = np.pad(audio, (0, need - len(audio)))
    mel = power_mel(audio)
    return np.stack([mel[s] for s in slices])


def combine_partials(partial_embeddings: np.ndarray) -> np.ndarray:
    """(n_partials, 256) -> (256,) L2-normalised mean, as embed_utterance."""
    mean = np.asarray(partial_embeddings, dtype=np.float64).mean(axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)
