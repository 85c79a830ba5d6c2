"""Visual prompting (Bahng et al.): the 12 tasks, and the readers of the sources only they add.

Splits: official val where one exists (Flowers, DTD); CoOp's split files for EuroSAT, SUN397,
UCF101; otherwise val = the first 10% of the permuted official train set (the official code selects
on test; we select on val). Resisc45: 60/20/20.
"""

from __future__ import annotations

import torchvision.datasets as tvd

from .. import classnames as cn
from .common import _ALL622, Pool, _FileGetter, _folder_items, _p, _std, _TvGetter
from .sources import VP_VAL_FRACTION


_VP_HOLD = VP_VAL_FRACTION
_VP = [
    # name, raw, classes, pools or CoOp file, image dir
    ("cifar100", "cifar100", 100, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("test")}, None),
    ("cifar10", "cifar10", 10, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("test")}, None),
    ("flowers102", "flowers102", 102, _std(val="val"), None),
    ("food101", "food101", 101, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("test")}, None),
    ("eurosat", "eurosat", 10, "split_zhou_EuroSAT.json", "eurosat/2750"),
    ("sun397", "sun397", 397, "split_zhou_SUN397.json", "SUN397"),
    ("dtd", "dtd", 47, _std(val="val"), None),
    ("ucf101", "ucf101", 101, "split_zhou_UCF101.json", "ucf101/UCF-101-midframes"),
    ("svhn", "svhn", 10, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("test")}, None),
    ("pets", "pets", 37, {"train": _p("trainval", _VP_HOLD, 1), "val": _p("trainval", 0, _VP_HOLD), "test": _p("test")}, None),
    ("resisc45", "resisc45", 45, _ALL622, None),
    ("clevr_count", "clevr", 8, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("val")}, None),
]
VP_TASKS = tuple(f"vp/{t[0]}" for t in _VP)


def _pool_food(root, part, variant):
    ds = tvd.Food101(str(root), split=part)
    return Pool(ds._labels, ds.classes, _TvGetter(ds))


def _pool_ucf101(root, part, variant):
    paths, labels, folders = _folder_items(root / "ucf101" / "UCF-101-midframes")
    return Pool(labels, [cn.readable(f) for f in folders], _FileGetter(paths))
