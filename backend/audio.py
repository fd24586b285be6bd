"""Decode any audio file the backend accepts into mono float32 at 16 kHz.

WAV, FLAC, OGG and MP3 (and whatever else libsndfile reads) through `soundfile`,
any rate and channel count, down-mixed and resampled with `soxr`. Decoding is
streamed block by block so that a long or high-rate upload never needs more
memory than its 16 kHz mono result, and the duration limit is enforced while
reading (a header cannot lie its way past it).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from backend.contracts import FPS, SAMPLE_RATE

BLOCK_FRAMES = 1 << 16
MIN_SECONDS = 1.0 / FPS  # one animation frame
MAX_RATE = 768_000  # libsndfile accepts absurd header rates; soxr does not
MAX_TIME = 1e7  # seconds (~4 months): bounds start/end before they meet integers


class AudioError(ValueError):
    """Bad audio input; `code` and `status` map onto the HTTP error (docs/protocol.md)."""

    def __init__(self, message: str, code: str = "bad_audio", status: int = 400):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class SourceInfo:
    """What the file said about itself (for messages and timings)."""

    format: str
    subtype: str
    sample_rate: int
    channels: int
    seconds: float  # of the decoded (cropped) source


def _open(source) -> sf.SoundFile:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError("the audio file is empty (0 bytes)")
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise AudioError(f"no such audio file: {source}", status=404)
        if os.path.getsize(source) == 0:
            raise AudioError(f"the audio file is empty (0 bytes): {source}")
    elif hasattr(source, "seek"):  # an upload's (spooled) file object
        source.seek(0, os.SEEK_END)
        if source.tell() == 0:
            raise AudioError("the audio file is empty (0 bytes)")
        source.seek(0)
    try:
        return sf.SoundFile(source)
    except sf.LibsndfileError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise AudioError(
            f"could not decode audio (WAV, FLAC, OGG or MP3 expected): {detail}",
            status=415 if "not recognised" in detail.lower() else 400,
        ) from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"could not decode audio: {exc}") from None


def _check_crop(start: float | None, end: float | None) -> tuple[float, float | None]:
    start = 0.0 if start is None else float(start)
    if not math.isfinite(start) or not 0 <= start <= MAX_TIME:
        raise AudioError(f"start must be a time in 0..{MAX_TIME:g} s, got {start}", code="bad_option", status=422)
    if end is not None:
        end = float(end)
        if not math.isfinite(end) or end <= start or end > MAX_TIME:
            raise AudioError(
                f"end must be a time after start ({start} s) and <= {MAX_TIME:g} s, got {end}",
                code="bad_option",
                status=422,
            )
    return start, end


def decode(
    source,
    *,
    start: float | None = None,
    end: float | None = None,
    max_seconds: float | None = None,
    target_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, SourceInfo]:
    """Decode `source` (bytes or a path) to mono float32 at `target_rate`.

    `start`/`end` crop in seconds of the source (end past the clip is clamped);
    `max_seconds` bounds the cropped duration. Raises `AudioError` with a message
    a user can act on; never returns NaN or inf samples.
    """
    start, end = _check_crop(start, end)
    with _open(source) as f:
        rate, channels = int(f.samplerate), int(f.channels)
        if channels < 1:
            raise AudioError("the audio file has no channels")
        if not 1 <= rate <= MAX_RATE:
            raise AudioError(f"unsupported sample rate {rate} Hz (1 Hz to {MAX_RATE} Hz)")
        first = int(round(start * rate))
        if first:
            if not f.seekable():
                raise AudioError("cannot crop this stream (not seekable)")
            declared = f.frames if f.frames > 0 else None
            if declared is not None and first >= declared:
                raise AudioError(
                    f"start {start:g} s is past the end of the clip ({declared / rate:.3f} s)",
                    code="bad_option",
                    status=422,
                )
            try:
                f.seek(first)
            except (sf.LibsndfileError, RuntimeError, OverflowError) as exc:
                raise AudioError(
                    f"start {start:g} s is not inside the clip: {exc}", code="bad_option", status=422
                ) from None
        want = None if end is None else max(0, int(round(end * rate)) - first)
        limit = None if max_seconds is None else int(math.floor(max_seconds * rate)) + 1
        out, n_read = _read_resampled(f, rate, channels, want, limit, max_seconds, target_rate)
        info = SourceInfo(f.format, f.subtype, rate, channels, n_read / rate)
    if n_read == 0:
        where = f" after {start:g} s" if first else ""
        raise AudioError(f"the audio file holds no samples{where} (empty or truncated)")
    if info.seconds < MIN_SECONDS:
        raise AudioError(
            f"audio too short: {n_read} sample(s) = {info.seconds * 1000:.2f} ms; "
            f"at least {MIN_SECONDS * 1000:.0f} ms (one frame) is needed"
        )
    return out, info


def _read_resampled(
    f: sf.SoundFile,
    rate: int,
    channels: int,
    want: int | None,
    limit: int | None,
    max_seconds: float | None,
    target_rate: int,
) -> tuple[np.ndarray, int]:
    """Stream blocks: down-mix, check finiteness, resample; enforce the duration limit."""
    resampler = None if rate == target_rate else soxr.ResampleStream(rate, target_rate, 1, dtype="float32")
    pieces: list[np.ndarray] = []
    n_read = 0
    while want is None or n_read < want:
        n = BLOCK_FRAMES if want is None else min(BLOCK_FRAMES, want - n_read)
        try:
            block = f.read(n, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"the audio data is corrupt after {n_read / rate:.3f} s: {exc}") from None
        if len(block) == 0:
            break
        if not np.isfinite(block).all():
            bad = n_read + int(np.argmax(~np.isfinite(block).all(axis=1)))
            raise AudioError(f"the audio holds NaN or infinite samples (first at {bad / rate:.3f} s)")
        n_read += len(block)
        if limit is not None and n_read >= limit:
            raise AudioError(
                f"audio longer than the limit of {max_seconds:g} s; crop it with start/end", code="too_long", status=413
            )
        mono = block.mean(axis=1) if channels > 1 else block[:, 0]
        pieces.append(resampler.resample_chunk(mono) if resampler else mono.copy())
    if resampler is not None:
        pieces.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    out = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
    # The resampler's overshoot of a clipped (|x| = 1) input is legitimate; keep it.
    return out, n_read


def encode_wav(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes (what /v1/listen returns)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(audio, np.float32), -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
