"""`corpus build`: plan speakers, synthesise / align speech, animate, write, summarise.

Deterministic for a seed: every utterance draws from its own random stream
(seed, speaker, index), so worker count and resumption do not change a byte.
Resumable: finished utterances (wav + npz, both written atomically) are kept.
The unit of parallel work is one speaker, whose utterances are made in order
until its share of the requested hours is reached.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import soundfile as sf

from backend import jsonio
from backend.contracts import FPS, SAMPLE_RATE
from backend.files import git_commit

from . import espeak, mbrola
from .face import Face, draw_motion, n_frames_for
from .io import motion_arrays, write_npz, write_wav
from .recordings import SourceMissing, aligned
from .speakers import draw_style, espeak_speakers, neutral_style
from .text import utterance_text

log = logging.getLogger(__name__)
SPLITS = (("train", 0.70), ("val", 0.15), ("test", 0.15))
REAL_VAL_SHARE = 0.1  # of each seen real speaker's clips, for validation


@dataclass(frozen=True, kw_only=True)
class BuildConfig:
    """Run settings (out, head, cache, seed, workers) and the `corpus` section of a
    training config (training/configs/*.json): hours .. mbrola."""

    out: str
    head: str
    cache: str
    hours: float
    seed: int = 0
    espeak_speakers: int
    real_clips: int | None  # per real source; None: every clip that aligns
    workers: int = 2
    real: bool
    natural: bool = False  # flite and SVOX Pico voices (training/corpus/natural.py)
    real_sources: tuple = ()  # recordings.sources() names: asterisk-en, fillets-cs, ...
    heldout_speakers: tuple = ()  # real speakers kept whole for the test split, never trained on
    mbrola: bool


_RUN_SETTINGS = ("out", "head", "cache", "seed", "workers")


def corpus_config(
    config: str | Path = "full", *, out: str, head: str, cache: str, seed: int = 0, workers: int = 2, **overrides
) -> tuple[BuildConfig, dict]:
    """(BuildConfig from a training config's `corpus` section with `overrides` (None: keep)
    on top, origin record for build.json)."""
    from training.config import load_config

    names = {f.name for f in fields(BuildConfig)} - set(_RUN_SETTINGS)
    values, origin = load_config(config).values("corpus", names, overrides)
    return BuildConfig(out=out, head=head, cache=cache, seed=seed, workers=workers, **values), origin


def small_config(out: str, head: str, cache: str, seed: int = 0, workers: int = 2) -> BuildConfig:
    """About 10 minutes of speech, for tests and quick experiments (training/configs/small.json)."""
    return corpus_config("small", out=out, head=head, cache=cache, seed=seed, workers=workers)[0]


def split_counts(n: int) -> list[str]:
    """70/15/15 labels for n items (val and test get at least one each when n >= 3)."""
    n_val = max(1, round(0.15 * n)) if n >= 3 else 0
    n_test = max(1, round(0.15 * n)) if n >= 3 else 0
    return ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test


def plan(cfg: BuildConfig) -> tuple[list[dict], list[dict], list[str]]:
    """Speakers (with split), tasks (one per speaker) and notes on skipped sources."""
    rng = np.random.default_rng([cfg.seed, 0])
    speakers = espeak_speakers(cfg.espeak_speakers, rng)
    notes = []
    if cfg.mbrola:
        voices, why = mbrola.available_voices()
        if why:
            notes.append(why)
        for v in voices:
            speakers.append(
                {
                    "id": f"mb-{v}",
                    "source": "mbrola",
                    "voice": v,
                    "rate": int(rng.uniform(150, 190)),
                    "pitch": int(rng.uniform(35, 65)),
                    "pitch_range": 50,
                    "style": draw_style(rng),
                }
            )
    if cfg.natural:
        from .natural import natural_speakers

        speakers += natural_speakers(cfg.cache, np.random.default_rng([cfg.seed, 2]), notes)
    synthetic = list(speakers)
    for sp, split in zip([synthetic[i] for i in rng.permutation(len(synthetic))], split_counts(len(synthetic))):
        sp["split"] = split
    clips, missing = real_clips(cfg)
    notes += missing
    real_seconds = sum(c["duration"] for c in clips)
    quota = max(cfg.hours * 3600 - real_seconds, 0.0) / max(len(synthetic), 1)
    tasks = [{"speaker": sp, "index": i, "quota": quota, "kind": sp["source"]} for i, sp in enumerate(synthetic)]
    by_speaker: dict[str, list] = {}
    for c in clips:
        by_speaker.setdefault(c["speaker"], []).append(c)
    for sid in sorted(by_speaker):
        own = by_speaker[sid]
        held = sid in cfg.heldout_speakers
        style = draw_style(rng)  # drawn for every speaker, so the others' draws stay as they were
        sp = {
            "id": sid,
            "source": "real",
            "split": "test" if held else "train+val",
            "origins": sorted({c["source"] for c in own}),
            # a held-out speaker's pseudo-GT is the yardstick of the lip checks (vowel gap): a
            # random style (one draw gave 1.28x amplitude, 18.8 mm vowels) would judge the model
            # against mannerisms it cannot know, so held-out speakers articulate like the average
            "style": neutral_style() if held else style,
        }
        if held:
            utt_split = ["test"] * len(own)
        else:  # seen speakers: a few clips of each for validation, the rest for training
            n_val = int(round(REAL_VAL_SHARE * len(own))) if len(own) >= 5 else 0
            val = set(rng.permutation(len(own))[:n_val].tolist())
            utt_split = ["val" if k in val else "train" for k in range(len(own))]
        speakers.append(sp)
        tasks.append({"speaker": sp, "index": len(tasks), "kind": "real", "clips": own, "splits": utt_split})
    return speakers, tasks, notes


def real_clips(cfg: BuildConfig) -> tuple[list[dict], list[str]]:
    """Aligned clips of every configured real source, and notes on the sources left out."""
    if not cfg.real:
        return [], []
    clips, notes = [], []
    for source in cfg.real_sources:
        try:
            got = aligned(cfg.cache, source, cfg.real_clips)
        except SourceMissing as err:
            notes.append(f"real source {source} skipped: {err}")
            continue
        except ImportError as err:
            notes.append(f"real source {source} skipped: an aligner is missing ({err})")
            continue
        if not got:
            notes.append(f"real source {source} skipped: no clip passed the alignment gates")
        clips += got
    return clips, notes


# ---- worker side -------------------------------------------------------------------------

_FACE: Face | None = None
_CFG: BuildConfig | None = None


def _init(cfg: BuildConfig) -> None:
    global _FACE, _CFG
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # the workers are the parallelism; BLAS threads would oversubscribe
    _CFG = cfg
    _FACE = Face.load(cfg.head)


def _entry(uid: str, sp: dict, split: str, duration: float, clip: dict | None = None) -> dict:
    origin = {"origin": clip["source"], "lang": clip["lang"]} if clip else {}
    return {
        **origin,
        "id": uid,
        "wav": f"wav/{uid}.wav",
        "motion": f"motion/{uid}.npz",
        "speaker": sp["id"],
        "source": sp["source"],
        "split": split,
        "duration": round(duration, 6),
        "n_frames": n_frames_for(duration),
    }


def _existing(out: Path, uid: str) -> float | None:
    wav, npz = out / "wav" / f"{uid}.wav", out / "motion" / f"{uid}.npz"
    if wav.exists() and npz.exists():
        return sf.info(str(wav)).frames / SAMPLE_RATE
    return None


def _make(out: Path, uid: str, sp: dict, utt, seed_seq: np.random.SeedSequence) -> float:
    exp, jaw = draw_motion(_FACE, utt.phones, utt.duration, sp["style"], seed_seq, utt.stressed)
    write_wav(out / "wav" / f"{uid}.wav", utt.audio)
    write_npz(
        out / "motion" / f"{uid}.npz",
        motion_arrays(exp, jaw, utt.phones, utt.words, sp["id"], sp["source"], utt.text, utt.stressed),
    )
    return utt.duration


def run_task(task: dict) -> list[dict]:
    from .sources import espeak_utterance, mbrola_utterance, real_utterance

    out, sp, seed = Path(_CFG.out), task["speaker"], _CFG.seed
    entries = []
    if task["kind"] == "real":
        for k, clip in enumerate(task["clips"]):
            uid = f"{sp['id']}-{k:04d}"
            dur = _existing(out, uid)
            if dur is None:
                dur = _make(out, uid, sp, real_utterance(clip), np.random.SeedSequence([seed, task["index"], k, 1]))
            entries.append(_entry(uid, sp, task["splits"][k], dur, clip))
        return entries
    if task["kind"] == "natural":
        from .natural import natural_utterance as make
    else:
        make = espeak_utterance if task["kind"] == "espeak" else mbrola_utterance
    espeak.reset()  # this speaker's audio depends on nothing spoken before it
    total, j = 0.0, 0
    while total < task["quota"] and j < 100000:
        uid = f"{sp['id']}-{j:04d}"
        rng = np.random.default_rng([seed, task["index"], j, 0])
        # synthesis is cheap and keeps espeak's state sequence; only the motion is skipped on resume
        utt = make(utterance_text(rng), sp, rng)
        k, j = j, j + 1
        if utt is None:  # a natural voice's clip the aligner rejected: the next sentence
            continue
        if _existing(out, uid) is None:
            _make(out, uid, sp, utt, np.random.SeedSequence([seed, task["index"], k, 1]))
        entries.append(_entry(uid, sp, sp["split"], utt.duration))
        total += utt.duration
    return entries


# ---- driver ------------------------------------------------------------------------------


def _check_resume(out: Path, cfg: BuildConfig, head_id: str) -> None:
    """Resuming into a folder made with another seed, speaker count or head would mix corpora."""
    info_path = out / "build.json"
    key = {"seed": cfg.seed, "espeak_speakers": cfg.espeak_speakers, "head_id": head_id}
    if info_path.exists():
        old = json.loads(info_path.read_text())
        old_key = {k: old.get("config", {}).get(k, old.get(k)) for k in ("seed", "espeak_speakers")}
        old_key["head_id"] = old.get("head_id")
        if old_key != key:
            raise ValueError(
                f"{out} holds a corpus built with {old_key}, not {key}: "
                "use another --out (same settings resume; a larger --hours extends)"
            )
    else:
        info_path.write_text(
            json.dumps({"config": asdict(cfg), "head_id": head_id, "state": "building"}, indent=1) + "\n"
        )


def summary_table(manifest: dict) -> str:
    rows = {}
    for u in manifest["utterances"]:
        r = rows.setdefault(u.get("origin", u["source"]), {"speakers": set(), "utts": 0, "sec": 0.0})
        r["speakers"].add(u["speaker"])
        r["utts"] += 1
        r["sec"] += u["duration"]
    lines = [f"{'source':<12} {'speakers':>8} {'utterances':>10} {'hours':>7}"]
    for src in sorted(rows):
        r = rows[src]
        lines.append(f"{src:<12} {len(r['speakers']):>8} {r['utts']:>10} {r['sec'] / 3600:>7.2f}")
    tot_s = sum(r["sec"] for r in rows.values())
    lines.append(
        f"{'total':<12} {len(set().union(*(r['speakers'] for r in rows.values()))):>8} "
        f"{sum(r['utts'] for r in rows.values()):>10} {tot_s / 3600:>7.2f}"
    )
    by_split = {}
    for u in manifest["utterances"]:
        by_split[u["split"]] = by_split.get(u["split"], 0.0) + u["duration"]
    lines.append("splits: " + ", ".join(f"{k} {v / 3600:.2f} h" for k, v in sorted(by_split.items())))
    return "\n".join(lines)


def build(cfg: BuildConfig, command: str = "", origin: dict | None = None) -> dict:
    from tqdm import tqdm

    t0 = time.time()
    out = Path(cfg.out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "motion").mkdir(parents=True, exist_ok=True)
    face = Face.load(cfg.head)  # fail early on a bad head
    _check_resume(out, cfg, face.head_id)
    speakers, tasks, notes = plan(cfg)
    for note in notes:  # sources left out: the corpus is smaller than asked
        log.warning("%s", note)
    t_plan = time.time() - t0
    entries = []
    planned = sum(t.get("quota", 0.0) for t in tasks) + sum(c["duration"] for t in tasks for c in t.get("clips", []))
    bar = tqdm(total=int(planned), unit="s speech", desc="corpus")

    def advance(res):
        step = int(round(sum(e["duration"] for e in res)))
        bar.total = max(bar.total, bar.n + step)  # a speaker's last utterance overshoots its share
        bar.update(step)

    order = sorted(tasks, key=lambda t: -len(t.get("clips", ())))  # the long real tasks first
    if cfg.workers > 1:
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(cfg.workers, initializer=_init, initargs=(cfg,)) as pool:
            for res in pool.imap_unordered(run_task, order):
                entries += res
                advance(res)
    else:
        _init(cfg)
        for task in order:
            res = run_task(task)
            entries += res
            advance(res)
    bar.close()
    manifest = {
        "version": 1,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "head_id": face.head_id,
        "speakers": {
            sp["id"]: {k: sp[k] for k in ("source", "split", "style", "voice", "rate", "pitch", "origins") if k in sp}
            for sp in sorted(speakers, key=lambda s: s["id"])
        },
        "utterances": sorted(entries, key=lambda e: e["id"]),
    }
    jsonio.write_json(out / "manifest.json", manifest, indent=1, sort_keys=True)
    table = summary_table(manifest)
    info = {
        "command": command,
        "config": asdict(cfg),
        "seed": cfg.seed,
        "head_id": face.head_id,
        "commit": git_commit(),
        **({"training_config": origin} if origin else {}),
        "notes": notes,
        "summary": table.splitlines(),
        "licences": _licences(manifest),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            **{m: _version(m) for m in ("espeakng-loader", "pocketsphinx", "soxr", "soundfile")},
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "timings": {"plan_s": round(t_plan, 2), "total_s": round(time.time() - t0, 2)},
    }
    jsonio.write_json(out / "build.json", jsonio.finite(info), indent=1)
    log.info("%s", table)
    log.info("built %d utterances in %.1f s -> %s", len(entries), time.time() - t0, out)
    return manifest


def _licences(manifest: dict) -> dict:
    """Licence of each source the corpus holds (the corpus itself is never shipped)."""
    from .natural import LICENCES as NATURAL
    from .recordings import LICENCES as RECORDED

    out = {}
    for u in manifest["utterances"]:
        origin = u.get("origin", u["source"])
        if origin in RECORDED:
            out[origin] = RECORDED[origin]
        elif origin == "espeak":
            out[origin] = "espeak-ng (GPL-3.0-or-later), synthesised here"
        elif origin == "natural":
            speaker = manifest["speakers"][u["speaker"]]
            out[speaker.get("voice", origin)] = NATURAL["pico" if "pico" in speaker.get("voice", "") else "flite"]
    return dict(sorted(out.items()))


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"
