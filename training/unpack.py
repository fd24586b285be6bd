"""Torch runs back out of a shipped bundle, so a model can be fine-tuned where it shipped.

`thunder-train unpack --bundle backend/models/thunder-base --head HEAD --out DIR` writes
DIR/denoiser (best.pt, stats.npz: what `--init` of `denoiser train` and `export --denoiser`
read), DIR/m2s (best.pt: what `--m2s` reads) and, where the bundle carries them, DIR/units
(the speech units M2S was trained on: what `--units` reads for the M2S loss). A researcher can
continue training the shipped model on their own data without its training runs, which never leave the machine
that made them (and did not survive to the next session on ours: stage A and M2S cost
two hours of these two cores to remake).

A bundle holds ONNX graphs only. Their initializers are the trained weights, some under the
parameter's own name, others anonymous (a linear layer's weight, transposed for MatMul). To
map them back, the same model is built from the bundle's recorded config, every tensor of its
state filled with distinct random values and exported by the project's own exporter into a
template: each tensor is then found among the template's initializers (as itself, reshaped or
transposed), at a name the shipped graph has too, since the same code exported it. The result
is accepted only if it reproduces the shipped graphs' outputs on random inputs.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from training.errors import ConfigError, TrainingError

log = logging.getLogger("training.unpack")

TOLERANCE = 1e-4  # max |torch - onnxruntime| accepted, on outputs of order 1 (float32 graphs)


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def locate(
    module: torch.nn.Module, export: Callable[[Path], list[Path]], keep: tuple[str, ...] = ()
) -> dict[str, tuple[str, str, bool]]:
    """state-dict key -> (graph file name, initializer name, transposed) for every floating
    tensor of `module` that its export stores, but those under a `keep` prefix (fixed by the
    config, e.g. the head's vertices). Fills `module` with random values (a template)."""
    gen = torch.Generator().manual_seed(20261202)
    state = module.state_dict()
    floats = [k for k, v in state.items() if v.is_floating_point() and v.numel() > 1 and not k.startswith(keep)]
    with torch.no_grad():
        for k in floats:  # distinct values: no two tensors (or a tensor and a folded constant) coincide
            state[k].copy_(torch.rand(state[k].shape, generator=gen) + 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        tables = {p.name: _initializers(p) for p in export(Path(tmp))}
    found = ((k, _find(state[k].numpy(), tables)) for k in floats)
    return {k: hit for k, hit in found if hit is not None}


def _find(v: np.ndarray, tables: dict) -> tuple[str, str, bool] | None:
    """(graph, initializer, transposed) of the first initializer holding `v`: itself, reshaped (a
    norm's affine as (C, 1)) or transposed (a linear layer's weight as MatMul's)."""
    for graph, table in tables.items():
        for name, a in table.items():
            if a.size == v.size and np.array_equal(a.ravel(), v.ravel()):
                return graph, name, False
            if v.ndim == 2 and a.shape == v.shape[::-1] and np.array_equal(a, v.T):
                return graph, name, True
    return None


def recover(
    module: torch.nn.Module, export: Callable[[Path], list[Path]], bundle: Path, keep: tuple[str, ...] = ()
) -> dict:
    """The state dict of `module` (built from the bundle's config) holding the bundle's weights."""
    original = {k: v.clone() for k, v in module.state_dict().items()}
    where = locate(module, export, keep)
    params = {k for k, _ in module.named_parameters()}
    missing = sorted(params - set(where))
    if missing:
        raise TrainingError(
            f"{len(missing)} parameters of the model are not stored in the exported graphs "
            f"({', '.join(missing[:4])}…): this exporter folds them, they cannot be read back"
        )
    shipped = {g: _initializers(bundle / g) for g in {g for g, _, _ in where.values()}}
    state = dict(original)  # buffers the graphs do not store (index tables) come from the config
    for k, (graph, name, transposed) in where.items():
        if name not in shipped[graph]:
            raise TrainingError(
                f"{bundle / graph} has no initializer {name!r} (for {k}): the bundle was exported by "
                "another version of the exporter than this checkout's"
            )
        a = shipped[graph][name]
        a = a.T if transposed else a.reshape(original[k].shape)
        state[k] = torch.from_numpy(np.ascontiguousarray(a)).to(original[k].dtype)
    module.load_state_dict(state)
    return module.state_dict()


def _max_diff(session_path: Path, feeds: dict, torch_out) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(session_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in feeds.items()})
    want = torch_out if isinstance(torch_out, tuple | list) else (torch_out,)
    return max(float(np.abs(g - w.detach().numpy()).max()) for g, w in zip(got, want, strict=True))


def unpack_denoiser(bundle: Path, manifest: dict, out: Path) -> dict:
    """bundle -> out (best.pt, stats.npz, provenance.json); returns the check's figures."""
    from training.denoiser.model import Denoiser, DenoiserConfig
    from training.denoiser.onnx_graphs import export_denoiser

    cfg = DenoiserConfig.from_dict(manifest["graphs"]["denoiser"]["config"])
    model = Denoiser(cfg).eval()

    def export(tmp: Path) -> list[Path]:
        export_denoiser(model, tmp)
        return [tmp / "denoiser_context.onnx", tmp / "denoiser.onnx"]

    state = recover(model, export, bundle)
    gen = torch.Generator().manual_seed(0)
    audio, null = torch.randn(3, 41, cfg.audio_dim, generator=gen), torch.tensor([0.0, 1.0, 0.0])
    x, t = torch.randn(3, 41, cfg.n_params, generator=gen), torch.tensor([999, 500, 3])
    with torch.no_grad():
        ctx = model.context(audio, null)
        x0 = model.step(x, t, ctx)
    check = {
        "denoiser_context": _max_diff(bundle / "denoiser_context.onnx", {"audio": audio, "null": null}, ctx),
        "denoiser": _max_diff(bundle / "denoiser.onnx", {"x": x, "t": t, "ctx": ctx}, x0),
    }
    _accept(check, bundle)
    stats = np.load(bundle / manifest["normalisation"]["file"])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "stats.npz", **{k: stats[k] for k in stats.files if k != "speaker_mean"})
    prov = _provenance(bundle, manifest, manifest.get("provenance", {}), check)
    config = {"model": cfg.to_dict(), "head": str(bundle / manifest["head"]["file"]), "unpacked_from": str(bundle)}
    _save(out, state, config, prov)
    return check


def unpack_m2s(bundle: Path, manifest: dict, head_dir: Path, out: Path) -> dict:
    """bundle's m2s.onnx -> out (best.pt, provenance.json, speaker_mean.npy)."""
    from training.m2s.export import export_m2s
    from training.m2s.model import M2SConfig, M2SFromParams
    from training.m2s.train import head_region

    rec = manifest.get("provenance", {}).get("inputs", {}).get("m2s", {})
    if "config" not in rec:
        raise ConfigError(f"{bundle}'s manifest does not record its M2S model's config: cannot rebuild it")
    head, region = head_region(head_dir)
    if head.head_id != rec["config"]["head_id"]:
        raise ConfigError(
            f"{head_dir} is head {head.head_id[:12]}, the bundle's M2S used {rec['config']['head_id'][:12]}"
        )
    cfg = M2SConfig.from_dict(rec["config"]["model"])
    model = M2SFromParams(cfg, head_dir, region).eval()

    def export(tmp: Path) -> list[Path]:
        return [Path(export_m2s(model, head_dir, tmp / "m2s.onnx"))]

    state = recover(model, export, bundle, keep=("vertices.",))  # the head's: export checks them
    gen = torch.Generator().manual_seed(0)
    exp, jaw = torch.randn(2, 37, 50, generator=gen), 0.1 * torch.randn(2, 37, 3, generator=gen)
    speaker = torch.nn.functional.normalize(torch.randn(2, 256, generator=gen), dim=1)
    with torch.no_grad():
        outs = model(exp, jaw, speaker)
    check = {"m2s": _max_diff(bundle / "m2s.onnx", {"exp": exp, "jaw": jaw, "speaker": speaker}, outs)}
    _accept(check, bundle)
    config = {**rec["config"], "head": str(Path(head_dir).resolve()), "unpacked_from": str(bundle)}
    out.mkdir(parents=True, exist_ok=True)
    stats = np.load(bundle / manifest["normalisation"]["file"])
    if "speaker_mean" in stats.files:  # what listen uses without speech; export reads it back from here
        np.save(out / "speaker_mean.npy", stats["speaker_mean"])
    _save(out, state, config, _provenance(bundle, manifest, rec, check))
    return check


def _accept(check: dict, bundle: Path) -> None:
    bad = {k: v for k, v in check.items() if not v <= TOLERANCE}
    if bad:
        raise TrainingError(f"the weights read back from {bundle} do not reproduce its graphs: {bad} > {TOLERANCE}")


def _provenance(bundle: Path, manifest: dict, original: dict, check: dict) -> dict:
    from training.provenance import provenance

    here = provenance(int(original.get("seed", 0)), {"bundle": str(bundle), "manifest": manifest["name"]})
    return {**here, "unpacked": {"check_max_abs_diff": check}, "original": original}


def _save(out: Path, state: dict, config: dict, prov: dict) -> None:
    from training.loop import save_checkpoint
    from training.provenance import write_json

    save_checkpoint(out / "best.pt", model=state, config=config, provenance=prov, step=0)
    write_json(out / "provenance.json", prov)
    (out / "config.json").write_text(json.dumps(config, indent=2))


def unpack_units(bundle: Path, manifest: dict, out: Path) -> str:
    """The speech units the bundle's M2S was trained on -> out/units.npz (what `--units` reads:
    the M2S loss refuses any other units). Checked against the manifest's sha256."""
    from backend.bundle import checked_file
    from training.provenance import write_json

    path = checked_file(bundle, manifest["units"], "units")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out / "units.npz")
    write_json(out / "provenance.json", {"source": str(bundle), "sha256": manifest["units"]["sha256"]})
    return manifest["units"]["sha256"][:12]


def unpack(bundle: Path, head_dir: Path | None, out: Path) -> dict:
    """Both runs a bundle can give back; M2S only with the head folder it was trained on."""
    bundle, out = Path(bundle), Path(out)
    manifest_path = bundle / "manifest.json"
    if not manifest_path.exists():
        raise ConfigError(f"{bundle} is not a model bundle (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    report = {"denoiser": unpack_denoiser(bundle, manifest, out / "denoiser")}
    if "m2s" in manifest["graphs"]:
        if head_dir is None:
            log.warning("no --head: the bundle's M2S is not unpacked (it is built on the head folder)")
        else:
            report["m2s"] = unpack_m2s(bundle, manifest, Path(head_dir), out / "m2s")
    if "units" in manifest:
        report["units"] = unpack_units(bundle, manifest, out / "units")
    else:
        log.warning("the bundle carries no speech units: the M2S loss needs the ones its M2S was trained on")
    return report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "unpack", help="torch runs (denoiser, M2S) back out of a model bundle, to fine-tune it (--init, --m2s)"
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder, e.g. backend/models/thunder-base")
    p.add_argument("--head", type=Path, help="the head folder the bundle's M2S was trained on (head build's)")
    p.add_argument("--out", required=True, type=Path, help="writes OUT/denoiser and OUT/m2s")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    report = unpack(args.bundle, args.head, args.out)
    for part, check in report.items():
        what = "sha256" if part == "units" else "max |torch - shipped graph|"
        log.info("%s: %s (%s %s)", part, args.out / part, what, check)
    log.info(
        "continue training with: thunder-train denoiser train --init %s%s%s …",
        args.out / "denoiser",
        f" --m2s {args.out / 'm2s'}" if "m2s" in report else "",
        f" --units {args.out / 'units'}" if "units" in report else "",
    )
    return 0
