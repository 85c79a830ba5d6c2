"""Decode once: the pixels of a deterministic transform, kept on disk as uint8 and normalised per batch.

A paper-profile split whose transform has no randomness ("resize", "resize_centercrop", "clip")
gives the same pixels every epoch, yet decoding a full-resolution JPEG per item per epoch is most
of a visual prompting run's data cost (Food-101: ~68 M decodes). So each image is decoded and
resized/cropped once, stored as uint8 ``(N, 3, S, S)`` in a ``.npy`` file under
``<data root>/cache/``, and read back through a memory map; ToTensor's ``/255`` and Normalize run
per batch with torchvision's own arithmetic, so a batch is bit-identical to the per-item path.

The file name holds a hash of everything that decides its bytes (task, split, the item list after
any subset, the geometric steps, the source files' record, the torchvision and Pillow versions):
a changed split or subset gets its own file, never a stale one. Files are written under a unique
temporary name and renamed into place, so an interrupted build leaves nothing that is later
trusted; a file that cannot be read or has the wrong shape is rebuilt with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..utils import bars_off

CACHE_DIR = "cache"  # under the data root
BUILD_BATCH = 64  # images per DataLoader batch while building


@dataclass(frozen=True)
class CacheSpec:
    """Where a task's decode caches live and what, beyond the items, names them.

    ``rule``/``size``/``interpolation`` make file names readable (the hash covers the steps
    themselves); ``source`` is the task manifest's record of its source files (a re-fetched copy
    with other bytes gets new caches).
    """

    root: Path
    task: str
    rule: str
    size: int
    interpolation: str
    source: str = ""

    def folder(self) -> Path:
        # absolute: a relative data root is read from the working directory, which may change later
        return Path(self.root).absolute() / CACHE_DIR / self.task.replace("/", "_")


def split_transform(transform):
    """``(geometric Compose, mean, std)`` of a Compose that ends in ToTensor + Normalize.

    The cache stores what the geometric steps produce and replays the last two per batch; any other
    shape of transform cannot be split that way and is refused.
    """
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], T.ToTensor) or not isinstance(steps[-1], T.Normalize):
        raise ValueError(f"a decode cache needs a Compose ending in ToTensor + Normalize, got {transform!r}")
    return T.Compose(steps[:-2]), tuple(float(m) for m in steps[-1].mean), tuple(float(s) for s in steps[-1].std)


def cache_path(spec: CacheSpec, data, geometric) -> Path:
    """The file of ``data``'s items (a :class:`~visprompt.data.real.common.RealDataset`, subsets included) under ``spec``."""
    import PIL
    import torchvision

    h = hashlib.sha256()
    head = (spec.task, data.split, repr(geometric), spec.source, torchvision.__version__, PIL.__version__)
    for part in (*head, *data.item_keys(spec.root)):
        h.update(str(part).encode())
        h.update(b"\0")
    name = f"{data.split}-{spec.rule}-{spec.size}-{spec.interpolation}-{h.hexdigest()[:20]}.npy"
    return spec.folder() / name


class _Pixels(Dataset):
    """Item ``i`` of ``data`` after the geometric steps, as uint8 CHW: the bytes ToTensor would read."""

    def __init__(self, data, geometric, size: int):
        self.data, self.geometric, self.size = data, geometric, size

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        img, _ = self.data[i]
        img = self.geometric(img)
        if img.mode != "RGB" or img.size != (self.size, self.size):
            raise ValueError(f"item {i} of {self.data.name}: expected an RGB {self.size}x{self.size} image after {self.geometric!r}, got {img.mode} {img.size}")
        # ToTensor reads an RGB PIL image as np.array(pic, np.uint8): the same bytes, kept as CHW
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())


def _build(path: Path, data, geometric, size: int, workers: int, progress=None) -> None:
    """Decode every item once (``workers`` DataLoader processes) into a new file renamed onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(data), 3, size, size))
        loader = DataLoader(_Pixels(data, geometric, size), batch_size=BUILD_BATCH, shuffle=False, num_workers=workers)
        start = 0
        with tqdm(total=len(data), desc=f"decode {data.name} {data.split}", unit="img", disable=bars_off(progress), leave=False, mininterval=2.0) as bar:
            for batch in loader:
                rows[start : start + len(batch)] = batch.numpy()
                start += len(batch)
                bar.update(len(batch))
        rows.flush()
        del rows
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _readable(path: Path, shape: tuple, warn: bool = True) -> bool:
    """Whether ``path`` is a complete uint8 array of ``shape``; warns (and says it is rebuilt) otherwise."""
    try:
        rows = np.load(path, mmap_mode="r")
        if rows.dtype == np.uint8 and rows.shape == shape:
            return True
        problem = f"holds {rows.dtype} {rows.shape}, expected uint8 {shape}"
    except Exception as err:  # a truncated or damaged file: ValueError, OSError, ... by damage
        problem = f"is unreadable ({type(err).__name__}: {err})"
    if warn:
        warnings.warn(f"decode cache {path} {problem}; rebuilding it", stacklevel=3)
    return False


@contextlib.contextmanager
def _build_lock(path: Path):
    """One builder per cache file: a second process that needs it (another Ray job on the node, or
    on a shared filesystem) waits for the first, then reads its file instead of decoding every
    image again. An OS file lock (``flock``): the kernel drops it if its holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"decode cache {path.name}: waiting for the process that is building it", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_cache(data, transform, spec: CacheSpec, workers: int = 0, progress=None) -> "CachedImages":
    """The normalised images of ``data`` under ``transform``, from its cache file (built first if needed)."""
    geometric, mean, std = split_transform(transform)
    path = cache_path(spec, data, geometric)
    shape = (len(data), 3, spec.size, spec.size)
    if not (path.is_file() and _readable(path, shape)):
        with _build_lock(path):
            if not (path.is_file() and _readable(path, shape, warn=False)):  # else built while this one waited
                _build(path, data, geometric, spec.size, workers, progress)
    return CachedImages(path, mean, std)


class CachedImages:
    """A split's images as the training loop indexes them: ``x[idx]`` -> float32 ``(len(idx), 3, S, S)``.

    Only the rows asked for are read (memory map), so a split never sits in memory as floats.
    ``idx``: a LongTensor, an array or list of indices, a slice or an int.
    """

    def __init__(self, path, mean, std):
        self.path, self.mean, self.std = Path(path), tuple(mean), tuple(std)
        self._rows = None

    def rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.load(self.path, mmap_mode="r")
        return self._rows

    def __len__(self) -> int:
        return len(self.rows())

    @property
    def shape(self) -> tuple:
        return tuple(self.rows().shape)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        x = torch.from_numpy(np.array(self.rows()[idx], dtype=np.uint8))
        # torchvision's arithmetic for a PIL image: ToTensor .to(default float).div(255), then
        # Normalize's sub_(mean).div_(std) with mean/std as tensors of that dtype
        x = x.to(dtype=torch.get_default_dtype()).div(255)
        mean = torch.as_tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
        return x.sub_(mean).div_(std)

    def __getstate__(self):
        return {**self.__dict__, "_rows": None}
