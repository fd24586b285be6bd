"""`thunder-train denoiser`: train the THUNDER denoiser (and its variants), sample from a run.

Full recipe (see README / report for wall times):
    thunder-train denoiser train --corpus C --encoder ENC --head HEAD --out runs/denoiser/base
    thunder-train denoiser train ... --m2s runs/m2s/mouth2s --units UNITS --init runs/denoiser/base \
        --out runs/denoiser/thunder
Sizes and schedule: the `denoiser` section of --config (training/configs/*.json); the
recipe's stage lengths: its `recipe` section. Every run resumes from OUT/last.pt;
`--max-minutes` stops cleanly to resume in a later session.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from backend.samplers import SAMPLERS
from training.config import add_config_options, add_run_options, add_schedule_options
from training.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("denoiser", help="diffusion denoiser: train, sample")
    sub = p.add_subparsers(dest="denoiser_command", required=True)
    t = sub.add_parser("train", help="train one variant (resumes from OUT/last.pt)")
    t.add_argument("--corpus", required=True, type=Path)
    t.add_argument("--encoder", required=True, type=Path, help="speech encoder run or transformers folder")
    t.add_argument("--head", required=True, type=Path, help="head folder (head.npz)")
    t.add_argument("--out", required=True, type=Path)
    t.add_argument(
        "--variant",
        default="diffusion",
        choices=["diffusion", "baseline"],
        help="baseline: FlameFormer-like deterministic regression, same backbone",
    )
    t.add_argument("--m2s", type=Path, help="frozen M2S run for L_m2s (mouth2s / face2s / exp2s)")
    t.add_argument("--units", type=Path, help="speech units folder (needed with --m2s)")
    t.add_argument("--m2s-encoder", type=Path, help="encoder the M2S units came from (default: --encoder)")
    t.add_argument("--init", type=Path, help="start from this run's weights and stats (fine-tuning)")
    t.add_argument(
        "--train-encoder",
        action="store_true",
        help="-T variant: train --encoder jointly (features on the fly from each window's audio; "
        "several times slower per step, see README)",
    )
    add_config_options(t)
    # hyperparameters: default None = the --config file's `denoiser` section
    t.add_argument("--w-m2s", type=float, default=None, help="weight of L_m2s (with --m2s)")
    t.add_argument("--w-gap", type=float, default=None, help="weight of the lip-opening loss (0: off)")
    t.add_argument(
        "--w-close", type=float, default=None, help="weight of the lip-opening loss on closed target frames (0: off)"
    )
    t.add_argument("--m2s-fraction", type=float, default=None, help="share of each batch through M2S")
    t.add_argument(
        "--top-fraction",
        type=float,
        default=None,
        help="share of each batch at the top of the schedule (t >= 950: the audio-only estimate the "
        "engine's lips come from; 0: uniform)",
    )
    t.add_argument("--encoder-lr", type=float, default=None, help="encoder learning rate with --train-encoder")
    t.add_argument("--window", type=int, default=None)
    t.add_argument("--limit", type=int, default=None, help="use only the first N utterances per split")
    add_schedule_options(t, epochs=False, val_utts=False)
    # run settings
    t.add_argument("--cache", type=Path, help="feature cache folder (default OUT/../cache)")
    add_run_options(t, threads=2, stop_at=False)
    t.add_argument("--device", default="cpu", help="torch device for training (cuda on a lent GPU)")
    t.set_defaults(func=_train)

    s = sub.add_parser("sample", help="sample takes for one wav from a run (torch)")
    s.add_argument("run", type=Path)
    s.add_argument("wav", type=Path)
    s.add_argument("--encoder", required=True, type=Path, help="(a -T run uses its own fine-tuned encoder)")
    s.add_argument("--out", required=True, type=Path, help=".npz with exp (K,T,50), jaw (K,T,3)")
    s.add_argument("--takes", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampler", default="dpmpp2m", choices=SAMPLERS)
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--guidance", type=float, default=1.0)
    s.set_defaults(func=_sample)

    from training.denoiser import diagnose

    diagnose.register(sub)


def _train(args: argparse.Namespace) -> int:
    import torch

    from training.config import from_args
    from training.denoiser.train import TrainConfig, train
    from training.speech.encoder import load_encoder

    torch.set_num_threads(args.threads)
    cfg, origin = from_args(TrainConfig, "denoiser", args)
    limit = cfg.limit
    cache = args.cache or args.out.parent / "cache"
    head_npz = args.head / "head.npz" if args.head.is_dir() else args.head
    m2s_loss = None
    if args.m2s:
        if not args.units:
            raise ConfigError("--m2s needs --units (the speech units the M2S model was trained on)")
        from training.denoiser.m2s_loss import build_m2s_loss

        m2s_loss = build_m2s_loss(
            args.m2s,
            head_npz.parent,
            args.corpus,
            args.m2s_encoder or args.encoder,
            args.units,
            cache / "m2s",
            limit,
            limit,
        )
    encoder = load_encoder(args.encoder)
    log.info(
        "%s",
        train(
            args.out,
            cfg,
            corpus=args.corpus,
            encoder=encoder,
            head_npz=head_npz,
            seed=args.seed,
            variant=args.variant,
            cache=cache,
            m2s_loss=m2s_loss,
            init=args.init,
            device=args.device,
            train_encoder=args.train_encoder,
            encoder_source=str(args.encoder),
            origin=origin,
        ),
    )
    return 0


def _sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from backend.audio import decode
    from backend.samplers import Schedule
    from training.denoiser.samplers import as_numpy, sample_takes
    from training.denoiser.stats import Normaliser
    from training.denoiser.train import load_run, run_encoder
    from training.speech.encoder import load_encoder

    model, stats, _ = load_run(args.run)
    encoder = run_encoder(args.run)
    if encoder is None:
        encoder = load_encoder(args.encoder)
    audio, _ = decode(str(args.wav))
    with torch.no_grad():
        feats = encoder.features_25(torch.from_numpy(np.asarray(audio, np.float32))[None])[0]
    z = sample_takes(
        model,
        feats,
        list(range(args.seed, args.seed + args.takes)),
        Schedule(),
        args.sampler,
        args.steps,
        args.guidance,
    )
    x = as_numpy(Normaliser(stats).denormalise(z))
    np.savez(args.out, exp=x[..., :50], jaw=x[..., 50:], seeds=np.arange(args.seed, args.seed + args.takes))
    log.info("wrote %s: %d takes x %d frames", args.out, x.shape[0], x.shape[1])
    return 0
