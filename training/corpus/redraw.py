"""`corpus redraw --corpus DIR --draws K --out DIR2`: K motion draws per utterance.

One sentence has many plausible faces (the many-to-many mapping a diffusion model
is for). A redraw keeps a corpus's speech and re-animates every utterance K times
with the current engine (face.draw_motion): the same articulation (lips and jaw,
from the phones and the speaker's style) and K different upper faces and
renditions. DIR2 is a corpus of its own: its `wav` is a link to DIR's, its
manifest lists each utterance's draws under `motion_draws` (the first is also
`motion`, so a reader that knows nothing of draws sees one ordinary corpus).
Utterances the engine cannot re-animate (imported ones: no phones, no style)
keep their one motion file, copied.

Deterministic: draw d of utterance u comes from SeedSequence([seed, hash(u), d]),
whatever the worker count; resumable: finished draws (written atomically) are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from backend import jsonio
from backend.files import git_commit

from .face import Face, draw_motion
from .io import motion_arrays, write_npz

log = logging.getLogger(__name__)
REDRAW_TAG = 0x7EDA  # keeps redraw streams apart from the build's SeedSequence([seed, task, k, ...])


def draw_path(uid: str, d: int) -> str:
    """Corpus-relative motion file of draw d (draw 0 keeps the build's name)."""
    return f"motion/{uid}.npz" if d == 0 else f"motion/{uid}.d{d}.npz"


def draw_seed(seed: int, uid: str, d: int) -> np.random.SeedSequence:
    h = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "little")
    return np.random.SeedSequence([seed, REDRAW_TAG, h, d])


def can_redraw(m: dict, style: dict | None) -> bool:
    return bool(style) and len(m.get("phones", ())) > 0


def redraw_utterance(face: Face, m: dict, duration: float, style: dict, seed: int, uid: str, draws: int) -> list:
    """K (exp, jaw) draws of one utterance's stored motion record `m` (phones, stress, text)."""
    phones = [(float(s), float(e), str(lab)) for s, e, lab in zip(m["phones_start"], m["phones_end"], m["phones"])]
    stressed = [bool(x) for x in m["stressed"]] if "stressed" in m else None
    return [draw_motion(face, phones, duration, style, draw_seed(seed, uid, d), stressed) for d in range(draws)]


def _record(m: dict, exp, jaw) -> dict:
    words = list(zip(m["words_start"].tolist(), m["words_end"].tolist(), [str(w) for w in m["words"]]))
    phones = list(zip(m["phones_start"].tolist(), m["phones_end"].tolist(), [str(p) for p in m["phones"]]))
    return motion_arrays(
        exp, jaw, phones, words, str(m["speaker"]), str(m["source"]), str(m["text"]), m.get("stressed")
    )


# ---- worker side -------------------------------------------------------------------------

_JOB: dict = {}


def _init(head: str, src: str, out: str, seed: int, draws: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # the workers are the parallelism
    _JOB.update(face=Face.load(head), src=Path(src), out=Path(out), seed=seed, draws=draws)


def _run(item: tuple[dict, dict | None]) -> tuple[list[str], bool]:
    """Write one utterance's draws (those not there yet): (their paths, whether redrawn)."""
    utt, style = item
    src, out = _JOB["src"], _JOB["out"]
    with np.load(src / utt["motion"], allow_pickle=False) as z:
        m = {k: z[k] for k in z.files}
    if not can_redraw(m, style):
        path = out / utt["motion"]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / utt["motion"], path)
        return [utt["motion"]], False
    paths = [draw_path(utt["id"], d) for d in range(_JOB["draws"])]
    if all((out / p).exists() for p in paths):
        return paths, True
    made = redraw_utterance(_JOB["face"], m, utt["duration"], style, _JOB["seed"], utt["id"], _JOB["draws"])
    for p, (exp, jaw) in zip(paths, made):
        write_npz(out / p, _record(m, exp, jaw))
    return paths, True


# ---- driver ------------------------------------------------------------------------------


def redraw(src: str | Path, out: str | Path, head: str, draws: int, seed: int = 0, workers: int = 2, command: str = ""):
    """Write corpus `out`: `src`'s speech with `draws` motion draws per utterance."""
    from tqdm import tqdm

    t0 = time.time()
    src, out = Path(src).resolve(), Path(out).resolve()
    if draws < 1:
        raise ValueError(f"--draws must be at least 1, got {draws}")
    if out == src:
        raise ValueError(f"--out {out} is the source corpus: a redraw writes a new corpus next to it")
    manifest = json.loads((src / "manifest.json").read_text())
    face = Face.load(head)  # fail early on a bad head
    if manifest.get("head_id") not in (face.head_id, "import", None, ""):
        raise ValueError(f"{src} was built on head {manifest['head_id'][:12]}, not {face.head_id[:12]} ({head})")
    bad = [u["id"] for u in manifest["utterances"] if not u["wav"].startswith("wav/")]
    if bad:
        raise ValueError(f"{src}: audio outside wav/ (e.g. {bad[0]}): cannot link it")
    info_path = out / "redraw.json"
    key = {"source": str(src), "draws": draws, "seed": seed, "head_id": face.head_id}
    if info_path.exists() and {k: json.loads(info_path.read_text()).get(k) for k in key} != key:
        raise ValueError(f"{out} holds a redraw with other settings: use another --out (the same ones resume)")
    (out / "motion").mkdir(parents=True, exist_ok=True)
    if not (out / "wav").exists():
        os.symlink(src / "wav", out / "wav", target_is_directory=True)
    jsonio.write_json(info_path, {**key, "state": "drawing"}, indent=1)
    items = [(u, manifest["speakers"].get(u["speaker"], {}).get("style")) for u in manifest["utterances"]]
    results = []
    bar = tqdm(total=len(items), unit="utt", desc="redraw", mininterval=5)
    args = (head, str(src), str(out), seed, draws)
    if workers > 1:
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(workers, initializer=_init, initargs=args) as pool:
            for res in pool.imap(_run, items, chunksize=8):
                results.append(res)
                bar.update()
    else:
        _init(*args)
        for item in items:
            results.append(_run(item))
            bar.update()
    bar.close()
    utts = []
    for (u, _), (paths, _) in zip(items, results):
        entry = {k: v for k, v in u.items() if k != "motion_draws"}
        entry["motion"] = paths[0]
        if len(paths) > 1:
            entry["motion_draws"] = paths
        utts.append(entry)
    jsonio.write_json(out / "manifest.json", {**manifest, "draws": draws, "utterances": utts}, indent=1, sort_keys=True)
    redrawn = sum(done for _, done in results)
    info = {
        **key,
        "state": "done",
        "command": command,
        "commit": git_commit(),
        "utterances": len(utts),
        "redrawn": redrawn,
        "kept": len(utts) - redrawn,
        "source_build": json.loads((src / "build.json").read_text()) if (src / "build.json").exists() else None,
        "timings": {"total_s": round(time.time() - t0, 2), "workers": workers},
    }
    jsonio.write_json(info_path, jsonio.finite(info), indent=1)
    log.info(
        "redrew %d utterances x %d draws (%d kept as they were) in %.1f s -> %s",
        redrawn,
        draws,
        len(utts) - redrawn,
        time.time() - t0,
        out,
    )
    return {**manifest, "draws": draws, "utterances": utts}
