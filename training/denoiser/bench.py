"""Sampler speed: the backend path (numpy sampler + onnxruntime graphs) against the
torch sampler, for the full-size denoiser, K takes x T frames, on this machine.

    python -m training.denoiser.bench [--takes 8 --seconds 10 --out reports/denoiser-sampler-speed]

Random weights: speed does not depend on them. Splits the backend time into the
ONNX step graph, the context graph (once) and the numpy sampler arithmetic.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from backend import jsonio
from backend.samplers import Schedule, sample, take_noise
from training.console import to_stdout
from training.denoiser.model import Denoiser, DenoiserConfig, n_parameters
from training.denoiser.onnx_graphs import export_denoiser
from training.denoiser.samplers import sample_takes


def bench(
    takes=8,
    seconds=10.0,
    settings=(("dpmpp2m", 10), ("dpmpp2m", 25), ("ddim", 10)),
    audio_dim=256,
    threads=None,
    repeats=2,
) -> dict:
    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(audio_dim=audio_dim)).eval()
    T = int(seconds * 25)
    feats = np.random.default_rng(0).standard_normal((T, audio_dim)).astype(np.float32)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        export_denoiser(model, Path(tmp))
        ctx_s = ort.InferenceSession(str(Path(tmp) / "denoiser_context.onnx"), opts, providers=["CPUExecutionProvider"])
        step_s = ort.InferenceSession(str(Path(tmp) / "denoiser.onnx"), opts, providers=["CPUExecutionProvider"])
    sched, rows = Schedule(), []
    seeds = list(range(takes))
    for sampler, steps in settings:
        best = {}
        for _ in range(repeats):
            t0 = time.perf_counter()
            ctx = ctx_s.run(None, {"audio": feats[None], "null": np.zeros(1, np.float32)})[0]
            ctx = np.repeat(ctx, takes, axis=2)
            t_ctx = time.perf_counter() - t0
            onnx_time = [0.0]

            def denoise(x, t):
                s = time.perf_counter()
                y = step_s.run(None, {"x": x, "t": np.full(len(x), t, np.int64), "ctx": ctx})[0]
                onnx_time[0] += time.perf_counter() - s
                return y

            x_T, noise = take_noise(seeds, (T, 53))
            sample(denoise, x_T, sched, sampler, steps, noise)
            total = time.perf_counter() - t0
            t1 = time.perf_counter()
            sample_takes(model, torch.from_numpy(feats), seeds, sched, sampler, steps)
            t_torch = time.perf_counter() - t1
            run = {
                "backend_total_s": total,
                "onnx_step_s": onnx_time[0],
                "onnx_context_s": t_ctx,
                "numpy_sampler_s": total - onnx_time[0] - t_ctx,
                "torch_total_s": t_torch,
            }
            best = {k: min(v, best.get(k, np.inf)) for k, v in run.items()}
        rows.append({"sampler": sampler, "steps": steps, **best})
    return {
        "takes": takes,
        "seconds": seconds,
        "frames": T,
        "params": n_parameters(model),
        "config": model.cfg.to_dict(),
        "rows": rows,
        "threads": threads or "ort default",
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def markdown(r: dict) -> str:
    lines = [
        f"Denoiser sampler speed: {r['takes']} takes x {r['seconds']:g} s ({r['frames']} frames), "
        f"{r['params'] / 1e6:.2f} M params, {r['machine']}, {r['date']}",
        "",
        "| sampler | steps | backend total s | onnx steps s | onnx context s | numpy sampler s | torch s |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['sampler']} | {x['steps']} | {x['backend_total_s']:.3f} | {x['onnx_step_s']:.3f} | "
            f"{x['onnx_context_s']:.4f} | {x['numpy_sampler_s']:.4f} | {x['torch_total_s']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--takes", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=Path("reports/denoiser-sampler-speed"))
    args = p.parse_args(argv)
    r = bench(args.takes, args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(args.out.with_suffix(".json"), jsonio.finite(r))
    args.out.with_suffix(".md").write_text(markdown(r))
    to_stdout(markdown(r))  # the timing table is what the script is run for
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
