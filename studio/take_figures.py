"""The demo's two pictures of its takes (issue #15): do they differ where they may and agree
where they must?

- `takes_sheet.png`: every take rendered at the same frames, one row per take. The upper
  face (brows, lids, mood) may differ from row to row; the lips should not.
- `lip_gap.png`: the lip gap over time of every take, with the m/p/b phones shaded (the
  lips must close inside each) and, for the bundled sentence, the corpus engine's own
  articulation of its phones (the pseudo-ground truth training teaches, average speaker).

The bundled sentence's phones come from espeak-ng itself: `demo_speech()` synthesises it
again with the settings it was made with, and a test checks that this reproduces
assets/speech/demo.wav, so the phone times belong to that recording.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# how assets/speech/demo.wav was made (assets/speech/README.md)
DEMO_TEXT = "Thunder turns your voice into a talking head, right inside Blender."
DEMO_VOICE, DEMO_RATE = "en-us", 165
SHEET_FRAMES = 5


def demo_speech():
    """The bundled sentence as the corpus engine speaks it: 16 kHz audio, phones, stress. From a
    freshly loaded espeak-ng: its output depends on what the library spoke before (8 samples
    longer after other voices in the same process)."""
    from training.corpus import espeak
    from training.corpus.sources import espeak_speech

    espeak.reset()
    return espeak_speech(DEMO_TEXT, DEMO_VOICE, DEMO_RATE)


def pseudo_gt(head_dir: Path, speech) -> tuple[np.ndarray, np.ndarray]:
    """The corpus engine's articulation of `speech`'s phones on the head folder, average speaker."""
    from training.corpus.face import Face, draw_motion
    from training.corpus.speakers import neutral_style

    face, seeds = Face.load(head_dir), np.random.SeedSequence(0)
    return draw_motion(face, speech.phones, speech.duration, neutral_style(), seeds, speech.stressed)


def lip_gap_plot(curves: dict, out_png: Path, phones=None, fps: float = 25.0) -> Path:
    """Lip gap (mm) over time per take (name -> (T,)); m/p/b phones shaded, with each take's
    closure share in the legend when `phones` are known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backend import lipcheck

    fig, ax = plt.subplots(figsize=(11, 3.6))
    if phones:
        for s, e, lab in phones:
            if str(lab).upper().rstrip("012") in lipcheck.BILABIAL:
                ax.axvspan(s, e, color="tab:red", alpha=0.15, lw=0)
                ax.text((s + e) / 2, 0.98, str(lab).lower(), transform=ax.get_xaxis_transform(), ha="center", va="top")
    for name, gap in curves.items():
        label = name
        if phones:
            share, n = lipcheck.closure(gap, phones, fps)
            label += f" (closes {share:.0%} of {n} m/p/b)"
        style = {"color": "k", "lw": 2.2} if name.startswith("pseudo-GT") else {"lw": 1.2, "alpha": 0.85}
        ax.plot(np.arange(len(gap)) / fps, gap, label=label, **style)
    ax.axhline(lipcheck.CLOSED_MM, color="tab:red", ls=":", lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("lip gap (mm)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("lip gap per take; shaded: m/p/b phones (the lips must close inside each); dotted: closed (2 mm)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def sheet_frames(scene, phones=None, n: int = SHEET_FRAMES, fps: float = 25.0) -> list[int]:
    """`n` frames spread over the speech (the first to the last non-pause phone)."""
    f0, f1 = scene.frame_start, scene.frame_end
    if phones:
        from training.corpus.phones import SIL

        spoken = [(s, e) for s, e, lab in phones if lab != SIL]
        if spoken:
            f0, f1 = f0 + int(spoken[0][0] * fps), min(f1, f0 + int(spoken[-1][1] * fps))
    return sorted(set(np.linspace(f0, f1, n + 2)[1:-1].round().astype(int).tolist()))


def takes_sheet(scene, rig, take_actions: list, frames: list[int], out_png: Path, zoom: float = 1.6) -> Path:
    """Render every take (a list of each take's Actions) at `frames`: one row per take, the
    camera zoomed in `zoom` times onto the face (brows, lids and lips fill the tile)."""
    from blender_thunder.utils import takes

    from .render import contact_sheet, render_still

    tiles, labels = [], []
    tmp = out_png.parent / f".{out_png.stem}"
    tmp.mkdir(exist_ok=True)
    fps = scene.render.fps / scene.render.fps_base
    lens = scene.camera.data.lens
    scene.camera.data.lens = lens * zoom
    try:
        for acts in take_actions:
            takes.show(rig, acts)
            seed = takes.meta(acts[0])["seed"]
            for f in frames:
                scene.frame_set(f)
                tiles.append(render_still(scene, tmp / f"s{seed}-{f}.png"))
                labels.append(f"seed {seed}  {(f - scene.frame_start) / fps:.2f} s")
        return contact_sheet(tiles, labels, out_png, columns=len(frames))
    finally:
        scene.camera.data.lens = lens
        for p in tmp.glob("*.png"):
            p.unlink()
        tmp.rmdir()
