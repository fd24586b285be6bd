"""`corpus align-check`: how well does synthesis + DTW place phones? Measured on English,
where pocketsphinx's forced alignment is the reference, on the same Asterisk clips."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from backend import jsonio

from . import align
from . import recordings as rec
from .phones import BILABIAL


def check(cache: str, clips: int = 120, seed: int = 0) -> dict:
    from training.provenance import git_commit

    ref = rec.aligned(cache, "asterisk-en")
    rng = np.random.default_rng(seed)
    pick = [ref[i] for i in rng.permutation(len(ref))[:clips]]
    word_err, bil_err, passed = [], [], 0
    for c in pick:
        got = align.synth_align(rec.load_audio(c["path"]), rec.english_text(c["text"]), "en")
        if got is None:
            continue
        passed += 1
        words, phones = got
        if len(words) == len(c["words"]):  # same word count: pair them in order
            word_err += [abs(a[0] - b[0]) for a, b in zip(c["words"], words)]
        centres = lambda ps: [(s + e) / 2 for s, e, lab in ps if lab in BILABIAL]
        a, b = centres(c["phones"]), centres(phones)
        if a and len(a) == len(b):
            bil_err += [abs(x - y) for x, y in zip(a, b)]
    stats = lambda v: {"median_s": float(np.median(v)), "p90_s": float(np.percentile(v, 90)), "n": len(v)}
    return {
        "clips": len(pick),
        "passed_gates": passed,
        "word_start_error": stats(word_err) if word_err else None,
        "bilabial_centre_error": stats(bil_err) if bil_err else None,
        "reference": "pocketsphinx forced alignment of the same clips (asterisk-en)",
        "machine": f"{platform.node()} {platform.machine()}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
    }


def write(res: dict, stem: Path) -> str:
    stem.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(stem.with_suffix(".json"), res, indent=1)
    w, b = res["word_start_error"], res["bilabial_centre_error"]
    md = (
        f"Synthesis + DTW alignment against pocketsphinx on {res['clips']} English clips "
        f"({res['passed_gates']} pass the DTW gates); {res['machine']}, {res['date']}, commit {res['commit']}\n\n"
        "| what | median ms | 90th percentile ms | n |\n|---|---|---|---|\n"
        f"| word start | {1000 * w['median_s']:.0f} | {1000 * w['p90_s']:.0f} | {w['n']} |\n"
        f"| m/p/b centre | {1000 * b['median_s']:.0f} | {1000 * b['p90_s']:.0f} | {b['n']} |\n"
    )
    stem.with_suffix(".md").write_text(md)
    return md
