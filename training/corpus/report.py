"""`corpus report`: does the motion behave like lips do? Checks on a built corpus.

- bilabial closure: lip distance at the centre of p/b/m below CLOSED_MM in >= 95 % of cases
- long pauses end closed: lip distance 100 ms before the end of pauses > 300 ms
- jaw opening follows vowel openness (Pearson r over vowel centres)
- two draws of one utterance: the lips agree, the upper face differs
- the upper face moves (mean distance of its vertices from their own mean over the
  utterance, mm), stored draws of a redrawn corpus spread (distance from the mean
  of the draws, mm) with lips that agree, blinks at a human rate and fully closed
- splits: speaker-disjoint, roughly 70/15/15 by speaker, the real speaker in every split
"""

from __future__ import annotations

import numpy as np

from training.console import to_stdout

from .dataset import SPLIT_NAMES, load_corpus
from training.metrics import spread_about_mean

from .face import Face, draw_motion
from .kinematics import Kinematics
from .phones import BILABIAL, OPENNESS, SIL, VOWELS
from .upperface import BLINK_RATE_PER_MIN

CLOSED_MM = 1.5
MIN_CLOSURE_SHARE = 0.95
MIN_PAUSE_SHARE = 0.95
MIN_JAW_R = 0.5
LIPS_AGREE_MM = 0.5  # mean |lip distance draw A - draw B|
UPPER_DIFFERS_MM = 0.3  # RMS upper-face vertex difference between draws
# Stored draws: upper-face vertices' mean distance from the draws' mean. Above the bar issue #15
# sets for the model's takes (S-DIV-U >= 0.2 mm): the corpus must hold more variety than the
# model is asked to show. (The old engine's draws: 0.12 mm, reports/corpus-upperface.md.)
UPPER_SPREAD_MM = 0.25
BLINK_SHUT = 0.25  # a blink: both lids' gap below this share of the rest opening
BLINK_CLOSED_MM = 1.0  # ... a full one: below this (the tracker's fit noise is ~0.3 mm)
MIN_FULL_BLINKS = 0.9  # share of blinks that close fully
BLINK_RATE_SLACK = 0.2  # the corpus's blink rate within the speakers' range, +- this share
MAX_ABS_EXP = 8.0  # no frame's expression beyond this (the basis's unit scale is ~1)
JAW_RANGE = (-0.05, 0.45)  # rad, jaw opening


def _frame(t: float, n: int) -> int:
    return int(np.clip(np.floor(t * 25), 0, n - 1))


def motion_checks(corpus, face: Face, utts: list[dict]) -> dict:
    closure, pause_end, jaw_v, open_v = [], [], [], []
    exp_max, jaw_lo, jaw_hi = 0.0, 0.0, 0.0
    for u in utts:
        m = corpus.motion(u)
        if not len(m["exp"]):
            continue
        exp_max = max(exp_max, float(np.abs(m["exp"]).max()))
        jaw_lo, jaw_hi = min(jaw_lo, float(m["jaw"][:, 0].min())), max(jaw_hi, float(m["jaw"][:, 0].max()))
        d = face.lip_distance(m["exp"].astype(np.float64), m["jaw"].astype(np.float64)) * 1000
        n = len(d)
        for s, e, lab in zip(m["phones_start"], m["phones_end"], m["phones"]):
            lab = str(lab)
            if lab in BILABIAL:
                closure.append(d[_frame(0.5 * (s + e), n)])
            elif lab == SIL and e - s > 0.3 and e < u["duration"] - 0.05:
                pause_end.append(d[_frame(e - 0.1, n)])
            elif lab in VOWELS:
                jaw_v.append(float(m["jaw"][_frame(0.5 * (s + e), n), 0]))
                open_v.append(OPENNESS[lab])
    closure, pause_end = np.array(closure), np.array(pause_end)
    r = float(np.corrcoef(jaw_v, open_v)[0, 1]) if len(jaw_v) > 2 else float("nan")
    return {
        "bilabial_closed_share": float((closure < CLOSED_MM).mean()) if len(closure) else float("nan"),
        "bilabial_n": int(len(closure)),
        "bilabial_median_mm": float(np.median(closure)) if len(closure) else float("nan"),
        "pause_end_closed_share": float((pause_end < CLOSED_MM).mean()) if len(pause_end) else float("nan"),
        "pause_n": int(len(pause_end)),
        "jaw_openness_r": r,
        "vowel_n": len(jaw_v),
        "exp_abs_max": exp_max,
        "jaw_range": [jaw_lo, jaw_hi],
    }


def draw_checks(corpus, face: Face, utts: list[dict], upper_idx: np.ndarray) -> dict:
    """Re-animate utterances twice with different random draws and compare."""
    kin_upper = Kinematics.from_head_dir(face.head_dir, upper_idx)
    lips_diff, upper_diff = [], []
    for k, u in enumerate(utts):
        m = corpus.motion(u)
        style = corpus.speakers[u["speaker"]].get("style")
        if not style or not len(m["exp"]):
            continue
        phones = [(float(s), float(e), str(lab)) for s, e, lab in zip(m["phones_start"], m["phones_end"], m["phones"])]
        a = draw_motion(face, phones, u["duration"], style, np.random.SeedSequence([k, 101]))
        b = draw_motion(face, phones, u["duration"], style, np.random.SeedSequence([k, 202]))
        da = face.lip_distance(*[x.astype(np.float64) for x in a]) * 1000
        db = face.lip_distance(*[x.astype(np.float64) for x in b]) * 1000
        lips_diff.append(float(np.abs(da - db).mean()))
        va = kin_upper.vertices(*[x.astype(np.float64) for x in a])
        vb = kin_upper.vertices(*[x.astype(np.float64) for x in b])
        upper_diff.append(float(np.sqrt(((va - vb) ** 2).sum(-1).mean()) * 1000))
    return {
        "draws_lip_diff_mm": float(np.mean(lips_diff)) if lips_diff else float("nan"),
        "draws_upper_diff_mm": float(np.mean(upper_diff)) if upper_diff else float("nan"),
        "draws_n": len(lips_diff),
    }


def count_blinks(gaps: np.ndarray, rest: float) -> tuple[int, int]:
    """(blinks, fully closed ones) in lid gaps (T, 2) m: runs of frames where the mean gap
    is below BLINK_SHUT of the rest opening; full when it gets below BLINK_CLOSED_MM."""
    g = gaps.mean(1)
    shut = np.concatenate([[False], g < BLINK_SHUT * rest, [False]])
    starts, ends = np.nonzero(shut[1:] & ~shut[:-1])[0], np.nonzero(~shut[1:] & shut[:-1])[0]
    full = sum(g[a:b].min() * 1000 < BLINK_CLOSED_MM for a, b in zip(starts, ends))
    return len(starts), int(full)


def upper_face_checks(corpus, face: Face, utts: list[dict], upper_idx: np.ndarray) -> dict:
    """The stored motion's upper face: how much it moves, how far stored draws spread (and
    whether their lips agree), blinks per minute and how many close fully."""
    kin_upper = Kinematics.from_head_dir(face.head_dir, upper_idx)
    moved, spread, lips, frames = [], [], [], 0
    blinks = full = 0
    seconds = 0.0
    for u in utts:
        ms = [corpus.motion(u, d) for d in range(corpus.n_draws(u))]
        if not len(ms[0]["exp"]):
            continue
        xs = [(m["exp"].astype(np.float64), m["jaw"].astype(np.float64)) for m in ms]
        v = np.stack([kin_upper.vertices(*x) for x in xs])  # (D, T, V, 3)
        moved += [spread_about_mean(vd, axis=0) * len(vd) for vd in v]
        frames += v.shape[0] * v.shape[1]
        if len(v) > 1:
            spread.append(spread_about_mean(v, axis=0))
            d = np.stack([face.lip_distance(*x) for x in xs]) * 1000
            lips.append(float(np.abs(d[1:] - d[0]).mean()))
        for exp, _ in xs:
            b, f = count_blinks(face.lid_gaps(exp), float(face.lid_rest.mean()))
            blinks, full, seconds = blinks + b, full + f, seconds + len(exp) / 25
    nan = float("nan")
    return {
        "upper_motion_mm": float(sum(moved) / frames) if frames else nan,
        "stored_draws_n": len(spread),
        "stored_draws_upper_spread_mm": float(np.mean(spread)) if spread else nan,
        "stored_draws_lip_diff_mm": float(np.mean(lips)) if lips else nan,
        "blinks": blinks,
        "blinks_per_min": float(blinks / seconds * 60) if seconds else nan,
        "blinks_full_share": float(full / blinks) if blinks else nan,
    }


def split_checks(corpus) -> dict:
    by_speaker: dict[str, set] = {}
    minutes: dict[str, dict] = {}
    for u in corpus.utterances:
        by_speaker.setdefault(u["speaker"], set()).add(u["split"])
        row = minutes.setdefault(u.get("origin", u["source"]), {k: 0.0 for k in SPLIT_NAMES})
        row[u["split"]] += u["duration"] / 60
    real = [s for s, sp in corpus.speakers.items() if sp.get("source") == "real"]
    heldout = [s for s in real if corpus.speakers[s].get("split") == "test"]
    mixed = [s for s, splits in by_speaker.items() if len(splits) > 1 and s not in real]
    counts = {
        name: sum(1 for s, splits in by_speaker.items() if s not in real and splits == {name}) for name in SPLIT_NAMES
    }
    n = max(sum(counts.values()), 1)
    heldout_min = {
        s: round(sum(u["duration"] for u in corpus.utterances if u["speaker"] == s) / 60, 2) for s in heldout
    }
    english_heldout = sum(u["duration"] for u in corpus.utterances if u["speaker"] in heldout and u.get("lang") == "en")
    return {
        "speakers_in_two_splits": mixed,
        "speaker_share": {k: round(v / n, 3) for k, v in counts.items()},
        # held-out real speakers are heard only in the test split; every other real speaker never there
        "real_heldout_apart": (
            all(by_speaker.get(s, set()) <= {"test"} for s in heldout)
            and all("test" not in by_speaker.get(s, set()) for s in real if s not in heldout)
        )
        if real
        else None,
        "heldout_speakers_min": heldout_min,
        "heldout_english_min": round(english_heldout / 60, 2),
        "minutes": {k: {split: round(m, 2) for split, m in v.items()} for k, v in sorted(minutes.items())},
        "hours": {k: round(corpus.hours(k), 3) for k in SPLIT_NAMES},
    }


def rebuild_check(corpus_dir: str, head_dir: str) -> bool | None:
    """Same seed, same bytes: remake the first speaker's first utterances elsewhere and compare."""
    import json
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    from . import build as B

    if (Path(corpus_dir) / "redraw.json").exists():
        return redraw_check(corpus_dir, head_dir)
    info = Path(corpus_dir) / "build.json"
    if not info.exists() or "config" not in json.loads(info.read_text()):
        return None  # imported corpora have nothing to remake
    cfg = B.BuildConfig(**json.loads(info.read_text())["config"])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(cfg, out=tmp, head=head_dir, real=False, workers=1)
        _, tasks, _ = B.plan(cfg)
        task = dict(tasks[0], quota=min(tasks[0]["quota"], 8.0))
        (Path(tmp) / "wav").mkdir()
        (Path(tmp) / "motion").mkdir()
        B._init(cfg)
        made = B.run_task(task)
        return all(
            (Path(tmp) / e[k]).read_bytes() == (Path(corpus_dir) / e[k]).read_bytes()
            for e in made
            for k in ("wav", "motion")
        )


def redraw_check(corpus_dir: str, head_dir: str) -> bool:
    """Same seed, same bytes for a redrawn corpus: the first utterance's draws remade."""
    import json
    import tempfile
    from pathlib import Path

    from . import redraw as R

    info = json.loads((Path(corpus_dir) / "redraw.json").read_text())
    utt = load_corpus(corpus_dir).utterances[0]
    style = json.loads((Path(info["source"]) / "manifest.json").read_text())["speakers"][utt["speaker"]].get("style")
    with tempfile.TemporaryDirectory() as tmp:
        R._init(head_dir, info["source"], tmp, info["seed"], info["draws"])
        paths, _ = R._run((utt, style))
        return all((Path(tmp) / p).read_bytes() == (Path(corpus_dir) / p).read_bytes() for p in paths)


def report(corpus_dir: str, head_dir: str, max_utts: int = 400, n_draws: int = 6) -> dict:
    corpus = load_corpus(corpus_dir)
    face = Face.load(head_dir)
    if corpus.head_id and face.head_id != corpus.head_id and corpus.head_id != "import":
        raise ValueError(
            f"corpus {corpus_dir} was built on head {corpus.head_id[:12]}, "
            f"not {face.head_id[:12]} ({head_dir}): pass the right --head"
        )
    utts = corpus.utterances
    pick = [utts[i] for i in np.unique(np.linspace(0, len(utts) - 1, min(max_utts, len(utts))).astype(int))]
    res = {
        "corpus": str(corpus_dir),
        "utterances": len(utts),
        "checked": len(pick),
        "hours": round(corpus.hours(), 3),
        "speakers": len(corpus.speakers),
    }
    res.update(motion_checks(corpus, face, pick))
    upper = np.asarray(face.regions["upper_face"])
    res.update(draw_checks(corpus, face, pick[:: max(1, len(pick) // n_draws)][:n_draws], upper[::4]))
    res.update(upper_face_checks(corpus, face, pick, upper[::4]))
    res["splits"] = split_checks(corpus)
    res["same_seed_same_bytes"] = rebuild_check(corpus_dir, head_dir)

    def when(n, ok):  # a check with nothing to look at is not applicable (imported corpora have no phones)
        return None if not n else bool(ok)

    res["checks"] = {
        "motion in range": (
            res["exp_abs_max"] < MAX_ABS_EXP
            and JAW_RANGE[0] < res["jaw_range"][0]
            and res["jaw_range"][1] < JAW_RANGE[1]
        ),
        "bilabial closure": when(res["bilabial_n"], res["bilabial_closed_share"] >= MIN_CLOSURE_SHARE),
        "long pauses end closed": when(res["pause_n"], res["pause_end_closed_share"] >= MIN_PAUSE_SHARE),
        "jaw follows vowel openness": when(res["vowel_n"], res["jaw_openness_r"] >= MIN_JAW_R),
        "draws: lips agree": when(res["draws_n"], res["draws_lip_diff_mm"] <= LIPS_AGREE_MM),
        "draws: upper face differs": when(res["draws_n"], res["draws_upper_diff_mm"] >= UPPER_DIFFERS_MM),
        "stored draws: lips agree": when(res["stored_draws_n"], res["stored_draws_lip_diff_mm"] <= LIPS_AGREE_MM),
        "stored draws: upper face differs": when(
            res["stored_draws_n"], res["stored_draws_upper_spread_mm"] >= UPPER_SPREAD_MM
        ),
        "blinks close fully": when(res["blinks"], res["blinks_full_share"] >= MIN_FULL_BLINKS),
        "blink rate": when(res["blinks"], _blink_rate_ok(res["blinks_per_min"])),
        "speaker-disjoint splits": not res["splits"]["speakers_in_two_splits"],
        "held-out real speakers only in test": res["splits"]["real_heldout_apart"],
        "same seed, same bytes": res["same_seed_same_bytes"],
    }
    res["passed"] = all(ok is not False for ok in res["checks"].values())
    return res


def _blink_rate_ok(per_min: float) -> bool:
    lo, hi = BLINK_RATE_PER_MIN
    return (1 - BLINK_RATE_SLACK) * lo <= per_min <= (1 + BLINK_RATE_SLACK) * hi


def print_report(res: dict) -> None:
    """The report `corpus report` is run for: stdout (its progress and warnings are logged)."""
    s = res["splits"]
    lines = [
        (
            f"corpus {res['corpus']}: {res['utterances']} utterances, {res['hours']} h, "
            f"{res['speakers']} speakers ({res['checked']} checked)"
        ),
        (
            f"  motion range       |exp| <= {res['exp_abs_max']:.2f} (< {MAX_ABS_EXP}), jaw "
            f"{res['jaw_range'][0]:.3f} .. {res['jaw_range'][1]:.3f} rad (within {JAW_RANGE})"
        ),
        (
            f"  bilabial closure   {res['bilabial_closed_share']:.3f} of {res['bilabial_n']} below {CLOSED_MM} mm "
            f"(median {res['bilabial_median_mm']:.2f} mm; need >= {MIN_CLOSURE_SHARE})"
        ),
        f"  long pauses closed {res['pause_end_closed_share']:.3f} of {res['pause_n']} (need >= {MIN_PAUSE_SHARE})",
        f"  jaw vs openness    r = {res['jaw_openness_r']:.3f} over {res['vowel_n']} vowels (need >= {MIN_JAW_R})",
        (
            f"  two draws          lips differ {res['draws_lip_diff_mm']:.3f} mm (<= {LIPS_AGREE_MM}), "
            f"upper face {res['draws_upper_diff_mm']:.3f} mm (>= {UPPER_DIFFERS_MM})"
        ),
        (
            f"  upper face         moves {res['upper_motion_mm']:.3f} mm about its mean; "
            f"{res['stored_draws_n']} utterances with stored draws: "
            f"spread {res['stored_draws_upper_spread_mm']:.3f} mm "
            f"(>= {UPPER_SPREAD_MM}), lips differ {res['stored_draws_lip_diff_mm']:.3f} mm"
        ),
        (
            f"  blinks             {res['blinks']}, {res['blinks_per_min']:.1f} per minute "
            f"(speakers {BLINK_RATE_PER_MIN[0]:.0f}-{BLINK_RATE_PER_MIN[1]:.0f}), "
            f"{res['blinks_full_share']:.2f} fully closed (lids < {BLINK_CLOSED_MM} mm apart)"
        ),
        (
            f"  splits             by speaker {s['speaker_share']}, hours {s['hours']}, "
            f"held-out real speakers {s['heldout_speakers_min']} min ({s['heldout_english_min']} min English)"
        ),
        "  minutes per source (train / val / test): "
        + "; ".join(f"{k} {v['train']:.1f}/{v['val']:.1f}/{v['test']:.1f}" for k, v in s["minutes"].items()),
        f"  rebuild            first utterances remade byte-identical: {res['same_seed_same_bytes']}",
    ]
    lines += [f"  [{'n/a' if ok is None else 'ok' if ok else 'FAIL'}] {name}" for name, ok in res["checks"].items()]
    to_stdout("\n".join(lines))
