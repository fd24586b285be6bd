"""MBROLA diphone voices (Debian `mbrola`, `mbrola-us1/us2/us3/en1`), used when installed.

`espeak-ng -v mb-us1 --pho` writes the phone list with durations (they sum to the
audio exactly) and `mbrola` renders it at 16 kHz; phone times come from the
.pho file, not from ctypes events (those arrive ~62 ms late for MBROLA).
Both are Debian packages in contrib/non-free: when they are missing the build
says so and goes on without MBROLA speakers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf
import soxr

from .phones import SIL, espeak_to_arpa

VOICES = ("us1", "us2", "us3", "en1")
VOICE_DIRS = ("/usr/share/mbrola", "/usr/share/mbrola/voices")
# MBROLA SAMPA names that differ from espeak's mnemonics.
SAMPA_TO_ARPA = {
    "{": "AE",
    "A": "AA",
    "Q": "AA",
    "O": "AO",
    "EI": "EY",
    "AI": "AY",
    "OI": "OY",
    "@U": "OW",
    "aU": "AW",
    "r=": "ER",
    "3`": "ER",
    "@`": "ER",
    "i": "IY",
    "u": "UW",
    "I@": "IH",
    "e@": "EH",
    "U@": "UH",
    "_": SIL,
    "#": SIL,
}


def voice_path(voice: str) -> str | None:
    for root in VOICE_DIRS:
        for p in (os.path.join(root, voice, voice), os.path.join(root, voice)):
            if os.path.isfile(p):
                return p
    return None


def available_voices() -> tuple[list[str], str]:
    """Installed MBROLA voices and, when there are none, why."""
    missing = [b for b in ("mbrola", "espeak-ng") if shutil.which(b) is None]
    if missing:
        return [], (
            f"MBROLA speakers skipped: {' and '.join(missing)} not installed (Debian packages "
            "mbrola, mbrola-us1..us3/en1 and espeak-ng; they live in the contrib/non-free components)"
        )
    voices = [v for v in VOICES if voice_path(v)]
    if not voices:
        return [], "MBROLA speakers skipped: no MBROLA voice installed (apt-get install mbrola-us1 ...)"
    return voices, ""


def pho_to_arpa(name: str) -> str:
    return SAMPA_TO_ARPA.get(name) or espeak_to_arpa(name)


def parse_pho(pho: str) -> list[tuple[float, float, str]]:
    """MBROLA .pho lines `NAME DURATION_MS [pitch points]` -> (start s, end s, label)."""
    phones, t = [], 0.0
    for line in pho.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.lstrip().startswith(";"):
            continue
        dur = float(parts[1]) / 1000.0
        phones.append((t, t + dur, pho_to_arpa(parts[0])))
        t += dur
    return phones


def synthesize(text: str, voice: str, rate: int = 170, pitch: int = 50) -> tuple[np.ndarray, list]:
    """16 kHz audio and phones (start s, end s, label) for one MBROLA voice."""
    with tempfile.TemporaryDirectory() as tmp:
        pho = subprocess.run(
            ["espeak-ng", "-q", "-v", f"mb-{voice}", "-s", str(rate), "-p", str(pitch), "--pho", text],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        pho_path, wav_path = os.path.join(tmp, "u.pho"), os.path.join(tmp, "u.wav")
        with open(pho_path, "w") as f:
            f.write(pho)
        subprocess.run(["mbrola", voice_path(voice), pho_path, wav_path], check=True, capture_output=True)
        audio, sr = sf.read(wav_path, dtype="float32")
    phones = parse_pho(pho)
    if sr != 16000:
        audio = soxr.resample(audio, sr, 16000).astype(np.float32)
    return audio, phones
