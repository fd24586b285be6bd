"""`thunder-train demo`: the main job on the bundled defaults, end to end.

Always: builds the stand-in head and renders it in headless Blender (neutral,
jaw open, pucker, smile, blink, brow raise) as a contact sheet, and saves a
.blend with the rig. With a model bundle (`--bundle`, else $THUNDER_BUNDLE, else
backend/models/thunder-base when it has a manifest.json) it goes on: starts the
bundled backend on CPU through the add-on's launcher, builds a scene with the
bundle's head rig and a sound strip of the project's own speech sample
(assets/speech/demo.wav), keys several takes through the add-on's headless path
(the one `thunder batch` runs), saves demo.blend and renders preview.mp4
(Workbench, audio muxed in) with the best take's seed and lip-sync score burnt in.
The backend is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_WAV = ROOT / "assets" / "speech" / "demo.wav"
FPS = 25  # the backend's own rate: no resampling of the keys in the demo scene
NEEDS_BUNDLE = (
    "[demo] the full demo (backend, keyed takes, preview.mp4) needs a model bundle: pass --bundle DIR "
    "or set THUNDER_BUNDLE; make one with `thunder-train export --out backend/models/thunder-base "
    "--denoiser RUN --encoder RUN --m2s RUN --head DIR`, or a random-weight one for a dry run with "
    "`thunder-train export --tiny --head {head} --out out/thunder-tiny`"
)


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must look like 480x480, not {text!r}") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"must be even and at least 16x16 (H.264), not {text!r}")
    return w, h


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the bundled defaults")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument(
        "--bundle",
        default=None,
        help="model bundle (default: $THUNDER_BUNDLE, else backend/models/thunder-base if present)",
    )
    p.add_argument("--frames", type=int, default=None, help="preview frames (default: the whole speech sample)")
    p.add_argument(
        "--resolution", type=_resolution, default=(480, 480), metavar="WxH", help="preview size (default 480x480)"
    )
    p.add_argument("--takes", type=int, default=4, help="takes to key and rank (default 4)")
    p.add_argument("--audio", type=Path, default=DEMO_WAV, help="speech to key (default: the bundled sample)")
    p.set_defaults(func=run)


def find_bundle(arg: str | None) -> Path | None:
    """The bundle to run, None when there is none; a bundle named explicitly must exist."""
    from backend import bundle as bundles

    named = arg or os.environ.get("THUNDER_BUNDLE")
    if named:
        if not (Path(named) / "manifest.json").is_file():
            raise SystemExit(f"thunder-train demo: no model bundle at {named} (manifest.json missing)")
        return Path(named)
    shipped = bundles.DEFAULT_BUNDLE
    return shipped if (shipped / "manifest.json").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def bundled_backend(bundle: Path, timeout: float = 180.0):
    """`thunder serve` on CPU on a free loopback port, through the add-on's launcher; yields its URL."""
    from blender_thunder.core import launcher
    from blender_thunder.core.client import Client

    client = Client(f"http://127.0.0.1:{_free_port()}")
    launcher.start(bundle=str(bundle), port=client.port, device="cpu")
    try:
        health = launcher.wait_ready(client, timeout=timeout)
        if health.get("status") not in (None, "ok"):
            raise SystemExit(f"thunder-train demo: the backend is not ready: {health}")
        yield client.url
    finally:
        launcher.stop()


def build_scene(bundle: Path, wav: Path, blend: Path, resolution: tuple[int, int]):
    """A scene with the bundle's head rig, a camera and a sound strip, saved to `blend`."""
    import bpy

    from backend.headfile import load_head_file
    from blender_thunder.rig import build_rig
    from blender_thunder.utils.compat import top_strips

    from .render import add_camera, new_scene

    manifest = json.loads((bundle / "manifest.json").read_text())
    head = load_head_file(bundle / manifest["head"]["file"])
    scene = new_scene(resolution)
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    build_rig(head)
    add_camera(scene, target=(0.0, 0.0, -0.005))
    strip = top_strips(scene).new_sound("speech", str(wav.resolve()), channel=1, frame_start=1)
    scene.frame_start, scene.frame_end = 1, int(strip.frame_final_end) - 1
    bpy.ops.wm.save_as_mainfile(filepath=str(blend.resolve()))
    return scene


def key_takes(url: str, n_takes: int) -> dict:
    """Key the scene's sound strip through the add-on's headless path; the strip's report row."""
    from blender_thunder import headless

    report = headless.main({"takes": n_takes, "seed": 0, "url": url})
    rows = report["rows"]
    if not rows or any(r["status"] != "keyed" for r in rows):
        raise SystemExit(f"thunder-train demo: keying failed: {[(r['status'], r['message']) for r in rows]}")
    return rows[0]


def _burn(img, text: str):
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(img)
    size = max(8, img.height // 24)
    while size > 8 and draw.textlength(text, font=ImageFont.load_default(size=size)) > img.width - 12:
        size -= 1  # small previews: shrink the label rather than cut it
    font = ImageFont.load_default(size=size)
    draw.rectangle((0, img.height - size - 8, img.width, img.height), fill=(0, 0, 0))
    draw.text((6, img.height - size - 5), text, fill=(255, 255, 255), font=font)
    return img


@contextmanager
def _quiet_stdout():
    """Blender prints a line per rendered frame from C: keep the progress bar readable."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def contact_strip(stills: list, out_png: Path, height: int = 240) -> Path:
    """Stills side by side (the README's pictures of the preview)."""
    from PIL import Image

    thumbs = [im.resize((round(im.width * height / im.height), height)) for im in stills]
    strip = Image.new("RGB", (sum(t.width for t in thumbs), height))
    x = 0
    for t in thumbs:
        strip.paste(t, (x, 0))
        x += t.width
    strip.save(out_png)
    return out_png


def render_preview(scene, wav: Path, out_mp4: Path, label: str, frames: int | None, n_stills: int = 6) -> Path:
    """Workbench frames of the scene with `label` burnt in, H.264 with the speech muxed in; also
    `<name>_strip.png`, `n_stills` evenly spaced frames with their time."""
    import imageio_ffmpeg
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from .render import render_still

    f0 = scene.frame_start
    f1 = scene.frame_end if frames is None else min(scene.frame_end, f0 + frames - 1)
    size = (scene.render.resolution_x, scene.render.resolution_y)
    still = out_mp4.parent / f".{out_mp4.stem}_frame.png"
    picks = set(np.linspace(f0, f1, n_stills).round().astype(int).tolist()) if n_stills else set()
    stills = []
    # -shortest: a preview cut short by --frames cuts the audio with it
    writer = imageio_ffmpeg.write_frames(
        str(out_mp4),
        size,
        fps=scene.render.fps / scene.render.fps_base,
        macro_block_size=2,
        audio_path=str(wav),
        audio_codec="aac",
        output_params=["-shortest"],
        ffmpeg_log_level="error",
    )
    writer.send(None)
    try:
        with _quiet_stdout():
            for f in tqdm(range(f0, f1 + 1), desc="[demo] preview", unit="frame"):
                scene.frame_set(f)
                frame = Image.open(render_still(scene, still)).convert("RGB")
                img = _burn(frame.copy(), label)
                writer.send(np.ascontiguousarray(np.asarray(img)).tobytes())
                if f in picks:
                    stills.append(_burn(frame, f"{(f - f0) / (scene.render.fps / scene.render.fps_base):.2f} s"))
    finally:
        writer.close()
        still.unlink(missing_ok=True)
    if stills:
        contact_strip(stills, out_mp4.with_name(f"{out_mp4.stem}_strip.png"))
    return out_mp4


def run_full(bundle: Path, out: Path, args) -> None:
    import bpy

    from blender_thunder.utils import takes

    wav = Path(args.audio)
    if not wav.is_file():
        raise SystemExit(f"thunder-train demo: no such audio file: {wav}")
    t0 = time.time()
    blend = out / "demo.blend"
    with bundled_backend(bundle) as url:
        print(f"[demo] backend: {bundle} on {url} (CPU) ({time.time() - t0:.1f} s)")
        scene = build_scene(bundle, wav, blend, args.resolution)
        row = key_takes(url, args.takes)
    print(f"[demo] keyed {row['takes']} takes in {row['seconds']:.1f} s:")
    for act in sorted(takes.scene_takes(scene), key=lambda a: -takes.meta(a)["score"]):
        m = takes.meta(act)
        print(
            f"[demo]   {act.name:24s} seed {m['seed']:<6d} lip-sync score {m['score']:.3f}"
            + ("  <- best, plays" if act.name == row["best_action"] else "")
        )
    bpy.ops.wm.save_mainfile()
    print(f"[demo] keyed scene: {blend}")
    label = f"THUNDER  seed {row['best_seed']}  lip-sync {row['best_score']:.3f}  (best of {row['takes']})"
    mp4 = render_preview(scene, wav, out / "preview.mp4", label, args.frames)
    (out / "demo.blend1").unlink(missing_ok=True)  # Blender's backup of the scene before keying
    print(f"[demo] preview: {mp4} (stills: {mp4.with_name(mp4.stem + '_strip.png')})")
    take_pictures(bundle, scene, wav, out, row["best_action"])


def take_pictures(bundle: Path, scene, wav: Path, out: Path, best_action: str) -> None:
    """takes_sheet.png (every take at the same frames) and lip_gap.png (studio/take_figures.py);
    the best take plays again afterwards."""
    import bpy

    from backend.headfile import load_head_file
    from blender_thunder.core.lipseal import lip_gap_mm
    from blender_thunder.utils import rigs, takes

    from . import take_figures

    manifest = json.loads((bundle / "manifest.json").read_text())
    head = load_head_file(bundle / manifest["head"]["file"])
    acts = sorted(takes.scene_takes(scene), key=lambda a: takes.meta(a)["seed"])
    curves = {}
    phones = None
    if wav.resolve() == DEMO_WAV.resolve():  # the bundled sentence: its phones and pseudo-GT are known
        speech = take_figures.demo_speech()
        phones = speech.phones
        exp, jaw = take_figures.pseudo_gt(out / "head", speech)
        curves["pseudo-GT (corpus articulation)"] = lip_gap_mm(exp, jaw, head)
    for act in acts:
        t = takes.stored_take(act)
        curves[f"take seed {t.seed}"] = lip_gap_mm(t.exp, t.jaw, head)
    plot = take_figures.lip_gap_plot(curves, out / "lip_gap.png", phones)
    rig = rigs.resolve(rigs.find_in_scene(scene))
    frames = take_figures.sheet_frames(scene, phones)
    sheet = take_figures.takes_sheet(scene, rig, [takes.take_actions(a) for a in acts], frames, out / "takes_sheet.png")
    takes.show(rig, takes.take_actions(bpy.data.actions[best_action]))
    print(f"[demo] takes side by side: {sheet}; lip gap per take: {plot}")


def run(args) -> int:
    from training.head.build import write_head_folder
    from .render import render_head_sheet

    bundle = find_bundle(args.bundle)
    if (args.frames is not None and args.frames < 1) or args.takes < 1:
        raise SystemExit("thunder-train demo: --frames and --takes must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    head_dir = out / "head"
    summary = write_head_folder(head_dir)
    print(f"[demo] head: {summary['vertices']} vertices, id {summary['head_id'][:12]} ({time.time() - t0:.1f} s)")
    sheet = render_head_sheet(head_dir, out / "head_poses.png", blend_path=out / "demo.blend")
    print(f"[demo] contact sheet: {sheet}")
    if bundle is None:
        print(f"[demo] rigged scene: {out / 'demo.blend'}")
        print(NEEDS_BUNDLE.format(head=head_dir))
    else:
        run_full(bundle, out, args)
    print(f"[demo] done in {time.time() - t0:.1f} s")
    return 0
