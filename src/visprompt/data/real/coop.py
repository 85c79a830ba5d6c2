"""CoOp's datasets (used by RPO): the 11 base-to-new tasks, the 4 ImageNet test sets, their readers.

Splits: the published ``split_zhou_*.json`` files; ImageNet: train folder / val folder as test (and
val, as CoOp does); FGVC-Aircraft: its official train/val/test files.
"""

from __future__ import annotations

import os
from pathlib import Path

import torchvision.datasets as tvd

from .. import classnames as cn
from .common import Pool, _FileGetter, _folder_items, _TvGetter


_COOP = [
    # name, raw, classes, split file, image dir (relative to root), parts when no file
    ("imagenet", "imagenet", 1000, None, None, {"train": "train", "val": "val", "test": "val"}),
    ("caltech101", "caltech101", 100, "split_zhou_Caltech101.json", "caltech101/101_ObjectCategories", {}),
    ("oxford_pets", "pets", 37, "split_zhou_OxfordPets.json", "oxford-iiit-pet/images", {}),
    ("stanford_cars", "stanford_cars", 196, "split_zhou_StanfordCars.json", "stanford_cars", {}),
    ("oxford_flowers", "flowers102", 102, "split_zhou_OxfordFlowers.json", "flowers-102/jpg", {}),
    ("food101", "food101", 101, "split_zhou_Food101.json", "food-101/images", {}),
    ("fgvc_aircraft", "fgvc_aircraft", 100, None, None, {"train": "train", "val": "val", "test": "test"}),
    ("sun397", "sun397", 397, "split_zhou_SUN397.json", "SUN397", {}),
    ("dtd", "dtd", 47, "split_zhou_DescribableTextures.json", "dtd/dtd/images", {}),
    ("eurosat", "eurosat", 10, "split_zhou_EuroSAT.json", "eurosat/2750", {}),
    ("ucf101", "ucf101", 101, "split_zhou_UCF101.json", "ucf101/UCF-101-midframes", {}),
]
_COOP_TEST = [("imagenet_v2", "imagenet_v2", 1000), ("imagenet_sketch", "imagenet_sketch", 1000), ("imagenet_a", "imagenet_a", 200), ("imagenet_r", "imagenet_r", 200)]
COOP_TASKS = tuple(f"coop/{t[0]}" for t in _COOP)
COOP_TEST_TASKS = tuple(f"coop/{t[0]}" for t in _COOP_TEST)


def _pool_aircraft(root, part, variant):
    ds = tvd.FGVCAircraft(str(root), split=part, annotation_level="variant")
    return Pool(ds._labels, ds.classes, _TvGetter(ds))


def _imagenet_names(root) -> dict:
    return cn.imagenet_classnames(root / "imagenet" / "classnames.txt")


def _pool_imagenet(root, part, variant):
    names = _imagenet_names(root)
    wnids = sorted(names)
    paths, labels, _ = _folder_items(root / "imagenet" / "images" / part, class_names=wnids)
    return Pool(labels, [names[w] for w in wnids], _FileGetter(paths))


def _pool_imagenet_v2(root, part, variant):
    names = _imagenet_names(root)
    wnids = sorted(names)
    paths, labels, _ = _folder_items(root / "imagenetv2" / "imagenetv2-matched-frequency-format-val", int_classes=True)
    return Pool(labels, [names[w] for w in wnids], _FileGetter(paths))


def _wnid_subset_pool(directory: Path, names: dict, subset: bool):
    folders = sorted(e.name for e in os.scandir(directory) if e.is_dir() and e.name in names)
    wnids = folders if subset else sorted(names)
    paths, labels, _ = _folder_items(directory, class_names=wnids)
    return Pool(labels, [names[w] for w in wnids], _FileGetter(paths))


def _pool_imagenet_sketch(root, part, variant):
    base = root / "imagenet-sketch"
    directory = base / "sketch" if (base / "sketch").is_dir() else base / "images"
    return _wnid_subset_pool(directory, _imagenet_names(root), subset=False)


def _pool_imagenet_a(root, part, variant):
    return _wnid_subset_pool(root / "imagenet-adversarial" / "imagenet-a", _imagenet_names(root), subset=True)


def _pool_imagenet_r(root, part, variant):
    return _wnid_subset_pool(root / "imagenet-rendition" / "imagenet-r", _imagenet_names(root), subset=True)
