"""The command line: each subcommand's help, dvc.yaml's commands, and `train`'s checks before any work.

Nothing here trains or loads data: handlers are replaced by recorders, and `run_method` by a
function that fails the test if it is reached.
"""

import shlex
from pathlib import Path

import pytest
import yaml

from visprompt import cli, experiments

ROOT = Path(__file__).resolve().parents[1]
PARAMS = str(ROOT / "params.yaml")
DVC_FILES = [ROOT / "dvc.yaml", ROOT / "profiles" / "paper" / "dvc.yaml"]

OPTIONS = {
    "data": [], "splits": [], "backbones": ["vit", "clip", "both"], "backbone-vit": [], "backbone-clip": [],
    "train": ["PAPER", "--method", "--task", "--protocol", "--seed", "--out-root", "--runs-root"],
    "report": ["PAPER"], "index": [], "summary": [], "status": [], "check": [],
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_each_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m visprompt {command} ")
    for option in OPTIONS[command] + ["--params", "--no-progress"]:
        assert option in out, f"{command} --help does not mention {option}"


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("data", "splits", "backbones", "train", "report", "index", "check"):
        assert command in out


def test_papers_match_experiments():
    assert set(cli.PAPERS) == set(experiments.PAPERS)


def _visprompt_commands():
    """Every `python -m visprompt <command> ...` line of the dvc.yaml files (not the `visprompt.<module>` ones)."""
    for path in DVC_FILES:
        for name, stage in yaml.safe_load(path.read_text())["stages"].items():
            cmd = stage.get("cmd") if isinstance(stage, dict) else None
            if isinstance(cmd, str) and cmd.startswith("python -m visprompt "):
                yield path.relative_to(ROOT).as_posix(), name, shlex.split(cmd)[3:]


EXPECTED = {"data": ("run_data", {}), "splits": ("run_splits", {}), "backbone_vit": ("run_backbones", {"backbone": "vit"}),
            "backbone_clip": ("run_backbones", {"backbone": "clip"}), "index": ("run_index", {})}


def test_dvc_yaml_commands_are_the_ones_expected():
    stages = {(f, name) for f, name, _ in _visprompt_commands()}
    assert {name for f, name in stages if f == "dvc.yaml"} == set(EXPECTED)
    assert {name for f, name in stages if f != "dvc.yaml"} == {"data", "splits", "index"}


@pytest.mark.parametrize("dvc_file,stage,argv", list(_visprompt_commands()))
def test_dvc_yaml_command_reaches_its_handler(dvc_file, stage, argv, monkeypatch, tmp_path):
    calls = []
    handler_name, expected = EXPECTED[stage]
    monkeypatch.setattr(cli, handler_name, lambda args, params: calls.append(args) or {"ok": True})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(Path(PARAMS).read_text())
    assert cli.main(argv) == 0
    (args,) = calls
    assert args.params == "params.yaml"
    assert args.no_progress == ("--no-progress" in argv)
    for key, value in expected.items():
        assert getattr(args, key) == value


def test_check_runs(capsys):
    assert cli.main(["check", "--params", PARAMS]) == 0
    assert '"ok": true' in capsys.readouterr().out


def test_global_options_before_or_after_the_command(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "run_check", lambda args, params: seen.append((args.params, args.no_progress)) or {})
    assert cli.main(["--params", PARAMS, "--no-progress", "check"]) == 0
    assert cli.main(["check", "--params", PARAMS, "--no-progress"]) == 0
    assert cli.main(["check", "--params", PARAMS]) == 0
    assert seen == [(PARAMS, True), (PARAMS, True), (PARAMS, False)]


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("run_method reached: the bad input was not caught first")

    monkeypatch.setattr(experiments, "run_method", refuse)


@pytest.mark.parametrize("argv,message", [
    (["train", "vtp", "--method", "full"], "unknown paper 'vtp'; choose one of: rpo, vp, vpt"),
    (["train", "vpt", "--method", "nope"], "vpt.methods has no 'nope'"),
    (["train", "vpt", "--method", "full", "--task", "vtab/nope"], "add it to vpt.tasks in params.yaml"),
    (["train", "vpt", "--method", "bias", "--task", "vtab/patterns"], "add it to vpt.methods.bias.tasks in params.yaml"),
    (["train", "vpt", "--method", "full", "--seed", "7"], "seed 7 is not one that vpt.seeds lists (1, 2)"),
    (["train", "rpo", "--method", "rpo", "--task", "objects"], "restrict it with --protocol"),
    (["train", "rpo", "--method", "rpo", "--protocol", "nope"], "add it to rpo"),
    (["train", "rpo", "--method", "rpo", "--seed", "1"], "add --protocol base2new or --protocol dg"),
    (["train", "vp", "--method", "vp_pad", "--protocol", "dg"], "restrict it with --task"),
])
def test_train_bad_input_fails_before_any_work(argv, message, no_training, capsys):
    assert cli.main([*argv, "--params", PARAMS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err


def test_report_unknown_paper(capsys):
    assert cli.main(["report", "vtp", "--params", PARAMS]) == 2
    assert "choose one of: rpo, vp, vpt" in capsys.readouterr().err


def test_report_names_the_dvc_stage(capsys):
    assert cli.main(["report", "vp", "--params", PARAMS]) == 0
    assert "dvc repro report_vp" in capsys.readouterr().out


def test_train_restricts_the_method_and_writes_scratch_metrics(monkeypatch, tmp_path):
    calls = []

    def fake_run_method(params, paper, method, progress=True, runs_root=None):
        calls.append((experiments.method_settings(params, paper, method), runs_root, progress))
        return {"cells": [], "stage_time_s": 0.0, "compute_time_s": 0.0}

    written = []
    monkeypatch.setattr(experiments, "run_method", fake_run_method)
    monkeypatch.setattr(experiments, "write_outputs", lambda result, root: written.append(Path(root)) or {})
    argv = ["train", "vpt", "--method", "full", "--task", "vtab/count", "--task", "vtab/shapes", "--seed", "2", "--seed", "1",
            "--params", PARAMS, "--runs-root", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    (s, runs_root, progress), = calls
    assert s.tasks == ("vtab/shapes", "vtab/count")  # params order
    assert s.seeds == (1, 2)  # the pipeline's first seed still selects the grid
    assert (runs_root, progress) == (str(tmp_path), False)
    assert written == [Path("build/cli")]  # scratch, never the DVC-tracked reports/


def test_restrict_method_leaves_params_alone():
    params = yaml.safe_load(Path(PARAMS).read_text())
    before = yaml.safe_dump(params)
    cli.restrict_method(params, "vpt", "full", tasks=["vtab/shapes"], seeds=[1])
    assert yaml.safe_dump(params) == before
    assert cli.restrict_method(params, "vpt", "full") is params


def test_restricting_away_the_selection_seed_is_noted(capsys):
    params = yaml.safe_load(Path(PARAMS).read_text())
    cli.restrict_method(params, "vpt", "full", seeds=[2])
    assert "selected with seed 2, the pipeline selects with seed 1" in capsys.readouterr().err


def test_paper_params_run_in_their_own_folder(monkeypatch, tmp_path):
    """`--params profiles/paper/params.yaml` from the repository root must not resolve the paper
    profile's `data.root: data` to the mini profile's folder."""
    profile = tmp_path / "profiles" / "paper"
    profile.mkdir(parents=True)
    (profile / "params.yaml").write_text((ROOT / "profiles" / "paper" / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(cli, "run_check", lambda args, params: seen.append((Path.cwd(), args.params)) or {})
    assert cli.main(["check", "--params", "profiles/paper/params.yaml"]) == 0
    assert seen == [(profile.resolve(), str((profile / "params.yaml").resolve()))]
