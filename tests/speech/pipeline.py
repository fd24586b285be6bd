"""Session-wide artefacts for the speech and M2S tests, built once on disk through the real CLI.

Both tests/speech and tests/m2s call these with pytest's session base temp dir;
whatever exists already is reused, so a combined run trains each piece once.
"""

from __future__ import annotations

from pathlib import Path

from training.cli import main as thunder_train

from tests.tiny_corpus import espeak_corpus


def _base(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp() / "speech-pipeline"
    base.mkdir(exist_ok=True)
    return base


def corpus(tmp_path_factory) -> Path:
    out = _base(tmp_path_factory) / "corpus"
    if not (out / "manifest.json").exists():
        espeak_corpus(out)
    return out


def encoder(tmp_path_factory) -> Path:
    out = _base(tmp_path_factory) / "encoder"
    if not (out / "best.pt").exists():
        assert (
            thunder_train(
                [
                    "encoder",
                    "train",
                    "--corpus",
                    str(corpus(tmp_path_factory)),
                    "--out",
                    str(out),
                    "--small",
                    "--steps",
                    "20",
                    "--val-every",
                    "10",
                ]
            )
            == 0
        )
    return out


def units(tmp_path_factory) -> Path:
    out = _base(tmp_path_factory) / "units"
    if not (out / "units.npz").exists():
        assert (
            thunder_train(
                [
                    "units",
                    "fit",
                    "--encoder",
                    str(encoder(tmp_path_factory)),
                    "--corpus",
                    str(corpus(tmp_path_factory)),
                    "--out",
                    str(out),
                    "--n-units",
                    "12",
                ]
            )
            == 0
        )
    return out


def head(tmp_path_factory) -> Path:
    out = _base(tmp_path_factory) / "head"
    if not (out / "head.npz").exists():
        from training.head.build import write_head_folder

        write_head_folder(out)
    return out


def m2s(tmp_path_factory, variant: str = "mouth2s", steps: int = 20) -> Path:
    base = _base(tmp_path_factory)
    out = base / f"m2s-{variant}"
    if not (out / "best.pt").exists():
        args = [
            "m2s",
            "train",
            "--corpus",
            str(corpus(tmp_path_factory)),
            "--encoder",
            str(encoder(tmp_path_factory)),
            "--units",
            str(units(tmp_path_factory)),
            "--variant",
            variant,
            "--out",
            str(out),
            "--small",
            "--steps",
            str(steps),
            "--val-every",
            "10",
            "--cache",
            str(base / "m2s-cache"),
        ]
        if variant in ("mouth2s", "face2s"):
            args += ["--head", str(head(tmp_path_factory))]
        assert thunder_train(args) == 0
    return out
