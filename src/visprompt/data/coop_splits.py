"""CoOp's split files (``split_zhou_<Name>.json``) and the base/new class halves.

Format (CoOp, ``DatasetBase.read_split`` / ``write_split``)::

    {"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}

``relpath`` is relative to the dataset's image folder (``/`` separators), ``label`` an int from 0,
``classname`` the name CoOp prompts with. The published files are read as they are; files we
write ourselves (:func:`make_split`, only when asked for in params) are marked as ours.

Base/new (rpo.md, "Few-shot protocol"): sort the labels, base = the first ``ceil(n/2)``, new =
the rest; each half is relabelled from 0 in that order.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from ..errors import ConfigError
from ..utils import atomic_write

SPLITS = ("train", "val", "test")

# CoOp dataset name -> split file name (CoOp's DATASETS.md).
COOP_SPLIT_FILES = {
    "caltech101": "split_zhou_Caltech101.json",
    "oxford_pets": "split_zhou_OxfordPets.json",
    "stanford_cars": "split_zhou_StanfordCars.json",
    "oxford_flowers": "split_zhou_OxfordFlowers.json",
    "food101": "split_zhou_Food101.json",
    "sun397": "split_zhou_SUN397.json",
    "dtd": "split_zhou_DescribableTextures.json",
    "eurosat": "split_zhou_EuroSAT.json",
    "ucf101": "split_zhou_UCF101.json",
}


def _check_items(items, where: str) -> list[tuple[str, int, str]]:
    out = []
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of [relpath, label, classname] entries")
    for i, it in enumerate(items):
        if not (isinstance(it, (list, tuple)) and len(it) == 3 and isinstance(it[0], str) and isinstance(it[1], int) and isinstance(it[2], str)):
            raise ConfigError(f"{where}[{i}] = {it!r} is not [relpath (str), label (int), classname (str)]")
        if it[1] < 0:
            raise ConfigError(f"{where}[{i}]: negative label {it[1]}")
        out.append((it[0].replace("\\", "/").lstrip("/"), int(it[1]), it[2]))
    return out


def read_split(path) -> dict[str, list[tuple[str, int, str]]]:
    """Read and validate a ``split_zhou_*.json`` file: ``{split: [(relpath, label, classname)]}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"CoOp split file {path} not found")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); download it again") from e
    if not isinstance(data, dict) or not all(s in data for s in SPLITS):
        raise ConfigError(f"{path}: expected keys {list(SPLITS)}, found {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    out = {s: _check_items(data[s], f"{path.name}:{s}") for s in SPLITS}
    names = {}
    for s in SPLITS:
        for _, label, name in out[s]:
            if names.setdefault(label, name) != name:
                raise ConfigError(f"{path.name}: label {label} is called both {names[label]!r} and {name!r}")
    return out


def write_split(path, splits: dict) -> Path:
    """Write ``{split: [(relpath, label, classname)]}`` in CoOp's format, atomically."""
    path = Path(path)
    data = {s: [[str(r).replace("\\", "/"), int(l), str(c)] for r, l, c in _check_items([list(x) for x in splits[s]], s)] for s in SPLITS}
    with atomic_write(path) as f:
        json.dump(data, f, indent=4, separators=(",", ": "))
    return path


def classnames_of(splits: dict) -> list[str]:
    """Class names by label, from every split of a split file."""
    names = {}
    for s in SPLITS:
        for _, label, name in splits.get(s, []):
            names.setdefault(label, name)
    n = max(names) + 1 if names else 0
    missing = [i for i in range(n) if i not in names]
    if missing:
        raise ConfigError(f"split file has no items for labels {missing[:10]}; labels must be 0..{n - 1}")
    return [names[i] for i in range(n)]


def make_split(items, seed: int = 1, p_train: float = 0.5, p_val: float = 0.2) -> dict:
    """OUR split in CoOp's format for a dataset without a published one (not CoOp's membership).

    Per class (label order), the class's items sorted by path are shuffled with
    ``random.Random(seed)`` and cut into ``p_train`` / ``p_val`` / rest (at least one item in train
    and test when the class has three or more). ``items``: ``[(relpath, label, classname)]``.
    """
    if not (0 < p_train < 1 and 0 <= p_val < 1 and p_train + p_val < 1):
        raise ConfigError(f"make_split: need 0 < p_train, 0 <= p_val, p_train + p_val < 1; got {p_train}, {p_val}")
    rng = random.Random(seed)
    by_label: dict[int, list] = {}
    for r, l, c in items:
        by_label.setdefault(int(l), []).append((r, int(l), c))
    out = {s: [] for s in SPLITS}
    for label in sorted(by_label):
        group = sorted(by_label[label])
        rng.shuffle(group)
        n = len(group)
        n_train = max(1, round(n * p_train)) if n >= 3 else n
        n_val = round(n * p_val) if n >= 3 else 0
        n_val = min(n_val, max(0, n - n_train - 1))
        out["train"] += group[:n_train]
        out["val"] += group[n_train : n_train + n_val]
        out["test"] += group[n_train + n_val :]
    return out


def base_new_classes(labels) -> tuple[list[int], list[int]]:
    """CoOp/RPO rule: sorted unique labels; base = first ceil(n/2), new = the rest."""
    uniq = sorted(set(int(l) for l in labels))
    m = math.ceil(len(uniq) / 2)
    return uniq[:m], uniq[m:]


def subsample_classes(items, classnames: list[str], which: str = "base") -> tuple[list, list[str]]:
    """Keep the ``base``/``new``/``all`` half of ``items`` (``(x, label, ...)``), relabelled from 0.

    Returns ``(items, classnames)`` of the kept half; the relabelling follows sorted label order,
    so base = labels ``0..m-1`` and new label ``m + i`` becomes ``i``.
    """
    if which == "all":
        return list(items), list(classnames)
    if which not in ("base", "new"):
        raise ConfigError(f"subsample_classes: which must be 'base', 'new' or 'all', got {which!r}")
    base, new = base_new_classes(range(len(classnames)))
    keep = base if which == "base" else new
    relabel = {old: i for i, old in enumerate(keep)}
    out = []
    for it in items:
        label = int(it[1])
        if label in relabel:
            out.append((it[0], relabel[label], *it[2:]))
    return out, [classnames[i] for i in keep]
