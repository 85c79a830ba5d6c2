"""FGVC (VPT): CUB, NABirds, Flowers, Stanford Dogs, Stanford Cars, and the readers of their sources.

Splits: val = the first ``n_val`` of the permuted official train set (counts from vpt.md), train =
the rest, test = the official test set; Flowers uses its official val.
"""

from __future__ import annotations

import os

import numpy as np
import torchvision.datasets as tvd

from ...errors import ConfigError
from .. import classnames as cn
from .common import Pool, _FileGetter, _p, _rows, _std, _TvGetter


_FGVC = [
    # name, raw, classes, val count (None: official val), expected train/val/test (vpt.md, unconfirmed)
    ("cub", "cub", 200, 600, (5394, 600, 5794)),
    ("nabirds", "nabirds", 555, 2393, (21536, 2393, 24633)),
    ("flowers", "flowers102", 102, None, (1020, 1020, 6149)),
    ("dogs", "stanford_dogs", 120, 1200, (10800, 1200, 8580)),
    ("cars", "stanford_cars", 196, 815, (7329, 815, 8041)),
]
FGVC_TASKS = tuple(f"fgvc/{t[0]}" for t in _FGVC)


def _fgvc_pools(val_count):
    if val_count is None:
        return _std(val="val")
    return {"train": {"part": "train", "count": [val_count, None]}, "val": {"part": "train", "count": [0, val_count]}, "test": _p("test")}


def _pool_cars(root, part, variant):
    ds = tvd.StanfordCars(str(root), split=part)
    return Pool([t for _, t in ds._samples], ds.classes, _TvGetter(ds))


def _pool_cub(root, part, variant):
    base = root / "CUB_200_2011"
    images = dict(_rows(base / "images.txt"))
    labels = dict(_rows(base / "image_class_labels.txt"))
    is_train = dict(_rows(base / "train_test_split.txt"))
    want = "1" if part == "train" else "0"
    ids = sorted((i for i in images if is_train[i] == want), key=int)
    return Pool([int(labels[i]) - 1 for i in ids], cn.cub_classes(base / "classes.txt"), _FileGetter([base / "images" / images[i] for i in ids]), ids=[images[i] for i in ids])


def _pool_nabirds(root, part, variant):
    base = root / "nabirds"
    images = dict(_rows(base / "images.txt"))
    cls = dict(_rows(base / "image_class_labels.txt"))
    is_train = dict(_rows(base / "train_test_split.txt"))
    names = cn.nabirds_classes(base / "classes.txt")
    used = sorted({int(c) for c in cls.values()})  # the leaf classes images use (555 in the full set)
    index = {c: i for i, c in enumerate(used)}
    want = "1" if part == "train" else "0"
    ids = sorted((i for i in images if is_train[i] == want), key=lambda i: images[i])
    return Pool([index[int(cls[i])] for i in ids], [names.get(c, str(c)) for c in used], _FileGetter([base / "images" / images[i] for i in ids]), ids=[images[i] for i in ids])


def _pool_dogs(root, part, variant):
    from scipy.io import loadmat

    base = root / "stanford_dogs"
    mat = loadmat(str(base / f"{part}_list.mat"), squeeze_me=True)
    files = [str(f) for f in np.atleast_1d(mat["file_list"])]
    labels = np.atleast_1d(mat["labels"]).astype(np.int64) - 1
    folders = sorted(e.name for e in os.scandir(base / "Images") if e.is_dir())
    names = [cn.stanford_dogs_name(f) for f in folders]
    for f, l in zip(files, labels):  # the .mat labels follow the sorted folder order
        if f.split("/")[0] != folders[l]:
            raise ConfigError(f"Stanford Dogs: {f} has label {l + 1} but folder {folders[l]!r} has that index; is Images/ complete?")
    return Pool(labels, names, _FileGetter([base / "Images" / f for f in files]), ids=files)
