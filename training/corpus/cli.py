"""`thunder-train corpus build|redraw|report|preview|import`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from training.config import add_config_options
from training.console import to_stdout

log = logging.getLogger(__name__)


def default_cache() -> str:
    return os.environ.get("THUNDER_CACHE", str(Path.home() / ".cache" / "thunder"))


def resolve_head(head: str | None, cache: str) -> str:
    """--head, or the stand-in head built once into the cache."""
    if head:
        return head
    path = Path(cache) / "head-standin"
    if not (path / "head.npz").exists():
        from training.head.build import write_head_folder

        log.info("no --head given: building the stand-in head into %s", path)
        write_head_folder(path)
    return str(path)


def register(sub) -> None:
    p = sub.add_parser("corpus", help="build, check, preview or import a speech + motion corpus")
    cs = p.add_subparsers(dest="corpus_command", required=True)

    b = cs.add_parser("build", help="synthesise a paired speech + FLAME-motion corpus")
    b.add_argument("--out", required=True)
    add_config_options(b)
    # the corpus's size and sources: default None = the --config file's `corpus` section
    b.add_argument("--hours", type=float, default=None, help="hours of speech")
    b.add_argument("--speakers", dest="espeak_speakers", type=int, default=None, help="espeak-ng speakers")
    b.add_argument(
        "--no-real", dest="real", action="store_const", const=False, default=None, help="leave out the real speaker"
    )
    # run settings
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--head", help="head folder (default: the stand-in head, built into the cache)")
    b.add_argument("--cache", default=default_cache(), help="downloads and alignments (default %(default)s)")
    b.set_defaults(func=_build)

    r = cs.add_parser("report", help="check a corpus: closures, pauses, jaw vs openness, splits")
    r.add_argument("corpus")
    r.add_argument("--head", help="head folder the corpus was built on (default: the stand-in head from the cache)")
    r.add_argument("--cache", default=default_cache())
    r.add_argument("--out", help="also write the report as JSON here")
    r.add_argument("--max-utts", type=int, default=400, help="utterances to check (evenly spread)")
    r.add_argument("--sheet", help="also draw FILE.png: four motion draws of one sentence at the same frames")
    r.add_argument("--sheet-utt", help="the sentence for --sheet (default: a 3-6 s one with the most draws)")
    r.add_argument("--renderer", choices=("numpy", "blender"), default="numpy", help="head renderer for --sheet")
    r.set_defaults(func=_report)

    d = cs.add_parser("redraw", help="K motion draws per utterance: same speech and lips, other upper faces")
    d.add_argument("--corpus", required=True, help="corpus to redraw (read only)")
    d.add_argument("--draws", type=int, required=True, help="motion draws per utterance (K)")
    d.add_argument("--out", required=True, help="the new corpus (its wav/ links to the source's)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--head", help="head folder the corpus was built on (default: the stand-in head from the cache)")
    d.add_argument("--cache", default=default_cache())
    d.set_defaults(func=_redraw)

    v = cs.add_parser("preview", help="render an utterance: the head saying it, waveform and phones, audio")
    v.add_argument("utt", help="utterance id (with --corpus) or a motion .npz path")
    v.add_argument("--corpus", help="corpus folder")
    v.add_argument("--out", required=True, help="FILE.mp4 (or .png for a frame strip)")
    v.add_argument("--head", help="head folder (default: the stand-in head from the cache)")
    v.add_argument("--cache", default=default_cache())
    v.add_argument("--renderer", choices=("auto", "blender", "numpy"), default="auto")
    v.add_argument("--seconds", type=float, help="only the first N seconds")
    v.set_defaults(func=_preview)

    a = cs.add_parser("align-check", help="synthesis + DTW alignment against pocketsphinx, on English clips")
    a.add_argument("--cache", default=default_cache())
    a.add_argument("--clips", type=int, default=120)
    a.add_argument("--out", type=Path, default=Path("reports/corpus-align-check"))
    a.set_defaults(func=_align_check)

    i = cs.add_parser("import", help="import real pseudo-ground-truth (TFHP / DiffPoseTalk npz, or WAV + npz)")
    i.add_argument("src", help="folder to import")
    i.add_argument("--out", required=True)
    i.add_argument("--layout", choices=("auto", "tfhp", "folder"), default="auto")
    i.add_argument("--head-id", default="import", help="head the motion belongs to (written to the manifest)")
    i.set_defaults(func=_import)


def _build(args) -> int:
    from .build import build, corpus_config

    head = resolve_head(args.head, args.cache)
    cfg, origin = corpus_config(
        args.config,
        out=args.out,
        head=head,
        cache=args.cache,
        seed=args.seed,
        workers=args.workers,
        hours=args.hours,
        espeak_speakers=args.espeak_speakers,
        real=args.real,
    )
    build(cfg, command=" ".join(["thunder-train"] + sys.argv[1:]), origin=origin)
    return 0


def _redraw(args) -> int:
    from .redraw import redraw

    redraw(
        args.corpus,
        args.out,
        resolve_head(args.head, args.cache),
        args.draws,
        seed=args.seed,
        workers=args.workers,
        command=" ".join(["thunder-train"] + sys.argv[1:]),
    )
    return 0


def _align_check(args) -> int:
    from .align_check import check, write

    to_stdout(write(check(args.cache, args.clips), args.out))
    return 0


def _report(args) -> int:
    from .report import print_report, report

    res = report(args.corpus, resolve_head(args.head, args.cache), max_utts=args.max_utts)
    print_report(res)
    if args.out:
        import json

        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    if args.sheet:
        from .preview import draws_sheet

        path = draws_sheet(
            args.corpus, args.sheet, resolve_head(args.head, args.cache), utt=args.sheet_utt, renderer=args.renderer
        )
        log.info("wrote %s", path)
    return 0 if res["passed"] else 1


def _preview(args) -> int:
    from .preview import preview

    path = preview(
        args.utt,
        args.out,
        corpus=args.corpus,
        head=resolve_head(args.head, args.cache),
        renderer=args.renderer,
        seconds=args.seconds,
    )
    log.info("wrote %s", path)
    return 0


def _import(args) -> int:
    from .importers import import_corpus

    manifest = import_corpus(args.src, args.out, layout=args.layout, head_id=args.head_id)
    log.info(
        "imported %d utterances from %d speakers -> %s",
        len(manifest["utterances"]),
        len(manifest["speakers"]),
        args.out,
    )
    return 0
