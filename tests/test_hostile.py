"""Hostile input: the bad inputs and faults a new user can hit, each ending cleanly within seconds.

The suite of bad inputs is two files together:

* ``tests/test_params_schema.py``: bad *values* in params.yaml (wrong types, out of range, empty
  or repeated lists, misspelt keys and choices), each stopping at load with the full key path;
* this file, what those do not cover, by category:

  1. **params structure**: a section or key missing at each level (``vpt.recipe``,
     ``rpo.base2new``, ``rpo.base2new.shots``, ``backbones.vit``, ``splits.seeds``, ...); a params
     file that is empty, a list, not YAML, not text, a directory, missing, or sets a key twice; a
     method under the wrong paper; an unknown task or RPO dataset; RPO shots or seeds that
     ``splits`` does not make; a prompt that cannot fit the image; a text prompt (RPO's K, CoOp's
     context) that cannot fit the text context; more shots than a dataset has images.
  2. **command line**: an unknown command, paper, method, task or option value, missing
     arguments, ``report`` for an unknown paper, ``check`` on a bad file: exit code 2 and a
     message on stderr, before any training.
  3. **corrupt or missing files**, written in the layout the code reads: a truncated, garbage or
     missing dataset ``.npz``, a missing or corrupt manifest, an ``.npz`` that disagrees with its
     manifest, damaged or mismatched backbone weights, a missing backbone, data folder or few-shot
     split, a damaged epoch checkpoint.
  4. **interrupted and concurrent runs**: a finished cell is reused, never recomputed; a damaged
     cell record is recomputed and the other records kept; a run stopped by bad data keeps the
     cells it finished; a record that is a folder, a cell store that is a file. (Two processes
     reaching one cell compute it once, and a killed holder leaves no stale lock:
     ``tests/test_cells.py::test_two_runs_on_one_cell_compute_it_once`` and
     ``::test_a_killed_holder_leaves_no_stale_lock``.)
  5. **downloads** (``visprompt.data.download``, local files only): checksum and size mismatch,
     truncated archives, path traversal, absolute paths and links pointing out of an archive, a
     decompression bomb spread over many members, an archive of another layout, a manual
     download put in the wrong folder.

Each case asserts the outcome *and* its message: a ``ConfigError`` (or CLI exit code 2) naming the
key path or the file and the fix, or a clean resume that loses nothing computed before. Nothing
here trains beyond a few steps of a tiny model on data built in ``tmp_path``.
"""

from __future__ import annotations

import copy
import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from visprompt import cli, experiments
from visprompt.config import load_params
from visprompt.data import splits as fewshot
from visprompt.data import store
from visprompt.data.base import TensorImageDataset
from visprompt.data.download import ArchiveError, ChecksumError, ManualDownloadRequired, extract, fetch, verify
from visprompt.errors import ConfigError
from visprompt.train import fit

ROOT = Path(__file__).resolve().parents[1]
PARAMS = str(ROOT / "params.yaml")
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def says(message: str, *parts: str) -> None:
    """Every part (a key path, a file, the fix) is in the message."""
    missing = [p for p in parts if p not in message]
    assert not missing, f"message lacks {missing}:\n{message}"


def _write(tmp_path, params, name="params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _edited(edit) -> dict:
    params = copy.deepcopy(DEFAULT)
    edit(params)
    return params


def _load_error(tmp_path, edit) -> str:
    path = _write(tmp_path, _edited(edit))
    with pytest.raises(ConfigError) as e:
        load_params(path)
    says(str(e.value), str(path))  # which file
    return str(e.value)


def _dig(params, keys):
    for k in keys:
        params = params[k]
    return params


def _delete(*keys):
    return lambda p: _dig(p, keys[:-1]).pop(keys[-1])


def _put(*keys, value):
    return lambda p: _dig(p, keys[:-1]).__setitem__(keys[-1], value)


# ================================================================================================
# 1. params structure
# ================================================================================================

MISSING = [  # (keys deleted, what the message says)
    (("vpt", "recipe"), "vpt.recipe: missing; see params.yaml in the repository"),
    (("vp", "methods"), "vp.methods: missing; see params.yaml in the repository"),
    (("rpo", "base2new"), "rpo.base2new: missing, but rpo.methods.zeroshot runs the base2new protocol; add an rpo.base2new section"),
    (("rpo", "base2new", "shots"), "rpo.base2new.shots: missing; see params.yaml in the repository"),
    (("rpo", "dg", "targets"), "rpo.dg.targets: missing; see params.yaml in the repository"),
    (("rpo", "fewshot", "datasets"), "rpo.fewshot.datasets: missing; see params.yaml in the repository"),
    (("backbones", "vit"), "backbones.vit: missing; the mini profile builds its ViT from it (see params.yaml in the repository)"),
    (("backbones", "clip"), "backbones.clip: missing; the mini profile builds its CLIP from it"),
    (("splits", "seeds"), "splits.seeds: missing; see params.yaml in the repository"),
]


@pytest.mark.parametrize("keys,message", MISSING, ids=[".".join(k) for k, _ in MISSING])
def test_a_missing_section_or_key_stops_at_load(tmp_path, keys, message):
    says(_load_error(tmp_path, _delete(*keys)), message)


_TEXT = (ROOT / "params.yaml").read_text()
FILES = [  # (file content, what the message says)
    ("", "is empty; start from the repository's params.yaml"),
    ("# params come later\n", "is empty; start from the repository's params.yaml"),
    ("- data\n- splits\n", "must be a mapping of sections (data, splits, backbones, vpt, vp, rpo), got list"),
    (_TEXT.replace("  seed: 0", "\tseed: 0", 1), "is not valid YAML (indent with spaces, never tabs)"),
    (_TEXT.replace("threads: 2", "threads: 2\nthreads: 1", 1), "threads is set twice (lines 4 and 5); YAML would silently keep the second: delete one"),
    (_TEXT.replace("    lr: 0.01\n", "    lr: 0.01\n    lr: 0.1\n", 1), "rpo.recipe.lr is set twice"),
    (b"PK\x03\x04\xe6\x00\x9f binary", "is not a text (UTF-8) file"),
]


@pytest.mark.parametrize("content,message", FILES, ids=["empty", "comments-only", "a-list", "tab", "key-twice", "nested-key-twice", "binary"])
def test_a_params_file_that_is_not_params_stops_at_load(tmp_path, content, message):
    path = tmp_path / "params.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as e:
        load_params(path)
    says(str(e.value), str(path), message)


def test_params_path_that_is_missing_or_a_folder(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(tmp_path / "parms.yaml")
    says(str(e.value), str(tmp_path / "parms.yaml"), "not found; run from the repository root or pass --params")
    with pytest.raises(ConfigError) as e:
        load_params(tmp_path)
    says(str(e.value), str(tmp_path), "is a directory; pass the file itself")


WRONG_PAPER = [
    (_put("vpt", "methods", "coop", value={"cfg": {"n_ctx": 4}}), "vpt.methods.coop: 'coop' is a CLIP method but vpt runs on the ViT; move it under vp.methods or rpo.methods"),
    (_put("rpo", "methods", "deep", value={"method": "vpt_deep", "cfg": {"prompt_length": 4}}), "rpo.methods.deep: 'vpt_deep' is a ViT method but rpo runs on the CLIP; move it under vpt.methods"),
    (_put("vp", "methods", "linear", value={}), "vp.methods.linear: 'linear' is a ViT method but vp runs on the CLIP; move it under vpt.methods"),
]


@pytest.mark.parametrize("edit,message", WRONG_PAPER, ids=["clip-method-under-vpt", "vit-alias-under-rpo", "vit-method-under-vp"])
def test_a_method_under_the_wrong_paper_stops_at_load(tmp_path, edit, message):
    says(_load_error(tmp_path, edit), message)


UNKNOWN_RPO_DATASET = [
    (_put("rpo", "base2new", "datasets", value=["objects", "object"]), "rpo.base2new.datasets[1]: 'object' has no few-shot samples (did you mean 'objects'?)"),
    (_put("rpo", "dg", "source", value="imagenet"), "rpo.dg.source: 'imagenet' has no few-shot samples"),
    (_put("rpo", "fewshot", "datasets", value=["sensors"]), "rpo.fewshot.datasets[0]: 'sensors' has no few-shot samples (did you mean 'sensor'?)"),
]


@pytest.mark.parametrize("edit,message", UNKNOWN_RPO_DATASET, ids=["base2new", "dg-source", "fewshot"])
def test_an_unknown_rpo_dataset_stops_at_load(tmp_path, edit, message):
    says(_load_error(tmp_path, edit), message, "fix the name or add it to splits.datasets")


def _check_error(tmp_path, edit, paper, method) -> str:
    """Loads cleanly, then ``check_method`` (what every train stage runs first) stops it."""
    params = load_params(_write(tmp_path, _edited(edit)))
    with pytest.raises(ConfigError) as e:
        experiments.check_method(params, paper, method)
    return str(e.value)


UNKNOWN_TASK = [
    (_put("vpt", "tasks", value=["vtab/shapes", "vtab/nope"]), "full", ["unknown vpt.tasks entry 'vtab/nope'; choose one of:", "vtab/shapes"]),
    (_put("vpt", "tasks", value=["shapes"]), "full", ["unknown vpt.tasks entry 'shapes'; choose one of:", "vtab/shapes"]),
    # a method's own task list: the message must name *that* list, not vpt.tasks
    (_put("vpt", "methods", "partial", "tasks", value=["vtab/shapes", "vtab/shapez"]), "partial", ["vpt.methods.partial.tasks", "'vtab/shapez'", "vtab/shapes"]),
]


@pytest.mark.parametrize("edit,method,parts", UNKNOWN_TASK, ids=["vpt.tasks", "without-suite", "method-tasks"])
def test_an_unknown_task_stops_before_any_work(tmp_path, edit, method, parts):
    says(_check_error(tmp_path, edit, "vpt", method), *parts)


NOT_SAMPLED = [  # the first RPO run in params.yaml (zeroshot) runs every protocol
    (_put("rpo", "base2new", "shots", value=32), "rpo.methods.zeroshot needs shots [32] that splits.shots does not make; add them to splits.shots"),
    (_put("rpo", "fewshot", "shots", value=[1, 3]), "rpo.methods.zeroshot needs shots [3] that splits.shots does not make; add them to splits.shots"),
    (_put("rpo", "seeds", value=[1, 2, 11]), "rpo.methods.zeroshot needs seeds [11] that splits.seeds does not make; add them to splits.seeds"),
    (_put("rpo", "fewshot", "seeds", value=[1, 12]), "rpo.methods.zeroshot needs seeds [12] that splits.seeds does not make; add them to splits.seeds"),
]


@pytest.mark.parametrize("edit,message", NOT_SAMPLED, ids=["base2new-shots", "fewshot-shots", "seeds", "fewshot-seeds"])
def test_rpo_shots_or_seeds_that_splits_do_not_make_stop_at_load(tmp_path, edit, message):
    says(_load_error(tmp_path, edit), message)


def test_an_unknown_dg_target_stops_before_any_work(tmp_path):
    """A DG target is test-only (no few-shot samples), so the schema cannot know it: the mini world
    does, before any model is built (it used to fail at the first DG cell, after the base2new ones)."""
    says(_check_error(tmp_path, _put("rpo", "dg", "targets", value=["objects-v2", "objects-sktch"]), "rpo", "rpo"),
         "unknown rpo.dg.targets entry 'objects-sktch'", "objects-sketch")


def test_an_rpo_override_of_no_protocol_or_dataset_stops_at_load(tmp_path):
    says(_load_error(tmp_path, _put("rpo", "methods", "rpo", "overrides", value={"fewshots": {"cfg": {"K": 4}}})),
         "rpo.methods.rpo.overrides.fewshots: not a protocol", "did you mean 'fewshot'")


def test_a_grid_key_of_no_recipe_field_or_method_setting_stops_at_load(tmp_path):
    says(_load_error(tmp_path, _put("vpt", "methods", "vpt_deep", "grid", value={"prompt_lenght": [1, 8]})),
         "vpt.methods.vpt_deep.grid.prompt_lenght: neither a recipe field nor a setting of 'vpt_deep'", "did you mean 'prompt_length'")


PROMPT_TOO_BIG = [
    (_put("vp", "methods", "vp_fixed_patch", "cfg", "prompt_size", value=40),
     "vp.methods.vp_fixed_patch.cfg.prompt_size: 40 does not fit a 32-px image (the patch is larger than the image); use at most 32"),
    (_put("vp", "methods", "vp_random_patch", "grid", value={"prompt_size": [4, 33]}),
     "vp.methods.vp_random_patch.grid.prompt_size[1]: 33 does not fit a 32-px image (the patch is larger than the image); use at most 32"),
]


@pytest.mark.parametrize("edit,message", PROMPT_TOO_BIG, ids=["patch-cfg", "patch-grid"])
def test_a_visual_prompt_larger_than_the_image_stops_at_load(tmp_path, edit, message):
    says(_load_error(tmp_path, edit), message)


def test_more_shots_than_a_class_has_images():
    train, val = np.arange(12) % 4, np.arange(8) % 4  # 3 training and 2 validation images per class
    with pytest.raises(ConfigError) as e:
        fewshot.make_split(train, val, "objects", 4, 1)
    says(str(e.value), "objects: 4 shots requested but class 0 has only 3 images in its train split", "use at most 3 shots (splits.shots in params.yaml)")
    with pytest.raises(ConfigError) as e:  # the validation sample takes min(shots, 4) per class
        fewshot.make_split(train, val, "objects", 3, 1)
    says(str(e.value), "class 0 has only 2 images in its val split", "splits.shots in params.yaml")
    with pytest.raises(ConfigError) as e:
        fewshot.check_shots({"coop/objects": [3, 5]}, [1, 2, 4])
    says(str(e.value), "splits.shots [4] exceed the smallest class of coop/objects (3 training images); use shots <= 3 in params.yaml")


# ================================================================================================
# a tiny mini world in tmp_path: backbones, datasets and few-shot splits in the layout the code reads
# ================================================================================================

CLASSES = ["red circle", "blue square", "green star", "yellow ring"]


def _tiny_params(tmp_path) -> dict:
    p = copy.deepcopy(DEFAULT)
    p["data"].update(root=str(tmp_path / "mini"), runs=str(tmp_path / "runs"))
    p["splits"].update(root=str(tmp_path / "splits"), datasets=["objects", "textures"], shots=[2], seeds=[1])
    p["backbones"]["root"] = str(tmp_path / "backbones")
    p["backbones"]["vit"].update(embed_dim=24, depth=1, num_heads=2)
    p["backbones"]["clip"].update(embed_dim=32, vision_layers=1, vision_width=32, vision_head_width=16, text_layers=1, text_width=32, text_heads=2)
    p["rpo"].update(seeds=[1], base2new={"datasets": ["objects", "textures"], "shots": 2})
    del p["rpo"]["dg"], p["rpo"]["fewshot"]
    p["rpo"]["methods"] = {"zeroshot": {"trainable": False, "protocols": ["base2new"]}}
    return load_params(_write(tmp_path, p))  # a valid params file: every fault below is the one the test makes


def _write_dataset(params, name, seed=0):
    rng = np.random.default_rng(seed)
    data = {s: {"images": rng.integers(0, 255, (4 * n, 32, 32, 3), dtype=np.uint8), "labels": np.arange(4 * n) % 4}
            for s, n in (("train", 3), ("val", 2), ("test", 2))}
    store.write_dataset(params["data"]["root"], f"coop/{name}", data,
                        {"classnames": CLASSES, "base_classes": [0, 1], "new_classes": [2, 3], "template": "a photo of a {}."})
    return data


@pytest.fixture
def world(tmp_path):
    """``(params, tmp_path)``: tiny ViT and CLIP weights, two CoOp-style datasets, their splits."""
    from visprompt.backbones.clip import ClipConfig, create_clip
    from visprompt.backbones.vit import VitConfig, create_vit

    params = _tiny_params(tmp_path)
    bb = Path(params["backbones"]["root"])
    bb.mkdir()
    torch.manual_seed(0)
    torch.save(create_vit(VitConfig.from_dict(params["backbones"]["vit"])).state_dict(), bb / "tiny_vit.pt")
    torch.save(create_clip(ClipConfig.from_dict(params["backbones"]["clip"])).state_dict(), bb / "tiny_clip.pt")
    for name in params["splits"]["datasets"]:
        data = _write_dataset(params, name)
        fewshot.write_split(params["splits"]["root"], fewshot.make_split(data["train"]["labels"], data["val"]["labels"], name, 2, 1))
    return params, tmp_path


def _run(params, method="zeroshot"):
    return experiments.run_method(params, "rpo", method, progress=False)


def _records(params) -> dict:
    return {p.name: p.read_bytes() for p in sorted(Path(params["data"]["runs"]).rglob("*.json"))}


TEXT_CONTEXT = [  # the tiny CLIP's 24-token context holds 'a photo of a red circle.' (9 tokens) + 15
    ({"rpo": {"cfg": {"K": 16}, "protocols": ["base2new"]}}, ["K=16", "at most 15 fit; set K <= 15 (rpo cfg key K)"]),
    ({"coop": {"cfg": {"n_ctx": 30, "ctx_init": ""}, "protocols": ["base2new"]}}, ["coop class prompt does not fit the text context", "fewer prompt tokens"]),
    ({"coop": {"cfg": {"n_ctx": 2, "ctx_init": "a photo of a"}, "protocols": ["base2new"]}}, ["ctx_init 'a photo of a' is 4 tokens but n_ctx=2; set n_ctx=4 or ctx_init=''"]),
]


@pytest.mark.parametrize("methods,parts", TEXT_CONTEXT, ids=["rpo-K", "coop-n_ctx", "coop-ctx_init"])
def test_a_text_prompt_longer_than_the_free_context_stops_before_training(world, methods, parts):
    params, _ = world
    params["rpo"]["methods"] = methods
    with pytest.raises(ConfigError) as e:
        _run(params, next(iter(methods)))
    says(str(e.value), *parts)
    assert _records(params) == {}  # nothing computed, nothing lost


# ================================================================================================
# 2. the command line: exit code 2 and one message, before any training
# ================================================================================================


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("run_method reached: the bad input was not caught first")

    monkeypatch.setattr(experiments, "run_method", refuse)


CLI_ERRORS = [  # main returns 2
    (["train", "VPT", "--method", "full"], "unknown paper 'VPT'; choose one of: rpo, vp, vpt"),
    (["train", "vpt", "--method", "coop"], "vpt.methods has no 'coop'; add it to params.yaml or choose one of"),
    (["train", "rpo", "--method", "full"], "rpo.methods has no 'full'; add it to params.yaml or choose one of"),
    (["train", "vp", "--method", "vp_pad", "--task", "vtab/shapes"], "task 'vtab/shapes' is not one that vp.tasks lists"),
    (["report", "VPT"], "unknown paper 'VPT'; choose one of: rpo, vp, vpt"),
]


@pytest.mark.parametrize("argv,message", CLI_ERRORS, ids=["train-paper-case", "train-clip-method-for-vpt", "train-vit-method-for-rpo", "train-task-of-another-paper", "report-paper-case"])
def test_cli_bad_names_exit_2_before_any_work(argv, message, no_training, capsys):
    assert cli.main([*argv, "--params", PARAMS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    says(err, message)


USAGE_ERRORS = [  # argparse: SystemExit(2) and a usage message
    (["trian"], ["invalid choice: 'trian'", "'train'"]),
    ([], ["the following arguments are required: COMMAND"]),
    (["train", "vpt"], ["the following arguments are required: --method"]),
    (["train", "vpt", "--method", "full", "--seed", "one"], ["argument --seed: invalid int value: 'one'"]),
    (["backbones", "vitt"], ["invalid choice: 'vitt'", "'vit'"]),
    (["report"], ["the following arguments are required: PAPER"]),
]


@pytest.mark.parametrize("argv,parts", USAGE_ERRORS, ids=["unknown-command", "no-command", "train-no-method", "seed-not-a-number", "unknown-backbone", "report-no-paper"])
def test_cli_usage_errors_exit_2(argv, parts, no_training, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    says(capsys.readouterr().err, "usage: python -m visprompt", *parts)


def test_cli_params_missing_or_broken_exits_2_before_any_work(tmp_path, no_training, capsys):
    missing = tmp_path / "missing.yaml"
    assert cli.main(["train", "vpt", "--method", "full", "--params", str(missing)]) == 2
    says(capsys.readouterr().err, str(missing), "not found; run from the repository root or pass --params")
    broken = tmp_path / "params.yaml"
    broken.write_text(_TEXT.replace("vpt:\n", "vpt:\n  seeds: [1, 2]\n", 1))  # vpt.seeds set twice
    assert cli.main(["train", "vpt", "--method", "full", "--params", str(broken)]) == 2
    says(capsys.readouterr().err, str(broken), "vpt.seeds is set twice")


CHECK_ERRORS = [  # `python -m visprompt check`: what the data/splits/backbones stages would stop at
    (_put("splits", "datasets", value=["objects", "textures", "counts", "scenes", "sensor", "scene"]), "unknown splits.datasets entry 'scene'; choose one of: counts, objects, scenes, sensor, textures"),
    (_put("splits", "shots", value=[1, 2, 4, 8, 16, 1000]), "splits.shots [1000] exceed the smallest class of coop/objects"),
    (_delete("backbones", "vit_pretrain"), "backbones.vit_pretrain missing; see params.yaml in the repository"),
]


@pytest.mark.parametrize("edit,message", CHECK_ERRORS, ids=["unknown-split-dataset", "more-shots-than-images", "no-vit-pretrain"])
def test_cli_check_reports_what_a_stage_would_stop_at(tmp_path, edit, message, capsys):
    path = _write(tmp_path, _edited(edit))
    assert cli.main(["check", "--params", str(path)]) == 2
    says(capsys.readouterr().err, message)


# ================================================================================================
# 3. corrupt or missing files
# ================================================================================================


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DATASET_FAULTS = {  # fault -> what the message says
    "truncated-npz": (lambda npz, man: _truncate(npz), ["objects.npz is missing or corrupt", "delete it and run `dvc repro data` again"]),
    "garbage-npz": (lambda npz, man: npz.write_bytes(b"\x80\x04garbage" * 50), ["objects.npz is missing or corrupt", "run `dvc repro data`"]),
    "npz-deleted": (lambda npz, man: npz.unlink(), ["objects.npz is missing or corrupt", "run `dvc repro data`"]),
    "manifest-deleted": (lambda npz, man: man.unlink(), ["dataset 'coop/objects' not found under", "(no objects.json); run `dvc repro data`"]),
    "manifest-garbage": (lambda npz, man: man.write_text('{"classnames": ["red'), ["objects.json is corrupt", "delete it and run `dvc repro data` again"]),
    "npz-of-another-size": (lambda npz, man: np.savez(npz, **{f"{s}_{k}": np.zeros((2, 32, 32, 3) if k == "images" else 2, np.uint8)
                                                              for s in ("train", "val", "test") for k in ("images", "labels")}),
                            ["objects.npz does not match its manifest (2 vs 12 items); run `dvc repro data` again"]),
}


@pytest.mark.parametrize("fault", sorted(DATASET_FAULTS))
def test_a_damaged_dataset_names_the_file_and_the_stage_to_rerun(tmp_path, fault):
    params = {"data": {"root": str(tmp_path / "mini")}}
    _write_dataset(params, "objects")
    npz, man = store.dataset_files(params["data"]["root"], "coop/objects")
    damage, parts = DATASET_FAULTS[fault]
    damage(npz, man)
    with pytest.raises(ConfigError) as e:
        store.load_split(params["data"]["root"], "coop/objects", "train")
    says(str(e.value), *parts)


WEIGHT_FAULTS = {
    "garbage-vit": ("vit", lambda f: f.write_bytes(b"<html>404 Not Found</html>"), "is not readable weights"),
    "empty-vit": ("vit", lambda f: f.write_bytes(b""), "is not readable weights"),
    "truncated-clip": ("clip", _truncate, "is not readable weights"),
    "missing-vit": ("vit", lambda f: f.unlink(), "not found: run `dvc repro backbone_vit` first"),
    "missing-clip": ("clip", lambda f: f.unlink(), "not found: run `dvc repro backbone_clip` first"),
}


def _load_backbone(params, name):
    return experiments.load_vit(params) if name == "vit" else experiments.load_clip(params, "rpo")


@pytest.mark.parametrize("fault", sorted(WEIGHT_FAULTS))
def test_damaged_or_missing_backbone_weights_name_the_file_and_the_stage(world, fault):
    params, _ = world
    name, damage, message = WEIGHT_FAULTS[fault]
    path = Path(params["backbones"]["root"]) / f"tiny_{name}.pt"
    damage(path)
    with pytest.raises(ConfigError) as e:
        _load_backbone(params, name)
    says(str(e.value), str(path), message, f"backbone_{name}")


OTHER_CONFIG = {  # params changed after the backbone stage ran: the weights are of another shape
    "vit-width": ("vit", {"embed_dim": 48}),
    "vit-depth": ("vit", {"depth": 2}),
    "clip-width": ("clip", {"embed_dim": 64}),
}


@pytest.mark.parametrize("case", sorted(OTHER_CONFIG))
def test_backbone_weights_of_another_config_name_the_file_and_the_fix(world, case):
    params, _ = world
    name, change = OTHER_CONFIG[case]
    params["backbones"][name].update(change)
    with pytest.raises(ConfigError) as e:
        _load_backbone(params, name)
    says(str(e.value), str(Path(params["backbones"]["root"]) / f"tiny_{name}.pt"), f"dvc repro -f backbone_{name}")


def test_a_missing_backbone_stops_a_run_before_any_cell(world):
    params, _ = world
    (Path(params["backbones"]["root"]) / "tiny_clip.pt").unlink()
    with pytest.raises(ConfigError) as e:
        _run(params)
    says(str(e.value), "tiny_clip.pt not found: run `dvc repro backbone_clip` first")
    assert _records(params) == {}


FOLDER_FAULTS = {
    "no-data-folder": (lambda p: _rmtree(p["data"]["root"]), ["dataset coop/objects not found under", "run `dvc repro data`"]),
    "no-splits-folder": (lambda p: _rmtree(p["splits"]["root"]), ["few-shot split", "shots2_seed1.json not found", "run `dvc repro splits`"]),
    "garbage-split-file": (lambda p: fewshot.split_file(p["splits"]["root"], "objects", 2, 1).write_text('{"train": [0, 1'),
                           ["shots2_seed1.json", "dvc repro -f splits"]),
}


def _rmtree(path):
    import shutil

    shutil.rmtree(path)


@pytest.mark.parametrize("fault", sorted(FOLDER_FAULTS))
def test_missing_data_or_splits_name_the_path_and_the_stage(world, fault):
    params, _ = world
    damage, parts = FOLDER_FAULTS[fault]
    damage(params)
    with pytest.raises(ConfigError) as e:
        _run(params)
    says(str(e.value), *parts)


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Conv2d(3, 4, 4, stride=4).requires_grad_(False)
        self.head = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def _images(n=24):
    rng = np.random.default_rng(0)
    return TensorImageDataset(rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8), np.arange(n) % 3, ["a", "b", "c"])


RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 8, "epochs": 2, "augment": "none"}
CHECKPOINT_FAULTS = {  # a truncated one: tests/test_train.py
    "zero-bytes": (lambda path: path.write_bytes(b""), "is unreadable"),
    "weights-not-a-checkpoint": (lambda path: torch.save(TinyNet().state_dict(), path), "not a visprompt training checkpoint"),
}


@pytest.mark.parametrize("fault", sorted(CHECKPOINT_FAULTS))
def test_a_damaged_epoch_checkpoint_is_reported_and_the_cell_retrains(tmp_path, fault):
    reference = fit(TinyNet(), _images(), RECIPE, seed=1, progress=False, device="cpu")
    path = experiments.CellStore(tmp_path, "vpt", "linear").checkpoint("vtab/count/seed1", "fp")
    path.parent.mkdir(parents=True, exist_ok=True)
    damage, message = CHECKPOINT_FAULTS[fault]
    damage(path)
    with pytest.warns(UserWarning) as warned:
        again = fit(TinyNet(), _images(), RECIPE, seed=1, checkpoint=path, progress=False, device="cpu")
    says(" ".join(str(w.message) for w in warned), str(path), message, "training this cell from its first epoch")
    assert again["history"] == reference["history"]


# ================================================================================================
# 4. interrupted and concurrent runs
# ================================================================================================


def test_a_finished_cell_is_reused_and_never_recomputed(tmp_path):
    experiments.CellStore(tmp_path, "vpt", "linear").put("vtab/count/seed1", "fp", {"test_top1": 42.0})
    store_ = experiments.CellStore(tmp_path, "vpt", "linear")
    rec, reused = store_.compute("vtab/count/seed1", "fp", lambda: pytest.fail("a finished cell was recomputed"))
    assert reused and rec["test_top1"] == 42.0 and (store_.trained, store_.reused) == (0, 1)


RECORD_DAMAGE = {
    "text-garbage": b'{"test_top1": 42.0, "cell": "vtab/co',
    "zero-filled": b"\0" * 512,  # what a power cut can leave of a file written just before
    "random-bytes": bytes(range(256)) * 2,
}


@pytest.mark.parametrize("damage", sorted(RECORD_DAMAGE))
def test_a_damaged_cell_record_is_recomputed_and_the_others_kept(tmp_path, damage):
    first = experiments.CellStore(tmp_path, "vpt", "linear")
    first.put("vtab/count/seed1", "fp", {"test_top1": 42.0})
    first.put("vtab/count/seed2", "fp", {"test_top1": 43.0})
    records = sorted((tmp_path / "vpt" / "linear").glob("*.json"))
    assert len(records) == 2
    damaged, kept = records  # seed1, seed2
    kept_bytes = kept.read_bytes()
    damaged.write_bytes(RECORD_DAMAGE[damage])
    again = experiments.CellStore(tmp_path, "vpt", "linear")
    rec, reused = again.compute("vtab/count/seed1", "fp", lambda: {"test_top1": 44.0})
    assert not reused and rec["test_top1"] == 44.0
    rec, reused = again.compute("vtab/count/seed2", "fp", lambda: pytest.fail("an intact record was recomputed"))
    assert reused and rec["test_top1"] == 43.0 and kept.read_bytes() == kept_bytes


def test_a_run_stopped_by_bad_data_keeps_its_finished_cells_and_resumes(world):
    params, _ = world
    npz, _ = store.dataset_files(params["data"]["root"], "coop/textures")
    _truncate(npz)  # the second dataset is damaged: the run stops there
    with pytest.raises(ConfigError, match="textures.npz is missing or corrupt"):
        _run(params)
    kept = _records(params)
    assert list(kept) == ["base2new_objects_shots2_seed1.json"]  # the first cell was finished and kept
    (Path(params["data"]["runs"]) / "rpo" / "zeroshot" / "base2new_textures_shots2_seed1.json.tmp").write_text("{")  # a killed write
    _write_dataset(params, "textures")  # `dvc repro data`
    result = _run(params)
    assert (result["cells_reused"], result["cells_trained"]) == (1, 1)
    assert _records(params)["base2new_objects_shots2_seed1.json"] == kept["base2new_objects_shots2_seed1.json"]
    again = _run(params)  # and a third run computes nothing
    assert (again["cells_reused"], again["cells_trained"]) == (2, 0)


def test_a_cell_record_that_is_a_folder_stops_before_computing(tmp_path):
    store_ = experiments.CellStore(tmp_path, "vpt", "linear")
    store_.put("vtab/count/seed1", "fp", {"test_top1": 42.0})
    (record,) = (tmp_path / "vpt" / "linear").glob("*.json")
    record.unlink()
    record.mkdir()  # e.g. `mkdir -p` of a wrong path, or a sync tool's conflict folder
    calls = []
    with pytest.raises(ConfigError) as e:
        experiments.CellStore(tmp_path, "vpt", "linear").compute("vtab/count/seed1", "fp", lambda: calls.append(1) or {"test_top1": 1.0})
    says(str(e.value), str(record))
    assert "delete" in str(e.value) or "remove" in str(e.value)
    assert calls == []  # nothing computed that could not be stored


def test_a_cell_store_that_is_a_file_names_data_runs(world):
    params, tmp_path = world
    params["data"]["runs"] = str(tmp_path / "runs.txt")
    Path(params["data"]["runs"]).write_text("not a folder")
    with pytest.raises(ConfigError) as e:
        _run(params)
    says(str(e.value), str(tmp_path / "runs.txt"), "data.runs")


# ================================================================================================
# 5. downloads, with local files only
# ================================================================================================


def test_a_download_with_the_wrong_checksum_is_deleted_and_reported(tmp_path):
    src = tmp_path / "published.bin"
    src.write_bytes(os.urandom(5000))
    dest = tmp_path / "downloads" / "published.bin"
    with pytest.raises(ChecksumError) as e:
        fetch(src.as_uri(), dest, sha256="0" * 64)
    says(str(e.value), src.as_uri(), "failed verification and was deleted", "sha256 is", "expected " + "0" * 64)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


VERIFY = [
    ({"size": 6000}, ["has 5,000 bytes, expected 6,000 (truncated or a different file)"]),
    ({"md5": "f" * 32}, ["md5 is", "expected " + "f" * 32, "(corrupt or a different version of the file)"]),
    ({"sha256": "e" * 64}, ["sha256 is", "expected " + "e" * 64, "(corrupt or a different version of the file)"]),
]


@pytest.mark.parametrize("expected,parts", VERIFY, ids=["size", "md5", "sha256"])
def test_a_placed_file_that_does_not_verify_names_it_and_what_was_expected(tmp_path, expected, parts):
    path = tmp_path / "car_devkit.tgz"
    path.write_bytes(os.urandom(5000))
    with pytest.raises(ChecksumError) as e:
        verify(path, **expected)
    says(str(e.value), str(path), *parts)
    assert path.exists()  # a file the user placed is never deleted by a check


def _zip_bytes(members: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _leftovers(folder: Path) -> list:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("kind", ["zip", "gz"])
def test_a_truncated_archive_leaves_nothing(tmp_path, kind):
    if kind == "zip":
        data = _zip_bytes({f"top/f{i}.bin": os.urandom(5000) for i in range(4)})
    else:
        data = gzip.compress(os.urandom(20000))
    archive = tmp_path / f"dl.{kind}"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError) as e:
        extract(archive, tmp_path / "out", remove_on_error=True)
    says(str(e.value), str(archive), "is truncated or corrupt")
    assert not (tmp_path / "out").exists() and not archive.exists() and not _leftovers(tmp_path)


def _tar_with(path: Path, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("top/ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        if data is not None:
            info.size = len(data)
        tf.addfile(info, io.BytesIO(data) if data is not None else None)


def _link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


ESCAPES = {  # an archive entry that would land outside the destination
    "zip-dot-dot": ("evil.zip", lambda a, outside: a.write_bytes(_zip_bytes({"top/ok.txt": b"ok", "top/../../evil.txt": b"x"})), "member 'top/../../evil.txt'"),
    "tar-absolute": ("evil.tar.gz", lambda a, outside: _tar_with(a, tarfile.TarInfo(str(outside)), b"x"), "member '{outside}'"),
    "tar-symlink-out": ("evil.tar.gz", lambda a, outside: _tar_with(a, _link("top/link", "../../..", tarfile.SYMTYPE)), "link 'top/link'"),
    "tar-hardlink-out": ("evil.tar.gz", lambda a, outside: _tar_with(a, _link("top/passwd", "/etc/passwd", tarfile.LNKTYPE)), "link 'top/passwd'"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_an_archive_entry_pointing_outside_is_refused(tmp_path, case):
    name, build, message = ESCAPES[case]
    archive, outside = tmp_path / "dl" / name, tmp_path / "evil.txt"
    archive.parent.mkdir()
    build(archive, outside)
    with pytest.raises(ArchiveError) as e:
        extract(archive, tmp_path / "dl" / "out")
    says(str(e.value), str(archive), message.format(outside=outside), "refusing to extract")
    assert not outside.exists() and not (tmp_path / "dl" / "out").exists() and not _leftovers(tmp_path / "dl")


def test_a_decompression_bomb_spread_over_many_members_is_refused(tmp_path):
    archive = tmp_path / "many.zip"
    archive.write_bytes(_zip_bytes({f"z{i}.bin": b"\0" * (1 << 20) for i in range(12)}))  # 12 MB in ~12 KB: each member alone is small
    with pytest.raises(ArchiveError) as e:
        extract(archive, tmp_path / "out", min_cap_bytes=0)
    says(str(e.value), str(archive), "decompression bomb", "check the file's checksum and source")
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_an_archive_of_another_layout_names_what_it_holds(tmp_path):
    archive = tmp_path / "nabirds.tar.gz"
    _tar_with(archive, tarfile.TarInfo("top/b.txt"), b"b")
    with pytest.raises(ArchiveError) as e:
        extract(archive, tmp_path / "out", strip="nabirds")
    says(str(e.value), str(archive), "has no top-level folder 'nabirds'; it holds ['top']")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", [".", "downloads"])
def test_a_manual_download_in_the_wrong_folder_is_found_and_the_destination_named(tmp_path, where):
    from visprompt.data import real

    root = tmp_path / "data"
    misplaced = root / where / "nabirds.tar.gz"
    misplaced.parent.mkdir(parents=True, exist_ok=True)
    misplaced.write_bytes(b"the user's download")
    before = sorted(root.rglob("*"))
    with pytest.raises(ManualDownloadRequired) as e:
        real.prepare("fgvc/nabirds", root)
    says(str(e.value), f"put it at: {root / 'nabirds' / 'nabirds.tar.gz'}", f"found {misplaced}", "move it there")
    assert sorted(root.rglob("*")) == before and misplaced.read_bytes() == b"the user's download"


def test_an_rpo_run_without_the_fewshot_protocol_does_not_need_the_fewshot_seeds():
    """Regression: check_method asked splits.seeds for rpo.fewshot.seeds even when the run does
    not run the few-shot protocol."""
    p = copy.deepcopy(load_params("params.yaml"))
    p["rpo"]["methods"]["coop"]["protocols"] = ["base2new"]
    p["rpo"]["fewshot"]["seeds"] = [99]
    for run in p["rpo"]["methods"]:
        p["rpo"]["methods"][run]["protocols"] = ["base2new"]
    experiments.check_method(p, "rpo", "coop")  # no error: the few-shot seeds are not used
    p["rpo"]["methods"]["coop"]["protocols"] = ["base2new", "fewshot"]
    with pytest.raises(ConfigError, match=r"rpo.methods.coop needs seeds \[99\]"):
        experiments.check_method(p, "rpo", "coop")
