"""VTAB-1k (VPT): the 19 tasks and the readers of their sources (shared sources are read here too).

Splits (ours, not tfds membership): each task defines train/val/test *pools* as fraction ranges of
its permuted parts, mirroring VTAB's split definitions in task_adaptation's ``data/*.py`` (e.g.
CIFAR-100 train = train[:90%], val = train[90%:], test = test); train800 = the first 800 of the
train pool, val200 = the first 200 of the val pool, trainval = both (1,000), test = the whole test
pool. Sources without an official partition use VTAB's fractions (EuroSAT/Resisc45 60/20/20, SUN397
70/10/20, dSprites 80/10/10, KITTI 6,347/423/711 of 7,481) and Caltech101 takes 30 images per class
as its train part (the tfds definition), the rest as test.

Label derivations (VTAB's preprocessing, checked against google-research/task_adaptation
``data/{clevr,kitti,dsprites,smallnorb}.py``): Clevr/count = number of objects − 3 (3..10 → 8 classes);
Clevr/distance = bins of the smallest object depth ``pixel_coords[2]`` at thresholds
0, 8, 8.5, 9, 9.5, 10, 100 (6 classes); KITTI/distance = bins of the smallest depth ``z``
(location[2]) of a Car/Van/Truck at −100, 8, 20, 999 m, 1,000 when there is none (4 classes);
dSprites/location = x position (0..31) // 2, dSprites/orientation = floor(orientation (0..39) / 2.5)
(16 classes each); smallNORB/azimuth = azimuth field (0, 2, .., 34) / 2 (18), smallNORB/elevation
= elevation field (0..8) (9), both from the first camera image. Label = ``max{i: thr[i] < d}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torchvision.datasets as tvd

from ...errors import ConfigError
from ...utils import read_json
from .. import classnames as cn
from .common import (
    _ALL622,
    Pool,
    _ArrayGetter,
    _bins,
    _csv,
    _FileGetter,
    _find_image,
    _Flowers102,
    _folder_items,
    _p,
    _sorted_order,
    _std,
    _SVHN,
    _TvGetter,
)
from .sources import _DSPRITES, _NORB_TEST, _NORB_TRAIN


_KITTI_FR = (6347 / 7481, 6770 / 7481)  # tfds kitti split sizes 6,347 / 423 / 711

_VTAB = [
    # name, raw, classes, group, pools, variant, label rule
    ("cifar100", "cifar100", 100, "natural", _std(frac=0.9), "class", "CIFAR-100 fine label"),
    ("caltech101", "caltech101", 102, "natural",
     {"train": _p("all", 0, 0.9, per_class=30, take="head"), "val": _p("all", 0.9, 1, per_class=30, take="head"), "test": _p("all", per_class=30, take="tail")},
     "class", "folder name (102 incl. BACKGROUND_Google, as tfds)"),
    ("dtd", "dtd", 47, "natural", _std(val="val"), "class", "texture folder (partition 1)"),
    ("flowers102", "flowers102", 102, "natural", _std(val="val"), "class", "imagelabels.mat - 1"),
    ("pets", "pets", 37, "natural", _std(train_part="trainval", frac=0.8), "class", "breed"),
    ("svhn", "svhn", 10, "natural", _std(frac=0.9), "class", "digit (10 → 0)"),
    ("sun397", "sun397", 397, "natural", {"train": _p("all", 0, 0.7), "val": _p("all", 0.7, 0.8), "test": _p("all", 0.8, 1)}, "class", "scene category"),
    ("patch_camelyon", "pcam", 2, "specialized", _std(val="val"), "class", "metastatic tissue in the centre 32x32 (PCam y)"),
    ("eurosat", "eurosat", 10, "specialized", _ALL622, "class", "land-use folder"),
    ("resisc45", "resisc45", 45, "specialized", _ALL622, "class", "scene folder"),
    ("retinopathy", "retinopathy", 5, "specialized", _std(val="val"), "class", "Kaggle DR grade 0-4"),
    ("clevr_count", "clevr", 8, "structured", _std(frac=0.9, test="val"), "count", "number of objects - 3"),
    ("clevr_distance", "clevr", 6, "structured", _std(frac=0.9, test="val"), "distance", "bins of min object depth at 0/8/8.5/9/9.5/10/100"),
    ("dmlab", "dmlab", 6, "structured", _std(val="validation"), "class", "tfds dmlab label"),
    ("kitti_distance", "kitti", 4, "structured",
     {"train": _p("all", 0, _KITTI_FR[0]), "val": _p("all", _KITTI_FR[0], _KITTI_FR[1]), "test": _p("all", _KITTI_FR[1], 1)},
     "distance", "bins of min Car/Van/Truck depth z at -100/8/20/999 m (1000 if none)"),
    ("dsprites_location", "dsprites", 16, "structured", {"train": _p("all", 0, 0.8), "val": _p("all", 0.8, 0.9), "test": _p("all", 0.9, 1)}, "location", "x position (0..31) // 2"),
    ("dsprites_orientation", "dsprites", 16, "structured", {"train": _p("all", 0, 0.8), "val": _p("all", 0.8, 0.9), "test": _p("all", 0.9, 1)}, "orientation", "floor(orientation (0..39) / 2.5)"),
    ("smallnorb_azimuth", "smallnorb", 18, "structured", {"train": _p("train"), "val": _p("test", 0, 0.5), "test": _p("test", 0.5, 1)}, "azimuth", "azimuth field / 2 (0..17)"),
    ("smallnorb_elevation", "smallnorb", 9, "structured", {"train": _p("train"), "val": _p("test", 0, 0.5), "test": _p("test", 0.5, 1)}, "elevation", "elevation field (0..8)"),
]
VTAB_TASKS = tuple(f"vtab/{t[0]}" for t in _VTAB)


PCAM_NAMES = ["no metastatic tissue", "metastatic tissue"]


def _pool_svhn(root, part, variant):
    ds = _SVHN(str(root / "svhn"), split=part)
    return Pool(ds.labels, cn.SVHN_NAMES, _TvGetter(ds))


def _pool_flowers(root, part, variant):
    ds = _Flowers102(str(root), split=part)
    return Pool(ds._labels, list(tvd.Flowers102.classes), _TvGetter(ds))


def _pool_dtd(root, part, variant):
    ds = tvd.DTD(str(root), split=part, partition=1)
    return Pool(ds._labels, ds.classes, _TvGetter(ds))


def _pool_pets(root, part, variant):
    ds = tvd.OxfordIIITPet(str(root), split=part)
    return Pool(ds._labels, ds.classes, _TvGetter(ds))


def _pool_eurosat(root, part, variant):
    ds = tvd.EuroSAT(str(root))
    return Pool(ds.targets, ds.classes, _TvGetter(ds))


def _pool_sun397(root, part, variant):
    ds = tvd.SUN397(str(root))
    order = _sorted_order(ds._image_files)  # rglob order depends on the file system
    return Pool([ds._labels[i] for i in order], ds.classes, _TvGetter(ds, order))


def _pool_caltech(root, part, variant):
    ds = tvd.ImageFolder(str(root / "caltech101" / "101_ObjectCategories"))
    return Pool(ds.targets, ds.classes, _TvGetter(ds))


def _pool_resisc(root, part, variant):
    ds = tvd.ImageFolder(str(root / "resisc45" / "NWPU-RESISC45"))
    return Pool(ds.targets, [cn.readable(c) for c in ds.classes], _TvGetter(ds))


def _pool_pcam(root, part, variant):
    try:
        import h5py
    except ImportError as e:
        raise ConfigError("Patch Camelyon is stored as HDF5: pip install h5py (torchvision's PCAM reader needs it)") from e
    ds = tvd.PCAM(str(root), split=part)
    yfile = tvd.PCAM._FILES[part]["targets"][0]
    with h5py.File(root / "pcam" / yfile, "r") as f:
        labels = np.asarray(f["y"][:]).reshape(-1).astype(np.int64)
    return Pool(labels, PCAM_NAMES, _TvGetter(ds))


def _pool_clevr(root, part, variant):
    ds = tvd.CLEVRClassification(str(root), split=part)
    if variant == "count":
        counts = np.asarray(ds._labels, dtype=np.int64)
        if len(counts) and (counts.min() < 3 or counts.max() > 10):
            raise ConfigError(f"CLEVR {part}: object counts {counts.min()}..{counts.max()} outside 3..10")
        return Pool(counts - 3, cn.CLEVR_COUNT_NAMES, _TvGetter(ds))
    scenes = read_json(root / "clevr" / "CLEVR_v1.0" / "scenes" / f"CLEVR_{part}_scenes.json")["scenes"]
    depth = {s["image_filename"]: min(o["pixel_coords"][2] for o in s["objects"]) for s in scenes}
    labels = _bins([depth[p.name] for p in ds._image_files], cn.CLEVR_DISTANCE_THRESHOLDS)
    return Pool(labels, cn.CLEVR_DISTANCE_NAMES, _TvGetter(ds))


KITTI_VEHICLES = ("Car", "Van", "Truck")


def kitti_closest_vehicle_depth(label_file) -> float:
    """Smallest depth ``z`` (field 14 of a KITTI label line) over Car/Van/Truck objects; 1000 if none."""
    z = [1000.0]
    with open(label_file) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 15 and parts[0] in KITTI_VEHICLES:
                z.append(float(parts[13]))
    return min(z)


def _pool_kitti(root, part, variant):
    ds = tvd.Kitti(str(root), train=True)
    order = _sorted_order(ds.images)  # os.listdir order
    labels = _bins([kitti_closest_vehicle_depth(ds.targets[i]) for i in order], cn.KITTI_DISTANCE_THRESHOLDS)
    return Pool(labels, cn.KITTI_DISTANCE_NAMES, _TvGetter(ds, order))


def _pool_retinopathy(root, part, variant):
    base = root / "diabetic_retinopathy"
    if part == "train":
        rows = _csv(base / "trainLabels.csv")
        folder = "train"
    else:
        usage = {"val": "Public", "test": "Private"}[part]
        rows = [r for r in _csv(base / "retinopathy_solution.csv") if r.get("Usage") == usage]
        folder = "test"
    rows.sort(key=lambda r: r["image"])
    paths = [_find_image(base / folder, r["image"]) for r in rows]
    return Pool([int(r["level"]) for r in rows], cn.RETINOPATHY_NAMES, _FileGetter(paths), ids=[r["image"] for r in rows])


def _pool_dmlab(root, part, variant):
    paths, labels, _ = _folder_items(root / "dmlab" / part, int_classes=True)
    return Pool(labels, cn.DMLAB_NAMES, _FileGetter(paths))


_DSPRITES_CACHE: dict = {}


def _dsprites_images(path: Path):
    cache = path.with_name("imgs.npy")
    if cache.is_file():
        return np.load(cache, mmap_mode="r")
    key = str(path)
    if key not in _DSPRITES_CACHE:
        with np.load(path) as f:
            _DSPRITES_CACHE[key] = f["imgs"]
    return _DSPRITES_CACHE[key]


class _DspritesOpener:
    def __init__(self, path):
        self.path = Path(path)

    def __call__(self):
        return _dsprites_images(self.path)


def _pool_dsprites(root, part, variant):
    path = root / "dsprites" / _DSPRITES
    with np.load(path) as f:
        latents = np.asarray(f["latents_classes"])  # (N, 6): colour, shape, scale, orientation(40), posX(32), posY(32)
    if variant == "location":
        labels, names = latents[:, 4] // 2, cn.DSPRITES_LOCATION_NAMES
    elif variant == "orientation":
        labels, names = np.floor(latents[:, 3] / 2.5).astype(np.int64), cn.DSPRITES_ORIENTATION_NAMES
    else:
        raise ConfigError(f"dSprites label {variant!r}: use 'location' or 'orientation'")
    return Pool(labels, names, _ArrayGetter(_DspritesOpener(path), np.arange(len(labels)), scale=255))


NORB_MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C56: np.int16, 0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64}


def read_norb(path, mmap: bool = True) -> np.ndarray:
    """Read a NORB binary matrix (``*.mat`` of the smallNORB distribution; little-endian int32 header:
    magic, ndim, then max(3, ndim) dims)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = np.frombuffer(f.read(8), dtype="<i4")
        if len(head) < 2:
            raise ConfigError(f"{path}: truncated NORB header")
        magic, ndim = int(head[0]) & 0xFFFFFFFF, int(head[1])
        if magic not in NORB_MAGIC or not 1 <= ndim <= 8:
            raise ConfigError(f"{path}: not a NORB matrix file (magic {magic:#x}, ndim {ndim})")
        dims = np.frombuffer(f.read(4 * max(3, ndim)), dtype="<i4")[:ndim]
    offset = 8 + 4 * max(3, ndim)
    dtype = np.dtype(NORB_MAGIC[magic]).newbyteorder("<")
    shape = tuple(int(d) for d in dims)
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise ConfigError(f"{path}: truncated ({path.stat().st_size:,} bytes, expected {expected:,})")
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return np.fromfile(path, dtype=dtype, offset=offset, count=int(np.prod(shape))).reshape(shape)


class _NorbOpener:
    def __init__(self, path):
        self.path = str(path)

    def __call__(self):
        return read_norb(self.path)[:, 0]  # first camera of each stereo pair


def _pool_smallnorb(root, part, variant):
    prefix = root / "smallnorb" / (_NORB_TRAIN if part == "train" else _NORB_TEST)
    info = np.asarray(read_norb(f"{prefix}-info.mat", mmap=False))  # instance, elevation (0..8), azimuth (0,2,..,34), lighting
    if variant == "azimuth":
        labels, names = info[:, 2] // 2, cn.SMALLNORB_AZIMUTH_NAMES
    elif variant == "elevation":
        labels, names = info[:, 1], cn.SMALLNORB_ELEVATION_NAMES
    else:
        raise ConfigError(f"smallNORB label {variant!r}: use 'azimuth' or 'elevation'")
    return Pool(labels, names, _ArrayGetter(_NorbOpener(f"{prefix}-dat.mat"), np.arange(len(labels))))
