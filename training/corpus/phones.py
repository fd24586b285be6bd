"""Phone inventory: espeak-ng mnemonics -> ARPAbet-like labels, and phone classes.

Every source (espeak, MBROLA via espeak `--pho`, pocketsphinx, importers) ends in
these labels, so the articulation model and the checks see one inventory.
"""

from __future__ import annotations

import re

# the classes the backend's lip checks judge takes by (backend/lipcheck.py): one source for both
from backend.lipcheck import BILABIAL as BILABIAL, VOWELS as VOWELS  # re-exported

SIL = "sil"
CONSONANTS = (
    "B",
    "CH",
    "D",
    "DH",
    "F",
    "G",
    "HH",
    "JH",
    "K",
    "L",
    "M",
    "N",
    "NG",
    "P",
    "R",
    "S",
    "SH",
    "T",
    "TH",
    "V",
    "W",
    "Y",
    "Z",
    "ZH",
)
INVENTORY = VOWELS + CONSONANTS + (SIL,)
LABIODENTAL = ("F", "V")

# espeak-ng English phoneme mnemonics (stress marks stripped) -> ARPAbet.
ESPEAK_TO_ARPA = {
    "@": "AH",
    "@2": "AH",
    "@5": "AH",
    "@L": "AH",
    "@r": "ER",
    "3": "ER",
    "3:": "ER",
    "a": "AE",
    "a#": "AH",
    "aa": "AE",
    "a2": "AE",
    "A:": "AA",
    "A@": "AA",
    "A": "AA",
    "0": "AA",
    "0#": "AA",
    "O:": "AO",
    "O@": "AO",
    "o@": "AO",
    "O": "AO",
    "V": "AH",
    "E": "EH",
    "e@": "EH",
    "e": "EH",
    "eI": "EY",
    "i": "IY",
    "i:": "IY",
    "i@": "IH",
    "i@3": "IH",
    "I": "IH",
    "I#": "IH",
    "I2": "IH",
    "u:": "UW",
    "u": "UW",
    "U": "UH",
    "U@": "UH",
    "aI": "AY",
    "aI@": "AY",
    "aI3": "AY",
    "aU": "AW",
    "aU@": "AW",
    "OI": "OY",
    "oU": "OW",
    "o": "OW",
    "0u": "OW",
    "@U": "OW",
    "IR": "ER",
    "VR": "ER",
    "p": "P",
    "b": "B",
    "t": "T",
    "d": "D",
    "k": "K",
    "g": "G",
    "f": "F",
    "v": "V",
    "T": "TH",
    "D": "DH",
    "s": "S",
    "z": "Z",
    "S": "SH",
    "Z": "ZH",
    "h": "HH",
    "m": "M",
    "n": "N",
    "N": "NG",
    "l": "L",
    "r": "R",
    "w": "W",
    "j": "Y",
    "tS": "CH",
    "dZ": "JH",
    "t#": "T",
    "d#": "D",
    "?": "T",
    "l/": "L",
    "n-": "N",
    "m-": "M",
    "r-": "R",
    "x": "HH",
    "W": "W",
    "hw": "W",
    "z/": "Z",
    "t2": "T",
    "d2": "D",
    "s2": "S",
    "n2": "N",
    "l#": "L",
    "r/": "R",
    "*": "R",
    "tS#": "CH",
}
_STRESS = re.compile(r"^[',%=]+")


def espeak_to_arpa(mnemonic: str) -> str:
    """Map one espeak phoneme event name to the inventory ('sil' for pauses)."""
    name = _STRESS.sub("", mnemonic.strip())
    if not name or name.startswith("_") or name in ("||", "|"):
        return SIL
    if name in ESPEAK_TO_ARPA:
        return ESPEAK_TO_ARPA[name]
    base = name.rstrip("#:/-0123456789;")
    if base in ESPEAK_TO_ARPA:
        return ESPEAK_TO_ARPA[base]
    return ESPEAK_TO_ARPA.get(base[:1], SIL)


# espeak-ng mnemonics of the other languages the corpus hears, where they differ from
# English's or are missing there: mapped to the English phone with the nearest lip and
# jaw shape (what the articulation model needs), not the nearest sound.
FOREIGN_TO_ARPA = {
    "*": {
        "y": "UW",
        "Y": "UW",
        "R": "R",
        "R^": "R",
        "r*": "R",
        "J": "Y",
        "Q": "HH",
        "x": "HH",
        "ts": "T",
        "dz": "D",
        "l^": "L",
        "n^": "N",
        "c": "K",
        "J^": "JH",
        "ll": "L",
        "rr": "R",
        "B": "V",
        "G": "HH",
    },
    "fr": {"W": "UH", "W~": "UH", "9": "AO", "9~": "AO", "E~": "EH", "A~": "AA", "O~": "AO", "w": "W", "H": "W"},
    "ru": {"y": "IH", "8": "UW"},
    "nl": {"W": "W", "Y": "UW", "VU": "AW", "9y": "OY", "Ei": "EY", "Au": "AW", "G": "HH"},
    "cs": {"R^": "ZH", "h": "HH", "h#": "HH"},
    "es": {"B": "V", "D": "DH", "Q": "HH", "x": "HH"},
    "it": {"R": "R"},
}


def foreign_to_arpa(mnemonic: str, lang: str = "*") -> str:
    """espeak-ng mnemonic of any language -> inventory: the language's table, then English's,
    then the bare symbol; an unknown letter becomes a neutral consonant (HH), never a pause."""
    name = _STRESS.sub("", mnemonic.strip()).rstrip(";")
    if not name or name.startswith("_") or name in ("||", "|", "!"):
        return SIL
    for table in (FOREIGN_TO_ARPA.get(lang, {}), FOREIGN_TO_ARPA["*"], ESPEAK_TO_ARPA):
        for key in (name, name.rstrip("#:/-0123456789;~")):
            if key in table:
                return table[key]
    base = name.rstrip("#:/-0123456789;~")
    return ESPEAK_TO_ARPA.get(base[:1], "HH") if base else SIL


def is_stressed(mnemonic: str) -> bool:
    return mnemonic.startswith("'")


def cmu_to_arpa(label: str) -> str:
    """pocketsphinx / CMUdict phone (with optional stress digit) -> inventory."""
    base = label.upper().rstrip("012")
    return base if base in INVENTORY else SIL


# Vowel openness 0 (close) .. 1 (open): what jaw opening follows.
OPENNESS = {
    "IY": 0.1,
    "UW": 0.12,
    "IH": 0.3,
    "UH": 0.3,
    "ER": 0.35,
    "EY": 0.4,
    "OW": 0.5,
    "AH": 0.6,
    "EH": 0.6,
    "OY": 0.6,
    "AO": 0.75,
    "AW": 0.85,
    "AY": 0.85,
    "AE": 0.9,
    "AA": 1.0,
}
