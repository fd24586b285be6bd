"""Import real pseudo-ground-truth so users with FLAME and their own data train the same way.

Layouts (found recursively under SRC; the speaker is the clip's parent folder):
- "tfhp": DiffPoseTalk / TFHP clips: `<clip>.npz` with `shape` (100 or T x 100),
  `exp` (T, 50), `pose` (T, 6) = global rotation | jaw, at 25 fps, beside `<clip>.wav`
  (16 kHz). Extra expression columns are dropped, missing ones are zero.
- "folder": `<clip>.wav` + `<clip>.npz` with `exp` (T, >=50) and `jaw` (T, 3),
  optional `fps` (resampled to 25) and `text`.
Splits: speaker-disjoint 70/15/15; with fewer than 3 speakers, 70/15/15 by clip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from backend import jsonio
from backend.contracts import FPS, N_EXP, SAMPLE_RATE

from .build import split_counts
from .face import n_frames_for
from .io import motion_arrays, write_npz, write_wav


def _find_clips(src: Path) -> list[tuple[Path, Path]]:
    clips = []
    for npz in sorted(src.rglob("*.npz")):
        wav = npz.with_suffix(".wav")
        if wav.exists():
            clips.append((npz, wav))
    if not clips:
        raise FileNotFoundError(f"no <clip>.npz with a matching <clip>.wav under {src}")
    return clips


def _detect(z) -> str:
    if "pose" in z.files and "exp" in z.files:
        return "tfhp"
    if "exp" in z.files and "jaw" in z.files:
        return "folder"
    raise ValueError(
        f"unknown motion layout (keys {sorted(z.files)}): expected exp + pose (TFHP) or exp + jaw (folder)"
    )


def _resample_motion(x: np.ndarray, fps: float) -> np.ndarray:
    if abs(fps - FPS) < 1e-6 or len(x) < 2:
        return x
    t_new = np.arange(int(np.floor(len(x) / fps * FPS))) / FPS
    t_old = np.arange(len(x)) / fps
    return np.stack([np.interp(t_new, t_old, x[:, k]) for k in range(x.shape[1])], axis=1)


def read_clip(npz: Path, layout: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """exp (T, 50) and jaw (T, 3) at 25 fps, and the text if the file has one."""
    with np.load(npz, allow_pickle=False) as z:
        kind = _detect(z) if layout == "auto" else layout
        exp = np.asarray(z["exp"], np.float64)
        if kind == "tfhp":
            pose = np.asarray(z["pose"], np.float64)
            if pose.ndim != 2 or pose.shape[1] != 6:
                raise ValueError(f"{npz}: pose must be (T, 6) = global | jaw, got {pose.shape}")
            jaw, fps = pose[:, 3:6], FPS
        else:
            jaw = np.asarray(z["jaw"], np.float64)
            fps = float(z["fps"]) if "fps" in z.files else FPS
        text = str(z["text"]) if "text" in z.files else ""
    if exp.ndim != 2 or jaw.ndim != 2 or len(exp) != len(jaw) or jaw.shape[1] != 3:
        raise ValueError(f"{npz}: need exp (T, E) and jaw (T, 3) of one length, got {exp.shape} / {jaw.shape}")
    exp = exp[:, :N_EXP] if exp.shape[1] >= N_EXP else np.pad(exp, ((0, 0), (0, N_EXP - exp.shape[1])))
    return _resample_motion(exp, fps), _resample_motion(jaw, fps), text


def import_corpus(
    src: str | Path, out: str | Path, layout: str = "auto", head_id: str = "import", seed: int = 0
) -> dict:
    src, out = Path(src), Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "motion").mkdir(parents=True, exist_ok=True)
    clips = _find_clips(src)
    entries = []
    for npz, wav in clips:
        exp, jaw, text = read_clip(npz, layout)
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if sr != SAMPLE_RATE:
            audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
        # keep audio and motion the same length: frame k covers [k/25, (k+1)/25)
        T = min(len(exp), n_frames_for(len(audio) / SAMPLE_RATE))
        audio = audio[: int(round(T / FPS * SAMPLE_RATE))]
        rel = npz.relative_to(src)
        speaker = rel.parent.as_posix().replace("/", "-") or "speaker0"
        uid = rel.with_suffix("").as_posix().replace("/", "-")
        write_wav(out / "wav" / f"{uid}.wav", audio)
        write_npz(out / "motion" / f"{uid}.npz", motion_arrays(exp[:T], jaw[:T], [], [], speaker, "import", text))
        dur = len(audio) / SAMPLE_RATE
        entries.append(
            {
                "id": uid,
                "wav": f"wav/{uid}.wav",
                "motion": f"motion/{uid}.npz",
                "speaker": speaker,
                "source": "import",
                "duration": round(dur, 6),
                "n_frames": n_frames_for(dur),
            }
        )
    speakers = sorted({e["speaker"] for e in entries})
    rng = np.random.default_rng(seed)
    if len(speakers) >= 3:
        split_of = dict(zip([speakers[i] for i in rng.permutation(len(speakers))], split_counts(len(speakers))))
        for e in entries:
            e["split"] = split_of[e["speaker"]]
        spk = {s: {"source": "import", "split": split_of[s]} for s in speakers}
    else:
        labels = split_counts(len(entries)) if len(entries) >= 3 else ["train"] * len(entries)
        for e, lab in zip([entries[i] for i in rng.permutation(len(entries))], labels):
            e["split"] = lab
        spk = {s: {"source": "import", "split": "by-utterance"} for s in speakers}
    manifest = {
        "version": 1,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "head_id": head_id,
        "speakers": spk,
        "utterances": sorted(entries, key=lambda e: e["id"]),
    }
    jsonio.write_json(out / "manifest.json", manifest, indent=1, sort_keys=True)
    (out / "build.json").write_text(
        json.dumps({"command": "corpus import", "src": str(src), "layout": layout, "clips": len(entries)}, indent=1)
        + "\n"
    )
    return manifest
