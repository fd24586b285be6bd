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


def _trained(out: Path, product: str, *args) -> Path:
    """`thunder-train ARGS --out OUT`, unless OUT/PRODUCT is there already."""
    if not (out / product).exists():
        assert thunder_train([*map(str, args), "--out", str(out)]) == 0
    return out


def encoder(tmp_path_factory) -> Path:
    out = _base(tmp_path_factory) / "encoder"
    corpus_dir = corpus(tmp_path_factory)
    return _trained(
        out, "best.pt", "encoder", "train", "--corpus", corpus_dir, "--small", "--steps", 20, "--val-every", 10
    )


def units(tmp_path_factory) -> Path:
    out = _base(tmp_path_factory) / "units"
    inputs = ["--encoder", encoder(tmp_path_factory), "--corpus", corpus(tmp_path_factory)]
    return _trained(out, "units.npz", "units", "fit", *inputs, "--n-units", 12)


def head(tmp_path_factory) -> Path:
    out = _base(tmp_path_factory) / "head"
    if not (out / "head.npz").exists():
        from training.head.build import write_head_folder

        write_head_folder(out)
    return out


def m2s(tmp_path_factory, variant: str = "mouth2s", steps: int = 20) -> Path:
    base = _base(tmp_path_factory)
    inputs = [
        "--corpus",
        corpus(tmp_path_factory),
        "--encoder",
        encoder(tmp_path_factory),
        "--units",
        units(tmp_path_factory),
    ]
    if variant in ("mouth2s", "face2s"):
        inputs += ["--head", head(tmp_path_factory)]
    settings = ["--small", "--steps", steps, "--val-every", 10, "--cache", base / "m2s-cache"]
    return _trained(base / f"m2s-{variant}", "best.pt", "m2s", "train", *inputs, "--variant", variant, *settings)
