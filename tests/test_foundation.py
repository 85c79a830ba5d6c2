"""The mini world, few-shot splits and params validation: the ground every method stands on."""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from visprompt.config import load_params
from visprompt.data.mini import all_tasks, base_new_split, render_split
from visprompt.data.splits import make_split, sample_few_shot
from visprompt.errors import ConfigError
from visprompt.pipeline import check_params, run_data, run_splits

SMOKE = "tests/smoke/params.yaml"


def test_renderer_same_seed_same_bytes():
    a = render_split("vtab/shapes", "test", seed=0, sizes={"vtab": {"test": 24}})
    b = render_split("vtab/shapes", "test", seed=0, sizes={"vtab": {"test": 24}})
    assert a["images"].dtype == np.uint8 and a["images"].shape == (24, 32, 32, 3)
    assert a["images"].tobytes() == b["images"].tobytes()
    assert np.array_equal(a["labels"], b["labels"])


def test_renderer_other_seed_other_images():
    a = render_split("vtab/shapes", "test", seed=0, sizes={"vtab": {"test": 24}})
    b = render_split("vtab/shapes", "test", seed=1, sizes={"vtab": {"test": 24}})
    assert np.array_equal(a["labels"], b["labels"])  # labels are balanced by index, images differ
    differs = [not np.array_equal(x, y) for x, y in zip(a["images"], b["images"])]
    assert all(differs)


def test_renderer_workers_do_not_change_bytes():
    a = render_split("coop/objects", "test", seed=3, workers=1, sizes={"coop": {"test": 2}})
    b = render_split("coop/objects", "test", seed=3, workers=2, sizes={"coop": {"test": 2}})
    assert a["images"].tobytes() == b["images"].tobytes()


def test_clip_corpus_has_captions_and_factors():
    out = render_split("upstream/clip", "val", seed=0, sizes={"upstream": {"clip_val_groups": 3}})
    assert len(out["captions"]) == len(out["images"]) == 12 and out["factors"].shape == (12, 5)
    assert all(c.endswith(".") for c in out["captions"])


def test_captions_name_what_the_zero_shot_probes_ask():
    """Probe class names ("one object", "striped object") must be phrases the corpus uses."""
    from visprompt.data.render import Scene, caption

    one = Scene(shape="circle", colour="red", pattern="striped", size="large", count=1, background="plain", style="flat")
    only_count = {"count": True, "say_one": True, **{f: False for f in ("shape", "colour", "pattern", "size", "background", "style")}}
    assert caption(one, only_count) == "a photo of one object."
    assert caption(one, {**only_count, "say_one": False}) == "a photo of an object."
    only_pattern = {**{f: False for f in only_count}, "pattern": True}
    assert caption(one, only_pattern) == "a photo of a striped object."
    out = render_split("upstream/clip", "val", seed=0, sizes={"upstream": {"clip_val_groups": 200}})
    assert any(" one " in c for c in out["captions"]) and any(c.endswith(" object.") for c in out["captions"])


def test_few_shot_balanced_train_only_and_deterministic():
    labels = np.repeat(np.arange(6), 10)
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]
    idx = sample_few_shot(labels, shots=4, seed=7)
    assert np.bincount(labels[idx]).tolist() == [4] * 6
    assert len(set(idx)) == len(idx)
    assert idx == sample_few_shot(labels, shots=4, seed=7)
    assert idx != sample_few_shot(labels, shots=4, seed=8)
    val_labels = np.repeat(np.arange(6), 5)
    rec = make_split(labels, val_labels, "toy", shots=4, seed=7)
    assert rec["train"] == idx  # train indices index the train split only
    assert max(rec["val"]) < len(val_labels) and np.bincount(val_labels[rec["val"]]).tolist() == [4] * 6


def test_few_shot_same_across_processes():
    """Same (shots, seed) gives the same sample in a fresh interpreter (no hidden global state)."""
    code = "import numpy as np; from visprompt.data.splits import sample_few_shot; print(sample_few_shot(np.repeat(np.arange(5), 9), 3, 2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(sample_few_shot(np.repeat(np.arange(5), 9), 3, 2))


def test_base_new_rule():
    assert base_new_split(20) == (list(range(10)), list(range(10, 20)))
    assert base_new_split(7) == ([0, 1, 2, 3], [4, 5, 6])  # base = first ceil(n/2)


def test_coop_halves_share_no_value_and_every_class_is_seen_upstream():
    from visprompt.data.mini import HELD_OUT

    factors = {"objects": "colour", "textures": "pattern", "counts": "count", "scenes": "background", "sensor": "colour"}
    tasks = all_tasks()
    for name, factor in factors.items():
        t = tasks[f"coop/{name}"]
        base, new = base_new_split(t.num_classes)
        assert len(base) == len(new) == 8
        for half_a, half_b in ((base, new), (new, base)):
            assert not {t.classes[c]["shape"] for c in half_a} & {t.classes[c]["shape"] for c in half_b}
            assert not {t.classes[c][factor] for c in half_a} & {t.classes[c][factor] for c in half_b}
        # CLIP has seen the new classes on the web: no class is a held-out combination
        assert not any((t.classes[c]["shape"], t.classes[c][factor]) in HELD_OUT[factor] for c in base + new)


def _params(tmp_path, **changes):
    p = load_params(SMOKE)
    for dotted, value in changes.items():
        d = p
        keys = dotted.split(".")
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    p["data"]["root"] = str(tmp_path / "mini")
    p["splits"]["root"] = str(tmp_path / "splits")
    return p


@pytest.mark.parametrize(
    "change, match",
    [
        ({"data.suites": ["upstream", "nope"]}, "unknown data.suites entry 'nope'"),
        ({"splits.shots": [1, 64]}, "exceed the smallest class"),
        ({"data.image_size": 36}, "divisible"),
        ({"splits.datasets": ["objects-sketch"]}, "unknown splits.datasets entry"),
        ({"backbones.vit.depth": 0}, "depth"),
        ({"backbones.vit.stem": "resnet"}, "unknown backbones.vit.stem 'resnet'"),
    ],
)
def test_bad_params_fail_before_any_work(tmp_path, change, match):
    p = _params(tmp_path, **change)
    with pytest.raises(ConfigError, match=match):
        run_data(p, progress=False)
    assert not (tmp_path / "mini").exists()  # nothing rendered


def test_params_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_repository_params_validate():
    check_params(load_params("params.yaml"))
    check_params(load_params(SMOKE))


def test_data_and_splits_stage(tmp_path):
    p = _params(tmp_path, **{"data.suites": ["coop"]})
    out = run_data(p, progress=False)
    assert out["datasets"]["coop/objects"] == {"train": 64, "val": 32, "test": 48}  # 16 classes
    again = run_data(p, progress=False)
    assert again["datasets"]["coop/objects"] == "up to date"
    res = run_splits(p)
    assert res["files"] == 2 * 2 * 2
    import json

    rec = json.loads((tmp_path / "splits" / "objects" / "shots2_seed1.json").read_text())
    from visprompt.data.store import load_arrays

    train_labels = load_arrays(p["data"]["root"], "coop/objects", "train")["labels"]
    assert np.bincount(train_labels[rec["train"]]).tolist() == [2] * 16
    # too many shots for the rendered pool: clear error, existing split files untouched
    p2 = _params(tmp_path, **{"data.suites": ["coop"], "splits.shots": [8]})
    with pytest.raises(ConfigError, match="shots"):
        run_splits(p2)
    assert (tmp_path / "splits" / "objects" / "shots2_seed1.json").is_file()


def test_cli_reports_config_errors(tmp_path):
    p = yaml.safe_load(open(SMOKE))
    p["data"]["suites"] = ["bogus"]
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(p))
    r = subprocess.run([sys.executable, "-m", "visprompt", "data", "--params", str(f)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "data.suites[0]: unknown value 'bogus'" in r.stderr  # checked when params are read (schema.py)


def test_conv_stem_keeps_the_token_grid_and_the_methods_code_path():
    """The early-conv stem only replaces the patch projection: same tokens, same VPT/RPO code."""
    import torch

    from visprompt.backbones.clip import ClipConfig, create_clip
    from visprompt.backbones.vit import VitConfig, create_vit

    x = torch.randn(2, 3, 32, 32)
    patch, conv = create_vit(VitConfig(embed_dim=64, depth=2, num_heads=2)), create_vit(VitConfig(embed_dim=64, depth=2, num_heads=2, stem="conv"))
    assert patch.patch_embed(x).shape == conv.patch_embed(x).shape == (2, 16, 64)
    assert isinstance(conv.patch_embed.proj, torch.nn.Sequential)
    clip = create_clip(ClipConfig(vision_width=64, vision_head_width=32, embed_dim=32, text_width=32, text_heads=2, vision_layers=1, text_layers=1, stem="conv"))
    assert clip.visual.conv1(x).shape == (2, 64, 4, 4)
    assert clip.encode_image(x).shape == (2, 32)
    with pytest.raises(ConfigError, match="mini backbones only"):
        VitConfig(arch="vit_base_patch16_224", stem="conv").validate()
    with pytest.raises(ConfigError, match="power-of-two"):
        VitConfig(img_size=36, patch_size=6, stem="conv").validate()


def test_changed_world_code_rerenders(tmp_path, monkeypatch):
    """A dataset rendered by other renderer/task code is stale, not 'up to date'."""
    from visprompt import pipeline

    p = _params(tmp_path, **{"data.suites": ["probe"]})
    run_data(p, progress=False)
    assert run_data(p, progress=False)["datasets"]["probe/probe-shape"] == "up to date"
    monkeypatch.setattr(pipeline, "_world_code_hash", lambda: "other code")
    assert run_data(p, progress=False)["datasets"]["probe/probe-shape"] != "up to date"


def test_truncated_dataset_file_names_the_fix(tmp_path):
    from visprompt.data.store import dataset_files, load_arrays, write_dataset

    split = {"images": np.zeros((4, 8, 8, 3), np.uint8), "labels": np.arange(4)}
    write_dataset(tmp_path, "vtab/toy", {"train": split}, {"splits": {"train": 4}})
    assert load_arrays(tmp_path, "vtab/toy", "train")["labels"].tolist() == [0, 1, 2, 3]
    npz, _ = dataset_files(tmp_path, "vtab/toy")
    npz.chmod(0o644)
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(ConfigError, match="missing or corrupt.*dvc repro data"):
        load_arrays(tmp_path, "vtab/toy", "train")
