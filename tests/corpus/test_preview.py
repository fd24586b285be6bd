"""`corpus preview`: an mp4 with video and audio, and a frame strip."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from training.cli import main


def preview(what, head_dir, out, *args) -> int:
    """`thunder-train corpus preview WHAT --head HEAD_DIR --out OUT ARGS` in this process."""
    return main(["corpus", "preview", str(what), "--head", str(head_dir), "--out", str(out), *map(str, args)])


def test_preview_mp4_has_video_and_audio(small_corpus, head_dir, tmp_path):
    out, manifest, _ = small_corpus
    uid = manifest["utterances"][0]["id"]
    mp4 = tmp_path / "p.mp4"
    assert preview(uid, head_dir, mp4, "--corpus", out, "--renderer", "numpy", "--seconds", 0.6) == 0
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(mp4)], capture_output=True, text=True).stderr
    assert "Video:" in probe and "Audio:" in probe
    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(mp4))
    assert frames == 15


def test_frame_strip_shows_the_mouth_moving(small_corpus, head_dir, tmp_path):
    out, manifest, _ = small_corpus
    u = max(manifest["utterances"], key=lambda u: u["duration"])
    png = tmp_path / "s.png"
    assert preview(u["motion"].replace("motion/", str(out) + "/motion/"), head_dir, png, "--renderer", "numpy") == 0
    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    tiles = np.split(img[22:-18, : img.shape[1] // 6 * 6], 6, axis=1)
    assert min(np.abs(a - b).mean() for a, b in zip(tiles, tiles[1:])) > 0.05  # frames differ


@pytest.mark.blender
def test_preview_through_blender(small_corpus, head_dir, tmp_path):
    """The default renderer when bpy imports: Workbench on the add-on's rig."""
    out, manifest, _ = small_corpus
    mp4 = tmp_path / "b.mp4"
    assert preview(manifest["utterances"][1]["id"], head_dir, mp4, "--corpus", out, "--seconds", 0.12) == 0
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(mp4))
    assert frames == 3
