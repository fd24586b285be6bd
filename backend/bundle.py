"""Load a model bundle (docs/bundle.md): manifest, sha256 checks, onnxruntime sessions."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.files import sha256_file  # noqa: F401  (part of this module's API: exporters and tests use it)
from backend.onnxfix import safe_normalisation

log = logging.getLogger(__name__)

FORMAT = "thunder-bundle"
VERSION = 1
REQUIRED_GRAPHS = ("audio_encoder", "denoiser_context", "denoiser")


class BundleError(RuntimeError):
    """A missing, corrupt or mismatched bundle; the message says what and where."""


# The model that ships with the backend; $THUNDER_BUNDLE points elsewhere.
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "models" / "thunder-base"


def default_bundle() -> Path:
    return Path(os.environ.get("THUNDER_BUNDLE") or DEFAULT_BUNDLE)


def read_manifest(bundle_dir) -> dict:
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / "manifest.json"
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a model bundle: manifest.json is missing")
    non_finite: list = []
    try:
        # An older exporter wrote NaN for undefined figures: read them as null, since
        # what the backend sends must be strict JSON and a figure is no reason to refuse a model.
        manifest = json.loads(path.read_text(), parse_constant=lambda c: non_finite.append(c))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON: {e}") from e
    if non_finite:
        log.warning("%s holds %d NaN/Infinity value(s) (not strict JSON); served as null", path, len(non_finite))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise BundleError(
            f"{path}: bundle version {manifest.get('version')!r} is not supported "
            f"(this backend reads version {VERSION})"
        )
    for key in ("head", "graphs", "schedule", "normalisation"):
        if key not in manifest:
            raise BundleError(f"{path}: manifest has no {key!r} entry")
    missing = [g for g in REQUIRED_GRAPHS if g not in manifest["graphs"]]
    if missing:
        raise BundleError(f"{path}: manifest names no graph {', '.join(missing)}")
    return manifest


def _entry_path(bundle_dir: Path, entry: dict, what: str) -> Path:
    if "file" not in entry or "sha256" not in entry:
        raise BundleError(f"manifest entry for {what} needs 'file' and 'sha256'")
    path = bundle_dir / entry["file"]
    if not path.is_file():
        raise BundleError(f"{what}: file {path} is missing from the bundle")
    return path


def _check_digest(path: Path, digest: str, entry: dict, what: str) -> None:
    if digest != entry["sha256"]:
        raise BundleError(
            f"{what}: {path} is corrupt or was changed (sha256 {digest[:12]}…, manifest says {entry['sha256'][:12]}…)"
        )


def checked_file(bundle_dir: Path, entry: dict, what: str) -> Path:
    """The file an entry names, after its sha256 check."""
    path = _entry_path(bundle_dir, entry, what)
    _check_digest(path, sha256_file(path), entry, what)
    return path


def checked_bytes(bundle_dir: Path, entry: dict, what: str) -> tuple[Path, bytes]:
    """The file an entry names and its bytes, read once and checked against the manifest's sha256."""
    path = _entry_path(bundle_dir, entry, what)
    data = path.read_bytes()
    _check_digest(path, hashlib.sha256(data).hexdigest(), entry, what)
    return path, data


def providers(device: str) -> tuple[list[str], str]:
    """onnxruntime providers for 'auto' | 'cpu' | 'cuda', and the device actually used."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise BundleError(f"device must be auto, cpu or cuda, got {device!r}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise BundleError(
            "device 'cuda' requested but onnxruntime has no CUDAExecutionProvider "
            "(install onnxruntime-gpu and a CUDA driver)"
        )
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"
    return ["CPUExecutionProvider"], "cpu"


def check_head(manifest: dict, head_path: Path, expected_head_id: str | None = None) -> None:
    """Refuse a head file whose identity differs from the one the bundle was trained on."""
    with np.load(head_path, allow_pickle=False) as z:
        file_id = str(z["head_id"]) if "head_id" in z.files else None
    want = manifest["head"].get("head_id")
    if want and file_id and file_id != want:
        raise BundleError(
            f"head mismatch: {head_path} is head {file_id[:12]}…, the bundle was trained on head {want[:12]}…"
        )
    if expected_head_id and want and expected_head_id != want:
        raise BundleError(
            f"head mismatch: this bundle was trained on head {want[:12]}…, "
            f"not on the requested head {expected_head_id[:12]}…"
        )


@dataclass
class Bundle:
    path: Path
    manifest: dict
    head_path: Path
    stats: dict
    sessions: dict = field(default_factory=dict)
    device: str = "cpu"
    lanes: dict = field(default_factory=dict)  # graph -> backend.lanes.Lanes (CPU, several cores)

    def run(self, graph: str, feeds: dict) -> list[np.ndarray]:
        if graph in self.lanes:
            out = self.lanes[graph].run(feeds)
            if out is not None:
                return out
        return self.sessions[graph].run(None, feeds)

    def input_names(self, graph: str) -> list[str]:
        return [i.name for i in self.sessions[graph].get_inputs()]


# The graph whose passes are split into lanes (backend/lanes.py): the sampler's step, run once per step.
LANE_GRAPH = "denoiser"


def lane_count(device: str, threads: int | None, lanes: int | None) -> int:
    """Lanes for the step graph on a CPU: `lanes` if given, else 2 with two or more threads (the
    measured case: 2 cores, 1 thread a lane), else 0 (one session). A GPU runs a pass as one
    launch: never lanes there."""
    if device != "cpu":
        return 0
    if lanes is not None:
        return max(0, int(lanes))
    return 2 if (threads or os.cpu_count() or 1) >= 2 else 0


def load_bundle(
    bundle_dir,
    device: str = "auto",
    threads: int | None = None,
    head_id: str | None = None,
    lanes: int | None = None,
) -> Bundle:
    """Check every file against the manifest and open one session per graph (and, on a CPU, the
    step graph's lanes: `lane_count`)."""
    import onnxruntime as ort

    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    head_path = checked_file(bundle_dir, manifest["head"], "head")
    check_head(manifest, head_path, head_id)
    stats_path = checked_file(bundle_dir, manifest["normalisation"], "normalisation")
    with np.load(stats_path, allow_pickle=False) as z:
        stats = {k: z[k] for k in z.files}
    for key in ("mean", "chol"):
        if key not in stats:
            raise BundleError(f"{stats_path} has no {key!r} array")
    provs, used = providers(device)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # onnxruntime's CPU arena grows to the largest request's peak and never gives it back
    # (measured: 717 MB resident after 8 takes × 10 s on the shipped bundle, 241 MB without
    # it, for ~5 % more time); without it tensors come from malloc, which the worker trims.
    opts.enable_cpu_mem_arena = False
    if threads:
        opts.intra_op_num_threads = threads
    sessions, lane_sets = {}, {}
    n_lanes = lane_count(used, threads, lanes)
    for name, entry in manifest["graphs"].items():
        path, graph = checked_bytes(bundle_dir, entry, f"graph {name!r}")
        try:
            # M2S's Rodrigues divides the jaw by its length: NaN at the rest pose unless made safe.
            graph, fixed = safe_normalisation(graph)
        except (ValueError, IndexError):  # not protobuf we can walk: onnxruntime says why below
            fixed = 0
        if fixed:
            log.info("graph %r: %d vector normalisation(s) made defined at zero", name, fixed)
        try:
            sessions[name] = ort.InferenceSession(graph, opts, providers=provs)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise BundleError(f"graph {name!r}: onnxruntime cannot load {path}: {e}") from e
        if name == LANE_GRAPH and n_lanes >= 2:
            lanes_of_graph = _lanes(graph, entry, opts, provs, n_lanes, threads)
            if lanes_of_graph is not None:
                lane_sets[name] = lanes_of_graph
        del graph
    return Bundle(bundle_dir, manifest, head_path, stats, sessions, used, lane_sets)


def _lanes(graph: bytes, entry: dict, opts, provs: list[str], n: int, threads: int | None):
    """`n` sessions of `graph` that share the cores: each gets an n-th of the threads."""
    import onnxruntime as ort

    from backend.lanes import Lanes, batch_axes

    lane_opts = ort.SessionOptions()
    lane_opts.log_severity_level = opts.log_severity_level
    lane_opts.enable_cpu_mem_arena = opts.enable_cpu_mem_arena
    lane_opts.intra_op_num_threads = max(1, (threads or os.cpu_count() or 1) // n)
    try:
        return Lanes(
            lambda: ort.InferenceSession(graph, lane_opts, providers=provs),
            n,
            batch_axes(entry.get("inputs", {})),
            batch_axes(entry.get("outputs", {})),
        )
    except ValueError as e:  # a manifest that does not name the rows axes: one session, as before
        log.info("step graph runs as one session: %s", e)
        return None
