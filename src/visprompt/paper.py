"""The paper profile's data and splits stages: validate the whole params file, then prepare each dataset.

``run_data(params, root)`` checks every dataset name, backbone, method and recipe number in
``profiles/paper/params.yaml`` *before* touching the disk (one :class:`ConfigError` listing every
problem), then prepares the datasets of ``data.datasets`` in order with
:func:`visprompt.data.real.prepare`, writing one manifest per dataset atomically to
``<root>/manifests/<suite>/<name>.json``. It stops at the first dataset it cannot get — a manual
download (:class:`~visprompt.data.download.ManualDownloadRequired`: URL, file, size, checksum,
destination) or a download that fails (offline: within seconds) — with the instructions, and keeps
what was completed before. Everything it writes is under ``root``; it refuses a root inside the
mini profile's folders.

``run_splits(params)`` draws the few-shot samples of the CoOp datasets (``splits.datasets``) from
their real train/val labels with CoOp's rule (:mod:`visprompt.data.splits`), in the same file
format as the mini profile's, so the one experiment runner reads both.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from .backbones.checkpoints import VIT_IN21K
from .data import real
from .data.download import ManualDownloadRequired
from .errors import ConfigError
from .papers import PAPERS
from .utils import write_json
from .worlds.paper import SUITE_PAPER, TRANSFORMS, coop_name, manifest_path, rpo_datasets

TEXT_CONTEXT = 77  # CLIP's text context length: K read-only prompts + the class prompt must fit


def _names(value, where: str, problems: list) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        problems.append(f"{where} must be a list of dataset names")
        return []
    return [str(v) for v in value]


def _positive(d: dict, keys, where: str, problems: list) -> None:
    for k in keys:
        if k in d:
            v = d[k]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                problems.append(f"{where}.{k} must be a positive number, got {v!r}")


def _method_names() -> set | None:
    try:
        from .methods.registry import list_methods

        return set(list_methods())
    except Exception:  # the data stage must not depend on every method importing
        return None


def validate(params: dict) -> list[str]:
    """Check the paper params; return ``data.datasets`` in order. Raises one ConfigError listing every problem."""
    problems: list[str] = []
    if params.get("profile") != "paper":
        problems.append(f"profile must be 'paper' for the paper data stage, got {params.get('profile')!r}")
    data = params.get("data") or {}
    if not isinstance(data, dict) or "root" not in data:
        problems.append("data.root is missing (e.g. data: {root: data, datasets: [...]})")
    datasets = _names(data.get("datasets") if isinstance(data, dict) else None, "data.datasets", problems)
    if not datasets:
        problems.append("data.datasets is empty; list the paper datasets to prepare (see docs/paper_profile.md)")
    unknown = [d for d in datasets if d not in real.REAL_DATASETS]
    if unknown:
        problems.append(f"data.datasets has unknown name(s) {unknown}; valid: {', '.join(sorted(real.REAL_DATASETS))}")
    dup = sorted({d for d in datasets if datasets.count(d) > 1})
    if dup:
        problems.append(f"data.datasets lists {dup} more than once")
    seed = data.get("split_seed", real.DEFAULT_SPLIT_SEED) if isinstance(data, dict) else 0
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        problems.append(f"data.split_seed must be a non-negative integer, got {seed!r}")
    known = set(datasets)
    methods = _method_names()

    def need(names, where, allowed=None):
        for n in names:
            if n not in real.REAL_DATASETS:
                problems.append(f"{where}: unknown dataset {n!r}; valid: {', '.join(sorted(allowed or real.REAL_DATASETS))}")
            elif allowed is not None and n not in allowed:
                problems.append(f"{where}: {n!r} is not one of this paper's datasets ({', '.join(sorted(allowed))})")
            elif n not in known:
                problems.append(f"{where}: {n!r} is not in data.datasets, so the data stage would not prepare it; add it there")

    def check_methods(section: str, sec: dict):
        ms = sec.get("methods") or {}
        if not isinstance(ms, dict) or not ms:
            problems.append(f"{section}.methods must be a non-empty mapping of method name -> settings")
            return
        for name, m in ms.items():
            base = (m or {}).get("method", name) if isinstance(m, dict) else name
            if methods is not None and base not in methods:
                problems.append(f"{section}.methods.{name}: unknown method {base!r}; known: {', '.join(sorted(methods))}")
            if isinstance(m, dict):
                _positive(m.get("recipe") or {}, ("lr", "epochs", "batch_size"), f"{section}.methods.{name}.recipe", problems)

    def check_recipe(section: str, sec: dict):
        rec = sec.get("recipe")
        if not isinstance(rec, dict):
            problems.append(f"{section}.recipe is missing")
            return
        _positive(rec, ("lr", "epochs", "batch_size"), f"{section}.recipe", problems)
        for k in ("warmup_epochs", "warmup_steps", "weight_decay", "momentum"):
            if k in rec and (not isinstance(rec[k], (int, float)) or rec[k] < 0):
                problems.append(f"{section}.recipe.{k} must be >= 0, got {rec[k]!r}")
        seeds = sec.get("seeds")
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
            problems.append(f"{section}.seeds must be a non-empty list of integers")

    backbones = params.get("backbones") or {}
    foreign: list[str] = []  # another architecture is a warning, as in the train stages (e.g. a small one for a CPU smoke run)

    def backbone(section: str, sec: dict, allowed: tuple) -> None:
        key = sec.get("backbone")
        cfg = backbones.get(key) if isinstance(key, str) else key
        if not isinstance(cfg, dict):
            problems.append(f"{section}.backbone must name an entry of backbones ({', '.join(backbones)}) or be a mapping with arch/pretrained")
            return
        if cfg.get("arch") not in allowed:
            foreign.append(f"{section}.backbone arch {cfg.get('arch')!r} is not the paper's ({' or '.join(allowed)})")

    vpt = params.get("vpt")
    if isinstance(vpt, dict):
        backbone("vpt", vpt, (VIT_IN21K,))
        need(_names(vpt.get("tasks"), "vpt.tasks", problems), "vpt.tasks", set(real.VTAB_TASKS) | set(real.FGVC_TASKS))
        check_recipe("vpt", vpt)
        check_methods("vpt", vpt)
        grid = vpt.get("grid") or {}
        for k, vals in grid.items():
            if not isinstance(vals, list) or not vals:
                problems.append(f"vpt.grid.{k} must be a non-empty list")
        for p in grid.get("prompt_length") or []:
            if not isinstance(p, int) or p < 1:
                problems.append(f"vpt.grid.prompt_length values must be positive integers, got {p!r}")
    vp = params.get("vp")
    if isinstance(vp, dict):
        backbone("vp", vp, ("ViT-B-32", "ViT-B-16"))
        need(_names(vp.get("tasks"), "vp.tasks", problems), "vp.tasks", set(real.VP_TASKS))
        check_recipe("vp", vp)
        check_methods("vp", vp)
        vp_bb = backbones.get(vp.get("backbone")) if isinstance(backbones, dict) and isinstance(vp.get("backbone"), str) else None
        size = int((vp_bb or {}).get("image_size", 224))
        for name, m in (vp.get("methods") or {}).items():
            ps = ((m or {}).get("cfg") or {}).get("prompt_size") if isinstance(m, dict) else None
            if ps is not None and (not isinstance(ps, int) or ps < 1 or 2 * ps >= size):
                problems.append(f"vp.methods.{name}.cfg.prompt_size={ps!r}: must be a positive integer below half the image ({size // 2})")
    rpo = params.get("rpo")
    if isinstance(rpo, dict):
        backbone("rpo", rpo, ("ViT-B-16",))
        check_recipe("rpo", rpo)
        check_methods("rpo", rpo)
        coop = set(real.COOP_TASKS)
        b2n = rpo.get("base2new") or {}
        dg = rpo.get("dg") or {}
        fs = rpo.get("fewshot") or {}
        sampled = [coop_name(n) for n in _names((params.get("splits") or {}).get("datasets"), "splits.datasets", problems)]
        need(sampled, "splits.datasets", coop)
        for where, value, allowed in (("rpo.base2new.datasets", b2n.get("datasets"), coop), ("rpo.dg.source", dg.get("source"), coop),
                                      ("rpo.dg.targets", dg.get("targets"), set(real.COOP_TEST_TASKS)), ("rpo.fewshot.datasets", fs.get("datasets"), coop)):
            names = [coop_name(n) for n in _names(value, where, problems)]
            need(names, where, allowed)
            if allowed is coop:
                for n in names:
                    if n not in sampled:
                        problems.append(f"{where}: {n.split('/', 1)[1]!r} has no few-shot samples; add it to splits.datasets")
        for name, m in (rpo.get("methods") or {}).items():
            if not isinstance(m, dict):
                continue
            for where, cfg in [("cfg", m.get("cfg") or {})] + [(f"overrides.{k}.cfg", (v or {}).get("cfg") or {}) for k, v in (m.get("overrides") or {}).items()]:
                K = cfg.get("K")
                if K is not None and (not isinstance(K, int) or K < 1 or K >= TEXT_CONTEXT - 8):
                    problems.append(f"rpo.methods.{name}.{where}.K={K!r}: must be 1..{TEXT_CONTEXT - 9} to fit CLIP's {TEXT_CONTEXT}-token text context with the class prompt")
    _check_transforms(params.get("transforms"), problems)
    if foreign:
        warnings.warn("paper params: " + "; ".join(foreign) + "; numbers from them are not a replication", stacklevel=2)
    if isinstance(data, dict) and "root" in data:
        _check_root(data["root"], problems)
    if problems:
        raise ConfigError("paper params: " + "; ".join(problems))
    return datasets


def _check_transforms(transforms, problems: list) -> None:
    if not isinstance(transforms, dict):
        problems.append("transforms is missing: one {train: ..., test: ...} per suite (vtab, fgvc, vp, coop); see profiles/paper/params.yaml")
        return
    for suite in SUITE_PAPER:
        t = transforms.get(suite)
        if not isinstance(t, dict) or set(t) != {"train", "test"}:
            problems.append(f"transforms.{suite} must be {{train: <rule>, test: <rule>}}, got {t!r}")
            continue
        for k, rule in t.items():
            if rule not in TRANSFORMS:
                problems.append(f"transforms.{suite}.{k}: unknown rule {rule!r}; choose one of {', '.join(TRANSFORMS)}")


def _check_root(root, problems: list) -> None:
    parts = Path(root).parts
    if any(p.startswith("mini") for p in parts):
        problems.append(f"data.root {root!r} is inside a mini-profile folder; use a separate root for real data (e.g. data)")


def status(params: dict, root=None) -> list[dict]:
    """What the data stage would do, without doing it: one row per dataset (ready / to download / manual)."""
    names = validate(params)
    root = Path(root if root is not None else params["data"]["root"])
    rows = []
    for name in names:
        spec = real.get_spec(name)
        src = real.SOURCES[spec.raw]
        missing = real.missing_manual_files(name, root)
        state = "ready" if real.source_ready(spec.raw, root) and not missing else ("manual download needed" if missing else "will download")
        rows.append({"name": name, "state": state, "kind": src.kind, "disk": src.disk, "license": src.license, "missing": [f.filename for f in missing]})
    return rows


def paper_datasets(params: dict) -> dict:
    """Paper -> the datasets its runs read (VPT/VP tasks; RPO's CoOp datasets and DG targets)."""
    r = params.get("rpo") or {}
    sources, targets = rpo_datasets(params, [p for p in ("base2new", "dg", "fewshot") if r.get(p)])
    return {"vpt": list((params.get("vpt") or {}).get("tasks") or []), "vp": list((params.get("vp") or {}).get("tasks") or []),
            "rpo": sources + targets}


def run_data(params: dict, root=None, progress=None, strict: bool | None = None, only=None) -> dict:
    """Prepare every dataset of ``data.datasets`` in order; write their manifests; return a summary.

    A dataset that needs a manual download does not stop the others: they are all prepared, then
    the first one's :class:`ManualDownloadRequired` is raised, listing every such dataset and the
    papers that can train already. Any other error (download failed, corrupt archive) stops at
    once, prefixed with what was completed before it. ``strict`` (default ``data.strict``, true):
    class counts must be the papers' (false for fake or partial copies). ``only``: papers whose
    datasets alone are prepared (``visprompt data --only rpo``), in ``data.datasets`` order.
    """
    names = validate(params)
    if only:
        wanted = paper_datasets(params)
        unknown = [p for p in only if p not in wanted]
        if unknown:
            raise ConfigError(f"data --only: unknown paper(s) {unknown}; choose from {', '.join(wanted)}")
        keep = {k for p in only for k in wanted[p]}
        names = [n for n in names if n in keep]
    data = params["data"]
    root = Path(root if root is not None else data["root"])
    problems: list[str] = []
    _check_root(root, problems)
    if problems:
        raise ConfigError(problems[0])
    seed = int(data.get("split_seed", real.DEFAULT_SPLIT_SEED))
    keep = bool(data.get("keep_archives", False))
    strict = bool(data.get("strict", True)) if strict is None else strict
    done, manual, t0 = [], [], time.perf_counter()
    for i, name in enumerate(names):
        try:
            manifest = real.prepare(name, root, seed=seed, strict=strict, progress=progress, keep_archives=keep)
        except ManualDownloadRequired as e:  # a person must fetch it: prepare the others meanwhile
            manual.append((name, e))
            continue
        except ConfigError as e:
            prefix = f"data stage stopped at dataset {i + 1}/{len(names)} ({name}); {len(done)} ready before it" + (f" ({', '.join(done)})" if done else "") + ".\n"
            e.args = (prefix + str(e), *e.args[1:])
            raise
        write_json(manifest_path(root, name), manifest)
        done.append(name)
    if manual:
        ready = [p for p, keys in paper_datasets(params).items() if keys and set(keys) <= set(done)]
        first = manual[0][1]
        head = (f"data stage: {len(manual)} of {len(names)} datasets need a manual download ({', '.join(n for n, _ in manual)}); "
                f"the other {len(done)} are ready. " + (f"Papers whose datasets are all ready, trainable now (`dvc repro --single-item "
                f"train_<paper>@<run>`): {', '.join(ready)}." if ready else "No paper has all its datasets yet.") + "\n\n")
        first.args = (head + "\n\n".join(f"[{n}] {e}" for n, e in manual), *first.args[1:])
        raise first
    return {
        "root": str(root),
        "datasets": {n: "ready" for n in done},
        "count": len(done),
        "time_s": round(time.perf_counter() - t0, 1),
    }


def run_splits(params: dict, root=None) -> dict:
    """Few-shot samples of every (CoOp dataset, shots, seed) from its real train/val labels.

    CoOp's rule (rpo.md "Few-shot protocol"), the same code and file format as the mini profile:
    per class in label order ``random.Random(seed).sample(items, shots)``, val ``min(shots, 4)``
    per class, base/new halves recorded. Only labels are read (no image is decoded). Fails before
    writing anything if a dataset is not prepared or a shot count exceeds its smallest class.
    """
    from .data.splits import check_shots, make_split, write_split

    validate(params)
    s = params["splits"]
    data_root = Path(params["data"]["root"])
    out = Path(root if root is not None else s.get("root", "data/fewshot"))
    shots, seeds = [int(x) for x in s["shots"]], [int(x) for x in s["seeds"]]
    labels = {}
    for name in s["datasets"]:
        key = coop_name(name)
        if not manifest_path(data_root, key).is_file():
            raise ConfigError(f"{key} is not prepared (no {manifest_path(data_root, key).resolve()}); run the data stage first: "
                              "`cd profiles/paper && dvc repro data` (or `make paper` for the whole pipeline)")
        labels[name] = {split: real.load(key, split, data_root).labels for split in ("train", "val")}
    check_shots({coop_name(n): np.bincount(v["train"]).tolist() for n, v in labels.items()}, shots)
    for name, v in labels.items():  # the val sample takes min(shots, 4) per class
        smallest = int(np.bincount(v["val"]).min())
        if min(max(shots), 4) > smallest:
            raise ConfigError(f"{coop_name(name)}: its val split has only {smallest} image(s) in some class, but shots {max(shots)} need "
                              f"{min(max(shots), 4)} per class (min(shots, 4)); use shots <= {smallest} in splits.shots")
    t0 = time.perf_counter()
    written = 0
    for name, lab in labels.items():
        for k in shots:
            for seed in seeds:
                write_split(out, make_split(lab["train"], lab["val"], name, k, seed))
                written += 1
    return {"files": written, "root": str(out), "datasets": {n: {"train": len(v["train"]), "classes": int(v["train"].max()) + 1} for n, v in labels.items()},
            "time_s": round(time.perf_counter() - t0, 1)}
