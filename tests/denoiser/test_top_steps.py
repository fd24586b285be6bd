"""`top_fraction`: a share of each batch trained at the top of the schedule, where the engine reads
its lips (the audio-only estimate); 0 keeps DDPM's uniform draw exactly."""

import json

import torch

from training.cli import main
from training.denoiser.train import TOP_FROM, DiffusionLoss

from .helpers import train_args


def test_no_top_share_is_the_uniform_draw_of_before():
    got = DiffusionLoss(None, None).draw_steps(48, torch.Generator().manual_seed(3))
    assert torch.equal(got, torch.randint(0, 1000, (48,), generator=torch.Generator().manual_seed(3)))


def test_the_last_items_are_drawn_at_the_top_and_the_rest_stays_uniform():
    t = DiffusionLoss(None, None, top_fraction=0.25).draw_steps(4800, torch.Generator().manual_seed(0))
    top, rest = t[-1200:], t[:-1200]
    assert (top >= TOP_FROM).all() and (top < 1000).all() and len(top.unique()) == 1000 - TOP_FROM
    assert 0.04 < (rest >= TOP_FROM).float().mean() < 0.06  # uniform: 5 % of 1,000 steps are >= 950
    assert rest.min() < 10 and rest.max() > 990


def test_a_run_records_its_top_share(tmp_path, tiny_corpus, tiny_encoder, head_dir):
    out = tmp_path / "top"
    args = ["denoiser", "train", *train_args(tiny_corpus, tiny_encoder, head_dir), "--out", str(out)]
    assert main([*args, "--steps", "3", "--top-fraction", "0.5"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["top_fraction"] == 0.5
