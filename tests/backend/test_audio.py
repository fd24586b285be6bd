"""backend.audio.decode on real encoded files: formats, rates, channels, damage, limits."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from backend.audio import AudioError, decode, encode_wav
from tests.backend.conftest import encode, speechlike


def dominant_hz(x: np.ndarray, rate: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize(
    "fmt,rate,channels",
    [
        (fmt, rate, channels)
        for fmt in ("WAV", "FLAC", "OGG", "MP3")
        for rate, channels in ((8000, 1), (44100, 2), (48000, 6))
        if not (fmt == "MP3" and channels > 2)
    ],
)
def test_formats_rates_channels_become_mono_16k(fmt, rate, channels):
    t = np.arange(int(1.5 * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    data = encode(np.repeat(tone[:, None], channels, 1), rate, fmt)
    x, info = decode(data)
    assert x.dtype == np.float32 and x.ndim == 1
    assert info.sample_rate == rate and info.channels == channels and info.format == fmt
    # lossy codecs add encoder delay/padding; the duration must still be 1.5 s within 60 ms
    assert abs(len(x) / 16000 - 1.5) < 0.06
    assert abs(dominant_hz(x) - 1000) < 5, "resampling moved the pitch"
    assert 0.3 < np.abs(x).max() < 0.7, "down-mix must average channels, not sum them"


def test_192k_input_is_resampled_without_aliasing():
    rate = 192000
    t = np.arange(rate) / rate
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 30000 * t)  # 30 kHz must vanish
    y, _ = decode(encode(x.astype(np.float32), rate, "WAV", "FLOAT"))
    assert len(y) == 16000
    assert abs(dominant_hz(y) - 440) < 3
    spec = np.abs(np.fft.rfft(y))
    assert spec[np.fft.rfftfreq(len(y), 1 / 16000) > 1000].max() < 0.01 * spec.max()


def test_path_and_file_object_sources(tmp_path, speech_wav):
    p = tmp_path / "a.wav"
    p.write_bytes(speech_wav)
    a, _ = decode(str(p))
    b, _ = decode(io.BytesIO(speech_wav))
    c, _ = decode(speech_wav)
    assert len(a) == 48000 and np.array_equal(a, b) and np.array_equal(a, c)


def test_crop_start_end():
    x = np.arange(32000, dtype=np.float32) / 32000  # a ramp: the crop is checkable by value
    y, _ = decode(encode(x, 16000, "WAV", "FLOAT"), start=0.5, end=1.25)
    assert len(y) == 12000
    np.testing.assert_allclose(y[[0, -1]], x[[8000, 19999]], atol=1e-6)
    y, _ = decode(encode(x, 16000, "WAV", "FLOAT"), start=1.0, end=99.0)  # end clamps
    assert len(y) == 16000


@pytest.mark.parametrize(
    "start,end,code",
    [
        (3.0, None, "bad_option"),
        (1.0, 0.5, "bad_option"),
        (-1.0, None, "bad_option"),
        (float("nan"), None, "bad_option"),
    ],
)
def test_bad_crop(start, end, code, speech_wav):
    with pytest.raises(AudioError) as e:
        decode(speech_wav, start=start, end=end)
    assert e.value.code == code and e.value.status == 422


def wav_header(channels: int, rate: int = 16000, bits: int = 16, n_bytes: int = 0) -> bytes:
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + n_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", n_bytes)
    )


def damaged_inputs(speech_wav: bytes) -> dict:
    floats = np.zeros(4000, np.float32)
    nan, inf = floats.copy(), floats.copy()
    nan[1234], inf[10] = np.nan, np.inf
    return {
        "empty": b"",
        "not audio": b"%PDF-1.7 this is not a sound file" * 50,
        "header only": speech_wav[:44],
        "cut inside header": speech_wav[:20],
        "zero channels": wav_header(0, n_bytes=0) + b"\0" * 100,
        "one sample": encode(np.zeros(1, np.float32), 16000),
        "nan samples": encode(nan, 16000, "WAV", "FLOAT"),
        "inf samples": encode(inf, 16000, "WAV", "FLOAT"),
        "garbage after RIFF": b"RIFF\x00\x00\x00\x00WAVE" + bytes(range(256)) * 4,
        "random bytes": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    }


@pytest.mark.parametrize("name", list(damaged_inputs(b"\0" * 100)))
def test_damaged_input_gives_clear_error(name, speech_wav):
    data = damaged_inputs(speech_wav)[name]
    with pytest.raises(AudioError) as e:
        decode(data)
    assert e.value.status in (400, 413, 415) and e.value.code == "bad_audio"
    assert len(str(e.value)) > 10


def test_truncated_file_decodes_what_is_there(speech_wav):
    x, _ = decode(speech_wav[: len(speech_wav) // 2])
    assert abs(len(x) - 24000) < 50


def test_silence_and_clipping_are_valid_input():
    silent, _ = decode(encode(np.zeros(16000, np.float32), 16000))
    assert np.all(silent == 0)
    clipped = np.clip(speechlike(1.0) * 10, -1, 1)
    y, _ = decode(encode(clipped, 44100, "WAV"))
    assert np.isfinite(y).all() and np.abs(y).max() < 1.5  # resampler overshoot only


def test_duration_limit_is_enforced_while_reading():
    long = encode(np.zeros(16000 * 5, np.float32), 16000)
    with pytest.raises(AudioError) as e:
        decode(long, max_seconds=4.0)
    assert e.value.code == "too_long" and e.value.status == 413
    x, _ = decode(long, max_seconds=4.0, start=1.5)  # cropping brings it under
    assert len(x) == 16000 * 3.5


def test_encode_wav_roundtrip():
    x = speechlike(0.5)
    y, rate = sf.read(io.BytesIO(encode_wav(x)), dtype="float32")
    assert rate == 16000 and len(y) == len(x)
    np.testing.assert_allclose(y, x, atol=1 / 32000)


def test_absurd_start_is_a_clean_error(speech_wav):
    with pytest.raises(AudioError) as e:
        decode(encode(speechlike(0.5), 16000, "OGG"), start=1e6)
    assert e.value.status == 422
