"""The real speaker: Debian's `asterisk-core-sounds-en-wav` prompts, force-aligned.

The package holds ~25 minutes of one speaker (8 kHz). `apt-get download` fetches
it into a cache folder and `dpkg-deb -x` unpacks it without installing. The text
comes from the file names (with the usual abbreviations expanded); pocketsphinx
force-aligns it to word and phone times. Prompts whose name does not spell
what is said fail the alignment or its quality gate and are left out.
The aligned list is cached as JSON next to the sounds (it takes ~1 minute).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import subprocess

import numpy as np
import soundfile as sf
import soxr

from backend import jsonio

from .phones import SIL, cmu_to_arpa

log = logging.getLogger(__name__)
PACKAGE = "asterisk-core-sounds-en-wav"
ALIGN_CACHE = "real_alignment_v3.json"
SKIP_DIRS = ("silence", "dictate")
SKIP_PREFIX = {"vm", "conf", "confbridge", "pbx", "priv", "tt", "spy", "dir", "ss", "demo", "astcc", "pm", "queue"}
EXPAND = {
    "pls": "please",
    "num": "number",
    "msg": "message",
    "msgs": "messages",
    "rec": "record",
    "fwd": "forward",
    "ans": "answer",
    "temp": "temporary",
    "tmp": "temporary",
    "entr": "enter",
    "rmv": "remove",
    "blklist": "blacklist",
    "im": "i'm",
    "youre": "you're",
    "opts": "options",
    "avail": "available",
    "unavail": "unavailable",
    "prev": "previous",
    "oper": "operator",
    "ext": "extension",
    "info": "information",
    "nomore": "no more",
    "goodbye": "goodbye",
    "tohearenv": "to hear envelope",
    "nonurgent": "non urgent",
}
ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split()
)
TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety"}
NATO = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
        "november oscar papa quebec romeo sierra tango uniform victor whiskey x-ray yankee "
        "zulu".split(),
    )
)
MAX_PHONE_S = 0.45  # quality gate: a longer non-pause phone means the text was wrong
MIN_SCORE_PER_FRAME = -90  # quality gate on pocketsphinx's acoustic score


def speech_in_pauses(audio: np.ndarray, phones: list) -> float:
    """Share of 10 ms frames inside long 'sil' stretches that are as loud as speech:
    high when the text missed words and the aligner parked them in a pause."""
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    energy = np.sqrt((frames**2).mean(axis=1) + 1e-12)
    loud = energy > 0.15 * np.percentile(energy, 95)
    inside = np.zeros(len(energy), bool)
    for s, e, lab in phones:
        if lab == SIL and e - s > 0.25:
            inside[int(s * 100) + 5 : int(e * 100) - 5] = True
    return float(loud[inside].mean()) if inside.any() else 0.0


def fetch_sounds(cache: str) -> str | None:
    """Path of the unpacked prompt folder, downloading the .deb once; None (with a message) if unavailable."""
    root = os.path.join(cache, "asterisk")
    sounds = os.path.join(root, "usr/share/asterisk/sounds/en_US_f_Allison")
    if os.path.isdir(sounds):
        return sounds
    os.makedirs(cache, exist_ok=True)
    try:
        debs = glob.glob(os.path.join(cache, f"{PACKAGE}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, check=True, capture_output=True, timeout=300)
            debs = glob.glob(os.path.join(cache, f"{PACKAGE}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", sorted(debs)[-1], root], check=True, capture_output=True)
    except (OSError, subprocess.SubprocessError, IndexError) as err:
        log.warning("real speaker skipped: could not fetch %s (%s)", PACKAGE, err)
        return None
    return sounds if os.path.isdir(sounds) else None


def number_words(n: int) -> str:
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n - n % 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    return ""


def prompt_text(rel: str) -> str:
    """What a prompt file says, from its path ('' when the name does not tell)."""
    folder, name = os.path.split(os.path.splitext(rel)[0])
    if folder == "digits":
        return number_words(int(name)) if name.isdigit() else ""
    if folder == "letters":
        return name if len(name) == 1 else ""
    if folder == "phonetic":
        return NATO.get(name[:1], "") if name.endswith("_p") else ""
    tokens = [t.lower() for t in re.split(r"[-_]", name) if t]
    while tokens and tokens[0] in SKIP_PREFIX:
        tokens = tokens[1:]
    words = " ".join(EXPAND.get(t, t) for t in tokens)
    return "" if re.search(r"\d", words) else words


def _pcm16k(path: str) -> np.ndarray:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), sr, 16000).astype(np.float32)


def _align_one(decoder, pcm: bytes, text: str):
    def run():
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()

    decoder.set_align_text(text)
    run()
    decoder.set_alignment()
    run()
    return decoder.get_alignment()


def align_prompts(sounds: str, cache: str, max_prompts: int | None = None) -> list[dict]:
    """Force-align prompts whose name spells their text, in file-name order, until
    `max_prompts` pass the quality gates. Results (passes and failures) are cached."""
    cache_file = os.path.join(cache, ALIGN_CACHE)
    done = {}
    if os.path.exists(cache_file):
        with open(cache_file) as f:
            done = json.load(f)
    files = sorted(os.path.relpath(p, sounds) for p in glob.glob(os.path.join(sounds, "**/*.wav"), recursive=True))
    todo = [rel for rel in files if rel not in done]
    decoder, vocab = None, None
    accepted = [done[r] for r in files if done.get(r)]
    if todo and (max_prompts is None or len(accepted) < max_prompts):
        from pocketsphinx import Decoder, get_model_path
        from tqdm import tqdm

        with open(os.path.join(get_model_path(), "en-us", "cmudict-en-us.dict")) as f:
            vocab = {line.split(" ", 1)[0] for line in f}
        decoder = Decoder(loglevel="FATAL")
        for rel in tqdm(todo, desc="align real speaker", unit="prompt"):
            done[rel] = _align_file(decoder, vocab, sounds, rel)
            if max_prompts is not None and sum(1 for r in files if done.get(r)) >= max_prompts:
                break
        jsonio.write_json(cache_file, done, indent=None, sort_keys=True)
    # in file-name order, stopping where the alignment stopped, so a larger build extends a smaller one
    out = []
    for rel in files:
        if rel not in done or (max_prompts is not None and len(out) >= max_prompts):
            break
        if done[rel]:
            out.append(done[rel])
    return out


def _align_file(decoder, vocab: set, sounds: str, rel: str) -> dict | None:
    text = prompt_text(rel)
    if rel.split(os.sep)[0] in SKIP_DIRS or not text or any(w not in vocab for w in text.split()):
        return None
    audio = _pcm16k(os.path.join(sounds, rel))
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    try:
        alignment = _align_one(decoder, pcm, text)
    except RuntimeError:
        return None
    words, phones, score, frames = [], [], 0, 0
    for w in alignment:
        name = re.sub(r"\(\d+\)$", "", w.name)
        if name not in ("<s>", "</s>", "<sil>", "[NOISE]"):
            words.append((w.start / 100, (w.start + w.duration) / 100, name))
        score, frames = score + w.score, frames + w.duration
        for p in w:
            phones.append((p.start / 100, (p.start + p.duration) / 100, cmu_to_arpa(p.name)))
    longest = max((e - s for s, e, lab in phones if lab != SIL), default=0.0)
    if (
        not words
        or longest > MAX_PHONE_S
        or score / max(frames, 1) < MIN_SCORE_PER_FRAME
        or speech_in_pauses(audio, phones) > 0.35
    ):
        return None
    return {"file": rel, "text": text, "words": words, "phones": phones, "duration": len(audio) / 16000}


def real_prompts(cache: str, max_prompts: int | None = None) -> list[dict]:
    """Aligned prompts of the real speaker ([] with a message when unavailable)."""
    sounds = fetch_sounds(cache)
    if sounds is None:
        return []
    try:
        prompts = align_prompts(sounds, cache, max_prompts)
    except ImportError as err:
        log.warning("real speaker skipped: pocketsphinx unavailable (%s)", err)
        return []
    for p in prompts:
        p["path"] = os.path.join(sounds, p["file"])
    return prompts


def load_prompt_audio(prompt: dict) -> np.ndarray:
    return _pcm16k(prompt["path"])
