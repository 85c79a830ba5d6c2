"""Shared machinery of the paper datasets: tasks (:class:`RealSpec`), pools, readers' helpers, datasets.

* :class:`RealSpec` — one task of a paper, and ``_p``/``_std``/``_ALL622``, the pool definitions the
  benchmark tables (:mod:`.vtab`, :mod:`.fgvc`, :mod:`.vp`, :mod:`.coop`) are written with;
* :class:`Pool` — one native partition of a source, with labels known without decoding images, and
  its image getters; torchvision subclasses without the per-load md5 re-hash; small file readers;
* :class:`RealDataset` — what :func:`~visprompt.data.real.load` hands to training.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, make_dataset

from ...errors import ConfigError
from .sources import SOURCES, _coop_file


# ================================================================================================
# Tasks: what each paper trains and tests on
# ================================================================================================


@dataclass(frozen=True)
class RealSpec:
    """One task of a paper.

    ``source`` is the kind of download (``torchvision``/``url``/``manual``/``tfds-export``) and
    ``raw`` the :data:`SOURCES` key; ``classes`` says where class names come from, ``label_rule``
    how labels are derived; ``pools`` define the splits (see :mod:`.loading` and the benchmark modules).
    """

    name: str
    papers: tuple
    raw: str
    protocol: str  # 'vtab1k' | 'fgvc' | 'vp' | 'coop' | 'coop-test'
    num_classes: int
    group: str = ""
    variant: str = "class"
    classes: str = "torchvision"
    label_rule: str = "the dataset's own label"
    pools: dict = field(default_factory=dict)
    coop_file: str | None = None  # split_zhou_*.json (in the source folder)
    coop_image_dir: str | None = None  # relative to the data root
    coop_parts: dict = field(default_factory=dict)  # CoOp split -> native part, when no json is used
    expected: dict = field(default_factory=dict)  # split sizes in the reference (checked, warned on mismatch)

    @property
    def suite(self) -> str:
        return self.name.split("/")[0]

    @property
    def source(self) -> str:
        return SOURCES[self.raw].kind

    @property
    def license(self) -> str:
        return SOURCES[self.raw].license

    @property
    def disk(self) -> str:
        return SOURCES[self.raw].disk

    @property
    def checksum(self) -> str:
        return SOURCES[self.raw].checksum_text()

    @property
    def extra_files(self) -> tuple:
        files = []
        if self.coop_file:
            files.append(_coop_file(self.coop_file, SOURCES[self.raw].dir, _COOP_ANCHOR.get(self.raw, "")))
        if self.raw.startswith("imagenet"):
            files.append(_coop_file("classnames.txt", "imagenet", "imagenet"))
        return tuple(files)


_COOP_ANCHOR = {"caltech101": "caltech101", "pets": "oxfordpets", "stanford_cars": "stanfordcars", "flowers102": "flowers102", "food101": "food101",
                "sun397": "sun397", "dtd": "dtd", "eurosat": "eurosat", "ucf101": "ucf101"}


def _p(part, lo=0.0, hi=1.0, **kw) -> dict:
    return {"part": part, "frac": [lo, hi], **kw}


def _std(train_part="train", val=None, test="test", frac=0.9) -> dict:
    """train/val pools as train[:frac]/train[frac:] (or an official val part), test part."""
    if val:
        return {"train": _p(train_part), "val": _p(val), "test": _p(test)}
    return {"train": _p(train_part, 0, frac), "val": _p(train_part, frac, 1), "test": _p(test)}


_ALL622 = {"train": _p("all", 0, 0.6), "val": _p("all", 0.6, 0.8), "test": _p("all", 0.8, 1)}


# ================================================================================================
# Pools: one native partition of a source, labels known without decoding images
# ================================================================================================


class _TvGetter:
    """Image ``i`` of a torchvision dataset (optionally through an index order)."""

    def __init__(self, ds, order=None):
        self.ds, self.order = ds, order

    def __call__(self, i):
        return self.ds[int(self.order[i]) if self.order is not None else int(i)][0]


class _FileGetter:
    def __init__(self, paths):
        self.paths = [str(p) for p in paths]

    def __call__(self, i):
        return default_loader(self.paths[i])


class _ArrayGetter:
    """Image ``i`` of a (lazily opened) uint8 array source: grayscale/binary → RGB."""

    def __init__(self, opener, index, scale=1):
        self.opener, self.index, self.scale = opener, np.asarray(index), scale
        self._arr = None

    def __call__(self, i):
        if self._arr is None:
            self._arr = self.opener()
        a = np.asarray(self._arr[int(self.index[i])])
        if self.scale != 1:
            a = (a * self.scale).astype(np.uint8)
        return Image.fromarray(a).convert("RGB")

    def __getstate__(self):
        return {**self.__dict__, "_arr": None}


class Pool:
    """All examples of one native part: ``labels`` (int64), ``classnames``, ``image(i)``, ``ids``."""

    def __init__(self, labels, classnames, getter, ids=None):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classnames = list(classnames)
        self.getter = getter
        self.ids = ids
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classnames)):
            raise ConfigError(f"labels outside 0..{len(self.classnames) - 1} (found {self.labels.min()}..{self.labels.max()})")

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i):
        return self.getter(i)


# --- torchvision subclasses that skip torchvision's per-load md5 re-hash -----------------------
# torchvision re-hashes every batch/annotation file on each construction; we verify the same files
# (the archive md5 torchvision declares, or the per-file md5 for copies we did not download) once in
# prepare(). Defined at module level so DataLoader workers can pickle them.


class _CIFAR10(tvd.CIFAR10):
    train_list = [[f, None] for f, _ in tvd.CIFAR10.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100(tvd.CIFAR100):
    train_list = [[f, None] for f, _ in tvd.CIFAR100.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _SVHN(tvd.SVHN):
    split_list = {k: [u, f, None] for k, (u, f, _) in tvd.SVHN.split_list.items()}


class _Flowers102(tvd.Flowers102):
    _file_dict = {k: (f, None) for k, (f, _) in tvd.Flowers102._file_dict.items()}


def _sorted_order(paths) -> np.ndarray:
    return np.asarray(sorted(range(len(paths)), key=lambda i: str(paths[i])), dtype=np.int64)


def _folder_items(directory: Path, class_names=None, int_classes: bool = False):
    """``(paths, labels, classes)`` of a class-folder tree (sorted), via torchvision's ``make_dataset``."""
    if not directory.is_dir():
        raise ConfigError(f"{directory} not found")
    folders = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    if int_classes:
        folders = sorted((f for f in folders if f.isdigit()), key=int)
        class_to_idx = {f: int(f) for f in folders}
    else:
        class_to_idx = {f: i for i, f in enumerate(class_names if class_names is not None else folders)}
        class_to_idx = {f: i for f, i in class_to_idx.items() if f in set(folders)}
    samples = make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    return [p for p, _ in samples], [l for _, l in samples], folders


def _bins(values, thresholds) -> np.ndarray:
    """VTAB binning: label = max{i : thr[i] < v}."""
    return np.clip(np.searchsorted(np.asarray(thresholds), np.asarray(values, dtype=np.float64), side="left") - 1, 0, len(thresholds) - 1)


def _pool_cifar(cls):
    def build(root, part, variant):
        ds = cls(str(root), train=(part == "train"))
        return Pool(ds.targets, ds.classes, _TvGetter(ds))

    return build


def _rows(path) -> list[tuple[str, str]]:
    if not Path(path).is_file():
        raise ConfigError(f"{path} not found")
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            a, _, b = line.partition(" ")
            out.append((a, b.strip()))
    return out


def _csv(path) -> list[dict]:
    if not Path(path).is_file():
        raise ConfigError(f"{path} not found")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _find_image(folder: Path, stem: str) -> Path:
    for ext in (".jpeg", ".jpg", ".png"):
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return folder / f"{stem}.jpeg"


# ================================================================================================
# Datasets handed to training
# ================================================================================================


class RealDataset(Dataset):
    """``(image, label)`` items drawn from one or more pools; ``.classnames``, ``.labels``, ``.targets``.

    Images are PIL RGB unless ``transform`` is given (then whatever it returns, e.g. a tensor).
    """

    def __init__(self, segments, classnames, transform=None, name: str = "", split: str = "", labels=None):
        self._pools = [p for p, _ in segments]
        idx = [np.asarray(i, dtype=np.int64) for _, i in segments]
        self._seg = np.concatenate([np.full(len(i), k, dtype=np.int64) for k, i in enumerate(idx)]) if idx else np.zeros(0, np.int64)
        self._idx = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        base = np.concatenate([p.labels[i] for p, i in zip(self._pools, idx)]) if idx else np.zeros(0, np.int64)
        self.labels = np.asarray(base if labels is None else labels, dtype=np.int64)
        self.classnames = list(classnames)
        self.transform = transform
        self.name, self.split = name, split

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self._idx)

    def __getitem__(self, i):
        img = self._pools[self._seg[i]].image(self._idx[i])
        if isinstance(img, Image.Image) and img.mode != "RGB":
            img = img.convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])

    def item_keys(self, root=None) -> list[str]:
        """One name per item, in order: its file (relative to ``root`` where it lies below it), else
        its pool, the pool's reader and size, and its index there. A cache of decoded images is keyed
        by these, so a different split, subset or order never reads another list's pixels."""
        prefix = os.path.abspath(root) + os.sep if root is not None else None
        pool_names = [f"{k}:{type(p.getter).__name__}:{len(p)}" for k, p in enumerate(self._pools)]
        keys = []
        for k, j in zip(self._seg.tolist(), self._idx.tolist()):
            paths = getattr(self._pools[k].getter, "paths", None)
            if paths is None:
                keys.append(f"{pool_names[k]}:{j}")
                continue
            path = os.path.abspath(paths[j]) if prefix else paths[j]
            keys.append(f"{k}:{path[len(prefix):] if prefix and path.startswith(prefix) else path}")
        return keys

    def subset(self, indices, labels=None, classnames=None) -> "RealDataset":
        """A view on ``indices`` (optionally relabelled, e.g. for few-shot samples or base/new halves)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = RealDataset([], classnames if classnames is not None else self.classnames, self.transform, self.name, self.split)
        out._pools, out._seg, out._idx = self._pools, self._seg[indices], self._idx[indices]
        out.labels = self.labels[indices] if labels is None else np.asarray(labels, dtype=np.int64)
        return out
