"""Natural synthetic English voices: flite's CMU ARCTIC voices and SVOX Pico.

- flite (Debian `flite` + `libflite1`, fetched into the cache like the recordings,
  nothing installed): clustergen voices slt (US female), rms (US male), awb (Scottish
  male) and the diphone voice kal16 (US male), all 16 kHz. `flite -psdur` prints the
  segments it synthesised with their end times, and the waveform is made from exactly
  those segments: the phone times are the synthesiser's own (pocketsphinx, aligning the
  same audio, agrees within about 10 ms on average). flite's `t2p` gives the same
  phones with lexical stress, and, for the words spoken as separate phrases, each
  word's phone count: word times without an aligner.
- SVOX Pico (PyPI `ttspico`): en-US and en-GB, both female, 16 kHz. It reports no
  times, so its speech is force-aligned by pocketsphinx (align.sphinx_align) and an
  utterance the aligner's quality gates reject is dropped.

Licences: flite and its voices, CMU's flite licence (BSD-like: use, modify and
redistribute with the notice kept; the voices are built from the CMU ARCTIC
recordings, released under the same terms); ttspico and the Pico voices, Apache-2.0.
Piper is left out: where its English voices' training recordings come from, and
under which licence, is unclear.

A speaker is one voice with a drawn speaking rate and pitch (factors, 1 = the voice's
own) and an articulation style. Deterministic for a numpy Generator.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from backend.contracts import SAMPLE_RATE

from .align import english_words, sphinx_align
from .phones import SIL, cmu_to_arpa
from .recordings import SourceMissing, unpack
from .sources import Utterance, _level, _pad, tidy
from .speakers import draw_style

log = logging.getLogger(__name__)

VOICES = {
    "flite-slt": {"engine": "flite", "name": "slt"},
    "flite-rms": {"engine": "flite", "name": "rms"},
    "flite-awb": {"engine": "flite", "name": "awb"},
    "flite-kal16": {"engine": "flite", "name": "kal16"},
    "pico-en-US": {"engine": "pico", "name": "en-US"},
    "pico-en-GB": {"engine": "pico", "name": "en-GB"},
}
FLITE_PACKAGES = ("flite", "libflite1")
FLITE_LIBS = "usr/lib/x86_64-linux-gnu"
LICENCES = {"flite": "CMU flite licence (BSD-like), CMU ARCTIC voices", "pico": "Apache-2.0"}
RATE = (0.85, 1.2)  # speaking-rate factor per speaker: faster and slower than the voice's own
PITCH = (0.88, 1.15)  # f0 factor per speaker
# flite's US phone set where it differs from the inventory (ARPAbet without stress)
FLITE_TO_ARPA = {"ax": "AH", "axr": "ER", "dx": "D", "el": "L", "em": "M", "en": "N", "nx": "N", "hv": "HH"}


def natural_speakers(cache: str | Path, rng: np.random.Generator, notes: list | None = None) -> list[dict]:
    """One speaker per voice that runs here, each with a drawn rate, pitch and style.
    Voices that cannot be fetched or run are left out with a warning saying why (also
    appended to `notes` when given). Every voice's draws are made whether it runs or
    not, so the rest of the build's random stream does not depend on the machine."""
    drawn = [
        {
            "id": f"nat-{key}",
            "source": "natural",
            "voice": key,
            "rate": round(float(rng.uniform(*RATE)), 3),
            "pitch": round(float(rng.uniform(*PITCH)), 3),
            "style": draw_style(rng),
        }
        for key in VOICES
    ]
    ready = _available(cache)
    out = []
    for sp in drawn:
        voice = VOICES[sp["voice"]]
        found = ready[voice["engine"]]
        why = found if isinstance(found, str) else found["voices"].get(voice["name"], "")
        if why:
            why = f"natural voice {sp['voice']} skipped: {why}"
            log.warning("%s", why)
            if notes is not None:
                notes.append(why)
        else:
            out.append({**sp, **found["speaker"]})
    return out


def natural_utterance(text: str, speaker: dict, rng: np.random.Generator) -> Utterance | None:
    """`text` in the speaker's voice, 16 kHz, padded and levelled like the espeak speech;
    None when the words cannot be timed (Pico speech the aligner rejects)."""
    voice = VOICES[speaker["voice"]]
    if voice["engine"] == "pico":
        # Pico starts speaking within ~30 ms: the aligner needs the silence around the
        # speech, so the padding comes first and the padded clip is aligned
        audio, _, _ = _pad(pico_speech(text, voice["name"], **_prosody(speaker)), [], [], rng)
        got = sphinx_align(audio, text)
        if got is None:
            return None
        words, phones = got
        phones, _ = tidy(phones, len(audio) / SAMPLE_RATE)
        return Utterance(_level(audio, rng), phones, words, text)
    audio, phones, words, stressed = flite_speech(text, speaker["root"], voice["name"], **_prosody(speaker))
    phones, flags = tidy(phones, len(audio) / SAMPLE_RATE, stressed)
    audio, phones, words = _pad(audio, phones, words, rng)
    phones, flags = tidy(phones, len(audio) / SAMPLE_RATE, [False] + flags + [False])
    return Utterance(_level(audio, rng), phones, words, text, flags if stressed is not None else None)


def _prosody(speaker: dict) -> dict:
    return {"rate": speaker.get("rate", 1.0), "pitch": speaker.get("pitch", 1.0)}


def _available(cache: str | Path) -> dict:
    """Per engine: why it cannot run, or {'voices': {name: '' or why not}, 'speaker': keys
    every speaker of the engine carries}."""
    out: dict = {}
    names = {e: [v["name"] for v in VOICES.values() if v["engine"] == e] for e in ("flite", "pico")}
    try:
        root = unpack(cache, *FLITE_PACKAGES)
        listed = _run_flite(str(root), "flite", "-lv").split(":", 1)[-1].split()
        out["flite"] = {
            "voices": {n: "" if n in listed else f"flite lists no voice {n}" for n in names["flite"]},
            "speaker": {"root": str(root)},
        }
    except SourceMissing as err:
        out["flite"] = str(err)
    except (OSError, subprocess.SubprocessError) as err:
        out["flite"] = f"flite does not run ({err})"
    try:
        import ttspico  # noqa: F401
    except ImportError as err:
        out["pico"] = f"PyPI ttspico is not installed ({err})"
    else:
        out["pico"] = {"voices": {n: _pico_missing(n) for n in names["pico"]}, "speaker": {}}
    return out


# ---- flite -------------------------------------------------------------------------------


def _run_flite(root: str, program: str, *args: str) -> str:
    env = {**os.environ, "LD_LIBRARY_PATH": os.path.join(root, FLITE_LIBS)}
    exe = os.path.join(root, "usr/bin", program)
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=True, timeout=120).stdout


def flite_phone(name: str) -> str:
    """flite segment name (stress digit allowed) -> inventory label ('sil' for pauses)."""
    base = name.rstrip("012")
    return FLITE_TO_ARPA.get(base) or cmu_to_arpa(base)


def flite_speech(text: str, root: str, voice: str, rate: float = 1.0, pitch: float = 1.0):
    """(16 kHz audio, phones, words, stress flags or None) of `text` spoken by flite `voice`,
    with the synthesiser's own segment times."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "speech.wav")
        printed = _run_flite(
            root,
            "flite",
            "-voice",
            voice,
            "--setf",
            f"duration_stretch={1.0 / rate:.4f}",
            "--setf",
            f"f0_shift={pitch:.4f}",
            "-psdur",
            "-t",
            text,
            "-o",
            wav,
        )
        audio, sr = sf.read(wav, dtype="float32")
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
    segments, t = [], 0.0
    for item in printed.split():
        name, end = item.rsplit(":", 1)
        segments.append((t, float(end), name))
        t = float(end)
    phones = [(s, e, flite_phone(n)) for s, e, n in segments]
    stressed = _flite_stress(root, text, [n for *_, n in segments])
    return audio, phones, _flite_words(root, text, phones), stressed


def _flite_stress(root: str, text: str, names: list[str]) -> list[bool] | None:
    """Primary stress per segment from `t2p` (the same front end, so the same phones)."""
    lexical = _run_flite(root, "t2p", text).split()
    if [n.rstrip("012") for n in lexical] != names:
        return None
    return [n.endswith("1") for n in lexical]


def _flite_words(root: str, text: str, phones: list) -> list:
    """Word times: `t2p` speaks the words as separate phrases (a pause after each), which
    gives each word's phone count; [] when those counts do not add up to what was spoken."""
    tokens = english_words(text)
    if not tokens:
        return []
    groups = " ".join(_run_flite(root, "t2p", ", ".join(tokens)).split()).split("pau")
    counts = [len(g.split()) for g in groups if g.strip()]
    spoken = [(s, e) for s, e, lab in phones if lab != SIL]
    if len(counts) != len(tokens) or sum(counts) != len(spoken):
        return []
    words, k = [], 0
    for word, n in zip(tokens, counts):
        words.append((spoken[k][0], spoken[k + n - 1][1], word))
        k += n
    return words


# ---- Pico --------------------------------------------------------------------------------


def _pico_engine(lang: str):
    """A fresh engine: Pico carries state from one text to the next (the same text spoken
    twice differs), so each utterance gets its own, which costs ~2 ms."""
    import ttspico

    return ttspico.TtsEngine(lang)


def _pico_missing(lang: str) -> str:
    try:
        _pico_engine(lang)
    except RuntimeError as err:
        return f"Pico cannot load {lang} ({err})"
    return ""


def pico_speech(text: str, lang: str, rate: float = 1.0, pitch: float = 1.0) -> np.ndarray:
    """16 kHz float32 audio of `text` in Pico's `lang` voice (rate and pitch as factors)."""
    engine = _pico_engine(lang)
    engine.rate = int(round(100 * rate))  # percent of the voice's own speed, 20..500
    engine.pitch = int(round(100 * pitch))  # percent of the voice's own f0, 50..200
    pcm = engine.speak(text) or b""
    return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
