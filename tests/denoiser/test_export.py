"""The exported denoiser graphs run by the backend's numpy sampler reproduce torch."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from backend.samplers import Schedule, guided, sample, take_noise
from training.denoiser.model import Denoiser, DenoiserConfig
from training.denoiser.onnx_graphs import export_denoiser
from training.denoiser.samplers import as_numpy, sample_takes

SCHED = Schedule()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(audio_dim=16, d_model=32, n_layers=2, d_ff=64)).eval()
    out = tmp_path_factory.mktemp("graphs")
    entries = export_denoiser(model, out)
    sessions = {
        k: ort.InferenceSession(str(out / e["file"]), providers=["CPUExecutionProvider"]) for k, e in entries.items()
    }
    return model, sessions


def numpy_takes(sessions, feats, seeds, sampler, steps, guidance, sched):
    """What backend.engine does, spelled out: context once, doubled batch for guidance."""
    n, T = len(seeds), feats.shape[0]
    rows = 2 if guidance != 1.0 else 1
    ctx = sessions["denoiser_context"].run(
        None, {"audio": np.repeat(feats[None], rows, 0), "null": np.arange(rows, dtype=np.float32)}
    )[0]
    ctx = np.repeat(ctx, n, axis=2)

    def denoise(x, t):
        xx = np.concatenate([x, x]) if rows == 2 else x
        x0 = sessions["denoiser"].run(None, {"x": xx, "t": np.full(len(xx), t, np.int64), "ctx": ctx})[0]
        return guided(x0[:n], x0[n:], guidance) if rows == 2 else x0

    x_T, noise = take_noise(seeds, (T, 53))
    return sample(denoise, x_T, sched, sampler, steps, noise)


# DDPM walks every step: a 40-step schedule keeps it fast (same code as for 1000)
@pytest.mark.parametrize(
    "sampler,steps,guidance,sched",
    [
        ("dpmpp2m", 6, 1.0, SCHED),
        ("ddim", 5, 2.5, SCHED),
        ("dpmpp2m-sde", 6, 1.5, SCHED),
        ("ddpm", 0, 1.5, Schedule(steps=40, beta_end=0.3)),
    ],
)
def test_onnx_numpy_sampler_matches_torch(exported, sampler, steps, guidance, sched):
    model, sessions = exported
    feats = np.random.default_rng(1).standard_normal((31, 16)).astype(np.float32)
    seeds = [4, 5, 6]
    ref = as_numpy(sample_takes(model, torch.from_numpy(feats), seeds, sched, sampler, steps, guidance))
    got = numpy_takes(sessions, feats, seeds, sampler, steps, guidance, sched)
    assert got.shape == (3, 31, 53) and np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_graphs_take_any_batch_and_length(exported):
    model, sessions = exported
    for b, T in [(1, 2), (5, 300)]:
        feats = np.random.default_rng(b).standard_normal((b, T, 16)).astype(np.float32)
        ctx = sessions["denoiser_context"].run(None, {"audio": feats, "null": np.zeros(b, np.float32)})[0]
        x = np.random.default_rng(0).standard_normal((b, T, 53)).astype(np.float32)
        y = sessions["denoiser"].run(None, {"x": x, "t": np.full(b, 7, np.int64), "ctx": ctx})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(x), torch.full((b,), 7), torch.from_numpy(feats), torch.zeros(b))
        np.testing.assert_allclose(y, ref.numpy(), atol=1e-4)


def test_preconditioned_model_exports_and_passes_clean_input_through(tmp_path):
    """The c_skip/c_out form lives inside the step graph (the backend's contract, x0 out, is
    unchanged) and at t = 0 returns its input whatever the untrained network says."""
    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(audio_dim=16, d_model=32, n_layers=2, d_ff=64, precondition=True)).eval()
    entries = export_denoiser(model, tmp_path)
    sessions = {
        k: ort.InferenceSession(str(tmp_path / e["file"]), providers=["CPUExecutionProvider"])
        for k, e in entries.items()
    }
    feats = np.random.default_rng(1).standard_normal((31, 16)).astype(np.float32)
    ref = as_numpy(sample_takes(model, torch.from_numpy(feats), [4, 5], SCHED, "dpmpp2m", 6, 1.5))
    np.testing.assert_allclose(numpy_takes(sessions, feats, [4, 5], "dpmpp2m", 6, 1.5, SCHED), ref, atol=1e-4)
    x = torch.randn(2, 31, 53)
    with torch.no_grad():
        clean = model(x, torch.zeros(2, dtype=torch.long), torch.from_numpy(feats)[None].repeat(2, 1, 1))
        noisy = model(x, torch.full((2,), 999), torch.from_numpy(feats)[None].repeat(2, 1, 1))
    assert (clean - x).abs().max() < 0.05 * (noisy - x).abs().max()
