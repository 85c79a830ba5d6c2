"""Reading and writing mini datasets: one ``.npz`` of uint8 arrays and one ``.json`` manifest each.

Files are written to a temporary name and renamed, so an interrupted ``data`` stage never leaves a
half-written dataset behind; a dataset whose manifest matches the requested settings is skipped,
so re-running the stage by hand resumes where it stopped.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..utils import new_file_mode, read_json, write_json
from .base import TensorImageDataset

FORMAT_VERSION = 1


def dataset_files(root: str | os.PathLike, key: str) -> tuple[Path, Path]:
    """``(npz, manifest)`` paths of dataset ``suite/name`` under ``root``."""
    base = Path(root) / key
    return base.with_suffix(".npz"), base.with_suffix(".json")


def write_dataset(root, key: str, splits: dict, manifest: dict) -> None:
    """Write every split's arrays (``<split>_images``, ``<split>_labels``, ``<split>_captions``)."""
    npz, man = dataset_files(root, key)
    npz.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, d in splits.items():
        arrays[f"{split}_images"] = d["images"]
        arrays[f"{split}_labels"] = d["labels"]
        if "captions" in d:
            arrays[f"{split}_captions"] = np.asarray(d["captions"], dtype=np.str_)
        if "factors" in d:
            arrays[f"{split}_factors"] = d["factors"]
    fd, tmp = tempfile.mkstemp(dir=npz.parent, prefix=npz.stem, suffix=".tmp.npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.chmod(tmp, new_file_mode())
    os.replace(tmp, npz)
    manifest = {**manifest, "format_version": FORMAT_VERSION, "splits": {s: int(len(d["labels"])) for s, d in splits.items()}}
    write_json(man, manifest)


def is_complete(root, key: str, fingerprint: dict) -> bool:
    """True if the dataset exists and was rendered with exactly these settings."""
    npz, man = dataset_files(root, key)
    if not (npz.is_file() and man.is_file()):
        return False
    try:
        m = read_json(man)
    except ValueError:
        return False
    return m.get("fingerprint") == fingerprint and m.get("format_version") == FORMAT_VERSION


def load_manifest(root, key: str) -> dict:
    npz, man = dataset_files(root, key)
    if not man.is_file():
        raise ConfigError(f"dataset {key!r} not found under {root} (no {man.name}); run `dvc repro data` (or `make repro`) first")
    try:
        return read_json(man)
    except ValueError as e:
        raise ConfigError(f"{man} is corrupt ({e}); delete it and run `dvc repro data` again") from e


def load_arrays(root, key: str, split: str) -> dict:
    """Raw arrays of one split: ``images`` (uint8 NHWC), ``labels`` and, if present, ``captions``."""
    npz, _ = dataset_files(root, key)
    manifest = load_manifest(root, key)
    if split not in manifest["splits"]:
        raise ConfigError(f"dataset {key!r} has no split {split!r}; it has {sorted(manifest['splits'])}")
    try:
        with np.load(npz) as f:
            out = {"images": f[f"{split}_images"], "labels": f[f"{split}_labels"]}
            if f"{split}_captions" in f.files:
                out["captions"] = [str(c) for c in f[f"{split}_captions"]]
            if f"{split}_factors" in f.files:
                out["factors"] = f[f"{split}_factors"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{npz} is missing or corrupt ({e}); delete it and run `dvc repro data` again") from e
    if len(out["labels"]) != manifest["splits"][split]:
        raise ConfigError(f"{npz} does not match its manifest ({len(out['labels'])} vs {manifest['splits'][split]} items); run `dvc repro data` again")
    return out


def load_split(root, key: str, split: str, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> TensorImageDataset:
    """One split as a :class:`TensorImageDataset` normalised for a backbone.

    ``split`` may join splits with ``+`` (``"train+val"``: VTAB's train800val200).
    """
    manifest = load_manifest(root, key)
    parts = [load_arrays(root, key, s) for s in split.split("+")]
    images = np.concatenate([p["images"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts])
    return TensorImageDataset(images, labels, manifest["classnames"], mean, std, name=key)
