"""Corpus files: 16 kHz PCM_16 WAV and motion npz, written atomically and byte-for-byte
reproducibly (fixed zip timestamps), so a resumed or repeated build is identical."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from backend.contracts import SAMPLE_RATE
from backend.files import write_atomic


def motion_draws(utt: dict) -> list[str]:
    """A manifest entry's motion files, first draw first: its `motion_draws` (written by
    `corpus redraw`), or just its `motion`."""
    return list(utt.get("motion_draws") or [utt["motion"]])


def write_wav(path: str | Path, audio: np.ndarray) -> None:
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    write_atomic(path, buf.getvalue())


def write_npz(path: str | Path, arrays: dict) -> None:
    """Like np.savez (stored, not compressed), with fixed timestamps and no pickles."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, np.asanyarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), data.getvalue())
    write_atomic(path, buf.getvalue())


def motion_arrays(exp, jaw, phones, words, speaker: str, source: str, text: str, stressed=None) -> dict:
    """The per-utterance npz of docs/corpus.md (`stressed` per phone when the source knows it:
    a redraw puts the brow batons back on the same accents)."""
    f4 = np.float32
    extra = {} if stressed is None else {"stressed": np.asarray(stressed, bool)}
    return {
        "exp": np.asarray(exp, f4),
        "jaw": np.asarray(jaw, f4),
        "fps": np.int32(25),
        "phones_start": np.array([p[0] for p in phones], f4),
        "phones_end": np.array([p[1] for p in phones], f4),
        "phones": np.array([p[2] for p in phones], dtype=str),
        "words_start": np.array([w[0] for w in words], f4),
        "words_end": np.array([w[1] for w in words], f4),
        "words": np.array([w[2] for w in words], dtype=str),
        "speaker": np.array(speaker),
        "source": np.array(source),
        "text": np.array(text),
        **extra,
    }
