"""Preparation: getting a source in place (download/verify/extract, or files placed by hand), the
task's split file and its manifest (:func:`prepare`)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd

from ...errors import ConfigError
from ...utils import read_json, write_json
from .. import coop_splits
from ..download import (
    ChecksumError,
    DownloadError,
    FetchLog,
    ManualDownloadRequired,
    RemoteFile,
    archive_kind,
    extract,
    fetch,
    verify,
)
from .loading import compute_splits, load, split_path, split_rule
from .registry import get_spec
from .sources import _DSPRITES, DEFAULT_SPLIT_SEED, RERUN, SOURCE_FORMAT, SOURCES, VTAB_TRAIN, VTAB_VAL, Source


def source_ready(raw: str, root) -> bool:
    root = Path(root)
    return all((root / p).exists() for p in SOURCES[raw].ready)


def _marker(root: Path, raw: str) -> Path:
    return root / ".sources" / f"{raw}.json"


def missing_manual_files(name: str, root) -> list[RemoteFile]:
    """Files a person must place for this task (empty when nothing manual is missing).

    A manual source that is not in place needs all its files present *and* each one usable by us
    (an archive we can extract, or a plain file); anything else (a .rar, multi-part Kaggle zips,
    a tfds export) is listed with the source's note on how to unpack it by hand.
    """
    spec, root = get_spec(name), Path(root)
    src = SOURCES[spec.raw]
    missing = []
    if src.kind in ("manual", "tfds-export") and not source_ready(spec.raw, root):
        missing += [f for f in src.files if not (_usable(f) and (root / f.dest / f.filename).is_file())]
    for f in spec.extra_files:
        if not (root / f.dest / f.filename).is_file():
            missing.append(f)
    return missing


def _usable(f: RemoteFile) -> bool:
    """Can :func:`ensure_source` process this file once it is placed?"""
    if f.extract_to is not None:
        return archive_kind(f.filename) is not None
    return not any(c in f.filename for c in ",( ") and not f.filename.endswith(".rar")


def ensure_source(raw: "str | Source", root, progress=None, keep_archives: bool = False) -> dict:
    """Get a source in place (download/verify/extract as its kind says); returns its record.

    A completed source has a marker ``<root>/.sources/<raw>.json``; extracted copies found in place
    without one are checked against the per-file checksums torchvision publishes, then marked.
    """
    root = Path(root)
    src = raw if isinstance(raw, Source) else SOURCES[raw]
    raw = src.key
    marker = _marker(root, raw)
    if all((root / p).exists() for p in src.ready):
        if marker.is_file():
            return read_json(marker)
        log = FetchLog()
        for f in src.files:
            p = root / f.dest / f.filename
            if f.extract_to is None and p.is_file() and (f.md5 or f.sha256):
                log.add(f, verify(p, f.md5, f.sha256, f.size), "found in place, verified")
        for rel, md5 in src.file_md5:
            p = root / rel
            if p.is_file():
                verify(p, md5=md5)
        rec = {"source": raw, "format": SOURCE_FORMAT, "how": "found in place", "files": log.files, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(marker, rec)
        return rec
    log = FetchLog()
    if raw == "imagenet":
        _prepare_imagenet(root, src, log)
    elif raw == "pcam":
        _prepare_pcam(root, src, log)
    else:
        for f in src.files:
            _get_file(root, src, f, log, progress, keep_archives)
    if raw == "dsprites":
        _dsprites_cache(root)
    still = [p for p in src.ready if not (root / p).exists()]
    if still:
        raise ConfigError(f"{src.title}: after extraction {', '.join(still)} still missing under {root}; the archive layout differs from the one expected ({src.homepage})")
    rec = {"source": raw, "format": SOURCE_FORMAT, "how": src.kind, "files": log.files, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(marker, rec)
    return rec


def _get_file(root: Path, src: Source, f: RemoteFile, log: FetchLog, progress, keep_archives: bool) -> None:
    manual = src.kind in ("manual", "tfds-export")
    if f.extract_to is None:
        target = root / f.dest / f.filename
        if manual:
            log.add(f, verify(target, f.md5, f.sha256, f.size), "placed by hand, verified")
        else:
            log.add(f, fetch(f.url, target, f.md5, f.sha256, f.size, progress=progress), "downloaded")
        return
    if manual:
        archive = root / f.dest / f.filename
        info = verify(archive, f.md5, f.sha256, f.size)
        how = "placed by hand, verified, extracted"
    else:
        archive = root / "downloads" / f.filename
        info = fetch(f.url, archive, f.md5, f.sha256, f.size, progress=progress)
        how = "downloaded, verified, extracted"
    target = root / f.extract_to
    extract(archive, target, remove_on_error=not manual)
    for inner, dest in f.inner:
        extract(target / inner, root / dest)
    if f.inner:
        shutil.rmtree(target, ignore_errors=True)
    log.add(f, info, how)
    if not manual and not keep_archives:
        archive.unlink(missing_ok=True)


def _prepare_imagenet(root: Path, src: Source, log: FetchLog) -> None:
    """ILSVRC2012 archives (placed by hand) → CoOp's layout ``imagenet/images/{train,val}/<wnid>/``.

    Uses torchvision's own parsers (which check the archives' md5) in a temporary folder, then
    renames the result into place.
    """
    from torchvision.datasets import imagenet as tvi

    base = root / "imagenet"
    tmp = base / f".parse-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        devkit, train, val = (base / f.filename for f in (src.files[2], src.files[0], src.files[1]))
        tvi.parse_devkit_archive(str(tmp), file=str(devkit))
        tvi.parse_train_archive(str(tmp), file=str(train))
        tvi.parse_val_archive(str(tmp), file=str(val))
        (base / "images").mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            os.replace(tmp / split, base / "images" / split)
    except RuntimeError as e:
        raise ChecksumError(f"ImageNet archives in {base} failed torchvision's checks ({e}); download them again") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in src.files:
        log.add(f, {"md5": f.md5}, "placed by hand, md5 checked by torchvision, extracted")


def _prepare_pcam(root: Path, src: Source, log: FetchLog) -> None:
    """Patch Camelyon through torchvision's own downloader (Google Drive, gdown), into a temporary root."""
    try:
        import gdown  # noqa: F401
        import h5py  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"Patch Camelyon: torchvision downloads it with gdown and reads it with h5py; pip install gdown h5py. Or: {src.note}") from e
    tmp = root / f".pcam-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in ("train", "val", "test"):
            tvd.PCAM(str(tmp), split=split, download=True)
        (root / "pcam").mkdir(parents=True, exist_ok=True)
        for p in (tmp / "pcam").glob("*.h5"):
            os.replace(p, root / "pcam" / p.name)
    except Exception as e:  # gdown/network/md5 errors come as various types
        raise DownloadError(f"Patch Camelyon download failed ({type(e).__name__}: {e}). {src.note}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in src.files:
        log.add(f, {"md5": f.md5}, "downloaded by torchvision (md5 checked)")


def _dsprites_cache(root: Path) -> None:
    """An uncompressed copy of the dSprites images so loading can memory-map it (written atomically)."""
    path = root / "dsprites" / _DSPRITES
    cache = path.with_name("imgs.npy")
    if cache.is_file():
        return
    with np.load(path) as f:
        imgs = f["imgs"]
    tmp = cache.with_name("imgs.tmp.npy")
    np.save(tmp, imgs)
    os.replace(tmp, cache)


def prepare(name: str, root, seed: int = DEFAULT_SPLIT_SEED, strict: bool = True, progress=None, keep_archives: bool = False) -> dict:
    """Get one task's data in place and write its split file; return its manifest.

    Order: (1) every manual file this task needs is checked *before anything is written* —
    missing ones raise :class:`ManualDownloadRequired` with URL, file name, size, checksum and
    destination; (2) the source is downloaded/verified/extracted (:func:`ensure_source`); (3) the
    split record is written to ``<root>/paper_splits/<task>.json`` (VTAB/FGVC/VP) or the CoOp split file
    is validated. ``strict``: the class count must equal the paper's.
    """
    spec = get_spec(name)
    root = Path(root)
    src = SOURCES[spec.raw]
    missing = missing_manual_files(name, root)
    if missing:
        raise ManualDownloadRequired(name, missing, root, reason=src.reason or "a file must be placed by hand", homepage=src.homepage, note=src.note, rerun=RERUN)
    record = ensure_source(spec.raw, root, progress=progress, keep_archives=keep_archives)
    warnings = []
    if spec.protocol in ("vtab1k", "fgvc", "vp"):
        rec = compute_splits(name, root, seed)
        path = split_path(root, name)
        if path.is_file():
            old = read_json(path)
            if old.get("splits") != rec["splits"] and old.get("seed") == rec["seed"]:
                warnings.append(f"{path} differed from the recomputed split (another copy of the data?) and was rewritten")
        write_json(path, rec)
        sizes = rec["sizes"]
        classnames = rec["classnames"]
        if spec.protocol == "vtab1k" and (sizes["train"], sizes["val"]) != (VTAB_TRAIN, VTAB_VAL):
            warnings.append(f"VTAB-1k expects {VTAB_TRAIN}/{VTAB_VAL} train/val images, this copy gives {sizes['train']}/{sizes['val']}")
    else:
        sizes = {}
        for s in ("train", "val", "test") if spec.protocol == "coop" else ("test",):
            ds = load(name, s, root)
            sizes[s] = len(ds)
            classnames = ds.classnames
        if spec.coop_file:
            image_dir = root / spec.coop_image_dir
            data = coop_splits.read_split(root / src.dir / spec.coop_file)
            absent = [r for s in ("train", "val", "test") for r, _, _ in data[s][:50] if not (image_dir / r).is_file()]
            if absent:
                raise ConfigError(f"{spec.coop_file} lists images missing under {image_dir} (e.g. {absent[0]}); is the dataset folder the one CoOp describes?")
    for k, v in spec.expected.items():
        if sizes.get(k) != v:
            warnings.append(f"{k}: {sizes.get(k)} images, the reference says {v}")
    if len(classnames) != spec.num_classes:
        msg = f"{name}: {len(classnames)} classes found, the paper's task has {spec.num_classes}; incomplete or different copy under {root / src.dir}"
        if strict:
            raise ConfigError(msg)
        warnings.append(msg)
    return {
        "name": name,
        "papers": list(spec.papers),
        "protocol": spec.protocol,
        "group": spec.group,
        "source": {"key": spec.raw, "title": src.title, "kind": src.kind, "dir": src.dir, "homepage": src.homepage, "license": src.license, "disk": src.disk, "reader": src.reader},
        "files": record.get("files", []),
        "num_classes": len(classnames),
        "classnames": classnames,
        "classes_from": spec.classes,
        "label_rule": spec.label_rule,
        "split_rule": split_rule(name),
        "split_seed": int(seed),
        "split_file": str(split_path(root, name)) if spec.protocol in ("vtab1k", "fgvc", "vp") else (str(root / src.dir / spec.coop_file) if spec.coop_file else None),
        "sizes": sizes,
        "warnings": warnings,
    }
