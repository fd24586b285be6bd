"""`thunder-train evaluate`: Table 2 on our corpus for any set of denoiser runs.

For each run and each sampler setting, S samples per test utterance; vertices
through the real head model; metrics from `training.metrics`; the M2S lip-sync
score per take (the backend's score: mel-band correlation of what M2S hears
with the speech) and its rank correlation with LVE over the takes. Writes
`<out>.json`, `<out>.md` and `<out>.png` (stamped with machine, date, commit).
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backend import jsonio, lipcheck
from backend.features import band_correlation
from backend.features import log_mel
from backend.samplers import Schedule
from training.console import to_stdout
from training.errors import DataError
from training.metrics import lip_distance, lip_errors, spearman, utterance_metrics

METRICS = [
    "lve",
    "l_ccc",
    "l_pcc",
    "lip_dtw",
    "fdd_u",
    "fdd_l",
    "s_div_u",
    "t_div_u",
    "s_div_l",
    "t_div_l",
    "motion_u",
    "motion_u_gt",
    "sync",
    "sync_lve_rank",
]
# peer rows beside the runs: a classic pipeline, and the corpus's own renditions of each utterance
# (the pseudo-GT is draw 0; the others say how far a faithful sample, or their average, lands from it)
PEERS = ["allphone", "draws", "draw-mean"]
# the runs' sampler when --samplers is not given (Table 2's)
RUN_SAMPLERS = (("dpmpp2m", 25),)
# backend/lipcheck's checks (pooled over utterances, not averaged): m/p/b closure share (mean
# over takes and the worst take) and median vowel lip gap, mm, next to the corpus articulation's
LIP_CHECKS = ["closure", "closure_min", "mbp_gap", "mbp_gap_gt", "vowel_gap", "vowel_gap_gt"]
# LVE's frames split by the phone they fall in (lipcheck.FRAME_CLASSES): mean of the per-frame
# lip error over those frames of every take, and their share of the frames; says where one
# model's LVE is lost to another's (issue #15: diffusion against regression)
FRAME_LVE = [f"lve_{c}" for c in lipcheck.FRAME_CLASSES] + ["lve_frames"]


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="Table 2: lip-sync and diversity metrics of denoiser runs")
    p.add_argument("--corpus", required=True, type=Path)
    p.add_argument("--head", required=True, type=Path, help="head folder")
    p.add_argument("--encoder", type=Path, help="the speech encoder the --run denoisers were trained on")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="a denoiser run to evaluate (repeat for variants)",
    )
    p.add_argument(
        "--bundle",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a model bundle (e.g. the shipped backend/models/thunder-base), sampled by the backend's engine "
        "with its own audio encoder and the --bundle-preset (its lips and guidance; its sampler unless "
        "--samplers is given: then a row per sampler, e.g. for `fidelity`)",
    )
    p.add_argument("--bundle-preset", default="default", help="the bundles' sampler preset")
    p.add_argument("--m2s", type=Path, help="M2S run for the lip-sync score")
    p.add_argument(
        "--samplers",
        default=None,
        help="comma list of sampler:steps, e.g. ddpm:1000,dpmpp2m:25 "
        "(default: dpmpp2m:25 for runs, the preset's for bundles)",
    )
    p.add_argument("--samples", type=int, default=32, help="S samples per utterance")
    p.add_argument("--split", default="test")
    p.add_argument("--source", default=None, help="only utterances of this source (e.g. real)")
    p.add_argument("--origin", default=None, help="only utterances of this origin (e.g. asterisk-en)")
    p.add_argument("--limit", type=int, default=None, help="first N utterances")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=Path("reports/denoiser-eval"), help="output stem")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--peer",
        choices=PEERS,
        action="append",
        default=[],
        help="add a peer row (repeatable): allphone = pocketsphinx phones -> corpus articulation; "
        "draws = the utterance's other motion draws as its takes (a model that samples the corpus's "
        "own renditions exactly); draw-mean = their mean (the average face a regression aims at). "
        "draws and draw-mean need a redrawn corpus",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="add these rows to an existing <out>.json of the same utterances (replacing rows of the "
        "same variant and sampler), so variants can be evaluated as they finish training",
    )
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    torch.set_num_threads(args.threads)
    runs = dict(r.split("=", 1) if "=" in r else (Path(r).name, r) for r in args.run)
    bundles = dict(b.split("=", 1) if "=" in b else (Path(b).name, b) for b in args.bundle)
    if not runs and not bundles and not args.peer:
        raise DataError("nothing to evaluate: give --run NAME=RUN, --bundle NAME=DIR and/or --peer")
    if runs and args.encoder is None:
        raise DataError("--run needs --encoder (the speech encoder its denoiser was trained on)")
    samplers = (
        [(s.split(":")[0], int(s.split(":")[1]) if ":" in s else 10) for s in args.samplers.split(",")]
        if args.samplers
        else None
    )
    if args.append:  # refuse now what append_report would refuse after minutes of sampling
        utts = _utterances(args.corpus, args.split, args.source, args.limit, args.origin)
        header = {
            "split": args.split,
            "source": source_label(args.source, args.origin),
            "utterances": len(utts),
            "guidance": args.guidance,
        }
        check_append(args.out, header, [u["id"] for u in utts])
    result = evaluate(
        runs,
        corpus=args.corpus,
        head_dir=args.head,
        encoder_path=args.encoder,
        m2s_run=args.m2s,
        samplers=samplers or RUN_SAMPLERS,
        bundle_samplers=samplers,
        n_samples=args.samples,
        split=args.split,
        source=args.source,
        origin=args.origin,
        limit=args.limit,
        guidance=args.guidance,
        peers=args.peer,
        bundles=bundles,
        bundle_preset=args.bundle_preset,
    )
    if args.append:
        result = append_report(result, args.out)
    else:
        write_report(result, args.out)
    to_stdout(markdown(result))  # the evaluation table asked for
    return 0


def source_label(source, origin) -> str | None:
    """What a report's "source" says: --source and/or --origin, as given."""
    return " ".join(x for x in (source, origin) if x) or None


def _utterances(corpus, split, source, limit, origin=None):
    from training.speech.data import spread_over_speakers, utterances

    utts = utterances(corpus, split)
    if source:
        utts = [u for u in utts if u.get("source") == source]
    if origin:
        utts = [u for u in utts if u.get("origin", u.get("source")) == origin]
    if not utts:
        raise DataError(f"no {split} utterances{' of source ' + source if source else ''} in {corpus}")
    return spread_over_speakers(utts, limit)


class Scorer:
    """Torch twin of Engine.score: M2S mel of a take vs the speech's log-mel."""

    def __init__(self, m2s_run, head_dir):
        from training.m2s.train import load_m2s

        self.model, _ = load_m2s(m2s_run, head_dir)

    @torch.no_grad()
    def __call__(self, audio, speaker, x: np.ndarray) -> np.ndarray:
        """Scores (S,) for takes x (S, T, 53)."""
        t = torch.from_numpy(x).float()
        spk = torch.from_numpy(np.repeat(speaker[None], len(x), 0)).float()
        mel, _ = self.model(t[..., :50], t[..., 50:], spk)
        speech = log_mel(audio)
        n = min(mel.shape[1], len(speech))
        return np.array([band_correlation(m[:n].numpy(), speech[:n]) for m in mel])


def evaluate(
    runs: dict,
    *,
    corpus,
    head_dir,
    encoder_path,
    m2s_run=None,
    samplers=RUN_SAMPLERS,
    n_samples: int = 32,
    split: str = "test",
    source=None,
    limit=None,
    origin=None,
    guidance: float = 1.0,
    peers=(),
    bundles=None,
    bundle_preset: str = "default",
    bundle_samplers=None,
) -> dict:
    """`bundle_samplers` (sampler, steps) pairs: a row per pair for each bundle, with the preset's lips
    and guidance (the sampler fidelity of what ships); None: the preset's own sampler."""
    from backend.headfile import load_head_file
    from training.denoiser.samplers import sample_takes
    from training.denoiser.stats import Normaliser
    from training.denoiser.train import load_run, run_encoder
    from training.m2s.vertices import RegionVertices
    from training.corpus.io import motion_draws
    from training.denoiser.data import motion_x
    from training.speech.data import load_audio, load_motion, load_motion_draws
    from training.speech.encoder import load_encoder
    from training.provenance import git_commit

    head_dir = Path(head_dir)
    head = load_head_file(head_dir / "head.npz")
    # every vertex by the closed form of the head model (equal to smplx.FLAME, tested in tests/m2s):
    # smplx's general forward costs ~3 ms a frame, i.e. most of the evaluation at 32 samples
    head_model = RegionVertices(head_dir)
    encoder = load_encoder(encoder_path) if encoder_path else None
    scorer = Scorer(m2s_run, head_dir) if m2s_run else None
    utts = _utterances(corpus, split, source, limit, origin)
    draw_peers = sorted({"draws", "draw-mean"} & set(peers))
    if draw_peers and any(len(motion_draws(u)) < 2 for u in utts):
        raise DataError(
            f"--peer {draw_peers[0]}: {corpus} has one motion draw per utterance; it needs a redrawn corpus"
        )
    data = []
    for u in tqdm(utts, desc="encode", mininterval=5, leave=False):
        audio = load_audio(corpus, u)
        # every draw only when a draw peer needs them (read once: draw 0 is the truth)
        motions = load_motion_draws(corpus, u) if draw_peers else [load_motion(corpus, u)]
        m = motions[0]
        x = motion_x(m)
        with torch.no_grad():
            feats = encoder.features_25(torch.from_numpy(audio)[None])[0] if encoder is not None else None
            n = min(len(x), len(feats)) if feats is not None else min(len(x), len(audio) // 640)
            gt = head_model(torch.from_numpy(x[:n])).numpy()
        spk = None
        if scorer is not None:
            from training.speech.speaker import embed_audio

            spk = embed_audio(audio)
        phones = list(zip(m["phones_start"], m["phones_end"], m["phones"])) if "phones" in m else []
        data.append(
            {
                "id": u["id"],
                "audio": audio[: n * 640],
                "feats": feats[:n] if feats is not None else None,
                "gt": gt,
                "speaker": spk,
                "phones": phones,
                "draws": [motion_x(o)[:n] for o in motions[1:]],
            }
        )

    rows = []
    for name, run in runs.items():
        model, stats, _ = load_run(run)
        own = run_encoder(run)  # a -T run: features from its own fine-tuned encoder, not --encoder
        run_data = data if own is None else [{**d, "feats": _features(own, d["audio"])} for d in data]
        norm = Normaliser(stats)
        settings = [("regression", 1)] if model.cfg.deterministic else samplers
        for sampler, steps in settings:
            per_utt, seconds = [], 0.0
            for d in tqdm(run_data, desc=f"{name} {sampler}:{steps}", mininterval=5):
                t0 = time.perf_counter()
                s = 1 if model.cfg.deterministic else n_samples
                z = sample_takes(model, d["feats"], list(range(s)), Schedule(), sampler, steps, guidance)
                x = norm.denormalise(z).numpy()
                seconds += time.perf_counter() - t0
                per_utt.append(_take_metrics(x, d, head_model, head, scorer))
            rows.append(
                {
                    "variant": name,
                    "run": str(run),
                    "sampler": sampler,
                    "steps": steps,
                    "samples": 1 if model.cfg.deterministic else n_samples,
                    "sample_seconds_per_utt": seconds / len(data),
                    **_summarise(per_utt, data),
                }
            )
    rows += [_peer_row(peer, data, head_dir, head_model, head, scorer) for peer in peers]
    for name, bundle_dir in (bundles or {}).items():
        from backend.engine import Engine

        engine = Engine(bundle_dir)  # loaded once, sampled with each sampler
        for sampler in bundle_samplers or [None]:
            rows.append(
                _bundle_row(
                    name,
                    bundle_dir,
                    data,
                    n_samples,
                    bundle_preset,
                    guidance,
                    head_model,
                    head,
                    scorer,
                    sampler,
                    engine,
                )
            )
    stamp = {"commit": git_commit(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    rows = [{**r, **stamp} for r in rows]  # rows of one table may come from several --append calls
    return {
        "rows": rows,
        "split": split,
        "source": source_label(source, origin),
        "utterances": len(data),
        "guidance": guidance,
        "corpus": str(corpus),
        "machine": f"{platform.node()} {platform.machine()} {torch.get_num_threads()} threads",
        **stamp,
        "units": "mm (LVE, DTW, FDD, DIV); correlations unitless; sync = mel-band correlation",
    }


@torch.no_grad()
def _take_metrics(x: np.ndarray, d: dict, head_model, head, scorer) -> dict:
    """Table-2 metrics of the takes x (S, T, 53) of one utterance, plus the M2S lip-sync score
    and its rank correlation with the per-take LVE."""
    verts = head_model(torch.from_numpy(x)).numpy()
    m = utterance_metrics(verts, d["gt"], head)
    m["lipcheck"] = _lip_checks(verts, d, head)
    if scorer is not None:
        scores = scorer(d["audio"], d["speaker"], x)
        m["sync"] = float(scores.mean())
        m["sync_lve_rank"] = spearman(scores, m["per_sample_lve"])
    m.pop("per_sample_lve")
    return m


def _lip_checks(verts: np.ndarray, d: dict, head) -> dict:
    """backend/lipcheck's geometric checks per take (needs only phone times) and the corpus
    articulation's vowel gap for the same phones."""
    up, lo = int(head["lip_upper"]), int(head["lip_lower"])
    phones = d.get("phones", [])
    shares, n = [], 0
    vowels, mins = [], []
    classes = lipcheck.frame_classes(phones, len(d["gt"]))
    kinds = len(lipcheck.FRAME_CLASSES)
    err_sum = np.zeros(kinds)
    for take in verts:
        err_sum += np.bincount(classes, weights=lip_errors(take, d["gt"], head["region_lips"]), minlength=kinds)
        gap = lip_distance(take, up, lo)
        mins.append(lipcheck.bilabial_min_gaps(gap, phones))
        share, n = lipcheck.closure_of(mins[-1])  # the m/p/b minima once per take
        shares.append(share)
        vowels.append(lipcheck.vowel_frames(gap, phones))
    gt_gap = lip_distance(d["gt"], up, lo)
    return {
        "closure": shares,
        "bilabials": n,
        "vowel": np.concatenate(vowels) if vowels else np.zeros(0),
        "vowel_gt": lipcheck.vowel_frames(gt_gap, phones),
        "mbp": np.concatenate(mins) if mins else np.zeros(0),
        "mbp_gt": lipcheck.bilabial_min_gaps(gt_gap, phones),
        "err_sum": err_sum,
        "err_frames": len(verts) * np.bincount(classes, minlength=kinds),  # every take has the same frames
    }


def _pool_lip_checks(per_utt: list[dict]) -> dict:
    """Closure share pooled over utterances (weighted by their m/p/b count) per take, then the
    mean and the worst take; median vowel gap of the takes and of the corpus articulation."""
    checks = [p["lipcheck"] for p in per_utt if "lipcheck" in p]
    with_b = [c for c in checks if c["bilabials"]]
    total = sum(c["bilabials"] for c in with_b)
    per_take = np.sum([np.asarray(c["closure"]) * c["bilabials"] for c in with_b], axis=0) / total if total else None
    pool = lambda key: np.concatenate([c[key] for c in checks]) if checks else np.zeros(0)
    med = lambda v: float(np.median(v)) if len(v) else float("nan")
    vowel, vowel_gt = pool("vowel"), pool("vowel_gt")
    return {
        "closure": {"mean": float(per_take.mean()) if per_take is not None else float("nan"), "std": 0.0},
        "closure_min": {"mean": float(per_take.min()) if per_take is not None else float("nan"), "std": 0.0},
        # the median smallest m/p/b gap: how near the takes come to closing (pseudo-GT: ~0.6 mm)
        "mbp_gap": {"mean": med(pool("mbp")), "std": 0.0},
        "mbp_gap_gt": {"mean": med(pool("mbp_gt")), "std": 0.0},
        "vowel_gap": {"mean": med(vowel), "std": 0.0},
        "vowel_gap_gt": {"mean": med(vowel_gt), "std": 0.0},
        "bilabials": total,
        **_frame_lve(checks),
    }


def _frame_lve(checks: list[dict]) -> dict:
    """FRAME_LVE pooled over utterances and takes, each with its share of the frames."""
    if not checks:
        return {}
    err = np.sum([c["err_sum"] for c in checks], axis=0)
    frames = np.sum([c["err_frames"] for c in checks], axis=0)
    parts = {
        f"lve_{kind}": {"mean": float(e / f) if f else float("nan"), "std": 0.0, "share": float(f / frames.sum())}
        for kind, e, f in zip(lipcheck.FRAME_CLASSES, err, frames)
    }
    # over all frames alike (the table's LVE averages utterances, so long clips weigh the same)
    return {**parts, "lve_frames": {"mean": float(err.sum() / frames.sum()), "std": 0.0, "share": 1.0}}


@torch.no_grad()
def _features(encoder, audio: np.ndarray) -> torch.Tensor:
    return encoder.features_25(torch.from_numpy(audio)[None])[0]


def _bundle_row(
    name, bundle_dir, data, n_samples, preset, guidance, head_model, head, scorer, sampler=None, engine=None
) -> dict:
    """A model bundle as the backend runs it (its audio-encoder graph, sampler preset, ONNX denoiser):
    what an artist gets, measured like the runs. `sampler` (name, steps) in place of the preset's;
    `engine`: the bundle already loaded."""
    from backend.engine import Engine

    engine = engine or Engine(bundle_dir)
    sampler, steps = sampler or (engine.presets[preset]["sampler"], int(engine.presets[preset]["steps"]))
    per_utt, seconds, lip_g = [], 0.0, []
    for d in tqdm(data, desc=f"bundle {name} {sampler}:{steps}", mininterval=5):
        t0 = time.perf_counter()
        res = engine.animate(
            d["audio"], takes=n_samples, seed=0, preset=preset, sampler=sampler, steps=steps, guidance=guidance
        )
        x = np.stack([np.concatenate([t.exp, t.jaw], 1) for t in res.takes])[:, : len(d["gt"])].astype(np.float32)
        seconds += time.perf_counter() - t0
        per_utt.append(_take_metrics(x, d, head_model, head, scorer))
        lip_g.append(res.lip_guidance)
    return {
        "variant": name,
        "run": str(bundle_dir),
        # the guidance the mean lips got, averaged over the clips (varies by clip with lip_opening_std_mm)
        "lip_guidance": None if None in lip_g else float(np.mean(lip_g)),
        "sampler": sampler,
        "steps": steps,
        "samples": n_samples,
        "sample_seconds_per_utt": seconds / len(data),
        **_summarise(per_utt, data),
    }


PEER_RUNS = {
    "allphone": "pocketsphinx allphone -> corpus articulation (neutral style)",
    "draws": "the corpus's other motion draws of the utterance, scored against draw 0",
    "draw-mean": "the mean of the corpus's other motion draws, scored against draw 0",
}


def _peer_takes(peer: str, d: dict, face) -> np.ndarray:
    """A peer's takes (S, T, 53) of one utterance."""
    if peer == "allphone":
        from training.peers.allphone import peer_motion

        return peer_motion(d["audio"], len(d["gt"]), face)[None]
    if not d.get("draws"):
        raise DataError(f"--peer {peer}: utterance {d['id']} has one motion draw; it needs a redrawn corpus")
    draws = np.stack(d["draws"])
    return draws if peer == "draws" else draws.mean(0, keepdims=True)


def _peer_row(peer: str, data: list, head_dir, head_model, head, scorer) -> dict:
    """A peer as a row: a classic pipeline (training/peers, 1 take per utterance) or the corpus's
    own renditions (`draws`: K - 1 takes; `draw-mean`: 1)."""
    from training.corpus.face import Face

    if peer not in PEER_RUNS:
        raise ValueError(f"unknown peer {peer!r}")
    face = None
    if peer == "allphone":
        try:
            face = Face.load(head_dir)
        except ValueError as err:
            raise DataError(f"--peer {peer}: {err}") from err
    per_utt, seconds, samples = [], 0.0, 0
    for d in tqdm(data, desc=f"peer-{peer}", mininterval=5):
        t0 = time.perf_counter()
        x = _peer_takes(peer, d, face)
        seconds += time.perf_counter() - t0
        samples = len(x)
        per_utt.append(_take_metrics(x, d, head_model, head, scorer))
    return {
        "variant": f"peer-{peer}",
        "run": PEER_RUNS[peer],
        "sampler": "peer",
        "steps": 1,
        "samples": samples,
        "sample_seconds_per_utt": seconds / len(data),
        **_summarise(per_utt, data),
    }


def _summarise(per_utt: list[dict], data: list[dict]) -> dict:
    """Mean and std over utterances, plus the per-utterance values (paired comparisons: `effects`)."""
    keys = [k for k in METRICS if k in per_utt[0]]
    pooled = _pool_lip_checks(per_utt)
    return {
        "metrics": {
            **{k: _mean_std([p[k] for p in per_utt if k in p]) for k in keys},
            **{k: v for k, v in pooled.items() if k in LIP_CHECKS + FRAME_LVE},
        },
        "bilabials": pooled["bilabials"],
        "per_utterance": {
            "ids": [d["id"] for d in data],
            **{k: [float(p.get(k, float("nan"))) for p in per_utt] for k in keys},
        },
    }


def _mean_std(values) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    return {"mean": float(v.mean()) if len(v) else float("nan"), "std": float(v.std()) if len(v) else float("nan")}


def _cell(value) -> str:
    """A table cell: undefined figures (null in the JSON, NaN in memory) read 'n/a'."""
    return "n/a" if value is None or value != value else f"{value:.3f}"


def markdown(result: dict) -> str:
    keys = [k for k in METRICS + LIP_CHECKS if any(k in r["metrics"] for r in result["rows"])]
    head = "| variant | sampler | " + " | ".join(keys) + " | s/utt |"
    lines = [
        f"Denoiser evaluation: {result['utterances']} {result['split']} utterances"
        f"{' (' + result['source'] + ')' if result['source'] else ''}; {result['units']}; "
        f"{result['machine']}, {result['date']}, commit {result['commit']}",
        "",
        head,
        "|" + "---|" * (len(keys) + 3),
    ]
    for r in result["rows"]:
        cells = [_cell(r["metrics"][k]["mean"]) if k in r["metrics"] else "" for k in keys]
        lines.append(
            f"| {r['variant']} | {r['sampler']}:{r['steps']} | "
            + " | ".join(cells)
            + f" | {r['sample_seconds_per_utt']:.2f} |"
        )
    return "\n".join(lines) + "\n" + _frame_lve_table(result["rows"])


def _frame_lve_table(rows: list[dict]) -> str:
    """LVE split by where its frames fall (FRAME_LVE), for rows that have it."""
    rows = [r for r in rows if all(k in r["metrics"] for k in FRAME_LVE)]
    if not rows:
        return ""
    shares = rows[0]["metrics"]
    lines = [
        "",
        "Where the lip error falls: the per-frame lip error (LVE's, mm) averaged over all frames of "
        "every take, and over the frames inside each kind of phone (their share of the frames in brackets).",
        "",
        "| variant | sampler | "
        + " | ".join(
            "all frames" if k == "lve_frames" else f"{k.removeprefix('lve_')} ({shares[k]['share']:.0%})"
            for k in FRAME_LVE
        )
        + " |",
        "|" + "---|" * (len(FRAME_LVE) + 2),
    ]
    for r in rows:
        cells = [_cell(r["metrics"][k]["mean"]) for k in FRAME_LVE]
        lines.append(f"| {r['variant']} | {r['sampler']}:{r['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def append_report(result: dict, stem: Path) -> dict:
    """Merge `result` into `<stem>.json` under a file lock (several evaluations may finish at
    once): rows of the same variant and sampler are replaced. The utterances, split and source
    must be the same, so every row of a table is measured on the same speech."""
    import fcntl

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = stem.with_suffix(".json")
        if path.exists():
            old = jsonio.read_json(path)
            _refuse_other(path, old, result, _ids(result))
            new = {(r["variant"], r["sampler"], r["steps"]) for r in result["rows"]}
            rows = [r for r in old["rows"] if (r["variant"], r["sampler"], r["steps"]) not in new]
            result = {**result, "rows": rows + result["rows"]}
        write_report(result, stem)
    return result


APPEND_KEYS = ("split", "source", "utterances", "guidance")  # what rows of one table share


def _refuse_other(path: Path, old: dict, header: dict, ids: list) -> None:
    for key in APPEND_KEYS:
        if old[key] != header[key]:
            raise DataError(f"--append: {path} has {key}={old[key]!r}, this evaluation {header[key]!r}")
    if _ids(old) != ids:
        raise DataError(f"--append: {path} was measured on other utterances")


def check_append(stem: Path, header: dict, ids: list) -> None:
    """append_report's refusal before the evaluation runs: `header` holds APPEND_KEYS of the
    evaluation about to run, `ids` its utterances. Nothing to check when the table is new."""
    path = Path(stem).with_suffix(".json")
    if path.exists():
        _refuse_other(path, jsonio.read_json(path), header, ids)


def _ids(result: dict) -> list:
    return result["rows"][0]["per_utterance"]["ids"] if result["rows"] else []


def write_report(result: dict, stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(stem.with_suffix(".json"), jsonio.finite(result))
    stem.with_suffix(".md").write_text(markdown(result))
    shown = [k for k in ("lve", "l_pcc", "lip_dtw", "s_div_l") if k in result["rows"][0]["metrics"]]
    rows = result["rows"]
    fig, axes = plt.subplots(
        1, len(shown), figsize=(2.8 * len(shown) + 1.5, 0.28 * len(rows) + 1.2), sharey=True, squeeze=False
    )
    labels = [f"{r['variant']} ({r['sampler']}:{r['steps']})" for r in rows]
    for ax, k in zip(axes[0], shown):  # one row per variant, labelled once on the left
        ax.barh(
            range(len(rows)),
            [r["metrics"][k]["mean"] for r in rows],
            xerr=[r["metrics"][k]["std"] for r in rows],
            color="tab:blue",
            alpha=0.8,
        )
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.set_title(f"{k} (mean ± sd over utterances)", fontsize=8)
    axes[0][0].invert_yaxis()  # shared: once, so the table's first row is on top
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=100)
    plt.close(fig)
