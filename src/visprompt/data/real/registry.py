"""The registry: :data:`REAL_DATASETS` (one :class:`RealSpec` per task, built from the benchmark
tables) and ``_POOLS`` (the reader and native parts of each source)."""

from __future__ import annotations

from ...errors import unknown_name
from .common import _CIFAR10, _CIFAR100, RealSpec, _pool_cifar
from .coop import (
    _COOP,
    _COOP_TEST,
    _pool_aircraft,
    _pool_imagenet,
    _pool_imagenet_a,
    _pool_imagenet_r,
    _pool_imagenet_sketch,
    _pool_imagenet_v2,
)
from .fgvc import _FGVC, _fgvc_pools, _pool_cars, _pool_cub, _pool_dogs, _pool_nabirds
from .vp import _VP, _pool_food, _pool_ucf101
from .vtab import (
    _VTAB,
    _pool_caltech,
    _pool_clevr,
    _pool_dmlab,
    _pool_dsprites,
    _pool_dtd,
    _pool_eurosat,
    _pool_flowers,
    _pool_kitti,
    _pool_pcam,
    _pool_pets,
    _pool_resisc,
    _pool_retinopathy,
    _pool_smallnorb,
    _pool_sun397,
    _pool_svhn,
)


def _build_registry() -> dict[str, RealSpec]:
    reg = {}
    for name, raw, n, group, pools, variant, rule in _VTAB:
        reg[f"vtab/{name}"] = RealSpec(f"vtab/{name}", ("vpt",), raw, "vtab1k", n, group, variant, _classes_text(raw, variant), rule, pools)
    for name, raw, n, val_count, (tr, va, te) in _FGVC:
        reg[f"fgvc/{name}"] = RealSpec(f"fgvc/{name}", ("vpt",), raw, "fgvc", n, "fgvc", "class", _classes_text(raw, "class"), "the dataset's own label",
                                       _fgvc_pools(val_count), expected={"train": tr, "val": va, "test": te})
    for name, raw, n, pools, image_dir in _VP:
        variant = "count" if raw == "clevr" else "class"
        if isinstance(pools, str):
            reg[f"vp/{name}"] = RealSpec(f"vp/{name}", ("visual_prompting",), raw, "coop", n, "vp", variant, "CoOp split file", "CoOp split file", coop_file=pools, coop_image_dir=image_dir)
        else:
            reg[f"vp/{name}"] = RealSpec(f"vp/{name}", ("visual_prompting",), raw, "vp", n, "vp", variant, _classes_text(raw, variant),
                                         "number of objects - 3" if variant == "count" else "the dataset's own label", pools)
    for name, raw, n, split_file, image_dir, parts in _COOP:
        reg[f"coop/{name}"] = RealSpec(f"coop/{name}", ("rpo",), raw, "coop", n, "base-to-new", "class",
                                       "CoOp split file" if split_file else _classes_text(raw, "class"), "CoOp split file" if split_file else "the dataset's own label",
                                       coop_file=split_file, coop_image_dir=image_dir, coop_parts=parts)
    for name, raw, n in _COOP_TEST:
        reg[f"coop/{name}"] = RealSpec(f"coop/{name}", ("rpo",), raw, "coop-test", n, "domain-generalisation", "class", "ImageNet classnames.txt (CoOp)",
                                       "ImageNet label of the wnid folder", coop_parts={"test": "test"})
    return reg


def _classes_text(raw: str, variant: str) -> str:
    return {
        ("cub", "class"): "classes.txt in the archive",
        ("nabirds", "class"): "classes.txt in the archive (555 leaf classes used by images)",
        ("stanford_dogs", "class"): "Images/ folder names",
        ("svhn", "class"): "digits '0'-'9' (classnames.SVHN_NAMES)",
        ("retinopathy", "class"): "Kaggle grades (classnames.RETINOPATHY_NAMES)",
        ("dmlab", "class"): "neutral names (classnames.DMLAB_NAMES)",
        ("pcam", "class"): "classnames.PCAM_NAMES",
        ("resisc45", "class"): "folder names",
        ("caltech101", "class"): "folder names",
        ("clevr", "count"): "classnames.CLEVR_COUNT_NAMES",
        ("clevr", "distance"): "classnames.CLEVR_DISTANCE_NAMES",
        ("kitti", "distance"): "classnames.KITTI_DISTANCE_NAMES",
        ("dsprites", "location"): "classnames.DSPRITES_LOCATION_NAMES",
        ("dsprites", "orientation"): "classnames.DSPRITES_ORIENTATION_NAMES",
        ("smallnorb", "azimuth"): "classnames.SMALLNORB_AZIMUTH_NAMES",
        ("smallnorb", "elevation"): "classnames.SMALLNORB_ELEVATION_NAMES",
        ("imagenet", "class"): "CoOp classnames.txt",
    }.get((raw, variant), "torchvision")


REAL_DATASETS: dict[str, RealSpec] = _build_registry()


def get_spec(name: str) -> RealSpec:
    if name not in REAL_DATASETS:
        raise unknown_name("paper dataset", name, REAL_DATASETS)
    return REAL_DATASETS[name]


_POOLS = {
    "cifar10": (_pool_cifar(_CIFAR10), ("train", "test")),
    "cifar100": (_pool_cifar(_CIFAR100), ("train", "test")),
    "svhn": (_pool_svhn, ("train", "test")),
    "flowers102": (_pool_flowers, ("train", "val", "test")),
    "dtd": (_pool_dtd, ("train", "val", "test")),
    "pets": (_pool_pets, ("trainval", "test")),
    "food101": (_pool_food, ("train", "test")),
    "eurosat": (_pool_eurosat, ("all",)),
    "sun397": (_pool_sun397, ("all",)),
    "caltech101": (_pool_caltech, ("all",)),
    "fgvc_aircraft": (_pool_aircraft, ("train", "val", "test")),
    "stanford_cars": (_pool_cars, ("train", "test")),
    "resisc45": (_pool_resisc, ("all",)),
    "pcam": (_pool_pcam, ("train", "val", "test")),
    "clevr": (_pool_clevr, ("train", "val")),
    "kitti": (_pool_kitti, ("all",)),
    "cub": (_pool_cub, ("train", "test")),
    "nabirds": (_pool_nabirds, ("train", "test")),
    "stanford_dogs": (_pool_dogs, ("train", "test")),
    "retinopathy": (_pool_retinopathy, ("train", "val", "test")),
    "dmlab": (_pool_dmlab, ("train", "validation", "test")),
    "dsprites": (_pool_dsprites, ("all",)),
    "smallnorb": (_pool_smallnorb, ("train", "test")),
    "imagenet": (_pool_imagenet, ("train", "val")),
    "imagenet_v2": (_pool_imagenet_v2, ("test",)),
    "imagenet_sketch": (_pool_imagenet_sketch, ("test",)),
    "imagenet_a": (_pool_imagenet_a, ("test",)),
    "imagenet_r": (_pool_imagenet_r, ("test",)),
    "ucf101": (_pool_ucf101, ("all",)),
}


def describe() -> list[dict]:
    """One row per task (for docs and ``plan``): name, papers, source kind, disk, licence, checksum."""
    return [
        {"name": s.name, "papers": ",".join(s.papers), "source": s.source, "raw": s.raw, "classes": s.num_classes, "disk": s.disk, "license": s.license, "checksum": s.checksum}
        for s in REAL_DATASETS.values()
    ]
