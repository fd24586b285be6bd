"""Write a model bundle (docs/bundle.md) the backend loads with onnxruntime alone.

`write_bundle` is the one writer: the exporters put their graphs into the
folder, it copies the head and stats, hashes every file and writes the manifest
last (a bundle without a manifest is not a bundle, so a crash never leaves a
half-written one that loads). `thunder-train export` fills it from trained runs;
`build_tiny_bundle` fills it from the same architectures at a tiny size (random
weights, optionally a few training steps) for tests of the backend and add-on.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from backend import jsonio
from backend.bundle import FORMAT, VERSION, BundleError, sha256_file
from backend.contracts import DEFAULT_PRESETS, FPS, LAYOUT, N_EXP, N_PARAMS, PRESET_NAMES, SAMPLE_RATE, FeatureConfig
from backend.headfile import load_head_file
from backend.samplers import Schedule
from training.errors import ConfigError

log = logging.getLogger(__name__)
MAX_FRAMES = 30 * FPS  # longest window the engine takes in one pass (ALiBi is trained on 70)
# The M2S's speech units in a bundle: read by `thunder-train unpack`, never by the backend.
UNITS_FILE = "units.npz"


def _graph_entry(out: Path, name: str, entry: dict) -> dict:
    """Entry with sha256 and (unless the exporter gave them) input/output names and dims."""
    import onnx

    path = out / entry["file"]
    if not path.is_file():
        raise BundleError(f"exporter for {name!r} did not write {path}")
    entry = dict(entry)
    if "inputs" not in entry or "outputs" not in entry:
        graph = onnx.load(str(path), load_external_data=False).graph
        dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        entry.setdefault("inputs", {v.name: dims(v) for v in graph.input})
        entry.setdefault("outputs", {v.name: dims(v) for v in graph.output})
    return {**entry, "sha256": sha256_file(path)}


def write_bundle(
    out: Path,
    *,
    name: str,
    head_npz: Path,
    stats: dict,
    graphs: dict,
    provenance: dict,
    schedule: Schedule = Schedule(),
    presets: dict | None = None,
    evaluation: dict | None = None,
    features: FeatureConfig = FeatureConfig(),
    max_frames: int = MAX_FRAMES,
    extra: dict | None = None,
) -> dict:
    """Finish a bundle in `out`: graphs (name -> entry with 'file') must already be there."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    head = load_head_file(head_npz)
    if Path(head_npz).resolve() != (out / "head.npz").resolve():
        shutil.copyfile(head_npz, out / "head.npz")
    for key in ("mean", "chol", "chol_inv"):
        if key not in stats:
            raise ValueError(f"stats need {key!r}")
    np.savez(out / "stats.npz", **{k: np.asarray(v, np.float32) for k, v in stats.items()})
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "head": {"file": "head.npz", "sha256": sha256_file(out / "head.npz"), "head_id": head["head_id"]},
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "layout": LAYOUT,
        "features": features.to_dict(),
        "schedule": schedule.to_dict(),
        "normalisation": {
            "file": "stats.npz",
            "sha256": sha256_file(out / "stats.npz"),
            "space": "z = chol_inv (x - mean); noise N(0, I) in z = N(mean, chol chol^T) in x",
        },
        "graphs": {g: _graph_entry(out, g, e) for g, e in graphs.items()},
        "presets": presets or DEFAULT_PRESETS,
        "max_frames": int(max_frames),
        "provenance": provenance,
        "evaluation": evaluation or {},
        **(extra or {}),
    }
    # Strict JSON: a NaN here once made GET /v1/model answer 500 for every user.
    # Undefined figures must already be null (see `finite`); anything else non-finite is refused.
    jsonio.write_json(out / "manifest.json", manifest, default=str)
    return manifest


def default_stats() -> dict:
    """Stats for an untrained bundle: unit psi, jaw opening around 0.1 rad (roughly the corpus)."""
    from training.denoiser.stats import compute_stats

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, N_PARAMS))
    x[:, N_EXP:] *= 0.05
    x[:, N_EXP] += 0.1
    return compute_stats(x)


def base_provenance(command: str, seed: int, data: str, **extra) -> dict:
    from training.provenance import git_commit

    return {
        "command": command,
        "commit": git_commit(),
        "seed": seed,
        "data": data,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        **extra,
    }


def export_speech_graphs(out: Path, encoder, m2s=None, speaker: bool = True, head_dir: Path | None = None) -> dict:
    """Audio encoder, speaker and M2S graphs, each through its package's exporter."""
    from training.speech.export import export_audio_encoder, export_speaker_encoder

    from training.speech import whisper

    if isinstance(encoder.backbone, whisper.WhisperBackbone):  # its own graph: positions cap it at 30 s
        graphs = {"audio_encoder": whisper.export_audio_encoder(encoder.backbone.encoder, out / "audio_encoder.onnx")}
    else:
        graphs = {"audio_encoder": export_audio_encoder(encoder, out / "audio_encoder.onnx")}
    if speaker:
        graphs["speaker"] = _speaker_graph(out / "speaker.onnx", export_speaker_encoder)
    if m2s is not None:
        from training.m2s.export import export_m2s

        graphs["m2s"] = export_m2s(m2s, head_dir, out / "m2s.onnx")
    return {k: _as_entry(v, out) for k, v in graphs.items()}


_SPEAKER_ONNX: dict = {}


def _speaker_graph(path: Path, exporter) -> Path:
    """The speaker graph is the same pretrained GE2E network every time: export it
    once per process (about a minute here) and copy it into later bundles."""
    cached = _SPEAKER_ONNX.get("path")
    if cached is not None and Path(cached).is_file():
        shutil.copyfile(cached, path)
        return path
    exporter(path)
    import tempfile

    keep = Path(tempfile.mkdtemp(prefix="thunder-speaker-")) / "speaker.onnx"
    shutil.copyfile(path, keep)
    _SPEAKER_ONNX["path"] = keep
    return path


def _as_entry(v, out: Path) -> dict:
    """Exporters may return a manifest entry (dict) or just the written path."""
    if isinstance(v, dict):
        return v
    # a written path (absolute, or relative to the working folder like `out` itself) -> bundle-relative
    return {"file": Path(v).resolve().relative_to(Path(out).resolve()).as_posix()}


def tiny_speech_encoder(seed: int = 0):
    from training.speech.encoder import EncoderConfig, SpeechEncoder

    torch.manual_seed(seed)
    return SpeechEncoder(EncoderConfig(kind="logmel", hidden=32, layers=1, heads=2, ff=64)).eval()


def tiny_m2s(head_dir: Path, seed: int = 0):
    """mouth2s M2S at a tiny width (random weights)."""
    from training.m2s.model import M2SConfig, M2SFromParams
    from training.m2s.train import head_region

    torch.manual_seed(seed)
    _, mouth = head_region(head_dir)
    return M2SFromParams(M2SConfig(dim=32, layers=1, heads=2, n_units=50), head_dir, mouth).eval()


def build_tiny_bundle(
    out_dir,
    head_dir,
    *,
    train_steps: int = 0,
    corpus=None,
    seed: int = 0,
    m2s: bool = True,
    speaker: bool = True,
    n_layers: int = 2,
    encoder=None,
    denoiser: dict | None = None,
) -> dict:
    """A REAL bundle (same architectures and graphs as the shipped one) at a tiny size.

    Random weights, or `train_steps` steps of denoiser training on `corpus`. Takes
    tens of seconds (ONNX export dominates). head_dir holds head.npz
    (`thunder-train head build --out DIR`). Returns the manifest. `encoder`: another
    speech encoder (e.g. Whisper's, for its graph's speed); `denoiser`: DenoiserConfig
    fields instead of the tiny ones ({} = the shipped size, for benchmarks).
    """
    from training.denoiser.model import Denoiser, DenoiserConfig
    from training.denoiser.onnx_graphs import export_denoiser

    out, head_dir = Path(out_dir), Path(head_dir)
    head_npz = head_dir / "head.npz" if head_dir.is_dir() else head_dir
    out.mkdir(parents=True, exist_ok=True)
    encoder = encoder if encoder is not None else tiny_speech_encoder(seed)
    sizes = dict(d_model=32, n_layers=n_layers, n_heads=4, d_ff=64) if denoiser is None else denoiser
    cfg = DenoiserConfig(audio_dim=encoder.dim, **sizes)
    torch.manual_seed(seed)
    model = Denoiser(cfg)
    stats = default_stats()
    if train_steps:
        from training.denoiser.train import quick_train

        model, stats = quick_train(model, encoder, corpus, head_npz, steps=train_steps, seed=seed)
    graphs = export_speech_graphs(
        out, encoder, tiny_m2s(head_npz.parent, seed) if m2s else None, speaker, head_npz.parent
    )
    graphs.update(export_denoiser(model, out))
    prov = base_provenance(
        f"build_tiny_bundle(train_steps={train_steps})",
        seed,
        str(corpus) if corpus else "none (random weights)",
        tiny=True,
    )
    return write_bundle(
        out,
        name="thunder-tiny",
        head_npz=head_npz,
        stats=stats,
        graphs=graphs,
        provenance=prov,
        # the shipped presets' names, with fewer steps: a tiny model needs no more
        presets={name: {"sampler": "dpmpp2m", "steps": steps} for name, steps in zip(PRESET_NAMES, (3, 5, 10))},
    )


# ------------------------------------------------------------------ CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a model bundle (ONNX graphs + head + stats + manifest)")
    p.add_argument("--out", required=True, type=Path, help="bundle folder, e.g. backend/models/thunder-base")
    p.add_argument("--denoiser", type=Path, help="denoiser run folder (best.pt, stats.npz)")
    p.add_argument(
        "--encoder",
        type=Path,
        help="speech encoder run folder or transformers folder "
        "(ignored for a --train-encoder denoiser run: its fine-tuned encoder is exported)",
    )
    p.add_argument("--m2s", type=Path, help="M2S run folder")
    p.add_argument("--head", type=Path, help="head folder (head.npz)")
    p.add_argument("--evaluation", type=Path, help="evaluation JSON to embed in the manifest")
    p.add_argument("--name", default=None)
    p.add_argument("--tiny", action="store_true", help="build a tiny random bundle (tests, demos)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    if args.tiny:
        if not args.head:
            raise ConfigError("--tiny needs --head DIR")
        m = build_tiny_bundle(args.out, args.head)
        log.info("wrote tiny bundle %s (%d graphs)", args.out, len(m["graphs"]))
        return 0
    for flag in ("denoiser", "encoder", "head"):
        if getattr(args, flag) is None and not (flag == "encoder" and args.denoiser and _joint(args.denoiser)):
            raise ConfigError(f"export needs --{flag}")
    m = export_trained(
        args.out,
        denoiser_run=args.denoiser,
        encoder_path=args.encoder,
        m2s_run=args.m2s,
        head_dir=args.head,
        evaluation=args.evaluation,
        name=args.name or args.out.name,
    )
    log.info("wrote bundle %s: %s", args.out, ", ".join(m["graphs"]))
    return 0


def _joint(run: Path) -> bool:
    from training.denoiser.train import is_joint_run

    return is_joint_run(run)


def mean_speaker(m2s_run: Path) -> dict:
    """Mean training-speaker embedding (what `listen` uses when no speech is given),
    from the M2S run's target cache; none when that cache is gone."""
    caches = [c for folder in _m2s_caches(Path(m2s_run)) for c in sorted(folder.glob("train*.npz"))]
    if not caches:  # train.npz, or train-N.npz for a limited run; a run unpacked from a bundle keeps the bundle's
        kept = Path(m2s_run) / "speaker_mean.npy"
        return {"speaker_mean": np.load(kept).astype(np.float32)} if kept.exists() else {}
    with np.load(caches[0]) as z:
        mean = z["speaker"].mean(0)
    return {"speaker_mean": (mean / np.linalg.norm(mean)).astype(np.float32)}


def _m2s_caches(m2s_run: Path) -> list[Path]:
    """Where the run's targets were cached: as recorded in its config, as its command's
    --cache named (runs from before the config recorded it), or the default run/cache."""
    import shlex

    prov_path = m2s_run / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    found = [prov.get("config", {}).get("cache")]
    words = shlex.split(prov.get("command", ""))
    found += [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--cache"]
    return [Path(f) for f in found if f] + [m2s_run / "cache"]


def export_trained(
    out: Path,
    *,
    denoiser_run: Path,
    encoder_path: Path,
    m2s_run: Path | None,
    head_dir: Path,
    evaluation: Path | None = None,
    name: str = "thunder-base",
) -> dict:
    """The shipped bundle from trained runs."""
    from training.denoiser.onnx_graphs import export_denoiser
    from training.denoiser.train import load_run, run_encoder
    from training.speech.encoder import load_encoder

    out, head_dir = Path(out), Path(head_dir)
    head_npz = head_dir / "head.npz" if head_dir.is_dir() else head_dir
    model, stats, ckpt = load_run(denoiser_run)
    encoder = run_encoder(denoiser_run)  # a -T run ships its own fine-tuned encoder
    if encoder is None:
        encoder = load_encoder(encoder_path)
    elif encoder_path is not None:
        log.warning(
            "%s was trained with --train-encoder: exporting its fine-tuned encoder, not %s", denoiser_run, encoder_path
        )
    m2s = None
    if m2s_run is not None:
        from training.m2s.train import load_m2s

        m2s, _ = load_m2s(m2s_run, head_dir)
    out.mkdir(parents=True, exist_ok=True)
    if m2s_run is not None:
        stats = {**stats, **mean_speaker(Path(m2s_run))}
    # the speaker graph only feeds M2S (the lip-sync score)
    graphs = export_speech_graphs(out, encoder, m2s, m2s is not None, head_npz.parent)
    graphs.update(export_denoiser(model, out))
    prov = dict(ckpt.get("provenance", {}))
    prov["export_command"] = " ".join(["thunder-train"] + sys.argv[1:])
    encoder_source = encoder_path
    if ckpt["config"].get("encoder", {}).get("trainable"):
        # the chain on record goes back to the encoder the fine-tuning started from, not --encoder
        encoder_source = ckpt["config"]["encoder"].get("source")
        prov["audio_encoder"] = f"fine-tuned with the denoiser (--train-encoder) from {encoder_source}"
    # what the shipped graphs were made from: each upstream run's own record (command, seed, data, commit)
    init = _option(prov.get("command", ""), "--init")
    prov["inputs"] = {
        k: _run_provenance(v)
        for k, v in (("audio_encoder", encoder_source), ("m2s", m2s_run), ("denoiser_init", init))
        if v
    }
    # an undefined figure (a rank correlation over one take) is null in the manifest
    ev = jsonio.finite(jsonio.read_json(evaluation)) if evaluation else {}
    for row in ev.get("rows", []):
        row.pop("per_utterance", None)  # the report file keeps them; the manifest keeps the table
    extra = {}
    units = m2s_units(Path(m2s_run)) if m2s_run is not None else None
    if units is not None:
        # the M2S loss needs the units M2S's logits name; refitted ones differ (k-means on another
        # machine), so a bundle carries them for `thunder-train unpack` to give back
        shutil.copyfile(units, out / UNITS_FILE)
        extra["units"] = {"file": UNITS_FILE, "sha256": sha256_file(out / UNITS_FILE)}
    return write_bundle(
        out, name=name, head_npz=head_npz, stats=stats, graphs=graphs, provenance=prov, evaluation=ev, extra=extra
    )


def m2s_units(m2s_run: Path) -> Path | None:
    """The speech-units file an M2S run was trained on, if it is still where the run says and
    unchanged (its sha256 as the run recorded it); None, with a warning, otherwise."""
    record = _run_provenance(m2s_run)
    record = record.get("original", record)  # an unpacked run keeps its first record there
    path, want = (record.get("config") or {}).get("units"), (record.get("data") or {}).get("units_sha256")
    if not path or not want:
        log.warning("%s does not record its speech units: the bundle will not carry them", m2s_run)
        return None
    path = Path(path) / "units.npz" if Path(path).is_dir() else Path(path)
    if not path.is_file() or sha256_file(path) != want:
        log.warning("%s: its units %s are gone or changed: the bundle will not carry them", m2s_run, path)
        return None
    return path


def _option(command: str, flag: str) -> str | None:
    import shlex

    words = shlex.split(command)
    return words[words.index(flag) + 1] if flag in words[:-1] else None


def _run_provenance(path) -> dict:
    """A run folder's provenance.json (a bare checkpoint file: its folder's), else just the path."""
    path = Path(path)
    record = (path if path.is_dir() else path.parent) / "provenance.json"
    try:
        return {"path": str(path), **json.loads(record.read_text())}
    except (OSError, ValueError):
        return {"path": str(path)}
