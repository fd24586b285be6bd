"""`thunder-train m2s`: train / evaluate / listen / export the mesh-to-speech model."""

from __future__ import annotations

import logging
from pathlib import Path

from training.config import add_config_options, add_run_options, add_schedule_options

log = logging.getLogger(__name__)


def _train(args):
    import torch

    from training.config import from_args
    from training.m2s.train import TrainConfig, train

    torch.set_num_threads(args.threads)
    cfg, origin = from_args(TrainConfig, "m2s", args)
    log.info(
        "%s",
        train(
            args.out,
            cfg,
            corpus=args.corpus,
            head=args.head,
            encoder=args.encoder,
            units=args.units,
            variant=args.variant,
            cache=args.cache,
            seed=args.seed,
            stop_at=args.stop_at,
            origin=origin,
        ),
    )
    return 0


def _evaluate(args):
    from training.m2s.evaluate import evaluate_cmd

    return evaluate_cmd(args)


def _listen(args):
    from training.m2s.evaluate import listen_cmd

    return listen_cmd(args)


def _export(args):
    from training.m2s.export import export_m2s
    from training.m2s.train import load_m2s

    model, ckpt = load_m2s(args.model, args.head)
    export_m2s(model, args.head or ckpt["config"]["head"], args.out)
    log.info("wrote %s", args.out)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("m2s", help="mesh-to-speech model: train, evaluate, listen, export")
    sub = p.add_subparsers(dest="m2s_command", required=True)

    t = sub.add_parser("train", help="train one variant (resumes from OUT/last.pt)")
    t.add_argument("--corpus", required=True, type=Path)
    t.add_argument("--head", type=Path, help="head folder (mouth2s / face2s)")
    t.add_argument(
        "--encoder",
        "--audio-encoder",
        dest="encoder",
        required=True,
        type=Path,
        help="speech encoder: our run folder / .pt, or a transformers Wav2Vec2/HuBERT folder",
    )
    t.add_argument("--units", required=True, type=Path, help="units folder from `thunder-train units fit`")
    t.add_argument("--variant", default="mouth2s", choices=["mouth2s", "face2s", "exp2s", "noface"])
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--cache", type=Path, help="target cache folder (default OUT/cache; share it between variants)")
    add_config_options(t)
    # hyperparameters: default None = the --config file's `m2s` section
    t.add_argument("--dim", type=int, default=None, help="conformer width")
    t.add_argument("--layers", type=int, default=None, help="conformer blocks")
    t.add_argument("--window", type=int, default=None, help="frames at 25 fps")
    add_schedule_options(t)
    # two threads, as the denoiser's: the recipe's m2s stage took 3.0 s a step on one thread
    # and 1.65 s on two on the 2-core VM (session 21)
    add_run_options(t, threads=2)
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="STOI/ESTOI/PESQ/unit acc/mel L1/WER on test speakers -> reports/")
    e.add_argument("--corpus", required=True, type=Path)
    e.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="a trained variant, e.g. mouth2s=runs/m2s-mouth (repeat)",
    )
    e.add_argument("--floor", type=Path, help="the noface run (the floor)")
    e.add_argument("--split", default="test")
    e.add_argument("--limit", type=int, default=50, help="utterances to score")
    e.add_argument("--gl-iters", type=int, default=32)
    e.add_argument("--report", type=Path, default=Path("reports/m2s_eval"), help="writes REPORT.md and REPORT.json")
    e.add_argument("--threads", type=int, default=1)
    e.set_defaults(func=_evaluate)

    li = sub.add_parser("listen", help="what M2S hears from an utterance's ground-truth motion")
    li.add_argument("utt", help="utterance id in the corpus")
    li.add_argument("--corpus", required=True, type=Path)
    li.add_argument("--model", required=True, type=Path)
    li.add_argument("--out", required=True, type=Path)
    li.add_argument("--gl-iters", type=int, default=60)
    li.set_defaults(func=_listen)

    x = sub.add_parser("export", help="ONNX: exp/jaw/speaker -> mel/unit_logits through the head")
    x.add_argument("--model", required=True, type=Path)
    x.add_argument("--head", type=Path, help="default: the head recorded at training")
    x.add_argument("--out", required=True, type=Path)
    x.set_defaults(func=_export)
