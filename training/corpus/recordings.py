"""Real people speaking, with transcripts: Debian packages fetched into a cache.

- Asterisk's core prompts (`asterisk-core-sounds-<lang>-g722`, 16 kHz G.722, decoded
  with PyPI `g722`), one professional voice per language, transcripts from
  `asterisk-core-sounds-<lang>`'s `core-sounds-<lang>.txt.gz` (`name: text` lines).
  CC-BY-SA-3.0 (en, es, fr) / CC-BY-3.0 (it, ru). Allison Smith reads both the
  English and the Mexican-Spanish set: one speaker.
- Fish Fillets NG's acted dialogue (`fillets-ng-data`, `-cs`, `-nl`; GPL-2+): many
  characters per language, clip `sound/<level>/<lang>/<id>.ogg`, text in
  `script/<level>/dialogs_<lang>.lua` as `dialogId("<id>", "<font>", "<text>")`.
  The id's second field names the character (`bar-v-…`: the big fish).

`apt-get download` + `dpkg-deb -x` into the cache: nothing is installed, nothing
enters the repository. Each clip becomes a dict: path, lang, text, speaker, source.
Aligned clips (training/corpus/align.py) are cached per source as JSON.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import re
import subprocess
from pathlib import Path

import numpy as np

from backend import jsonio
from backend.contracts import SAMPLE_RATE

log = logging.getLogger(__name__)
ALIGN_VERSION = 1
ASTERISK_LANGS = ("en", "es", "fr", "it", "ru")
FILLETS_LANGS = ("en", "cs", "nl")
FILLETS_PACKAGE = {"en": "fillets-ng-data", "cs": "fillets-ng-data-cs", "nl": "fillets-ng-data-nl"}
LICENCES = {
    "asterisk-en": "CC-BY-SA-3.0",
    "asterisk-es": "CC-BY-SA-3.0",
    "asterisk-fr": "CC-BY-SA-3.0",
    "asterisk-it": "CC-BY-3.0",
    "asterisk-ru": "CC-BY-3.0",
    "fillets-en": "GPL-2+",
    "fillets-cs": "GPL-2+",
    "fillets-nl": "GPL-2+",
}
MIN_SECONDS, MAX_SECONDS = 0.6, 14.0  # shorter: no phones to learn; longer: the aligners drift


class SourceMissing(RuntimeError):
    """A package could not be fetched or unpacked (no network, no apt): the source is skipped."""


def unpack(cache: str | Path, *packages: str) -> Path:
    """Download (once) and unpack (once) Debian packages into cache/x; the unpacked root."""
    cache = Path(cache)
    debs, root = cache / "debs", cache / "x"
    debs.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        stamp = root / ".unpacked" / pkg
        if stamp.exists():
            continue
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        try:
            if not found:
                subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True, capture_output=True, timeout=600)
                found = sorted(debs.glob(f"{pkg}_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(root)], check=True, capture_output=True)
        except (OSError, subprocess.SubprocessError, IndexError) as err:
            raise SourceMissing(f"could not fetch Debian package {pkg} ({err})") from err
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    return root


# ---- transcripts --------------------------------------------------------------------------


def asterisk_transcripts(text: str) -> dict[str, str]:
    """`name: text` lines -> {name: text}; comments, bracketed descriptions ([beep]) and empty lines dropped."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(";") or ":" not in line:
            continue
        name, said = line.split(":", 1)
        said = said.strip()
        if said and not said.startswith("[") and not said.endswith("]") and re.search(r"\w", said):
            out[name.strip()] = said
    return out


_STR = r'"((?:[^"\\]|\\.)*)"'
_DIALOG = re.compile(rf"dialogId\(\s*{_STR}\s*,\s*{_STR}\s*,\s*{_STR}\s*\)(?:\s*dialogStr\(\s*{_STR}\s*\))?", re.S)


def fillets_transcripts(lua: str) -> dict[str, str]:
    """`dialogId("id", "font", "English")` calls, each followed in a translation's file by
    `dialogStr("translation")` -> {id: the text in the file's language}."""
    out = {}
    for m in _DIALOG.finditer(lua):
        text = m.group(4) if m.group(4) is not None else m.group(3)
        out[m.group(1)] = text.replace('\\"', '"').replace("\\n", " ")
    return out


def fillets_character(clip_id: str, level: str) -> str:
    """The speaking character: the two fish ('m' small, 'v' big) throughout the game; any
    other code belongs to its level's own creatures (an 'x' in one level is not another's)."""
    parts = clip_id.split("-")
    code = parts[1] if len(parts) > 2 else "x"
    return code if code in ("m", "v") else f"{level}-{code}"


# ---- clip lists ---------------------------------------------------------------------------


def asterisk_clips(cache: str | Path, lang: str) -> list[dict]:
    root = unpack(cache, f"asterisk-core-sounds-{lang}-g722", f"asterisk-core-sounds-{lang}")
    (doc,) = glob.glob(str(root / f"usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"))
    with gzip.open(doc, "rt", encoding="utf-8", errors="replace") as f:
        texts = asterisk_transcripts(f.read())
    (voice_dir,) = glob.glob(str(root / f"usr/share/asterisk/sounds/{lang}_*"))
    voice = os.path.basename(voice_dir).split("_")[-1].lower()
    clips = []
    for name, text in sorted(texts.items()):
        path = os.path.join(voice_dir, name + ".g722")
        if os.path.exists(path):
            clips.append(
                {"path": path, "lang": lang, "text": text, "speaker": f"asterisk-{voice}", "source": f"asterisk-{lang}"}
            )
    return clips


def fillets_clips(cache: str | Path, lang: str) -> list[dict]:
    packages = [FILLETS_PACKAGE["en"]] + ([FILLETS_PACKAGE[lang]] if lang != "en" else [])
    root = unpack(cache, *packages) / "usr/share/games/fillets-ng"
    clips = []
    for lua in sorted(glob.glob(str(root / f"script/*/dialogs_{lang}.lua"))):
        level = os.path.basename(os.path.dirname(lua))
        with open(lua, encoding="utf-8", errors="replace") as f:
            texts = fillets_transcripts(f.read())
        for clip_id, text in sorted(texts.items()):
            path = root / "sound" / level / lang / f"{clip_id}.ogg"
            if path.exists() and text.strip():
                clips.append(
                    {
                        "path": str(path),
                        "lang": lang,
                        "text": text,
                        "speaker": f"fillets-{lang}-{fillets_character(clip_id, level)}",
                        "source": f"fillets-{lang}",
                    }
                )
    return clips


def load_audio(path: str) -> np.ndarray:
    """Mono float32 at 16 kHz from a .g722 (64 kbit/s, 16 kHz) or any soundfile format."""
    import soundfile as sf
    import soxr

    if path.endswith(".g722"):
        import G722

        with open(path, "rb") as f:
            pcm = np.asarray(G722.G722(SAMPLE_RATE, 64000).decode(f.read()), dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return (soxr.resample(audio, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else audio).astype(np.float32)


# ---- aligned sources ----------------------------------------------------------------------


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split()
)
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0..99 in words ('' beyond: the clip is then dropped, CMUdict has no digits)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    return ""


def english_text(text: str) -> str:
    """What an English prompt says, in words CMUdict knows: digits, * and # spelled out."""
    text = text.replace("*", " star ").replace("#", " pound ").replace("&", " and ")
    return re.sub(r"\d+", lambda m: number_words(int(m.group())) or m.group(), text)


def aligned(cache: str | Path, source: str, limit: int | None = None) -> list[dict]:
    """The clips of `source` ('asterisk-en', 'fillets-cs', …) that align and pass the gates,
    with words, phones and duration. Cached as JSON in the cache folder (passes and failures)."""
    from tqdm import tqdm

    from .align import align

    kind, lang = source.split("-", 1)
    clips = asterisk_clips(cache, lang) if kind == "asterisk" else fillets_clips(cache, lang)
    cache_file = Path(cache) / f"aligned-{source}-v{ALIGN_VERSION}.json"
    done = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    n_new, out = 0, []
    bar = tqdm(total=len(clips) if limit is None else min(limit, len(clips)), desc=f"align {source}", unit="clip")
    # in clip order, only as far as `limit` passes need: a larger build extends a smaller one
    for clip in clips:
        if limit is not None and len(out) >= limit:
            break
        if clip["path"] not in done:
            audio = load_audio(clip["path"])
            dur = len(audio) / SAMPLE_RATE
            text = english_text(clip["text"]) if lang == "en" else clip["text"]
            res = align(audio, text, lang) if MIN_SECONDS <= dur <= MAX_SECONDS else None
            done[clip["path"]] = None if res is None else {"words": res[0], "phones": res[1], "duration": dur}
            n_new += 1
            if n_new % 200 == 0:
                jsonio.write_json(cache_file, done, indent=None, sort_keys=True)
        if done[clip["path"]]:
            out.append({**clip, **done[clip["path"]]})
        bar.update(1 if limit is None or done[clip["path"]] else 0)  # with a limit the bar counts passes
    bar.close()
    if n_new:
        jsonio.write_json(cache_file, done, indent=None, sort_keys=True)
    log.info("%s: %d of %d clips aligned and kept", source, len(out), len(clips))
    return out


def sources() -> list[str]:
    return [f"asterisk-{lang}" for lang in ASTERISK_LANGS] + [f"fillets-{lang}" for lang in FILLETS_LANGS]
