"""Few-shot samples, written once by the ``splits`` stage and read by every train stage.

The protocol is CoOp's (Dassl's ``generate_fewshot_dataset``): for a seed, each class in label
order gets ``random.sample(items, shots)`` without replacement from the **train** split; the
validation sample uses ``min(shots, 4)`` per class from the val split. Every method reads the same
file for a (dataset, shots, seed), so differences between methods are never differences in data.
``random.Random(seed)`` is used (not the global RNG), so a sample depends on nothing but its seed.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..utils import read_json, write_json
from .mini import base_new_split


def sample_few_shot(labels, shots: int, seed: int, dataset: str = "dataset", split: str = "train") -> list[int]:
    """Indices of ``shots`` items per class, drawn with ``random.Random(seed)`` in label order."""
    labels = np.asarray(labels)
    if shots < 1:
        raise ConfigError(f"shots must be >= 1, got {shots}")
    rng = random.Random(seed)
    chosen = []
    for c in sorted(set(labels.tolist())):
        items = np.flatnonzero(labels == c).tolist()
        if shots > len(items):
            raise ConfigError(
                f"{dataset}: {shots} shots requested but class {c} has only {len(items)} images in its {split} split; "
                f"use at most {min(np.bincount(labels)[np.bincount(labels) > 0])} shots (splits.shots in params.yaml)"
            )
        chosen += sorted(rng.sample(items, shots))
    return chosen


def split_file(root, dataset: str, shots: int, seed: int) -> Path:
    return Path(root) / dataset / f"shots{shots}_seed{seed}.json"


def make_split(train_labels, val_labels, dataset: str, shots: int, seed: int) -> dict:
    """One few-shot split record: train/val indices plus the base/new class halves."""
    n_cls = int(max(np.max(train_labels), np.max(val_labels))) + 1
    base, new = base_new_split(n_cls)
    return {
        "dataset": dataset,
        "shots": shots,
        "seed": seed,
        "train": sample_few_shot(train_labels, shots, seed, dataset, "train"),
        "val": sample_few_shot(val_labels, min(shots, 4), seed, dataset, "val"),
        "base_classes": base,
        "new_classes": new,
        "protocol": "CoOp: per class random.sample(items, shots) in label order; val min(shots, 4); base = first ceil(n/2) labels",
    }


def check_shots(label_counts: dict, shots_list) -> None:
    """Fail before any sampling if a shot count exceeds the smallest class of some dataset."""
    for dataset, counts in label_counts.items():
        smallest = min(counts)
        too_many = [s for s in shots_list if s > smallest]
        if too_many:
            raise ConfigError(
                f"splits.shots {too_many} exceed the smallest class of {dataset} ({smallest} training images); "
                f"use shots <= {smallest} in params.yaml"
            )


def load_split_indices(root, dataset: str, shots: int, seed: int) -> dict:
    path = split_file(root, dataset, shots, seed)
    if not path.is_file():
        raise ConfigError(f"few-shot split {path} not found: run `dvc repro splits` (it makes the samples that splits.datasets, "
                          f"splits.shots and splits.seeds in params.yaml list; {dataset}, {shots} and {seed} must be among them)")
    try:
        return read_json(path)
    except (ValueError, OSError) as e:  # truncated or not JSON
        raise ConfigError(f"few-shot split {path} is damaged ({type(e).__name__}); rebuild it with `dvc repro -f splits`") from None


def write_split(root, record: dict) -> Path:
    path = split_file(root, record["dataset"], record["shots"], record["seed"])
    write_json(path, record)
    return path
