"""Small helpers shared by every stage: seeding, parameter counts, run provenance, atomic writes."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .cpu_numerics import PINS


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def count_parameters(model: torch.nn.Module) -> dict:
    """Trainable and total parameter counts (shared tensors counted once)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {"trainable": trainable, "total": total}


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Turn off gradients for every parameter of ``module`` (in place) and return it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def environment_info(device: torch.device | str | None = None) -> dict:
    """What produced a result: versions, device, threads and git commit."""
    import open_clip
    import timm
    import torchvision

    device = torch.device(device) if device is not None else default_device()
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "open_clip": open_clip.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch runs (cpu_numerics.py)
        "cpu_pins": {k: os.environ[k] for k in PINS if k in os.environ},
        "git_commit": git_commit(),
    }
    return info


SELECTION_TOLERANCE = 1.0  # points of validation top-1 (2 of VTAB-mini's 200 validation images)


def first_within(scores, tolerance: float = SELECTION_TOLERANCE) -> int:
    """Index of the first score within ``tolerance`` of the best: the grid's own order breaks near-ties.

    A plain argmax lets a one-image difference pick the setting, and such differences come from
    the last bits of the arithmetic: the same grid then chose differently on another machine.
    """
    best = max(scores)
    return next(i for i, v in enumerate(scores) if v >= best - tolerance)


def set_threads(params: dict) -> int:
    """Apply params' ``threads`` (0: torch's default, one per core). A fixed count is part of what
    makes the CPU's floating-point bits the same on every machine (cpu_numerics.py)."""
    threads = int(params.get("threads", 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


SCRATCH = Path("build/notebooks")  # where a notebook run by hand writes (never a DVC-tracked output)


def bars_off(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: ``None`` (the default everywhere) shows bars only when the output is a
    terminal, so ``dvc repro`` in a shell shows them and CI logs and notebooks stay clean."""
    return None if progress is None else not progress


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding a
    ``dvc.yaml``: the repository root, or ``profiles/paper`` for the paper profile. A notebook
    opened from ``notebooks/`` in JupyterLab changes into it, so its relative paths work."""
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file():
            return d
    raise FileNotFoundError(f"no dvc.yaml at or above {here}: open the notebook from inside a visprompt checkout")


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask); mkstemp's temporaries are 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w"):
    """Open a unique temporary file beside ``path`` and rename it over ``path`` once the block
    ends: a crash never leaves half a file, two writers never share a temporary name, and a file
    DVC hardlinked into its cache is replaced, never overwritten in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.fchmod(fd, new_file_mode())  # a result file gets open()'s usual mode, not mkstemp's 0600
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Write JSON atomically (:func:`atomic_write`)."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent, sort_keys=False, default=_json_default)
        f.write("\n")


def save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` atomically (:func:`atomic_write`): weights and epoch checkpoints."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def load_weights(path: str | os.PathLike, stage: str) -> dict:
    """A state dict written by DVC stage ``stage``; a missing or damaged file is a ConfigError
    naming the stage to rerun, not a bare unpickling error."""
    from .errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `dvc repro {stage}` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, or not a state dict
        raise ConfigError(f"{path} is not readable weights ({type(e).__name__}: {e}); rebuild it with `dvc repro -f {stage}`") from None


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def load_into(model: torch.nn.Module, state: dict, path, stage: str, config_key: str, ignore_prefix: str | None = None) -> None:
    """``model.load_state_dict(state)``; weights of another shape or with other keys (params
    changed after ``stage`` ran) are a ConfigError naming the file and the fix. Keys starting with
    ``ignore_prefix`` may be missing or extra (a pretraining head dropped on purpose)."""
    from .errors import ConfigError

    fix = f"rebuild it with `dvc repro -f {stage}`, or restore the params it was trained with"
    try:
        missing, unexpected = model.load_state_dict(state, strict=ignore_prefix is None)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ConfigError(f"{path} does not match {config_key} in params ({lines[1] if len(lines) > 1 else lines[0]}); {fix}") from None
    missing = [k for k in missing if not k.startswith(ignore_prefix or "")]
    unexpected = [k for k in unexpected if not k.startswith(ignore_prefix or "")]
    if missing or unexpected:
        raise ConfigError(f"{path} does not match {config_key} in params: missing {missing[:5]}, unexpected {unexpected[:5]}; {fix}")


def harmonic_mean(a: float, b: float) -> float:
    """HM of base and new accuracy, as CoCoOp/RPO report it (per dataset; the average HM is the HM of the averages)."""
    return 2 * a * b / (a + b) if a + b > 0 else 0.0
