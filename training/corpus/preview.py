"""`corpus preview UTT --out FILE.mp4`: the head saying it, waveform and phones under it, audio muxed.

Two head renderers: "numpy" (flat-shaded mesh with a z-buffer in numpy, several
frames a second, no Blender needed) and "blender" (Workbench through the add-on's rig
builder, ~1 s a frame: studio.render's, plugged in as an entry point). `--out
FILE.png` writes a frame strip instead of a video.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from backend import plugins
from backend.contracts import FPS, SAMPLE_RATE
from training.errors import SetupError

from .kinematics import Kinematics
from .phones import BILABIAL, SIL, VOWELS

HEAD_PX = 320
YAW_DEG = 20.0
RENDERERS = "thunder.head_renderers"  # entry points: name -> renderer class of another package


def _load(utt: str, corpus: str | None):
    """(audio, motion dict, utterance id) from a corpus id or a motion .npz path."""
    import soundfile as sf

    if utt.endswith(".npz"):
        npz = Path(utt)
        wav = npz.parent.parent / "wav" / (npz.stem + ".wav")
        if not wav.exists():
            wav = npz.with_suffix(".wav")
        with np.load(npz, allow_pickle=False) as z:
            m = {k: z[k] for k in z.files}
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        if sr != SAMPLE_RATE:
            raise ValueError(f"{wav}: expected 16 kHz audio, got {sr}")
        return audio.mean(axis=1), m, npz.stem
    if not corpus:
        raise ValueError("give --corpus DIR with an utterance id, or a path to a motion .npz")
    from .dataset import load_corpus

    c = load_corpus(corpus)
    return c.audio(utt), c.motion(utt), utt


def _view(v: np.ndarray) -> np.ndarray:
    """Turn the head YAW_DEG to the viewer's left (y up, looking along -z)."""
    a = np.radians(YAW_DEG)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return v @ R.T


def rasterize(
    v: np.ndarray,
    faces: np.ndarray,
    size: int,
    centre: np.ndarray,
    half: float,
    color=(0.93, 0.78, 0.70),
    background=(0.93, 0.93, 0.95),
) -> np.ndarray:
    """Gouraud-shaded triangles with a z-buffer, all in numpy: (size, size, 3) uint8.
    Orthographic view along -z (larger z is nearer), y up."""
    px = (v[:, :2] - centre[:2] + half) / (2 * half) * size
    px[:, 1] = size - px[:, 1]
    tri, z = px[faces], v[faces][:, :, 2]
    e1, e2 = v[faces][:, 1] - v[faces][:, 0], v[faces][:, 2] - v[faces][:, 0]
    n = np.cross(e1, e2)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    n *= np.sign(n[:, 2:3] + 1e-12)  # face the viewer: winding is not trusted, the z-buffer decides
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, faces[:, k], n)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    shade = (np.clip(vn @ np.array([0.3, 0.4, 0.87]), 0, 1) * 0.75 + 0.2)[faces]  # (F, 3) per corner
    lo = np.floor(tri.min(1)).astype(int)
    span = np.ceil(tri.max(1)).astype(int) - lo + 1
    pix, dep, col = [], [], []
    for b in (2, 4, 8, 16, 32, 64, 128):
        sel = (span.max(1) <= b) & (span.max(1) > b // 2 if b > 2 else True)
        if not sel.any():
            continue
        t, zz = tri[sel], z[sel]
        gy, gx = np.mgrid[0:b, 0:b]
        x = lo[sel][:, None, 0] + gx.ravel()[None] + 0.5
        y = lo[sel][:, None, 1] + gy.ravel()[None] + 0.5
        (x0, y0), (x1, y1), (x2, y2) = [(t[:, k, 0:1], t[:, k, 1:2]) for k in range(3)]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        area = np.where(np.abs(area) < 1e-12, 1e-12, area)
        w0 = ((x1 - x) * (y2 - y) - (x2 - x) * (y1 - y)) / area
        w1 = ((x2 - x) * (y0 - y) - (x0 - x) * (y2 - y)) / area
        w2 = 1 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (x >= 0) & (x < size) & (y >= 0) & (y < size)
        d = w0 * zz[:, 0:1] + w1 * zz[:, 1:2] + w2 * zz[:, 2:3]
        pix.append(y[inside].astype(int) * size + x[inside].astype(int))
        dep.append(d[inside])
        sh = shade[sel]
        col.append((w0 * sh[:, 0:1] + w1 * sh[:, 1:2] + w2 * sh[:, 2:3])[inside])
    img = np.empty((size * size, 3))
    img[:] = background
    if pix:
        pix, dep, col = np.concatenate(pix), np.concatenate(dep), np.concatenate(col)
        order = np.lexsort((-dep, pix))  # per pixel, nearest first
        first = order[np.unique(pix[order], return_index=True)[1]]
        img[pix[first]] = col[first, None] * np.asarray(color)[None]
    return (np.clip(img, 0, 1) * 255).astype(np.uint8).reshape(size, size, 3)


class NumpyHeadRenderer:
    """The head through `rasterize`: no Blender needed."""

    def __init__(self, head_dir: str, faces: np.ndarray, n_vertices: int, lip: int):
        self.kin = Kinematics.from_head_dir(head_dir, np.arange(n_vertices))
        self.faces = np.asarray(faces)
        v0 = _view(self.kin.template)
        self.half = 0.36 * (v0.max(0) - v0.min(0))[1]  # the face, not the whole head
        self.centre = v0[lip] + np.array([0.0, 0.45 * self.half, 0.0])

    def __call__(self, exp: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        v = _view(self.kin.vertices(exp[None].astype(np.float64), jaw[None].astype(np.float64))[0])
        return rasterize(v, self.faces, HEAD_PX, self.centre, self.half)


def _blender_renderer():
    """The Blender renderer's class (studio.render, an entry point: training never imports
    Blender code), or None when it is not installed or bpy does not import."""
    found = plugins.load(RENDERERS).get("blender")
    return found if found is not None and found.available() else None


def make_renderer(head_dir: str, renderer: str):
    from training.head import load_head

    head = load_head(head_dir)
    if renderer == "blender":
        blender = _blender_renderer()
        if blender is None:
            raise SetupError(
                "the blender renderer needs bpy and the studio package "
                "(pip install -e .); --renderer numpy needs neither"
            )
        return blender(head_dir, size=HEAD_PX, yaw_deg=YAW_DEG)
    return NumpyHeadRenderer(head_dir, head.faces, len(head.v_template), head.lip_upper)


class Compositor:
    """Head image on top, waveform with phone labels and a moving cursor below."""

    def __init__(self, audio: np.ndarray, m: dict, title: str, width_px: int = 640):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.fig = plt.figure(figsize=(width_px / 100, 5.6), dpi=100)
        self.ax_img = self.fig.add_axes([0.25, 0.36, 0.5, 0.6])
        self.ax_img.axis("off")
        self.img = self.ax_img.imshow(np.zeros((HEAD_PX, HEAD_PX, 3), np.uint8))
        self.ax_img.set_title(title, fontsize=8)
        ax = self.fig.add_axes([0.04, 0.06, 0.92, 0.26])
        t = np.arange(len(audio)) / SAMPLE_RATE
        step = max(1, len(audio) // 4000)
        ax.plot(t[::step], audio[::step], lw=0.5, color="0.35")
        dur = len(audio) / SAMPLE_RATE
        ax.set_xlim(0, dur)
        ax.set_yticks([])
        ax.set_xlabel("s", fontsize=7)
        ax.tick_params(labelsize=7)
        for s, e, lab in zip(m["phones_start"], m["phones_end"], m["phones"]):
            lab = str(lab)
            if lab == SIL:
                continue
            color = "tab:red" if lab in BILABIAL else ("tab:blue" if lab in VOWELS else "0.2")
            ax.axvline(s, color="0.85", lw=0.5)
            ax.text(
                0.5 * (s + e), 0.9 * max(float(np.abs(audio).max()), 1e-3), lab, ha="center", fontsize=6, color=color
            )
        self.cursor = ax.axvline(0, color="tab:orange", lw=1)

    def __call__(self, head_rgb: np.ndarray, time_s: float) -> np.ndarray:
        self.img.set_data(head_rgb)
        self.cursor.set_xdata([time_s, time_s])
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy()


def preview(
    utt: str,
    out: str,
    corpus: str | None = None,
    head: str | None = None,
    renderer: str = "auto",
    seconds: float | None = None,
) -> Path:
    from tqdm import tqdm

    audio, m, uid = _load(utt, corpus)
    exp, jaw = np.asarray(m["exp"]), np.asarray(m["jaw"])
    n = len(exp) if seconds is None else min(len(exp), int(seconds * FPS))
    audio = audio[: int(round(n / FPS * SAMPLE_RATE))]
    if renderer == "auto":
        renderer = "blender" if _blender_renderer() is not None else "numpy"
    draw_head = make_renderer(head, renderer)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = str(m.get("text", ""))
    title = f"{uid}: {text[:70]}" if text else uid
    if out.suffix.lower() == ".png":
        return frame_strip(draw_head, exp[:n], jaw[:n], m, out, title)
    comp = Compositor(audio, m, title)
    import imageio_ffmpeg
    import soundfile as sf

    first = comp(draw_head(exp[0], jaw[0]), 0.0)
    h, w = first.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "audio.wav")
        sf.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
        writer = imageio_ffmpeg.write_frames(
            str(out),
            (w, h),
            fps=FPS,
            audio_path=wav,
            audio_codec="aac",
            macro_block_size=1,
            output_params=["-shortest"],
        )
        writer.send(None)
        writer.send(first)
        for k in tqdm(range(1, n), desc="preview", unit="frame"):
            writer.send(comp(draw_head(exp[k], jaw[k]), k / FPS))
        writer.close()
    return out


def _strip_frames(m: dict, n: int, count: int = 6) -> list[int]:
    """Frames worth looking at: closures, open vowels, rounding, a pause."""
    picks = []
    wanted = [BILABIAL, ("AA", "AE", "AY", "AW"), ("UW", "W", "OW"), ("F", "V"), ("IY", "EY"), (SIL,)]
    for group in wanted:
        for s, e, lab in zip(m["phones_start"], m["phones_end"], m["phones"]):
            k = int(0.5 * (s + e) * FPS)
            if str(lab) in group and 0 < k < n and all(abs(k - p) > 3 for p in picks):
                picks.append(k)
                break
    extra = [int(k) for k in np.linspace(0, n - 1, count + 2)[1:-1]]
    picks += [k for k in extra if all(abs(k - p) > 3 for p in picks)]
    return sorted(picks[:count])


def _phone_at(m: dict, t: float) -> str:
    for s, e, lab in zip(m["phones_start"], m["phones_end"], m["phones"]):
        if s <= t < e:
            return str(lab)
    return ""


def frame_strip(draw_head, exp, jaw, m, out: Path, title: str, count: int = 6) -> Path:
    from PIL import Image, ImageDraw

    frames = _strip_frames(m, len(exp), count)
    tiles = [Image.fromarray(draw_head(exp[k], jaw[k])) for k in frames]
    w, h = tiles[0].size
    sheet = Image.new("RGB", (w * len(tiles), h + 40), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, k) in enumerate(zip(tiles, frames)):
        sheet.paste(tile, (i * w, 22))
        draw.text((i * w + 8, h + 24), f"t={k / FPS:.2f}s  /{_phone_at(m, (k + 0.5) / FPS)}/", fill=(0, 0, 0))
    draw.text((8, 4), title, fill=(0, 0, 0))
    sheet.save(out)
    return out


def _sheet_utterance(corpus, want: int, utt: str | None) -> dict:
    """The utterance for a draws sheet: `utt`, or the first 3-6 s English one with the most draws."""
    if utt:
        return corpus.get(utt)
    fits = [u for u in corpus.utterances if 3.0 <= u["duration"] <= 6.0 and u.get("lang", "en") == "en"]
    fits = fits or corpus.utterances
    return max(fits, key=lambda u: min(corpus.n_draws(u), want))  # max keeps the first of the best


def _sheet_frames(spread: np.ndarray, closures: list[int], count: int, gap: int = 4) -> list[int]:
    """A bilabial closure (the lips must agree there) and the frames where the draws differ most."""
    picks = closures[:1]
    for k in np.argsort(-spread, kind="stable"):
        if len(picks) >= count:
            break
        if all(abs(int(k) - p) >= gap for p in picks):
            picks.append(int(k))
    return sorted(picks)


def draws_sheet(
    corpus_dir: str, out: str, head: str, utt: str | None = None, n_draws: int = 4, count: int = 6, renderer="numpy"
) -> Path:
    """Contact sheet: `n_draws` motion draws of one sentence (rows) at the same frames
    (columns), and under it each draw's upper-face displacement from its own mean and
    lip distance over time. Draws a corpus does not store are made now (corpus redraw's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image, ImageDraw

    from .dataset import load_corpus
    from .face import Face
    from .redraw import redraw_utterance

    corpus = load_corpus(corpus_dir)
    u = _sheet_utterance(corpus, n_draws, utt)
    m = corpus.motion(u)
    stored = corpus.n_draws(u)
    if stored >= n_draws:
        draws = [corpus.motion(u, d) for d in range(n_draws)]
        made = [(d["exp"], d["jaw"]) for d in draws]
        how = "stored draws"
    else:
        style = corpus.speakers[u["speaker"]].get("style")
        made = redraw_utterance(Face.load(head), m, u["duration"], style, 0, u["id"], n_draws)
        how = "drawn now by the current engine"
    face = Face.load(head)
    upper = Kinematics.from_head_dir(head, np.asarray(face.regions["upper_face"])[::4])
    xs = [(np.asarray(e, np.float64)[: u["n_frames"]], np.asarray(j, np.float64)[: u["n_frames"]]) for e, j in made]
    v = np.stack([upper.vertices(*x) for x in xs])  # (D, T, V, 3)
    moved = np.linalg.norm(v - v.mean(1, keepdims=True), axis=-1).mean(-1) * 1000  # (D, T)
    spread = np.linalg.norm(v - v.mean(0, keepdims=True), axis=-1).mean((0, 2)) * 1000  # (T,)
    lips = np.stack([face.lip_distance(*x) for x in xs]) * 1000
    closures = [
        int(0.5 * (s + e) * FPS)
        for s, e, lab in zip(m["phones_start"], m["phones_end"], m["phones"])
        if str(lab) in BILABIAL and int(0.5 * (s + e) * FPS) < len(spread)
    ]
    frames = _sheet_frames(spread, closures, count)
    draw_head = make_renderer(head, renderer)
    tiles = [[Image.fromarray(draw_head(x[0][k], x[1][k])) for k in frames] for x in xs]
    w, h = tiles[0][0].size
    label_w, top = 70, 40
    fig, axes = plt.subplots(2, 1, figsize=((label_w + w * len(frames)) / 100, 3.2), dpi=100, sharex=True)
    t = np.arange(moved.shape[1]) / FPS
    for d in range(len(xs)):
        axes[0].plot(t, moved[d], lw=1, label=f"draw {d + 1}")
        axes[1].plot(t, lips[d], lw=1)
    for ax in axes:
        for k in frames:
            ax.axvline((k + 0.5) / FPS, color="0.6", lw=0.6, ls=":")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("upper face\nmm from mean", fontsize=7)
    axes[1].set_ylabel("lip gap mm", fontsize=7)
    axes[1].set_xlabel("s", fontsize=7)
    axes[0].legend(fontsize=6, ncol=len(xs), loc="upper right")
    fig.tight_layout()
    fig.canvas.draw()
    plot = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    sheet = Image.new("RGB", (label_w + w * len(frames), top + h * len(xs) + 20 + plot.size[1]), "white")
    ink = ImageDraw.Draw(sheet)
    title = f"{u['id']} ({how}): {str(m.get('text', ''))[:90]}"
    ink.text((8, 4), title, fill=(0, 0, 0))
    for c, k in enumerate(frames):
        ink.text((label_w + c * w + 8, 22), f"t={k / FPS:.2f}s /{_phone_at(m, (k + 0.5) / FPS)}/", fill=(0, 0, 0))
    for r, row in enumerate(tiles):
        ink.text((8, top + r * h + h // 2), f"draw {r + 1}", fill=(0, 0, 0))
        for c, tile in enumerate(row):
            sheet.paste(tile, (label_w + c * w, top + r * h))
    sheet.paste(plot, (0, top + h * len(xs) + 20))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256).save(out, optimize=True)  # a palette: a third of the bytes, no visible change
    return out
