"""The paper profile's train path: real on-disk layouts and real checkpoint layouts through the same
runner as the mini profile (``experiments.run_method``), with no mocking of torchvision/timm/open_clip.

Tiny fake copies of the datasets (test_paper_data's writers) are prepared by the real data stage;
the few-shot samples come from the real splits stage; backbones are small timm/open_clip
architectures (``vit_tiny_patch16_224`` at 32 px, ``ViT-S-32-alt`` at 64 px) whose random-value
state dicts are written in timm's safetensors and OpenAI/open_clip's fp16 layout and loaded through
``worlds.paper.load_vit``/``load_clip`` -> ``checkpoints.load_timm_vit``/``load_open_clip``, the
functions that load ViT-B/16 and CLIP ViT-B in the paper profile.
"""

import copy
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from test_paper_data import PAPER_PARAMS, WNIDS, fake_dtd, fake_cub, fake_imagenet, fake_imagenet_a, fake_imagenet_r, fake_imagenet_sketch, fake_imagenet_v2, img
from visprompt import experiments, paper
from visprompt.worlds import paper as paper_world, world_for
from visprompt.backbones import checkpoints as ck
from visprompt.config import load_params
from visprompt.data import coop_splits, real
from visprompt.data.splits import split_file
from visprompt.errors import ConfigError

VIT_ARCH, VIT_SIZE = "vit_tiny_patch16_224", 32
CLIP_ARCH, CLIP_SIZE = "ViT-S-32-alt", 64
CALTECH = ("BACKGROUND_Google", "Faces_easy", "accordion")
# the tests use small archs on purpose; backbone_entry's "not the paper's arch" warning is tested once
pytestmark = pytest.mark.filterwarnings("ignore:backbones")


@pytest.fixture(autouse=True)
def cpu_allowed(monkeypatch):
    """These tests train the paper profile's code paths on fake data, on the CPU on purpose."""
    monkeypatch.setenv(paper_world.ALLOW_CPU, "1")


def test_no_silent_cpu_fallback(monkeypatch):
    monkeypatch.delenv(paper_world.ALLOW_CPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU and torch sees none.*`device: cpu`.*VISPROMPT_ALLOW_CPU=1"):
        paper_world.require_accelerator({"device": "cuda"})
    paper_world.require_accelerator({"device": "cpu"})  # said explicitly in the params
    monkeypatch.setenv(paper_world.ALLOW_CPU, "1")
    paper_world.require_accelerator()  # the smoke-test escape hatch


DATASETS = ["vtab/dtd", "fgvc/cub", "vp/dtd", "coop/caltech101", "coop/imagenet",
            "coop/imagenet_v2", "coop/imagenet_sketch", "coop/imagenet_a", "coop/imagenet_r"]


def fake_coop_caltech(root):
    """Caltech101 folders + a CoOp-format split file (3 classes: 20 train / 8 val / 12 test each)."""
    items = {"train": [], "val": [], "test": []}
    for label, c in enumerate(CALTECH):
        for i in range(40):
            rel = f"{c}/image_{i + 1:04d}.jpg"
            img(Path(root) / "caltech101" / "101_ObjectCategories" / rel, 10 * label + i, size=(12, 10))
            items["train" if i < 20 else "val" if i < 28 else "test"].append((rel, label, c.lower()))
    coop_splits.write_split(Path(root) / "caltech101" / "split_zhou_Caltech101.json", items)


def write_fake_datasets(root) -> None:
    """Fake copies of every dataset of DATASETS in their real layouts (test_paper_pipeline reuses them)."""
    fake_dtd(root)
    fake_cub(root)
    fake_coop_caltech(root)
    fake_imagenet(root)
    fake_imagenet_v2(root)
    fake_imagenet_sketch(root)
    fake_imagenet_a(root)
    fake_imagenet_r(root)


def data_params(root, fewshot) -> dict:
    """The real paper params restricted to the fake datasets (what the data and splits stages read)."""
    p = copy.deepcopy(load_params(PAPER_PARAMS))
    p["data"].update(root=str(root), datasets=list(DATASETS), workers=0)
    p["splits"].update(root=str(fewshot), datasets=["caltech101", "imagenet"], shots=[1, 2], seeds=[1, 2, 3])
    p["vpt"]["tasks"] = ["vtab/dtd", "fgvc/cub"]
    p["vp"]["tasks"] = ["vp/dtd"]
    r = p["rpo"]
    r["base2new"]["datasets"], r["base2new"]["shots"] = ["caltech101"], 2
    r["dg"]["shots"] = 2
    r["fewshot"].update(datasets=["caltech101"], shots=[1, 2], seeds=[1, 2])
    r["methods"]["coop"]["overrides"] = {"imagenet": {"recipe": {"epochs": 50}}}
    return p


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Fake copies prepared by the real data stage, few-shot samples by the real splits stage."""
    base = tmp_path_factory.mktemp("paper")
    root, fewshot = base / "data", base / "fewshot"
    write_fake_datasets(root)
    params = data_params(root, fewshot)
    paper.run_data(params, strict=False)  # the fakes have 3 classes, not the papers' counts
    paper.run_splits(params)
    return base, params


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random-value state dicts in the released layouts: timm safetensors (no head), open_clip fp16."""
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    vit = write_random_vit(d / "vit.safetensors", VIT_ARCH, VIT_SIZE)
    clip = write_random_clip(d / "clip.bin", CLIP_ARCH, CLIP_SIZE)
    return {"vit": d / "vit.safetensors", "clip": d / "clip.bin", "vit_state": vit.state_dict(), "clip_state": clip.state_dict()}


def write_random_vit(path, arch, img_size=None):
    """A timm ViT with random values, saved as timm's safetensors state dict without head (the hub's layout)."""
    from safetensors.torch import save_file

    vit, _ = ck.load_timm_vit(arch, False, img_size=img_size)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, path)
    return vit


def write_random_clip(path, arch, image_size=None):
    """An open_clip CLIP with random values (std 0.02), saved in fp16 like OpenAI's released state dicts."""
    clip, _, _ = ck.load_open_clip(arch, None, image_size=image_size)
    with torch.no_grad():
        for p in clip.parameters():
            p.copy_(torch.randn_like(p) * 0.02)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in clip.state_dict().items()}, path)
    return clip


def train_params(prepared, weights, runs) -> dict:
    """Data params + small backbones and tiny recipes (the runner, loaders and transforms are the paper's)."""
    p = copy.deepcopy(prepared[1])
    p["threads"] = 1
    p["data"]["runs"] = str(runs)
    p["backbones"]["vit"].update(arch=VIT_ARCH, pretrained=str(weights["vit"]), img_size=VIT_SIZE, embed_dim=192, num_heads=3)
    for key in ("clip_vp", "clip_rpo"):
        p["backbones"][key].update(arch=CLIP_ARCH, pretrained=str(weights["clip"]), image_size=CLIP_SIZE)
    p["vpt"].update(seeds=[1], grid={"lr": [0.5, 1.0]})
    p["vpt"]["recipe"].update(epochs=1, batch_size=4, warmup_epochs=0)
    p["vp"]["recipe"].update(epochs=1, batch_size=4, warmup_steps=0)
    for run in ("vp_pad_p50", "vp_pad_p70"):  # pads that cover a CLIP_SIZE image: the schema refuses them
        p["vp"]["methods"].pop(run)
    p["rpo"]["seeds"] = [1]
    p["rpo"]["recipe"].update(epochs=1, batch_size=4, warmup_epochs=0)
    return p


# ------------------------------------------------------------------------------------------------
# datasets through experiments.load_data
# ------------------------------------------------------------------------------------------------


def test_load_data_reads_real_layouts_with_labels_names_shapes_and_normalisation(prepared, weights, tmp_path):
    params = train_params(prepared, weights, tmp_path)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    cases = {  # key, split -> (size the suite's backbone reads, expected count, augmented)
        ("vtab/dtd", "train"): (VIT_SIZE, 6, False), ("vtab/dtd", "train+val"): (VIT_SIZE, 12, False), ("vtab/dtd", "test"): (VIT_SIZE, 6, False),
        ("fgvc/cub", "train"): (VIT_SIZE, 8, True), ("fgvc/cub", "val"): (VIT_SIZE, 7, False), ("fgvc/cub", "test"): (VIT_SIZE, 9, False),
        ("vp/dtd", "train"): (CLIP_SIZE, 6, False), ("coop/caltech101", "train"): (CLIP_SIZE, 60, True),
        ("coop/caltech101", "test"): (CLIP_SIZE, 36, False), ("coop/imagenet_a", "test"): (CLIP_SIZE, 4, False),
    }
    for (key, split), (size, n, augmented) in cases.items():
        ds = world_for(params).load_data(key, split, mean, std)
        assert len(ds) == n and ds.labels.dtype == np.int64 and len(ds.labels) == n, (key, split)
        assert ds.augmented is augmented and ds.num_workers == 0
        x, y = ds[0]
        assert x.dtype == torch.float32 and x.shape == (3, size, size) and isinstance(y, int) and y == ds.labels[0]
    dtd = world_for(params).load_data("vtab/dtd", "test", mean, std)
    assert dtd.classnames == ["banded", "blotchy", "braided"] and sorted(set(dtd.labels.tolist())) == [0, 1, 2]
    # fake images are uniform colours: after Resize + ToTensor + Normalize every pixel is (v/255 - mean)/std
    raw = real.load("vtab/dtd", "test", params["data"]["root"])
    v = np.asarray(raw[0][0].getpixel((0, 0)), dtype=np.float32) / 255
    x = dtd[0][0]
    expected = (torch.tensor(v) - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(x.mean((1, 2)), expected, atol=1e-5) and torch.allclose(x.std((1, 2)), torch.zeros(3), atol=1e-5)
    cal = world_for(params).load_data("coop/caltech101", "test", (0.5,) * 3, (0.5,) * 3)
    assert cal.classnames == [c.lower() for c in CALTECH]
    # ImageNet-A keeps its own class subset (labels 0..k-1 over its own names), as CoOp evaluates it
    a = world_for(params).load_data("coop/imagenet_a", "test", mean, std)
    assert a.classnames == ["goldfish", "great white shark"] and sorted(set(a.labels.tolist())) == [0, 1]
    # subsets relabel like the mini datasets and keep transform, augmentation flag and workers
    sub = experiments._restrict(world_for(params).load_data("coop/caltech101", "train", mean, std), [1, 2])
    assert len(sub) == 40 and sorted(set(sub.labels.tolist())) == [0, 1] and sub.classnames == ["faces_easy", "accordion"]
    assert sub.augmented and sub[0][0].shape == (3, CLIP_SIZE, CLIP_SIZE)


def test_transforms_follow_the_references():
    from torchvision import transforms as T

    names = lambda t: [type(s).__name__ for s in t.transforms]  # noqa: E731
    fgvc_train = paper_world.build_transform("resize_randomcrop_flip", 224, (0,) * 3, (1,) * 3)
    assert names(fgvc_train) == ["Resize", "RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert fgvc_train.transforms[0].size == 256 and fgvc_train.transforms[1].size == (224, 224)
    fgvc_test = paper_world.build_transform("resize_centercrop", 224, (0,) * 3, (1,) * 3)
    assert names(fgvc_test) == ["Resize", "CenterCrop", "ToTensor", "Normalize"] and fgvc_test.transforms[0].size == 256
    vtab = paper_world.build_transform("resize", 224, (0,) * 3, (1,) * 3)
    assert vtab.transforms[0].size == (224, 224)
    coop = paper_world.build_transform("random_resized_crop_flip", 224, (0,) * 3, (1,) * 3, "bicubic")
    assert coop.transforms[0].scale == (0.08, 1.0) and coop.transforms[0].interpolation == T.InterpolationMode.BICUBIC
    clip = paper_world.build_transform("clip", 224, (0,) * 3, (1,) * 3, "bicubic")
    out = clip(Image.new("RGB", (300, 400), (10, 20, 30)))
    assert out.shape == (3, 224, 224)
    params = load_params(PAPER_PARAMS)  # train-time augmentation only where the references have it
    assert {s: params["transforms"][s]["train"] in paper_world.AUGMENTING for s in ("vtab", "fgvc", "vp", "coop")} == \
        {"vtab": False, "fgvc": True, "vp": False, "coop": True}
    assert all(params["transforms"][s]["test"] not in paper_world.AUGMENTING for s in ("vtab", "fgvc", "vp", "coop"))
    with pytest.raises(ConfigError, match="unknown transform rule"):
        paper_world.build_transform("autoaugment", 224, (0,) * 3, (1,) * 3)


def test_dataset_templates_come_from_the_paper_params():
    params = load_params(PAPER_PARAMS)
    assert world_for(params).dataset_template("coop/dtd") == "{} texture."
    assert world_for(params).dataset_template("coop/eurosat") == "a centered satellite photo of {}."
    assert world_for(params).dataset_template("coop/imagenet") == "a photo of a {}."
    assert world_for(params).dataset_template("coop/imagenet_r") == "a photo of a {}."
    assert world_for(params).dataset_template("vp/cifar100") == "This is a photo of a {}"
    assert world_for(params).dataset_template("vtab/dtd") == "a photo of a {}."


# ------------------------------------------------------------------------------------------------
# checkpoints through the paper world
# ------------------------------------------------------------------------------------------------


def test_backbones_load_state_dicts_in_the_real_layouts(prepared, weights, tmp_path):
    params = train_params(prepared, weights, tmp_path)
    vit, cfg = experiments.load_vit(params)
    for k, v in weights["vit_state"].items():
        assert torch.equal(vit.state_dict()[k], v), k
    assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225) and cfg.image_size == VIT_SIZE
    assert cfg.weights == str(weights["vit"]) and not vit.training and vit.num_classes == 0
    clip, tokenizer, ccfg = experiments.load_clip(params, "vp")
    for k, v in clip.state_dict().items():
        assert torch.equal(v, weights["clip_state"][k].half().float()), k  # the fp16 file, read back in fp32
    assert ccfg.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073)) and ccfg.image_size == CLIP_SIZE and ccfg.interpolation == "bicubic"
    assert type(clip.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert tokenizer(["a photo of a dog"]).shape == (1, 77)
    # the params describe the architecture; a mismatch is named before anything runs
    bad = copy.deepcopy(params)
    bad["backbones"]["vit"]["embed_dim"] = 768
    with pytest.raises(ConfigError, match="embed_dim=192.*embed_dim=768"):
        experiments.load_vit(bad)
    with pytest.warns(UserWarning, match="not the vpt paper's"):
        paper_world.backbone_entry(params, "vpt")


def test_missing_data_and_weights_are_clear_errors_before_any_work(prepared, weights, tmp_path, monkeypatch):
    params = train_params(prepared, weights, tmp_path / "runs")
    t = time.perf_counter()
    bad = copy.deepcopy(params)
    bad["vpt"]["tasks"] = ["vtab/dtd", "vtab/cifar100"]
    with pytest.raises(ConfigError, match=r"vtab/cifar100 is not prepared .*make paper"):
        experiments.run_method(bad, "vpt", "linear", progress=False)
    bad = copy.deepcopy(params)
    bad["vp"]["tasks"] = ["vtab/dtd"]
    with pytest.raises(ConfigError, match="unknown vp.tasks entry 'vtab/dtd'"):
        experiments.check_method(bad, "vp", "zeroshot")
    bad = copy.deepcopy(params)
    bad["splits"]["root"] = str(tmp_path / "no-samples")
    with pytest.raises(ConfigError, match=r"few-shot sample file\(s\) missing.*dvc repro splits"):
        experiments.check_method(bad, "rpo", "zeroshot")
    bad = copy.deepcopy(params)
    bad["backbones"]["vit"]["pretrained"] = str(tmp_path / "absent.safetensors")
    with pytest.raises(ConfigError, match="absent.safetensors not found"):
        experiments.run_method(bad, "vpt", "linear", progress=False)
    assert time.perf_counter() - t < 20 and not (tmp_path / "runs").exists()
    # hub weights while offline: a clear message within seconds, naming how to pre-download
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    bad = copy.deepcopy(params)
    bad["backbones"]["clip_vp"].update(arch="ViT-B-32", pretrained="openai", image_size=224)
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE.*pretrained='openai'"):
        experiments.run_method(bad, "vp", "zeroshot", progress=False)
    assert time.perf_counter() - t < 20


# ------------------------------------------------------------------------------------------------
# the paper splits stage
# ------------------------------------------------------------------------------------------------


def test_paper_splits_stage_is_deterministic_and_class_balanced(prepared, tmp_path):
    base, params = prepared
    root = Path(params["splits"]["root"])
    again = copy.deepcopy(params)
    again["splits"]["root"] = str(tmp_path / "again")
    out = paper.run_splits(again)
    assert out["files"] == 2 * 2 * 3 and out["datasets"]["caltech101"] == {"train": 60, "classes": 3}
    train = real.load("coop/caltech101", "train", params["data"]["root"]).labels
    val = real.load("coop/caltech101", "val", params["data"]["root"]).labels
    for shots in (1, 2):
        seen = set()
        for seed in (1, 2, 3):
            a = json.loads(split_file(root, "caltech101", shots, seed).read_text())
            assert a == json.loads(split_file(tmp_path / "again", "caltech101", shots, seed).read_text())  # same seed, same sample
            assert np.bincount(train[a["train"]]).tolist() == [shots] * 3 and len(set(a["train"])) == 3 * shots
            assert np.bincount(val[a["val"]]).tolist() == [min(shots, 4)] * 3
            assert a["base_classes"] == [0, 1] and a["new_classes"] == [2]  # ceil(3/2) base classes
            seen.add(tuple(a["train"]))
        assert len(seen) == 3  # seeds give different samples
    imagenet = json.loads(split_file(root, "imagenet", 2, 1).read_text())
    assert len(imagenet["train"]) == 6 and len(imagenet["val"]) == 6 and imagenet["dataset"] == "imagenet"
    # more shots than the smallest class: refused before anything is written
    bad = copy.deepcopy(params)
    bad["splits"].update(root=str(tmp_path / "bad"), shots=[1, 8])
    with pytest.raises(ConfigError, match=r"splits.shots \[8\] exceed the smallest class of coop/imagenet"):
        paper.run_splits(bad)
    bad["splits"]["shots"] = [1, 3]  # ImageNet's fake val split has 2 images per class
    with pytest.raises(ConfigError, match=r"coop/imagenet: its val split has only 2 image\(s\).*shots <= 2"):
        paper.run_splits(bad)
    assert not (tmp_path / "bad").exists()
    bad = copy.deepcopy(params)
    bad["data"]["root"] = str(tmp_path / "empty")
    with pytest.raises(ConfigError, match="not prepared.*run the data stage first"):
        paper.run_splits(bad)


# ------------------------------------------------------------------------------------------------
# the runner, end to end, one cheap method per paper
# ------------------------------------------------------------------------------------------------


def test_vpt_linear_end_to_end_selects_retrains_and_resumes(prepared, weights, tmp_path):
    params = train_params(prepared, weights, tmp_path / "runs")
    res = experiments.run_method(params, "vpt", "linear", progress=False)
    cells = {c["task"]: c for c in res["cells"]}
    assert set(cells) == {"vtab/dtd", "fgvc/cub"}
    assert cells["vtab/dtd"]["train_split"] == "train+val" and cells["fgvc/cub"]["train_split"] == "train"  # vpt.selection
    assert cells["vtab/dtd"]["features_cached"] is True and cells["fgvc/cub"]["features_cached"] is False  # random crops: no cache
    for c in cells.values():
        assert 0 <= c["test_top1"] <= 100 and len(c["selection"]) == 2 and c["params"]["trainable"] == 192 * 3 + 3
        assert c["num_classes"] == 3 and c["epochs_run"] == 1
    assert set(res["summary"]) == {"vtab/dtd", "fgvc/cub"}
    t = time.perf_counter()
    again = experiments.run_method(params, "vpt", "linear", progress=False)  # every cell reused
    assert [c["test_top1"] for c in again["cells"]] == [c["test_top1"] for c in res["cells"]] and time.perf_counter() - t < 10


def test_vp_zeroshot_end_to_end(prepared, weights, tmp_path):
    params = train_params(prepared, weights, tmp_path / "runs")
    res = experiments.run_method(params, "vp", "zeroshot", progress=False)
    (cell,) = res["cells"]
    assert cell["task"] == "vp/dtd" and "shifted_test_top1" not in cell and 0 <= cell["test_top1"] <= 100
    assert cell["params"]["trainable"] == 0 and res["summary"]["vp/dtd"]["test_top1"] == round(cell["test_top1"], 2)


def test_rpo_zeroshot_end_to_end_every_protocol(prepared, weights, tmp_path):
    params = train_params(prepared, weights, tmp_path / "runs")
    res = experiments.run_method(params, "rpo", "zeroshot", progress=False)
    by = {(c["protocol"], c["dataset"], c["shots"], c["seed"]): c for c in res["cells"]}
    assert set(by) == {("base2new", "caltech101", 2, 1), ("dg", "imagenet", 2, 1)} | {("fewshot", "caltech101", k, s) for k in (1, 2) for s in (1, 2)}
    b2n = by[("base2new", "caltech101", 2, 1)]
    assert b2n["hm"] == pytest.approx(experiments.harmonic_mean(b2n["base_top1"], b2n["new_top1"]))
    assert b2n["train_images"] == 2 * 2  # 2 shots x 2 base classes
    dg = by[("dg", "imagenet", 2, 1)]
    assert {"test_top1", "imagenet_v2_top1", "imagenet_sketch_top1", "imagenet_a_top1", "imagenet_r_top1"} <= set(dg)
    assert set(res["summary"]) == {"base2new/caltech101", "dg/imagenet", "fewshot/caltech101/shots1", "fewshot/caltech101/shots2"}


def test_rpo_trains_on_augmented_few_shot_samples_and_dataset_overrides_apply(prepared, weights, tmp_path):
    params = train_params(prepared, weights, tmp_path / "runs")
    rpo = params["rpo"]["methods"]["rpo"]
    rpo.update(protocols=["base2new", "dg"], cfg={**rpo["cfg"], "K": 2})
    rpo["overrides"]["imagenet"] = {"recipe": {"batch_size": 2}}  # besides the paper's dg: {recipe: {lr: 0.005}}
    res = experiments.run_method(params, "rpo", "rpo", progress=False)
    by = {c["protocol"]: c for c in res["cells"]}
    assert by["base2new"]["params"]["trainable"] == 2 * (256 + 384)  # K x (text width + vision width)
    assert by["base2new"]["recipe"]["batch_size"] == 4 and by["dg"]["recipe"]["batch_size"] == 2  # the imagenet override
    assert by["dg"]["recipe"]["lr"] == 0.005 and by["base2new"]["recipe"]["lr"] == 0.01  # the dg protocol override of the paper params
    assert by["base2new"]["features_cached"] is False and by["base2new"]["history"][0]["loss"] > 0


# ------------------------------------------------------------------------------------------------
# the paper params and pipeline
# ------------------------------------------------------------------------------------------------


def test_paper_params_drive_the_runner_with_the_cited_settings():
    params = load_params(PAPER_PARAMS)
    for paper_name in ("vpt", "vp", "rpo"):
        for run in params[paper_name]["methods"]:
            experiments.method_settings(params, paper_name, run)
    deep = experiments.method_settings(params, "vpt", "vpt_deep")
    assert deep.grid == {"lr": (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50), "weight_decay": (0.01, 0.001, 0.0001, 0.0), "prompt_length": (1, 5, 10, 50, 100, 200)}
    points = deep.grid_points()
    assert len(points) == 240 and points[0]["lr"] == 0.05  # ties go to the first point: the smallest lr
    full = experiments.method_settings(params, "vpt", "full")
    assert full.recipe["optimizer"] == "adamw" and full.recipe["batch_size"] == 384 and sorted(full.grid["lr"]) == [0.0001, 0.0005, 0.001, 0.005]
    assert experiments.method_settings(params, "vp", "vp_pad_p70").cfg == {"prompt_size": 70}
    rpo = experiments.method_settings(params, "rpo", "rpo")
    assert rpo.cfg["K"] == 24 and rpo.layers("fewshot")[0]["K"] == 4 and rpo.recipe["warmup_lr"] == 1e-5
    coop = experiments.method_settings(params, "rpo", "coop")
    assert coop.layers("base2new", "imagenet")[1]["epochs"] == 50 and coop.layers("base2new", "caltech101")[1]["epochs"] == 200
    assert coop.rpo_jobs()[0] == ("base2new", "imagenet", 16, 1) and coop.dg.targets == ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
    bad = copy.deepcopy(params)
    bad["rpo"]["methods"]["coop"]["overrides"] = {"imagenet21k": {"recipe": {"epochs": 50}}}
    with pytest.raises(ConfigError, match="overrides.imagenet21k: not a protocol"):
        experiments.method_settings(bad, "rpo", "coop")


def test_paper_dvc_yaml_mirrors_the_mini_pipeline_inside_profiles_paper():
    text = Path("profiles/paper/dvc.yaml").read_text()
    stages = yaml.safe_load(text)["stages"]
    assert list(stages) == ["data", "splits", "train_vpt", "train_vp", "train_rpo", "report_vpt", "report_vp", "report_rpo", "index"]
    for name in ("train_vpt", "train_vp", "train_rpo"):
        assert stages[name]["foreach"] == "${%s.methods}" % name.split("_")[1]
        assert "../../notebooks/" in stages[name]["do"]["cmd"] and "-p out_root reports" in stages[name]["do"]["cmd"]
        assert "../../src/visprompt/worlds/paper.py" in stages[name]["do"]["deps"]
    outs = []
    for st in stages.values():
        body = st.get("do", st)
        for key in ("outs", "metrics", "plots"):
            for o in body.get(key, []):
                outs.append(next(iter(o)) if isinstance(o, dict) else o)
    assert outs and all(not o.startswith("..") and not o.startswith("/") and o.split("/")[0] in ("data", "reports") for o in outs)
    assert "data/fewshot" in outs and "reports/index.md" in outs  # profiles/paper/...: nothing of the mini outputs


def test_launcher_plans_one_job_per_cell_and_a_job_runs_only_its_own_cell(prepared, weights, tmp_path):
    """The launch plan without Ray; test_paper_pipeline runs the launcher itself (Ray on the CPUs) and
    then dvc repro, which replays every stage from the cell store it filled."""
    from visprompt import launch

    params = train_params(prepared, weights, tmp_path / "runs")
    params["vpt"]["methods"] = {"linear": params["vpt"]["methods"]["linear"]}
    params["vp"]["methods"] = {"zeroshot": params["vp"]["methods"]["zeroshot"]}
    jobs = launch.plan(params, ("vpt", "vp"))  # one job per cell: grid points and seeds run in parallel
    names = [(j["paper"], j["method"], j["cell"]) for j in jobs]
    assert names[:2] == [("vpt", "linear", "fgvc/cub/select/lr=0.5"), ("vpt", "linear", "fgvc/cub/select/lr=1.0")]  # FGVC first: larger
    assert len(jobs) == 2 * (2 + 1) + 1  # per VPT task: 2 selection cells + 1 seed; VP: 1 seed
    final = next(j for j in jobs if j["cell"] == "vtab/dtd/seed1")
    assert final["after"] == ["vtab/dtd/select/lr=0.5", "vtab/dtd/select/lr=1.0"]  # started by Ray once both are done
    assert all(names.index((j["paper"], j["method"], a)) < names.index((j["paper"], j["method"], j["cell"])) for j in jobs for a in j["after"])
    with pytest.raises(RuntimeError, match="needs the selection cells of vtab/dtd first"):
        experiments.run_method(params, "vpt", "linear", progress=False, cells=["vtab/dtd/seed1"])
    with pytest.raises(ConfigError, match="has no cell 'vtab/dtd/seed9'"):
        experiments.run_method(params, "vpt", "linear", progress=False, cells=["vtab/dtd/seed9"])
    # a job computes its own grid point even while the other points are unfinished (another job's)
    experiments.run_method(params, "vpt", "linear", progress=False, runs_root=str(tmp_path / "solo"), cells=["vtab/dtd/select/lr=1.0"])
    assert sorted(p.name for p in (tmp_path / "solo").rglob("*.json")) == ["vtab_dtd_select_lr=1.0.json"]


def test_reports_and_index_of_the_paper_profile_tag_measured_numbers_real(prepared, weights, tmp_path, monkeypatch):
    from visprompt import report
    from visprompt.index import write_index
    from visprompt.reports.vpt import task_groups
    from visprompt.utils import write_json

    assert task_groups({}, ["vtab/eurosat", "vtab/dmlab", "vtab/dtd", "fgvc/cub"]) == \
        {"vtab/eurosat": "specialized", "vtab/dmlab": "structured", "vtab/dtd": "natural", "fgvc/cub": "fgvc"}
    params = train_params(prepared, weights, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)  # the stages run in profiles/paper: reports/ is relative
    for paper_name, method in (("vpt", "linear"), ("vp", "zeroshot"), ("rpo", "zeroshot")):
        params[paper_name]["methods"] = {method: params[paper_name]["methods"][method]}
        experiments.write_outputs(experiments.run_method(params, paper_name, method, progress=False), "reports")
    vpt = report.vpt_report(params, "reports/vpt/report")
    assert "Natural (real, measured)" in vpt["table1"].columns and "FGVC (published)" in vpt["table1"].columns
    assert "VPT-deep vs Full: not measured (run missing)" in vpt["claims_text"] and "mini" not in vpt["claims_text"].lower()
    vp = report.vp_report(params, "reports/vp/report")
    assert "TP (real)" in vp["main"].columns and list(vp["main"]["analogue of (paper dataset)"])[0] == "dtd"
    rpo = report.rpo_report(params, "reports/rpo/report")
    assert "HM (real)" in rpo["base2new"].columns and "imagenet_a (target, real)" in rpo["dg"].columns
    assert "(published)" in " ".join(rpo["base2new"].columns) and "mini" not in " ".join(rpo["base2new"].columns)
    write_index(params)
    index = Path("reports/index.md").read_text()
    assert "Profile: **paper**" in index and "real datasets" in index and "Mini backbones" not in index


def _ray_processes() -> list:
    import subprocess

    # a zombie (state Z) has exited: where nothing reaps orphans (a container whose PID 1 is not an
    # init) an exited gcs_server stays listed as "<defunct>", although it runs no more
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True).stdout
    running = [ln for ln in out.splitlines() if not ln.split()[1].startswith("Z")]
    return [ln for ln in running if "ray::" in ln or "raylet" in ln or "gcs_server" in ln]


def ray_processes_after_exit(timeout_s: float = 30) -> list:
    """Ray's processes still running once the launcher exited; they stop with it, but on a loaded
    machine that takes a few seconds, so wait for them up to ``timeout_s``."""
    t = time.time()
    while _ray_processes() and time.time() - t < timeout_s:
        time.sleep(0.5)
    return _ray_processes()


@pytest.mark.xdist_group("ray")  # it asserts that no other Ray runs: with pytest-xdist, the tests that start Ray share one worker
def test_a_killed_launch_leaves_no_worker_and_no_partial_cell_and_resumes(prepared, weights, tmp_path):
    """SIGTERM to the launcher cancels every Ray task and stops Ray's processes; the cells finished
    before stay as they were (whole files only), and a second launch computes only the rest."""
    import signal
    import subprocess
    import sys

    pytest.importorskip("ray")
    assert _ray_processes() == [], "another Ray is running on this machine"
    params = train_params(prepared, weights, tmp_path / "runs")
    params["vpt"]["methods"] = {"linear": params["vpt"]["methods"]["linear"], "vpt_deep": {"cfg": {"prompt_length": 5}, "grid": {"prompt_length": [1, 5]}}}
    params["vpt"]["recipe"]["epochs"] = 3
    params["vp"]["methods"] = {"zeroshot": params["vp"]["methods"]["zeroshot"]}  # the others' prompts do not fit the 64-px test CLIP
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    from visprompt import launch

    planned = len(launch.plan(params, ("vpt",)))
    cmd = [sys.executable, "-m", "visprompt.launch", "--params", str(path), "--papers", "vpt", "--gpus-per-job", "0", "--num-cpus", "2"]
    records = lambda: {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*.json")}  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "VISPROMPT_ALLOW_CPU": "1"})
    t = time.time()
    while not records() and proc.poll() is None and time.time() - t < 120:
        time.sleep(0.5)
    assert proc.poll() is None, "the launch ended before it could be interrupted: " + proc.stdout.read()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in out, out
    assert ray_processes_after_exit() == []  # no worker left running
    before = records()
    assert 0 < len(before) < planned
    assert all(json.loads(b)["fingerprint"] for b in before.values())  # whole records only
    assert not list((tmp_path / "runs").rglob("*.json*.tmp"))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "VISPROMPT_ALLOW_CPU": "1"})
    assert again.returncode == 0, again.stdout + again.stderr
    after = records()
    assert len(after) == planned and all(after[p] == b for p, b in before.items())  # the finished cells were not recomputed


def test_the_index_names_the_checkpoints_it_loaded(weights, tmp_path):
    from visprompt.index import checkpoints_text

    shipped = load_params(PAPER_PARAMS)
    assert checkpoints_text(shipped).count("(the paper's checkpoint)") == 3
    p = copy.deepcopy(shipped)
    p["backbones"]["vit"]["pretrained"] = str(weights["vit"])  # a local file: named with its hash, not called the paper's
    text = checkpoints_text(p)
    import hashlib

    assert f"file vit.safetensors (sha256 {hashlib.sha256(weights['vit'].read_bytes()).hexdigest()[:12]}" in text
    assert text.count("(the paper's checkpoint)") == 2 and "not checked against the released one" in text
    p["backbones"]["clip_rpo"]["arch"] = "ViT-L-14"
    assert "RPO: ViT-L-14, the hub weights (**not** the paper's checkpoint)" in checkpoints_text(p)
