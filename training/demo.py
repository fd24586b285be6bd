"""`thunder-train demo`: the main job on the bundled defaults.

Builds the stand-in head, renders it in headless Blender (neutral, jaw open,
pucker, smile, blink, brow raise) as a contact sheet, and saves a .blend with the
rig. Later stages extend this to keying a take from speech.
"""
from __future__ import annotations

import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the bundled defaults")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from .head.build import write_head_folder
    from .head.render import render_head_sheet

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    head_dir = out / "head"
    summary = write_head_folder(head_dir)
    print(f"[demo] head: {summary['vertices']} vertices, id {summary['head_id'][:12]} ({time.time() - t0:.1f} s)")
    sheet = render_head_sheet(head_dir, out / "head_poses.png", blend_path=out / "demo.blend")
    print(f"[demo] contact sheet: {sheet}")
    print(f"[demo] rigged scene: {out / 'demo.blend'}")
    print(f"[demo] done in {time.time() - t0:.1f} s")
    return 0
