"""Training configs as data: the files, the one loader, --config / --small and flag overrides."""

import json

import pytest

from training.cli import build_parser, command_name, main
from training.config import CONFIG_DIR, from_args, load_config, recipe_flags
from training.corpus.build import corpus_config
from training.denoiser.train import TrainConfig as DenoiserConfig
from training.errors import ConfigError
from training.m2s.train import TrainConfig as M2SConfig
from training.recipe import load_state
from training.speech.train_encoder import TrainConfig as EncoderConfig
from training.speech.units import TrainConfig as UnitsConfig

TRAINERS = {"encoder": EncoderConfig, "units": UnitsConfig, "m2s": M2SConfig, "denoiser": DenoiserConfig}
DENOISER = ["denoiser", "train", "--corpus", "c", "--encoder", "e", "--head", "h", "--out", "o"]


@pytest.mark.parametrize("name", ["full", "small"])
def test_every_section_is_exactly_its_trainers_config(name):
    file = load_config(name)
    assert set(file.data) == set(load_config("full").data)  # one layout for every size
    for section, cls in TRAINERS.items():
        cfg, origin = file.build(cls, section)
        assert origin["resolved"] == file.section(section) and origin["overrides"] == {}
        assert origin["file"] == f"training/configs/{name}.json" and len(origin["sha256"]) == 64
    cfg, _ = corpus_config(name, out="o", head="h", cache="c")
    assert cfg.hours == file.section("corpus")["hours"]


def test_small_is_config_small_and_a_flag_overrides_the_file():
    parse = build_parser().parse_args
    assert parse(DENOISER).config == "full"
    assert parse([*DENOISER, "--small"]).config == parse([*DENOISER, "--config", "small"]).config == "small"
    cfg, origin = from_args(DenoiserConfig, "denoiser", parse([*DENOISER, "--small", "--steps", "7"]))
    small = load_config("small").section("denoiser")
    assert cfg.steps == 7 and cfg.batch == small["batch"] and cfg.model == small["model"]
    assert origin["overrides"] == {"steps": 7} and origin["resolved"]["steps"] == 7
    assert recipe_flags({"val_every": 100, "max_minutes": 170}) == ["--val-every", "100", "--max-minutes", "170"]


def test_an_error_names_the_command_as_typed():
    """main's one line for a TrainingError starts `thunder-train corpus preview:`, not `corpus:`."""
    parse = build_parser().parse_args
    assert command_name(parse(["corpus", "preview", "u1", "--out", "x.mp4"])) == "corpus preview"
    assert command_name(parse(["curves", "--run", "a=b", "--out", "c"])) == "curves"


def test_a_config_by_path_and_its_mistakes(tmp_path, capsys):
    data = json.loads((CONFIG_DIR / "small.json").read_text())
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    assert main(["recipe", "--work", str(tmp_path / "w"), "--config", str(path), "--dry-run"]) == 0
    assert f"--out {tmp_path / 'w/runs/encoder'} --config {path}" in capsys.readouterr().out
    data["encoder"]["stpes"] = data["encoder"].pop("steps")
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="stpes"):  # a typo is an error, never a silent default
        load_config(path).build(EncoderConfig, "encoder")
    with pytest.raises(ConfigError, match="no such config"):
        load_config("huge")


def test_a_recipe_state_from_before_config_keeps_its_size(tmp_path):
    (tmp_path / "recipe.json").write_text(json.dumps({"version": 1, "small": True, "stages": {}}))
    assert load_state(tmp_path, "small")["small"] is True
    with pytest.raises(ConfigError, match="holds a --small recipe"):
        load_state(tmp_path, "full")
