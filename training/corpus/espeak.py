"""espeak-ng through ctypes (PyPI `espeakng-loader`) with exact phone and word timing.

In synchronous mode with phoneme events on, every PHONEME event's `sample` is the
phone's first output sample, so the phone track needs no alignment step.
libespeak-ng keeps state between calls that no API resets (the wavegen's
flutter index and phase), so the same call gives slightly different audio
depending on what was spoken before. `reset()` loads a private copy of the
library (fresh static state); the corpus build resets at the start of each
speaker, which makes a speaker's utterances depend on nothing but that speaker.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np

# espeak_EVENT_TYPE
EV_WORD, EV_END, EV_MSG_TERMINATED, EV_PHONEME = 1, 5, 6, 7
AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS = 0x0001
INIT_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
POS_CHARACTER = 1
# espeak_PARAMETER
P_RATE, P_VOLUME, P_PITCH, P_RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Synthesis:
    """Audio at `sample_rate` plus phone and word events (start samples)."""

    audio: np.ndarray  # float32 mono
    sample_rate: int
    phones: list[tuple[int, str]] = field(default_factory=list)  # (start sample, espeak mnemonic)
    words: list[tuple[int, int, int]] = field(default_factory=list)  # (start sample, text pos, length)


class _Engine:
    def __init__(self) -> None:
        import espeakng_loader

        # a private copy: dlopen of the same path would share the old static state
        fd, self.copy = tempfile.mkstemp(prefix="thunder-espeak-", suffix=".so")
        os.close(fd)
        shutil.copyfile(espeakng_loader.get_library_path(), self.copy)
        self.lib = ctypes.CDLL(self.copy)
        os.unlink(self.copy)  # the mapping stays; nothing is left behind
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 200, data, INIT_PHONEME_EVENTS | INIT_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._phones: list[tuple[int, str]] = []
        self._words: list[tuple[int, int, int]] = []
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._cb)

    def close(self) -> None:
        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != 0:  # LIST_TERMINATED
            ev = events[i]
            if ev.type == EV_PHONEME:
                self._phones.append((ev.sample, ev.id.string.decode("ascii", "replace")))
            elif ev.type == EV_WORD:
                self._words.append((ev.sample, ev.text_position, ev.length))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> Synthesis:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((P_RATE, rate), (P_PITCH, pitch), (P_RANGE, pitch_range), (P_VOLUME, 100)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._phones, self._words = [], [], []
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        err = self.lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) for {text!r}")
        self.lib.espeak_Synchronize()
        audio = (np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)).astype(np.float32)
        return Synthesis(audio / 32768.0, self.sample_rate, list(self._phones), list(self._words))


_ENGINE: _Engine | None = None


def reset() -> None:
    """Start from a freshly loaded library: what follows no longer depends on earlier calls."""
    global _ENGINE
    if _ENGINE is not None:
        _ENGINE.close()
    _ENGINE = _Engine()


def synthesize(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50) -> Synthesis:
    """Speak `text` with an espeak-ng voice name such as 'en-us+m3' (voice+variant)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE.synth(text, voice, rate, pitch, pitch_range)
