"""Bad params fail when params.yaml is read, naming the key path and the fix (visprompt.schema)."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from visprompt import cli
from visprompt.config import load_params
from visprompt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def _load(tmp_path, edit):
    params = copy.deepcopy(DEFAULT)
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return load_params(path)


def _set(*keys, value):
    def edit(p):
        d = p
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


def _del(*keys):
    def edit(p):
        d = p
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return edit


BAD = [  # (edit, what the message must say)
    (_set("vpt", "recipe", "epochs", value=2.5), "vpt.recipe.epochs: expected an integer (no fraction), got 2.5"),
    (_set("vpt", "seeds", value=1), "vpt.seeds: expected a list"),
    (_set("threads", value="two"), "threads: expected an integer"),
    (_set("data", "seed", value="zero"), "data.seed: expected an integer"),
    (_set("vpt", "seeds", value=[]), "vpt.seeds: the list is empty"),
    (_set("rpo", "fewshot", "seeds", value=[]), "rpo.fewshot.seeds: the list is empty"),
    (_set("vp", "seeds", value=[1, 1]), "vp.seeds: 1 is listed twice"),
    (_set("profile", value="paperr"), "profile: unknown value 'paperr' (did you mean 'paper'?)"),
    (_set("data", "image_sise", value=32), "data.image_sise: unknown key (did you mean 'image_size'?)"),
    (_set("thread", value=1), "thread: unknown key (did you mean 'threads'?)"),
    (_set("device", value="gpu"), "device: unknown value 'gpu'"),
    (_set("device", value="cpu"), "device: only the paper profile reads it"),
    (_set("vpt", "methods", "full", "grid", value={"lr": [0.005, -1]}), "vpt.methods.full.grid.lr[1]: expected a number > 0"),
    (_set("vpt", "methods", "full", "recipe", "optimizer", value="adam"), "vpt.methods.full.recipe.optimizer: unknown value 'adam' (did you mean 'adamw'?)"),
    (_set("vp", "recipe", "step_per", value="epochs"), "vp.recipe.step_per: unknown value 'epochs' (did you mean 'epoch'?)"),
    (_set("splits", "shots", value=[0, 1]), "splits.shots[0]: expected an integer in [1,"),
    (_set("vpt", "methods", "linear", "recipie", value={"lr": 1}), "vpt.methods.linear.recipie: unknown key (did you mean 'recipe'?)"),
    (_set("rpo", "methods", "clip_linear_probe", "protocols", value=["dg", "fewshott"]), "protocols[1]: unknown value 'fewshott' (did you mean 'fewshot'?)"),
    (_set("backbones", "vit_pretrain", "steps", value=-5), "backbones.vit_pretrain.steps: expected an integer in [1,"),
    (_set("data", "suites", value=["vtab", "vtabb"]), "data.suites[1]: unknown value 'vtabb'"),
    (_set("vpt", "methods", "full", "grid", value={"batch_size": [32, 0]}), "vpt.methods.full.grid.batch_size[1]: expected an integer in [1,"),
    (_set("vpt", "tasks", value="vtab/count"), "vpt.tasks: expected a list"),
    (_set("rpo", "base2new", "shots", value=16.5), "rpo.base2new.shots: expected an integer"),
    (_set("vp", "methods", "vp_pad", value=["prompt_size", 4]), "vp.methods.vp_pad: expected a mapping"),
    (_set("rpo", "recipe", "lr", value="fast"), "rpo.recipe.lr: expected a number, got 'fast'"),
    (_set("vpt", "recipe", "lr", value=0), "vpt.recipe.lr: expected a number > 0"),
    (_set("rpo", "recipe", "warmup_lr", value=float("nan")), "rpo.recipe.warmup_lr: expected a finite number"),
    (_del("splits"), "has no splits section"),
    (_set("vpt", "grid", value={"lr": []}), "vpt.grid.lr: the list is empty"),
    (_set("rpo", "methods", "rpo", "overrides", value={"dg": {"recipe": {"lr": -0.1}}}), "rpo.methods.rpo.overrides.dg.recipe.lr: expected a number > 0"),
    # method cfg, typed from each builder's defaults
    (_set("vp", "methods", "vp_pad", "cfg", "prompt_size", value=4.7), "vp.methods.vp_pad.cfg.prompt_size: expected an integer (no fraction), got 4.7"),
    (_set("vpt", "methods", "vpt_deep", "cfg", "prompt_length", value=20000), "vpt.methods.vpt_deep.cfg.prompt_length: expected an integer in [1, 1000]"),
    (_set("vpt", "methods", "vpt_deep", "cfg", value={"promt_length": 8}), "vpt.methods.vpt_deep.cfg.promt_length: unknown key (did you mean 'prompt_length'?)"),
    (_set("vpt", "methods", "vpt_deep2", value={"cfg": {"prompt_length": 2}}), "vpt.methods.vpt_deep2: unknown method 'vpt_deep2' (did you mean 'vpt_deep'?)"),
    (_set("vp", "methods", "vp_pad", "cfg", "prompt_size", value=16), "vp.methods.vp_pad.cfg.prompt_size: 16 does not fit a 32-px image"),
    (_set("rpo", "methods", "rpo", "cfg", "read_only", value="no"), "rpo.methods.rpo.cfg.read_only: expected true or false"),
    (_set("rpo", "methods", "rpo", "overrides", "fewshot", value={"cfg": {"K": 0}}), "rpo.methods.rpo.overrides.fewshot.cfg.K: expected an integer in [1,"),
    (_set("vpt", "methods", "vpt_deep", "grid", value={"prompt_length": [8, "ten"]}), "vpt.methods.vpt_deep.grid.prompt_length[1]: expected an integer"),
]


@pytest.mark.parametrize("edit,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_params_fail_at_load_naming_the_key(tmp_path, edit, message):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, edit)
    assert message in str(e.value)
    assert str(tmp_path / "params.yaml") in str(e.value)  # which file


def test_numbers_yaml_reads_as_strings_are_converted(tmp_path):
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    path.write_text(text.replace("    lr: 0.01\n", "    lr: 1e-2\n", 1))  # PyYAML reads 1e-2 as the string '1e-2'
    assert yaml.safe_load(path.read_text())["rpo"]["recipe"]["lr"] == "1e-2"
    assert load_params(path)["rpo"]["recipe"]["lr"] == 0.01


def test_cfg_numbers_read_as_strings_are_converted(tmp_path):
    params = copy.deepcopy(DEFAULT)
    params["rpo"]["methods"]["rpo"]["cfg"]["K"] = "4"  # `K: '4'` used to end in a bare TypeError
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert load_params(path)["rpo"]["methods"]["rpo"]["cfg"]["K"] == 4


def test_valid_params_come_back_unchanged():
    for name in ("params.yaml", "profiles/paper/params.yaml", "tests/smoke/params.yaml"):
        raw = yaml.safe_load((ROOT / name).read_text())
        got = load_params(ROOT / name)
        assert json.dumps(got, sort_keys=True) == json.dumps(raw, sort_keys=True)  # same values *and* types (1 stays 1, not 1.0): fingerprints unchanged


def test_check_command_reports_the_key_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    params = copy.deepcopy(DEFAULT)
    params["vpt"]["recipe"]["epochs"] = 2.5
    bad.write_text(yaml.safe_dump(params))
    assert cli.main(["check", "--params", str(bad)]) == 2
    assert "vpt.recipe.epochs" in capsys.readouterr().err


def test_a_run_s_settings_are_typed_and_frozen():
    """The runner reads attributes of one frozen object per run, merged from checked params."""
    import dataclasses

    from visprompt import experiments
    from visprompt.config import load_params

    params = load_params("params.yaml")
    s = experiments.method_settings(params, "rpo", "coop")
    assert s.method == "coop" and s.seeds == (1, 2, 3) and s.protocols == ("base2new", "dg", "fewshot")
    assert s.layers("fewshot")[1]["epochs"] == 50 and s.layers("base2new")[1]["epochs"] == 200  # the fewshot override only
    assert s.dg.targets == ("objects-v2", "objects-sketch", "objects-a", "objects-r") and s.fewshot.seeds == tuple(range(1, 11))
    assert len(s.rpo_jobs()) == 5 * 3 + 3 + 5 * 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seeds = (1,)
    vpt = experiments.method_settings(params, "vpt", "vpt_deep")
    assert vpt.grid == {"lr": (2.5, 0.5)} and vpt.grid_points() == [{"lr": 2.5}, {"lr": 0.5}] and vpt.subsample is None


def test_the_runner_reads_typed_settings_not_the_params_dict():
    """Structure guard: the experiment runner looks nothing up in the params dict; it validates
    them once (schema.checked) and reads RunSettings attributes."""
    import inspect

    from visprompt import experiments

    import re

    source = inspect.getsource(experiments)
    assert not re.search(r"\bs\[\"|\bsection\(|\bparams\[|\bparams\.get\(", source)
