"""Opening pools, computing splits, loading a task's split as a :class:`RealDataset`.

Splits (written by :func:`~visprompt.data.real.prepare` to ``<root>/paper_splits/<suite>/<task>.json``;
:func:`load` recomputes identical ones when the file is absent and refuses a file made from a
different copy):

* **Canonical order**: every native partition ("part") of a source is ordered by the reader
  (sorted file paths, or the order of the official annotation file / array).
* **Permutation**: ``numpy.random.default_rng([seed, crc32(source), crc32(part)])`` permutes a
  part (seed = ``data.split_seed``, default 0). Salted by *source*, not task, so tasks reading the
  same source (Clevr/count and Clevr/distance; VTAB and VP CIFAR-100) see the same order, as the
  tfds order is shared in VTAB.
* **Pools** per benchmark: see the docstrings of :mod:`.vtab`, :mod:`.fgvc`, :mod:`.vp`, :mod:`.coop`.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ...utils import read_json
from .. import coop_splits
from ..download import ManualDownloadRequired
from .common import Pool, RealDataset, RealSpec, _FileGetter
from .registry import _POOLS, get_spec
from .sources import DEFAULT_SPLIT_SEED, RERUN, SOURCES, SPLIT_FORMAT, VTAB_TRAIN, VTAB_VAL


def open_pool(raw: str, root, part: str, variant: str = "class") -> Pool:
    """One native part of a source, read through its torchvision class or our reader."""
    root = Path(root)
    src = SOURCES[raw]
    build, parts = _POOLS[raw]
    if part not in parts:
        raise ConfigError(f"{src.title} has parts {list(parts)}, not {part!r}")
    missing = [p for p in src.ready if not (root / p).exists()]
    if missing:
        raise ConfigError(f"{src.title} is not under {root} (missing {', '.join(missing)}); run the data stage first: {RERUN}")
    try:
        return build(root, part, variant)
    except ConfigError:
        raise
    except (RuntimeError, OSError, KeyError, ValueError, IndexError) as e:
        raise ConfigError(f"{src.title} under {root} could not be read ({type(e).__name__}: {e}); is the copy complete? Delete {root / src.dir} and run the data stage again") from e


# ================================================================================================
# Splits
# ================================================================================================


def _perm(n: int, seed: int, raw: str, salt: str) -> np.ndarray:
    return np.random.default_rng([int(seed), zlib.crc32(raw.encode()), zlib.crc32(salt.encode())]).permutation(n)


def _select(sel: dict, pool: Pool, seed: int, raw: str) -> np.ndarray:
    """Indices of one pool selection, in selection order (see the module docstring)."""
    part, n = sel["part"], len(pool)
    if "per_class" in sel:
        k, take = int(sel["per_class"]), sel.get("take", "head")
        chosen = []
        for c in range(len(pool.classnames)):
            items = np.flatnonzero(pool.labels == c)
            items = items[_perm(len(items), seed, raw, f"{part}/class{c}")]
            chosen.append(items[:k] if take == "head" else items[k:])
        base = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
        order = base[_perm(len(base), seed, raw, f"{part}/per_class{k}/{take}")]
    else:
        order = _perm(n, seed, raw, part)
    m = len(order)
    if "count" in sel:
        a, b = sel["count"]
        cap = m // 2  # a small (test) copy keeps both sides non-empty; prepare() warns about sizes
        a = min(a, cap)
        b = m if b is None else min(b, cap)
        return order[a:b]
    lo, hi = sel.get("frac", [0, 1])
    return order[int(round(lo * m)) : int(round(hi * m))]


def compute_splits(name: str, root, seed: int = DEFAULT_SPLIT_SEED) -> dict:
    """The split record of a VTAB/FGVC/VP task (what :func:`prepare` writes)."""
    spec = get_spec(name)
    if spec.protocol not in ("vtab1k", "fgvc", "vp"):
        raise ConfigError(f"{name} uses {'CoOp split files' if spec.protocol == 'coop' else 'a test-only set'}; no split record to compute")
    parts = sorted({sel["part"] for sel in spec.pools.values()})
    pools = {p: open_pool(spec.raw, root, p, spec.variant) for p in parts}
    sel = {k: _select(v, pools[v["part"]], seed, spec.raw) for k, v in spec.pools.items()}
    if spec.protocol == "vtab1k":
        sel["train"], sel["val"] = sel["train"][:VTAB_TRAIN], sel["val"][:VTAB_VAL]
    splits = {k: {spec.pools[k]["part"]: sorted(int(i) for i in v)} for k, v in sel.items()}
    trainval: dict = {}
    for k in ("train", "val"):
        for part, idx in splits[k].items():
            trainval.setdefault(part, []).extend(idx)
    splits["trainval"] = {p: sorted(v) for p, v in trainval.items()}
    return {
        "format": SPLIT_FORMAT,
        "task": name,
        "seed": int(seed),
        "classnames": pools[parts[0]].classnames,
        "rule": split_rule(name),
        "parts": {p: len(pools[p]) for p in parts},
        "sizes": {k: sum(len(v) for v in s.values()) for k, s in splits.items()},
        "splits": splits,
    }


def split_rule(name: str) -> str:
    """One sentence: how this task's splits are made."""
    spec = get_spec(name)
    if spec.protocol == "coop":
        return f"CoOp's published split file {spec.coop_file}" if spec.coop_file else f"official parts {spec.coop_parts} (as CoOp reads them)"
    if spec.protocol == "coop-test":
        return "the whole set is the test split"
    desc = []
    for k, v in spec.pools.items():
        s = v["part"]
        if "per_class" in v:
            s += f"[{v.get('take', 'head')} {v['per_class']}/class]"
        if "count" in v:
            a, b = v["count"]
            s += f"[{a}:{'' if b is None else b}]"
        elif v.get("frac", [0, 1]) != [0, 1]:
            s += f"[{v['frac'][0]:.3g}:{v['frac'][1]:.3g}]"
        desc.append(f"{k} = {s}")
    extra = f"; train800 = first {VTAB_TRAIN} of train, val200 = first {VTAB_VAL} of val, trainval = both" if spec.protocol == "vtab1k" else ""
    return "seeded permutation per (source, part), numpy default_rng([seed, crc32(source), crc32(part)]); " + ", ".join(desc) + extra + " (ours, not tfds membership)" * (spec.protocol == "vtab1k")


def split_path(root, name: str) -> Path:
    """``<root>/paper_splits/<suite>/<task>.json`` (not ``splits/``: the mini pipeline's DVC output is ``data/splits``)."""
    return Path(root) / "paper_splits" / f"{name}.json"


# ================================================================================================
# Loading
# ================================================================================================


def _coop_dataset(spec: RealSpec, root: Path, split: str, transform) -> RealDataset:
    if spec.coop_file:
        path = root / SOURCES[spec.raw].dir / spec.coop_file
        if not path.is_file():
            f = spec.extra_files[0]
            raise ManualDownloadRequired(spec.name, [f], root, reason="CoOp's split file is needed", rerun=RERUN)
        data = coop_splits.read_split(path)
        names = coop_splits.classnames_of(data)
        image_dir = root / spec.coop_image_dir
        wanted = ("train", "val") if split == "trainval" else (split,)
        segments = []
        for s in wanted:
            items = data[s]
            pool = Pool([l for _, l, _ in items], names, _FileGetter([image_dir / r for r, _, _ in items]), ids=[r for r, _, _ in items])
            segments.append((pool, np.arange(len(items))))
        return RealDataset(segments, names, transform, spec.name, split)
    parts = dict(spec.coop_parts)
    if split == "trainval" and "train" in parts:
        wanted = [parts["train"], parts["val"]] if parts["val"] != parts["test"] else [parts["train"]]
    elif split in parts:
        wanted = [parts[split]]
    else:
        raise ConfigError(f"{spec.name} has splits {sorted(parts) + (['trainval'] if 'train' in parts else [])}, not {split!r}")
    pools = [open_pool(spec.raw, root, p, spec.variant) for p in wanted]
    return RealDataset([(p, np.arange(len(p))) for p in pools], pools[0].classnames, transform, spec.name, split)


def load_splits(name: str, root, seed: int = DEFAULT_SPLIT_SEED) -> dict:
    """The task's split record: the file written by :func:`prepare` (same seed and format), else the
    identical one recomputed from the same deterministic rule."""
    path = split_path(root, name)
    if path.is_file():
        rec = read_json(path)
        if rec.get("format") == SPLIT_FORMAT and rec.get("seed") == int(seed):
            return rec
    return compute_splits(name, root, seed)


def load(name: str, split: str, root, transform=None, seed: int = DEFAULT_SPLIT_SEED) -> RealDataset:
    """A torch ``Dataset`` of ``(image, label)`` for one split of a paper task.

    ``split``: ``train``, ``val``, ``trainval`` or ``test`` (VTAB: train = 800, val = 200,
    trainval = 1,000; CoOp test-only sets: ``test``). ``transform`` is applied to the PIL image.
    """
    spec = get_spec(name)
    root = Path(root)
    if spec.protocol in ("coop", "coop-test"):
        return _coop_dataset(spec, root, split, transform)
    if split not in ("train", "val", "trainval", "test"):
        raise ConfigError(f"{name}: split must be one of train, val, trainval, test; got {split!r}")
    rec = load_splits(name, root, seed)
    segments, classnames = [], None
    for part, idx in rec["splits"][split].items():
        pool = open_pool(spec.raw, root, part, spec.variant)
        if len(pool) != rec["parts"][part]:
            raise ConfigError(
                f"{split_path(root, name)} was made from a copy whose {part!r} part had {rec['parts'][part]} items; this copy has {len(pool)}. "
                "Delete the split file to regenerate it (the rule is deterministic) or restore the original copy"
            )
        segments.append((pool, np.asarray(idx, dtype=np.int64)))
        classnames = pool.classnames
    if classnames is None:
        classnames = open_pool(spec.raw, root, next(iter(rec["parts"])), spec.variant).classnames
    return RealDataset(segments, classnames, transform, name, split)
