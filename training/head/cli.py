"""`thunder-train head build|import`."""

from __future__ import annotations

import json
import logging

from training.console import to_stdout

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("head", help="build the stand-in head or import a real FLAME folder")
    hs = p.add_subparsers(dest="head_command", required=True)
    b = hs.add_parser("build", help="write the stand-in head (a FLAME-format folder + head.npz)")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0, help="0 = the canonical head; others vary proportions")
    b.add_argument("--format", choices=("npz", "pkl"), default="npz")
    b.set_defaults(func=_build)
    i = hs.add_parser("import", help="write head.npz for a real FLAME folder (FLAME_NEUTRAL.pkl + FLAME_masks.pkl)")
    i.add_argument("--flame", required=True, help="folder with the licensed FLAME files")
    i.add_argument("--out", help="where to write head.npz (default: the FLAME folder)")
    i.set_defaults(func=_import)


def _build(args) -> int:
    from .build import write_head_folder

    summary = write_head_folder(args.out, seed=args.seed, fmt=args.format)
    to_stdout(json.dumps(summary, indent=2))  # the head's summary (vertices, head_id) for a script
    return 0


def _import(args) -> int:
    from .flame_import import import_flame

    path = import_flame(args.flame, args.out)
    log.info("wrote %s", path)
    return 0
