"""Class names where torchvision has none, and readers for the name files datasets ship.

Where a dataset ships its own names on disk we read them from there (never a copy kept here):

* CUB-200-2011: ``classes.txt`` (``"1 001.Black_footed_Albatross"`` → ``"Black footed Albatross"``).
* NABirds: ``classes.txt`` (``"<id> <name with spaces>"``); only the 555 leaf ids used by images count.
* Stanford Dogs: the image folder names (``"n02085620-Chihuahua"`` → ``"Chihuahua"``).
* ImageNet and its variants: CoOp's ``classnames.txt`` (``"n01440764 tench"``; the CLIP-notebook
  names CoOp uses, distributed with CoOp's dataset instructions).
* CoOp's ``split_zhou_*.json`` files carry the class name of every item (third field).
* torchvision provides names for CIFAR, DTD, Pets, Food-101, SUN397, Flowers102 (``Flowers102.classes``),
  FGVC-Aircraft, Stanford Cars, EuroSAT (folder names).

The lists below exist because no file on disk has them.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

# EuroSAT: the readable names CoOp uses for its folder names (CoOp, datasets/eurosat.py NEW_CNAMES,
# also the names of CLIP's EuroSAT prompts). Folder name -> name.
EUROSAT_COOP_NAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}

# SVHN: torchvision maps the digit "0" (stored as label 10 in the .mat files) to label 0.
SVHN_NAMES = [str(d) for d in range(10)]

# Kaggle "Diabetic Retinopathy Detection" grades 0-4 (competition data description).
RETINOPATHY_NAMES = ["no diabetic retinopathy", "mild", "moderate", "severe", "proliferative diabetic retinopathy"]

# CLEVR count (VTAB "count_all"): scenes hold 3..10 objects; label = count - 3.
CLEVR_COUNT_NAMES = ["three", "four", "five", "six", "seven", "eight", "nine", "ten"]

# CLEVR closest-object distance (VTAB "closest_object_distance"): bins of the smallest object depth.
CLEVR_DISTANCE_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
CLEVR_DISTANCE_NAMES = [f"closest object depth {lo}-{hi}" for lo, hi in zip(CLEVR_DISTANCE_THRESHOLDS[:-1], CLEVR_DISTANCE_THRESHOLDS[1:])]

# KITTI closest-vehicle distance (VTAB "closest_vehicle_distance"): depth z of the nearest Car/Van/Truck.
KITTI_DISTANCE_THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)
KITTI_DISTANCE_NAMES = ["vehicle closer than 8 m", "vehicle 8 to 20 m away", "vehicle more than 20 m away", "no vehicle"]

# dSprites: x position 0..31 -> 16 bins, orientation 0..39 -> 16 bins (VTAB: floor(v / (n_orig / 16))).
DSPRITES_LOCATION_NAMES = [f"x position bin {i}" for i in range(16)]
DSPRITES_ORIENTATION_NAMES = [f"orientation bin {i}" for i in range(16)]

# smallNORB: azimuth 0, 20, ..., 340 degrees (18); elevation 30, 35, ..., 70 degrees (9) (NORB documentation).
SMALLNORB_AZIMUTH_NAMES = [f"azimuth {20 * i} degrees" for i in range(18)]
SMALLNORB_ELEVATION_NAMES = [f"elevation {30 + 5 * i} degrees" for i in range(9)]

# DMLab (VTAB): 6 classes; tfds describes them as {close, far, very far} x {positive, negative reward}
# without fixing the order, so we keep neutral names (VPT only trains a linear head on them).
DMLAB_NAMES = [f"dmlab class {i}" for i in range(6)]


def readable(name: str) -> str:
    """Folder-style name to words: ``_`` → space (case kept)."""
    return name.replace("_", " ").strip()


def cub_classes(path) -> list[str]:
    """CUB ``classes.txt`` ("<id> <nnn>.<Name_With_Underscores>") in id order."""
    rows = _id_rows(path)
    return [readable(name.split(".", 1)[1] if "." in name else name) for _, name in sorted(rows, key=lambda r: int(r[0]))]


def nabirds_classes(path) -> dict[int, str]:
    """NABirds ``classes.txt`` ("<id> <name>") as ``{id: name}`` (all 1,011 hierarchy nodes)."""
    return {int(i): name for i, name in _id_rows(path)}


def stanford_dogs_name(folder: str) -> str:
    """``"n02085620-Chihuahua"`` → ``"Chihuahua"``; ``"n02088094-Afghan_hound"`` → ``"Afghan hound"``."""
    return readable(folder.split("-", 1)[1] if "-" in folder else folder)


def imagenet_classnames(path) -> dict[str, str]:
    """CoOp's ImageNet ``classnames.txt``: ``{wnid: name}`` in file order (1,000 lines)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ImageNet class-name file {path} not found (CoOp's classnames.txt: 'n01440764 tench' per line)")
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        wnid, _, name = line.partition(" ")
        out[wnid] = name.strip()
    return out


def _id_rows(path) -> list[tuple[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"class-name file {path} not found")
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            i, _, name = line.partition(" ")
            rows.append((i, name.strip()))
    return rows
