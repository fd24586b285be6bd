"""`evaluate --bundle`: a model bundle measured as the backend runs it, lip checks included."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from backend.headfile import load_head_file
from training.denoiser.evaluate import _bundle_row, markdown
from training.head.flame import HeadModel

ROOT = Path(__file__).resolve().parents[2]


def _demo(head_dir):
    """The demo sentence with the rest face as its ground truth: audio, frames, head model, head."""
    audio, _ = sf.read(str(ROOT / "assets" / "speech" / "demo.wav"), dtype="float32")
    n = len(audio) // 640
    head_model = HeadModel(head_dir)
    with torch.no_grad():
        gt = head_model(torch.zeros(n, 53)).numpy()
    return audio[: n * 640], n, gt, head_model, load_head_file(Path(head_dir) / "head.npz")


def test_bundle_row_has_the_lip_checks(tiny_bundle, head_dir):
    audio, n, gt, head_model, head = _demo(head_dir)
    # "Thunder turns ...": a bilabial-free stretch, an M and a vowel, times in seconds
    phones = [(0.0, 0.3, "sil"), (0.3, 0.5, "AH"), (0.5, 0.62, "M"), (0.62, 0.9, "AA"), (0.9, n / 25, "sil")]
    data = [{"id": "demo", "audio": audio, "feats": None, "gt": gt, "speaker": None, "phones": phones}]
    row = _bundle_row("tiny", tiny_bundle, data, 3, "draft", 1.0, head_model, head, None)
    assert row["samples"] == 3 and row["sampler"] and row["bilabials"] == 1  # one M phone
    m = row["metrics"]
    assert 0.0 <= m["closure_min"]["mean"] <= m["closure"]["mean"] <= 1.0
    # the rest face's lips touch on the M: the pseudo-GT's smallest gap there is under the closure bar
    assert np.isfinite(m["mbp_gap"]["mean"]) and m["mbp_gap_gt"]["mean"] <= 2.0
    # the ground truth here is the rest face: its lips barely part on the vowels
    assert np.isfinite(m["vowel_gap"]["mean"]) and m["vowel_gap_gt"]["mean"] < 3.0
    # LVE split by phone kind: the shares cover every frame and the parts add up to LVE
    parts = [m[f"lve_{k}"] for k in ("vowel", "mbp", "consonant", "pause")]
    assert sum(p["share"] for p in parts) == pytest.approx(1.0)
    assert parts[2]["share"] == 0 and np.isnan(parts[2]["mean"])  # no other consonant here
    whole = sum(p["share"] * p["mean"] for p in parts if p["share"])
    # one utterance: the frames' mean is LVE itself
    assert whole == pytest.approx(m["lve_frames"]["mean"], rel=1e-6)
    assert m["lve_frames"]["mean"] == pytest.approx(m["lve"]["mean"], rel=1e-6)
    table = markdown(
        {"rows": [row], "utterances": 1, "split": "test", "source": "real", "units": "mm"}
        | {"machine": "m", "date": "d", "commit": "c"}
    )
    assert "closure" in table and "| tiny |" in table and "Where the lip error falls" in table


def test_a_bundle_row_per_sampler_keeps_the_presets_lips(tiny_bundle, head_dir):
    """`--samplers` with `--bundle`: one row per sampler, each sampled by the engine with that
    sampler and the preset's lips (what `fidelity` compares); without it, the preset's sampler."""
    from backend.engine import Engine

    audio, _, gt, head_model, head = _demo(head_dir)
    data = [{"id": "demo", "audio": audio, "feats": None, "gt": gt, "speaker": None, "phones": []}]
    own = _bundle_row("tiny", tiny_bundle, data, 2, "draft", 1.0, head_model, head, None)
    preset = Engine(tiny_bundle).presets["draft"]
    assert (own["sampler"], own["steps"]) == (preset["sampler"], int(preset["steps"]))
    rows = [
        _bundle_row("tiny", tiny_bundle, data, 2, "draft", 1.0, head_model, head, None, s)
        for s in (("ddim", 3), ("dpmpp2m", 5))
    ]
    assert [(r["sampler"], r["steps"]) for r in rows] == [("ddim", 3), ("dpmpp2m", 5)]
    assert rows[0]["metrics"]["lve"]["mean"] != rows[1]["metrics"]["lve"]["mean"]  # the sampler did change
