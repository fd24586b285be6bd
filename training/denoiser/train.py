"""Train the THUNDER denoiser (or the FlameFormer-like deterministic baseline).

L_total = L_rec + L_vel + w_gap L_gap + w_close L_close (+ w_m2s L_m2s): vertex-space losses through the
exact quadratic forms of `losses.VertexQuadratic` and the lip-opening error of
`losses.LipGap` (over all frames, and over the frames where the target's lips are closed), on x0 predicted from z_t at a
uniformly drawn step t; the audio is swapped for the learned null vector with
probability p_uncond (classifier-free guidance). Runs resume from last.pt
(`training.loop.fit`), log to log.jsonl and draw curves.png. Sizes and schedule:
the config's `denoiser` section (training/configs/*.json).

`train_encoder=True` is the paper's "-T" variant: the speech encoder is trained
with the denoiser (its own, lower learning rate) on features computed on the fly
from each window's audio, instead of frozen features cached once. The checkpoint
then holds a `JointModel` (denoiser.* and encoder.* weights) and config["encoder"];
`load_run` returns the denoiser of either kind, `run_encoder` the fine-tuned encoder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from backend import lipcheck
from backend.samplers import Schedule
from training.denoiser.data import Utterance, all_frames, audio_batch, encode_split, load_split_audio, random_batch
from training.denoiser.losses import LipGap, VertexQuadratic
from training.denoiser.model import Denoiser, DenoiserConfig
from training.denoiser.stats import Normaliser, compute_stats, load_stats, save_stats


@dataclass(frozen=True)
class TrainConfig:
    """The `denoiser` section of a training config (training/configs/*.json)."""

    model: dict  # DenoiserConfig fields over its defaults (the small sizes)
    steps: int
    batch: int
    window: int  # frames per training sequence (70: 2.8 s)
    lr: float
    warmup: int
    val_every: int
    val_batches: int
    limit: int | None  # first N utterances per split (None: all)
    w_m2s: float  # weight of L_m2s; applies only with an M2S model (stage B)
    w_gap: float  # weight of L_gap, the lip-opening error (mm^2; 0: off)
    w_close: float  # weight of L_close, the lip-opening error on closed target frames (mm^2; 0: off)
    m2s_fraction: float  # share of each batch that goes through the frozen M2S
    # share of each batch drawn at the top of the schedule (t >= TOP_FROM) instead of uniformly: the
    # steps whose prediction is the model's audio-only estimate, where the engine takes every take's
    # lips from (backend/liplock.py, mean lips); 0: the uniform draw of DDPM
    top_fraction: float
    encoder_lr: float  # the encoder's learning rate in the -T variant (train_encoder)
    max_minutes: float  # 0: no deadline


# Where `top_fraction`'s steps start: from t = 950 of 1,000 the input keeps under 1 % of the signal's
# variance (alpha-bar < 0.003 on the linear schedule), so the prediction there is the estimate the
# engine's lip draws read at the first sampler step (t = 999).
TOP_FROM = 950


class DiffusionLoss:
    """Callable (model, batch) -> (loss, metrics) for runs.fit, in parameter space."""

    def __init__(
        self,
        norm: Normaliser,
        vq: VertexQuadratic,
        schedule: Schedule = Schedule(),
        m2s_loss=None,
        w_m2s: float = 0.0,
        m2s_fraction: float = 0.25,
        lip_gap: LipGap | None = None,
        w_gap: float = 0.0,
        w_close: float = 0.0,
        top_fraction: float = 0.0,
    ):
        self.norm, self.vq, self.schedule = norm, vq, schedule
        self.top_fraction = top_fraction
        self.lip_gap, self.w_gap, self.w_close = lip_gap, w_gap, w_close
        self.sqrt_ac = torch.tensor(np.sqrt(schedule.alphas_cumprod), dtype=torch.float32)
        self.sqrt_1mac = torch.tensor(np.sqrt(1.0 - schedule.alphas_cumprod), dtype=torch.float32)
        self.m2s_loss, self.w_m2s, self.m2s_fraction = m2s_loss, w_m2s, m2s_fraction

    def predict(
        self, model: Denoiser, batch: dict, gen: torch.Generator | None = None, t: int | None = None
    ) -> torch.Tensor:
        """x0 prediction in parameter space at a uniformly drawn step (or at step `t` for every
        item); noise is drawn on the CPU (reproducible with `gen` on any device) and moved to
        the model's device."""
        dev = self.norm.mean.device
        x0, feats = batch["x"], batch["feats"]
        b = x0.shape[0]
        if model.cfg.deterministic:
            z = torch.zeros_like(x0)
            t = torch.zeros(b, dtype=torch.long, device=dev)
            null = torch.zeros(b, device=dev)
        else:
            z0 = self.norm.normalise(x0)
            t = self.draw_steps(b, gen) if t is None else torch.full((b,), t)
            eps = torch.randn(z0.shape, generator=gen).to(dev)
            z = self.sqrt_ac[t][:, None, None].to(dev) * z0 + self.sqrt_1mac[t][:, None, None].to(dev) * eps
            p = model.cfg.p_uncond if model.training else 0.0
            null = (torch.rand(b, generator=gen) < p).float().to(dev)
            t = t.to(dev)
        return self.norm.denormalise(model(z, t, feats, null))

    def draw_steps(self, b: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """Diffusion steps (b,) for a batch: uniform, except the last round(top_fraction * b) items,
        drawn from [TOP_FROM, T) (the last ones, so the M2S share, the first items, keeps its draw)."""
        t = torch.randint(0, self.schedule.steps, (b,), generator=gen)
        k = int(round(self.top_fraction * b))
        if k > 0:
            t[b - k :] = torch.randint(min(TOP_FROM, self.schedule.steps - 1), self.schedule.steps, (k,), generator=gen)
        return t

    def to(self, device) -> "DiffusionLoss":
        self.norm.to(device)
        self.vq.to(device)
        if self.lip_gap is not None:
            self.lip_gap.to(device)
        if self.m2s_loss is not None:
            self.m2s_loss.m2s.to(device)
        return self

    def __call__(self, model: Denoiser, batch: dict, gen: torch.Generator | None = None):
        dev = self.norm.mean.device
        batch = {**batch, "x": batch["x"].to(dev), "feats": batch["feats"].to(dev)}
        pred = self.predict(model, batch, gen)
        rec, vel = self.vq.losses(pred, batch["x"])
        loss = rec + vel
        metrics = {"rec": rec.item(), "vel": vel.item()}
        if self.lip_gap is not None:  # measured always (comparable across runs), weighted when asked
            gap, close = self.lip_gap.losses(pred, batch["x"], lipcheck.CLOSED_MM)
            metrics["gap"], metrics["close"] = gap.item(), close.item()
            if self.w_gap > 0:
                loss = loss + self.w_gap * gap
            if self.w_close > 0:
                loss = loss + self.w_close * close
        if self.m2s_loss is not None and self.w_m2s > 0:
            k = max(1, int(round(self.m2s_fraction * pred.shape[0])))
            m = self.m2s_loss(pred[:k], batch, k)
            loss = loss + self.w_m2s * m
            metrics["m2s"] = m.item()
        metrics["loss"] = loss.item()
        return loss, metrics


class JointModel(torch.nn.Module):
    """Denoiser + speech encoder trained together (-T): one module, so `fit`'s
    checkpoints and optimiser state hold both."""

    def __init__(self, denoiser: Denoiser, encoder):
        super().__init__()
        self.denoiser, self.encoder = denoiser, encoder


class JointLoss:
    """DiffusionLoss on features the (trainable) encoder computes from batch["audio"]."""

    def __init__(self, loss: DiffusionLoss):
        self.loss = loss

    def __call__(self, model: JointModel, batch: dict, gen: torch.Generator | None = None):
        feats = model.encoder.features_25(batch["audio"].to(self.loss.norm.mean.device))
        return self.loss(model.denoiser, {**batch, "feats": feats}, gen)


def encoder_spec(encoder) -> dict:
    """What `build_encoder` needs to rebuild this encoder's architecture (weights aside)."""
    from training.speech.encoder import TransformersBackbone

    from training.speech.whisper import WhisperBackbone

    spec = {"config": asdict(encoder.cfg)}
    if isinstance(encoder.backbone, TransformersBackbone) and encoder.cfg.kind not in ("wav2vec2", "logmel"):
        spec["hf_config"] = encoder.backbone.model.config.to_dict()  # a pretrained transformers folder
    elif isinstance(encoder.backbone, WhisperBackbone):
        spec["hf_config"] = encoder.backbone.encoder.config.to_dict()
    return spec


def build_encoder(spec: dict):
    from training.speech.encoder import EncoderConfig, SpeechEncoder, TransformersBackbone

    cfg = EncoderConfig.from_dict(spec["config"])
    if "hf_config" in spec:
        from transformers import AutoConfig, AutoModel

        hf = dict(spec["hf_config"])
        config = AutoConfig.for_model(hf.pop("model_type"), **hf)
        if config.model_type == "whisper":
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            from training.speech.whisper import WhisperBackbone

            return SpeechEncoder(cfg, WhisperBackbone(WhisperEncoder(config)))
        return SpeechEncoder(cfg, TransformersBackbone(AutoModel.from_config(config)))
    return SpeechEncoder(cfg)


def validator(loss: DiffusionLoss, data: list[Utterance], cfg: TrainConfig, batch_fn=random_batch):
    """Validation loss on fixed windows and fixed noise (comparable across steps)."""
    rng = np.random.default_rng(12345)
    batches = [batch_fn(data, rng, cfg.batch, cfg.window) for _ in range(cfg.val_batches)]

    def validate(model):
        gen = torch.Generator().manual_seed(12345)
        totals: dict = {}
        for b in batches:
            _, m = loss(model, b, gen)
            for k, v in m.items():
                totals[k] = totals.get(k, 0.0) + v / len(batches)
        return totals

    return validate


def train(
    out: Path,
    cfg: TrainConfig,
    *,
    corpus: Path,
    encoder,
    head_npz: Path,
    seed: int = 0,
    variant: str = "diffusion",
    cache: Path | None = None,
    m2s_loss=None,
    init: Path | None = None,
    device: str = "cpu",
    train_encoder: bool = False,
    encoder_source: str | None = None,
    prov: dict | None = None,
    origin: dict | None = None,
) -> dict:
    """Train into run folder `out` (resumes from out/last.pt). `variant` "baseline": the
    deterministic regression on the same backbone. `init`: start from another run's weights
    and stats (e.g. stage B: fine-tune a no-M2S run with the M2S loss). `train_encoder`: -T
    variant, `encoder` trained jointly at cfg.encoder_lr (module docstring). `origin`: where
    cfg came from (training.config), recorded in provenance.json."""
    from training.loop import fit, plot_curves
    from training.provenance import corpus_data, provenance

    torch.manual_seed(seed)  # the model's initial weights too: the same seed gives the same run

    if variant == "baseline":
        cfg = replace(cfg, model={**cfg.model, "deterministic": True, "p_uncond": 0.0})
    if m2s_loss is None:  # config.json records the weight in force
        cfg = replace(cfg, w_m2s=0.0)
    limit = cfg.limit
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "last.pt").exists() and (out / "config.json").exists() and is_joint_run(out) != train_encoder:
        raise ValueError(
            f"{out} was {'' if is_joint_run(out) else 'not '}trained with --train-encoder: "
            f"resume it the same way (or use another --out)"
        )
    if train_encoder:  # features on the fly from each window's audio: nothing to encode or cache
        train_data = load_split_audio(corpus, "train", limit)
        val_data = load_split_audio(corpus, "val", limit)
        if init is not None and not (out / "last.pt").exists() and run_encoder(init) is not None:
            encoder = run_encoder(init)  # continue from a -T run's fine-tuned encoder
    else:
        train_data = encode_split(corpus, encoder, "train", cache, limit)
        val_data = encode_split(corpus, encoder, "val", cache, limit)
    stats_path = out / "stats.npz"
    if init is not None and not stats_path.exists():
        import shutil

        shutil.copyfile(Path(init) / "stats.npz", stats_path)
    if not stats_path.exists():  # fixed at the first start so a resumed run keeps its space
        save_stats(stats_path, compute_stats(all_frames(train_data)))
    stats = load_stats(stats_path)
    mcfg = DenoiserConfig(**{**DenoiserConfig().to_dict(), "audio_dim": encoder.dim, **cfg.model})
    model = Denoiser(mcfg)
    if init is not None and not (out / "last.pt").exists():
        start, _, _ = load_run(init)
        if start.cfg != mcfg:
            raise ValueError(f"--init run {init} has model config {start.cfg}, this run wants {mcfg}")
        model.load_state_dict(start.state_dict())
    model.to(device)
    loss = DiffusionLoss(
        Normaliser(stats),
        VertexQuadratic.from_head(head_npz),
        m2s_loss=m2s_loss,
        w_m2s=cfg.w_m2s,
        m2s_fraction=cfg.m2s_fraction,
        lip_gap=LipGap(Path(head_npz).parent),
        w_gap=cfg.w_gap,
        w_close=cfg.w_close,
        top_fraction=cfg.top_fraction,
    ).to(device)
    prov = prov or provenance(seed, corpus_data(corpus), training_config=origin)
    config = {"train": {**asdict(cfg), "seed": seed}, "model": mcfg.to_dict(), "head": str(head_npz)}
    if not train_encoder:
        net, loss_fn, desc, param_groups = model, lambda m, b: loss(m, b), "denoiser", None
        next_batch = lambda rng: random_batch(train_data, rng, cfg.batch, cfg.window)
        validate = validator(loss, val_data, cfg)
    else:  # the -T variant: the encoder (less its phone head) trains with the denoiser, at its own rate
        config["encoder"] = {"trainable": True, "lr": cfg.encoder_lr, "source": encoder_source, **encoder_spec(encoder)}
        encoder.train()
        trainable = [p for n, p in encoder.named_parameters() if not n.startswith("phone_head.")]
        for p in encoder.parameters():
            p.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(True)
        net, loss_fn, desc = JointModel(model, encoder).to(device), JointLoss(loss), "denoiser-T"
        next_batch = lambda rng: audio_batch(train_data, rng, cfg.batch, cfg.window)
        validate = validator(loss_fn, val_data, cfg, audio_batch)
        param_groups = [{"params": list(model.parameters()), "lr": cfg.lr}, {"params": trainable, "lr": cfg.encoder_lr}]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    result = fit(
        net,
        out,
        next_batch=next_batch,
        loss_fn=loss_fn,
        validate=validate,
        steps=cfg.steps,
        val_every=cfg.val_every,
        lr=cfg.lr,
        warmup=cfg.warmup,
        seed=seed,
        config=config,
        prov=prov,
        max_minutes=cfg.max_minutes,
        desc=desc,
        param_groups=param_groups,
    )
    plot_curves(out, "mm² per vertex")
    return result


def quick_train(
    model: Denoiser,
    encoder,
    corpus: Path,
    head_npz: Path,
    steps: int,
    seed: int = 0,
    batch: int = 8,
    window: int = 40,
    limit: int = 16,
):
    """A few in-memory steps (tiny bundles for tests): returns (model, stats)."""
    data = encode_split(corpus, encoder, "train", None, limit)
    stats = compute_stats(all_frames(data))
    loss = DiffusionLoss(Normaliser(stats), VertexQuadratic.from_head(head_npz))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        value, _ = loss(model, random_batch(data, rng, batch, window), gen)
        opt.zero_grad()
        value.backward()
        opt.step()
    return model.eval(), stats


def _checkpoint(run: Path, which: str) -> dict:
    run = Path(run)
    path = run / which if (run / which).exists() else run / "last.pt"
    if not path.exists():
        raise FileNotFoundError(f"no denoiser checkpoint in {run} (best.pt / last.pt)")
    return torch.load(path, map_location="cpu", weights_only=False)  # GPU-trained runs load on CPU


def _part(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def is_joint_run(run: Path) -> bool:
    """Whether the run was trained with --train-encoder (-T), from its config.json."""
    config = Path(run) / "config.json"
    return config.exists() and bool(json.loads(config.read_text()).get("encoder", {}).get("trainable"))


def load_run(run: Path, which: str = "best.pt") -> tuple[Denoiser, dict, dict]:
    """(model in eval mode, stats, checkpoint) from a run folder (frozen-encoder or -T run)."""
    ckpt = _checkpoint(run, which)
    model = Denoiser(DenoiserConfig.from_dict(ckpt["config"]["model"]))
    joint = ckpt["config"].get("encoder", {}).get("trainable", False)
    model.load_state_dict(_part(ckpt["model"], "denoiser.") if joint else ckpt["model"])
    return model.eval(), load_stats(Path(run) / "stats.npz"), ckpt


def run_encoder(run: Path, which: str = "best.pt"):
    """The run's own fine-tuned speech encoder (frozen, eval) for a -T run, at the same
    checkpoint `load_run` picks; None for a frozen-encoder run (use its --encoder)."""
    if not is_joint_run(run):
        return None
    ckpt = _checkpoint(run, which)
    encoder = build_encoder(ckpt["config"]["encoder"])
    encoder.load_state_dict(_part(ckpt["model"], "encoder."))
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder
