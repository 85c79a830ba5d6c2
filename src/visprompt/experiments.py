"""What a training notebook runs: every (task × seed) cell of one method of one paper.

The three papers' protocols, each a loop over cells around :func:`visprompt.train.fit`:

* **vpt** (VPT §4.1): choose the grid values (lr, weight decay, prompt length, …) on the
  800/200 train/val split with one seed (validation top-1 within 1 point of the best counts as a
  tie, won by the first point in grid order: ``utils.first_within``), retrain with the chosen
  values on all 1,000 images for every seed, report last-epoch test top-1.
* **vp** (Bahng et al.): same selection rule on train/val, then every seed on train; test top-1
  on the test set and on its style-shifted copy (robustness); logistic probe: C on val.
* **rpo** (RPO §4): few-shot samples from the ``splits`` stage. ``base2new``: train on the base
  half, test on base and new classes, HM; ``dg``: train on a source dataset, test on its
  style-shifted copies; ``fewshot``: all classes, every (shots, seed), for the variance figures.

Every finished cell is written to ``<runs>/<paper>/<method>/<cell>.json`` with a fingerprint of
its settings, so an interrupted stage resumes where it stopped and a changed setting reruns only
the cells it touches. Nothing here knows about notebooks: ``python -m visprompt train ...`` calls
the same :func:`run_method`.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import contextlib
import fcntl
import itertools
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .codehash import code_hash
from .config import section
from .errors import ConfigError, unknown_name
from .methods.registry import create_method, get_method_spec, list_methods
from .train import Recipe, evaluate, fit
from .utils import bars_off, environment_info, first_within, read_json, seed_everything, set_threads, write_json

PAPERS = {"vpt": "vit", "vp": "clip", "rpo": "clip"}
RPO_PROTOCOLS = ("base2new", "dg", "fewshot")
SETTING_KEYS = {"method", "cfg", "recipe", "grid", "seeds", "tasks", "protocols", "trainable", "overrides"}


# --- settings ----------------------------------------------------------------------------------


def method_settings(params: dict, paper: str, method: str) -> dict:
    """Merged settings of one method: paper defaults overridden by ``<paper>.methods.<method>``."""
    if paper not in PAPERS:
        raise unknown_name("paper", paper, PAPERS)
    p = section(params, paper)
    methods = p.get("methods") or {}
    if method not in methods:
        raise ConfigError(f"{paper}.methods has no {method!r}; add it to params.yaml or choose one of: {', '.join(methods)}")
    m = methods[method] or {}
    unknown = set(m) - SETTING_KEYS
    if unknown:
        raise ConfigError(f"{paper}.methods.{method}: unknown keys {sorted(unknown)}; use {', '.join(sorted(SETTING_KEYS))}")
    registered = m.get("method", method)  # a run name may alias a method with other settings (ablations)
    spec = get_method_spec(registered)
    if spec.family != PAPERS[paper]:
        raise ConfigError(f"method {registered!r} needs a {spec.family} backbone but {paper} uses {PAPERS[paper]}; choose one of {list_methods(PAPERS[paper])}")
    overrides = m.get("overrides") or {}
    datasets = _rpo_dataset_names(p) if paper == "rpo" else set()
    for proto, o in overrides.items():
        if (proto not in RPO_PROTOCOLS and proto not in datasets) or set(o) - {"cfg", "recipe"}:
            raise ConfigError(f"{paper}.methods.{method}.overrides: keys must be protocols {RPO_PROTOCOLS} or datasets of them ({', '.join(sorted(datasets))}) with cfg/recipe inside")
        Recipe.from_dict({**(p.get("recipe") or {}), **(m.get("recipe") or {}), **(o.get("recipe") or {})})
    recipe = {**(p.get("recipe") or {}), **(m.get("recipe") or {})}
    Recipe.from_dict(recipe)  # validate now, before any work
    grid = {**(p.get("grid") or {}), **(m.get("grid") or {})} if m.get("trainable", True) else {}
    grid = {k: list(v) for k, v in grid.items() if v is not None}
    cfg = dict(m.get("cfg") or {})
    for key in grid:
        if key not in Recipe.__dataclass_fields__ and key not in cfg:
            raise ConfigError(f"{paper}.methods.{method}.grid key {key!r} is neither a recipe field nor in the method's cfg")
    return {
        "paper": paper,
        "method": registered,
        "run": method,
        "overrides": overrides,
        "cfg": cfg,
        "recipe": recipe,
        "grid": grid,
        "seeds": [int(s) for s in (m.get("seeds") or p.get("seeds") or [1])],
        "tasks": list(m.get("tasks") or p.get("tasks") or []),
        "protocols": list(m.get("protocols") or p.get("protocols") or RPO_PROTOCOLS),
        "trainable": bool(m.get("trainable", True)),
    }


def _rpo_dataset_names(p: dict) -> set:
    """Datasets named by the RPO protocol sections (keys a method's ``overrides`` may use besides protocols)."""
    names = set((p.get("base2new") or {}).get("datasets") or []) | set((p.get("fewshot") or {}).get("datasets") or [])
    if (p.get("dg") or {}).get("source"):
        names.add(p["dg"]["source"])
    return {str(n) for n in names}


def _grid_points(grid: dict) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))] or [{}]


def _split_point(point: dict) -> tuple[dict, dict]:
    fields = Recipe.__dataclass_fields__
    return {k: v for k, v in point.items() if k in fields}, {k: v for k, v in point.items() if k not in fields}


# --- backbones and data (mini profile; the paper profile plugs in here) ---------------------------


def data_root(params: dict) -> str:
    return section(params, "data").get("root", "data/mini")


def _paper_backend(params: dict):
    """The real datasets and checkpoints (``profile: paper``), or None for the mini profile."""
    if params.get("profile", "mini") != "paper":
        return None
    from . import paper_backend

    return paper_backend


def load_vit(params: dict):
    """The frozen ViT backbone of the VPT experiments (pretrained weights loaded) and its config."""
    if (backend := _paper_backend(params)) is not None:
        return backend.load_vit(params)
    from .backbones.vit import VitConfig, create_vit, load_state

    bb = section(params, "backbones")
    cfg = VitConfig.from_dict({k: v for k, v in bb["vit"].items() if k != "weights"})
    model = create_vit(cfg)
    if cfg.arch == "mini":
        path = Path(bb.get("root", "data/backbones")) / "tiny_vit.pt"
        if not path.is_file():
            raise ConfigError(f"{path} not found: run `dvc repro backbone_vit` first")
        load_state(model, path)
    return model, cfg


def load_clip(params: dict, paper: str = "rpo"):
    """The frozen CLIP of the VP and RPO experiments, its tokenizer and config.

    ``paper`` picks the checkpoint in the paper profile (VP: ViT-B/32, RPO: ViT-B/16); the mini
    profile has one CLIP for both.
    """
    if (backend := _paper_backend(params)) is not None:
        return backend.load_clip(params, paper)
    from .backbones.clip import ClipConfig, create_clip, get_tokenizer

    bb = section(params, "backbones")
    cfg = ClipConfig.from_dict({k: v for k, v in bb["clip"].items() if k != "weights"})
    model = create_clip(cfg)
    if cfg.arch == "mini":
        path = Path(bb.get("root", "data/backbones")) / "tiny_clip.pt"
        if not path.is_file():
            raise ConfigError(f"{path} not found: run `dvc repro backbone_clip` first")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), get_tokenizer(cfg, model), cfg


def load_data(params: dict, key: str, split: str, mean, std):
    if (backend := _paper_backend(params)) is not None:
        return backend.load_data(params, key, split, mean, std)
    from .data.store import load_split

    root = data_root(params)
    if not (Path(root) / f"{key}.json").is_file():
        raise ConfigError(f"dataset {key} not found under {root}: check the task name, or run `dvc repro data`")
    return load_split(root, key, split, mean, std)


def dataset_template(params: dict, key: str) -> str | None:
    """The dataset's zero-shot prompt template (CoOp's per-dataset templates in the paper profile)."""
    if (backend := _paper_backend(params)) is not None:
        return backend.dataset_template(params, key)
    from .data.store import load_manifest

    return load_manifest(data_root(params), key).get("template")


def final_split(params: dict, paper: str, key: str) -> str:
    """The split every seed's final run trains on: VPT's train800val200 (``train+val``), else ``train``
    (paper profile: per ``vpt.selection``, e.g. FGVC trains on train)."""
    if (backend := _paper_backend(params)) is not None:
        return backend.final_split(params, paper, key)
    return "train+val" if paper == "vpt" else "train"


def base_new_classes(params: dict, key: str) -> tuple[list, list]:
    """Base and new class halves of a CoOp dataset (CoOp's rule; mini: from its manifest)."""
    if (backend := _paper_backend(params)) is not None:
        return backend.base_new_classes(params, key)
    from .data.store import load_manifest

    m = load_manifest(data_root(params), key)
    return m["base_classes"], m["new_classes"]


def vp_shifted_tests(params: dict) -> dict:
    """VP task -> its style-shifted test copy (mini only: the real datasets have no such copies)."""
    if _paper_backend(params) is not None:
        return {}
    from .data.mini import VP_SHIFTS

    return {f"vp/{n}": f"vp/{n}-{style}" for n, (style, _) in VP_SHIFTS.items()}


def _file_id(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}-{int(st.st_mtime)}"


# --- the cell store (resume) ------------------------------------------------------------------


class CellStore:
    """One JSON per finished cell; a cell is reused only if its fingerprint matches."""

    def __init__(self, root, paper: str, method: str):
        self.dir = Path(root) / paper / method
        self.served: list = []  # every record this run used (reused or new), selection cells included
        self.trained = self.reused = 0  # cells (selection cells included) computed now / found finished

    def compute_time_s(self) -> float:
        """Seconds the served cells took when they were computed (a reused cell counts its first run)."""
        return sum(float(r.get("wall_time_s", 0.0)) for r in self.served)

    def _path(self, cell: str) -> Path:
        return self.dir / f"{cell.replace('/', '_')}.json"

    def get(self, cell: str, fingerprint: str):
        path = self._path(cell)
        if path.is_file():
            try:
                rec = read_json(path)
            except (json.JSONDecodeError, OSError):
                return None
            if rec.get("fingerprint") == fingerprint:
                self.served.append(rec)
                self.reused += 1
                return rec
        return None

    @contextlib.contextmanager
    def lock(self, cell: str):
        """Hold ``cell``'s lock while computing it: a second run (another stage, a Ray worker on a
        shared filesystem) that reaches the same cell waits, then reuses the record. An OS file
        lock (``flock``): the kernel releases it when its holder dies, so a killed run leaves no
        stale lock. The lock file names the holder."""
        path = self.dir / "locks" / f"{cell.replace('/', '_')}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                print(f"[{self.dir.parent.name}/{self.dir.name}] {cell}: waiting for {f.read().strip() or 'another process'}, which is computing it", flush=True)
                fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            f.truncate()
            f.write(f"PID {os.getpid()} on {socket.gethostname()}")
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def compute(self, cell: str, fingerprint: str, make) -> tuple[dict, bool]:
        """``(record, reused)``: the finished record, else ``make()`` stored under the cell's lock."""
        rec = self.get(cell, fingerprint)
        if rec is not None:
            return rec, True
        with self.lock(cell):
            rec = self.get(cell, fingerprint)  # finished by another run while this one waited
            if rec is not None:
                return rec, True
            return self.put(cell, fingerprint, make()), False

    def put(self, cell: str, fingerprint: str, record: dict) -> dict:
        record = {**record, "cell": cell, "fingerprint": fingerprint, "computed_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        write_json(self._path(cell), record)
        self.served.append(record)
        self.trained += 1
        return record

    def checkpoint(self, cell: str, fingerprint: str) -> Path:
        """The running cell's epoch checkpoint, named by its fingerprint: an interrupted run with the
        same settings resumes from it; one left by other settings is deleted, never resumed."""
        d, name = self.dir / "checkpoints", cell.replace("/", "_")
        path = d / f"{name}@{fingerprint}.pt"
        for old in d.glob(f"{name}@*.pt"):
            if old != path:
                old.unlink()
        return path


def cell_code_hash(params: dict, method: str) -> str:
    """Hash of the code a cell of registered ``method`` runs: the method's module, the training
    loop, the data and backbone code, with everything they import (:mod:`visprompt.codehash`),
    plus this module's own code (the protocols). Part of every cell's fingerprint."""
    spec = get_method_spec(method)
    backbone = "visprompt.backbones.vit" if spec.family == "vit" else "visprompt.backbones.clip"
    modules = [spec.builder.__module__, "visprompt.train", "visprompt.data.store", "visprompt.data.splits", backbone]
    if _paper_backend(params) is not None:
        modules.append("visprompt.paper_backend")
    return code_hash(*modules) + code_hash(__name__, closure=False)


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- one training run ---------------------------------------------------------------------------


def _build(paper: str, method: str, backbone_bundle, num_classes: int, classnames, cfg: dict, seed: int, template: str | None = None):
    seed_everything(seed)
    if PAPERS[paper] == "vit":
        backbone, _ = backbone_bundle
        return create_method(method, copy.deepcopy(backbone), num_classes, **cfg)
    clip, tokenizer, _ = backbone_bundle
    spec = get_method_spec(method)
    accepted = inspect.signature(spec.builder).parameters
    if "seed" in accepted and "seed" not in cfg:  # every random initialisation follows the run seed
        cfg = {**cfg, "seed": seed}
    if template is not None and spec.dataset_template:  # the dataset's own prompt template unless params set one
        if "template" in accepted and "template" not in cfg:
            cfg = {**cfg, "template": template}
        elif "templates" in accepted and "templates" not in cfg:
            cfg = {**cfg, "templates": template}
    return create_method(method, copy.deepcopy(clip), tokenizer, list(classnames), **cfg)


def train_and_eval(model, train, evals: dict, recipe: dict, seed: int, trainable: bool, val=None, checkpoint=None, progress=False, desc="train") -> dict:
    """Fit (or, for probes/zero-shot, fit_probe / nothing) then evaluate on each named split."""
    t0 = time.perf_counter()
    record = {"seed": seed}
    if hasattr(model, "fit_probe"):
        record["probe"] = model.fit_probe(train, val if val is not None else train)
    elif trainable and any(p.requires_grad for p in model.parameters()):
        rec = fit(model, train, recipe, seed=seed, checkpoint=checkpoint, progress=progress, desc=desc)
        record.update({k: rec[k] for k in ("history", "plateau", "train_time_s", "train_images_per_s", "features_cached", "peak_memory_mb", "peak_memory_kind", "recipe", "epochs_run")})
        if checkpoint and Path(checkpoint).is_file():
            Path(checkpoint).unlink()  # the cell record replaces it
    from .utils import count_parameters

    record["params"] = count_parameters(model)
    t1 = time.perf_counter()
    for name, (data, classnames) in evals.items():
        if classnames is not None and hasattr(model, "set_classnames"):
            model.set_classnames(classnames)
        r = evaluate(model, data)
        record[f"{name}_top1"] = r["top1"]
    record["eval_time_s"] = time.perf_counter() - t1
    record["wall_time_s"] = time.perf_counter() - t0
    return record


# --- the three protocols -------------------------------------------------------------------------


def _select(params, store, s, task, cell_prefix, train, val, backbone, n_cls, classnames, progress, fp_base) -> dict:
    """Grid search on train/val with the first seed; returns the chosen point and all scores."""
    points = _grid_points(s["grid"])
    if len(points) == 1:
        return {"chosen": points[0], "scores": []}
    seed = s["seeds"][0]
    scores = []
    for point in points:
        r_over, c_over = _split_point(point)
        cell = f"{cell_prefix}/select/" + ",".join(f"{k}={v}" for k, v in sorted(point.items()))
        fp = _fingerprint(fp_base, point, seed)

        def make(cell=cell, fp=fp, point=point, r_over=r_over, c_over=c_over):
            model = _build(s["paper"], s["method"], backbone, n_cls, classnames, {**s["cfg"], **c_over}, seed, dataset_template(params, task))
            return train_and_eval(model, train, {"val": (val, None)}, {**s["recipe"], **r_over}, seed, s["trainable"], val=val,
                                  checkpoint=store.checkpoint(cell, fp), progress=progress, desc=f"{task} select {point}")

        rec, _ = store.compute(cell, fp, make)
        scores.append({"point": point, "val_top1": rec["val_top1"]})
    best = scores[first_within([r["val_top1"] for r in scores])]  # near-ties: the first point in grid order
    return {"chosen": best["point"], "scores": scores}


def _run_supervised(params, s, backbone, tasks, shifted: dict, progress: bool, store) -> list:
    """VPT and VP: select on train/val, then each seed on the final training split, test."""
    results = []
    mean, std = backbone[-1].mean, backbone[-1].std
    bar = tqdm(total=len(tasks) * len(s["seeds"]), desc=f"{s['paper']}/{s['method']}", disable=bars_off(progress))
    for key in tasks:
        train, val, test = (load_data(params, key, sp, mean, std) for sp in ("train", "val", "test"))
        sizes = section(params, s["paper"]).get("subsample")
        if sizes:  # the first N of train and val, as VTAB-1k takes the first 800/200 (mini CPU budget)
            train, val = first_n(train, sizes.get("train")), first_n(val, sizes.get("val"))
        classnames, n_cls = train.classnames, len(train.classnames)
        fp_base = [s["method"], s["cfg"], s["recipe"], key, backbone_id(params, s["paper"]), s["code"], *([sizes] if sizes else [])]
        sel = _select(params, store, s, key, key, train, val, backbone, n_cls, classnames, progress, fp_base)
        r_over, c_over = _split_point(sel["chosen"])
        final_split_ = final_split(params, s["paper"], key)
        if sizes and final_split_ == "train+val":
            final = concat(train, val)
        else:
            final = load_data(params, key, final_split_, mean, std) if final_split_ != "train" else train
        evals = {"test": (test, None)}
        if key in shifted:
            evals["shifted_test"] = (load_data(params, shifted[key], "test", mean, std), None)
        for seed in s["seeds"]:
            cell = f"{key}/seed{seed}"
            fp = _fingerprint(fp_base, sel["chosen"], seed, sorted(evals))

            def make(cell=cell, fp=fp, seed=seed, key=key, final=final, evals=evals, val=val, sel=sel, n_cls=n_cls, classnames=classnames,
                     r_over=r_over, c_over=c_over, final_split_=final_split_):
                model = _build(s["paper"], s["method"], backbone, n_cls, classnames, {**s["cfg"], **c_over}, seed, dataset_template(params, key))
                rec = train_and_eval(model, final, evals, {**s["recipe"], **r_over}, seed, s["trainable"], val=val,
                                     checkpoint=store.checkpoint(cell, fp), progress=progress, desc=f"{key} seed {seed}")
                rec.update({"task": key, "chosen": sel["chosen"], "selection": sel["scores"], "train_split": final_split_, "num_classes": n_cls})
                if hasattr(model, "prompter"):
                    rec["prompt_image"] = _prompt_image(model, mean, std)
                return rec

            rec, reused = store.compute(cell, fp, make)
            results.append(rec)
            bar.update()
            log_cell(bar, s, cell, rec, len(results), reused)
    bar.close()
    return results


def first_n(data, n):
    """The first ``n`` items of a split (all of it when ``n`` is None or not smaller)."""
    return data if n is None or int(n) >= len(data) else data.subset(np.arange(int(n)))


def concat(a, b):
    """Two splits of one dataset as one (VPT's final runs train on train + val)."""
    from .data.base import TensorImageDataset

    return TensorImageDataset(np.concatenate([a.images, b.images]), np.concatenate([a.labels, b.labels]), a.classnames, a.mean, a.std, a.name)


def _prompt_image(model, mean, std) -> list:
    """The learned prompt de-normalised to a uint8 HxWx3 image, kept in the metrics (small)."""
    from .methods.visual_prompt import render_prompt

    arr = np.asarray(render_prompt(model.prompter, mean, std))  # float in [0, 1]
    return np.round(arr * 255).astype(np.uint8).tolist()


def _fewshot_data(params, dataset: str, shots: int, seed: int, mean, std, classes=None):
    """Few-shot train/val from the shared split file, optionally restricted to ``classes`` (relabelled)."""
    from .data.splits import load_split_indices

    rec = load_split_indices(section(params, "splits").get("root", "data/splits"), dataset, shots, seed)
    key = f"coop/{dataset}"
    out = []
    for split in ("train", "val"):
        full = load_data(params, key, split, mean, std)
        idx = np.asarray(rec[split])
        out.append(_restrict(full.subset(idx), classes))
    return out, rec


def _restrict(data, classes):
    if classes is None:
        return data
    keep = np.flatnonzero(np.isin(data.labels, classes))
    return data.subset(keep, labels=np.searchsorted(classes, data.labels[keep]), classnames=[data.classnames[c] for c in classes])


def _run_rpo(params, s, backbone, progress: bool, store) -> list:
    p = section(params, "rpo")
    mean, std = backbone[-1].mean, backbone[-1].std
    results = []
    jobs = []
    if "base2new" in s["protocols"]:
        b = p["base2new"]
        jobs += [("base2new", d, int(b["shots"]), seed) for d in b["datasets"] for seed in s["seeds"]]
    if "dg" in s["protocols"]:
        g = p["dg"]
        jobs += [("dg", g["source"], int(g["shots"]), seed) for seed in s["seeds"]]
    if "fewshot" in s["protocols"]:
        f = p["fewshot"]
        seeds = [int(x) for x in f.get("seeds", s["seeds"])]
        jobs += [("fewshot", d, int(k), seed) for d in f["datasets"] for k in f["shots"] for seed in seeds]
    bar = tqdm(total=len(jobs), desc=f"rpo/{s['method']}", disable=bars_off(progress))
    for protocol, dataset, shots, seed in jobs:
        cell = f"{protocol}/{dataset}/shots{shots}/seed{seed}"
        ds_over = s["overrides"].get(dataset)  # a dataset override (paper: CoOp's ImageNet epochs) applies after the protocol's
        fp = _fingerprint(s["method"], s["cfg"], s["recipe"], s["overrides"].get(protocol), cell, backbone_id(params, "rpo"), p.get(protocol), s["code"], *([ds_over] if ds_over else []))

        def make(protocol=protocol, dataset=dataset, shots=shots, seed=seed, cell=cell, fp=fp, ds_over=ds_over):
            test = load_data(params, f"coop/{dataset}", "test", mean, std)
            names = test.classnames
            if protocol == "base2new":
                base, new = base_new_classes(params, f"coop/{dataset}")
                (train, val), _ = _fewshot_data(params, dataset, shots, seed, mean, std, classes=base)
                evals = {"base": (_restrict(test, base), [names[c] for c in base]), "new": (_restrict(test, new), [names[c] for c in new])}
                classnames = [names[c] for c in base]
            else:
                (train, val), _ = _fewshot_data(params, dataset, shots, seed, mean, std)
                classnames = names
                evals = {"test": (test, names)}
                if protocol == "dg":
                    for target in p["dg"]["targets"]:
                        # scored over the target's own classes: ImageNet-A/-R hold 200 of ImageNet's 1,000
                        # (CoOp's rule); the mini copies have exactly the source's classes
                        tgt = load_data(params, f"coop/{target}", "test", mean, std)
                        evals[target] = (tgt, list(tgt.classnames))
            over, ds_over = s["overrides"].get(protocol) or {}, ds_over or {}
            cfg = {**s["cfg"], **(over.get("cfg") or {}), **(ds_over.get("cfg") or {})}
            recipe = {**s["recipe"], **(over.get("recipe") or {}), **(ds_over.get("recipe") or {})}
            model = _build("rpo", s["method"], backbone, len(classnames), classnames, cfg, seed, dataset_template(params, f"coop/{dataset}"))
            rec = train_and_eval(model, train, evals, recipe, seed, s["trainable"], val=val, checkpoint=store.checkpoint(cell, fp), progress=progress, desc=cell)
            if protocol == "base2new":
                rec["hm"] = harmonic_mean(rec["base_top1"], rec["new_top1"])
            rec.update({"protocol": protocol, "dataset": dataset, "shots": shots, "train_images": len(train)})
            return rec

        rec, reused = store.compute(cell, fp, make)
        results.append(rec)
        bar.update()
        log_cell(bar, s, cell, rec, len(results), reused)
    bar.close()
    return results


def log_cell(bar, s: dict, cell: str, rec: dict, done: int, reused: bool) -> None:
    """One line per finished cell (``paper/method i/N cell: metric (trained T s | reused)``): the
    progress a papermill stage shows on the terminal (``--stdout-file``), and the notebook's log."""
    shown = [f"{k.removesuffix('_top1')} {rec[k]:.1f}" for k in ("test_top1", "base_top1", "new_top1", "hm") if isinstance(rec.get(k), (int, float))]
    when = "reused" if reused else f"trained in {rec.get('wall_time_s', 0.0):.0f} s"
    bar.write(f"[{s['paper']}/{s['method']}] {done}/{bar.total} {cell}: {', '.join(shown) or 'done'} ({when})")


def harmonic_mean(a: float, b: float) -> float:
    """HM of base and new accuracy, as CoCoOp/RPO report it (per dataset; the average HM is the HM of the averages)."""
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def backbone_id(params: dict, paper: str) -> str:
    if (backend := _paper_backend(params)) is not None:
        return backend.backbone_id(params, paper)
    bb = section(params, "backbones")
    name = "vit" if PAPERS[paper] == "vit" else "clip"
    path = Path(bb.get("root", "data/backbones")) / f"tiny_{name}.pt"
    return _file_id(path) if path.is_file() else json.dumps(bb.get(name), sort_keys=True)


def check_method(params: dict, paper: str, method: str) -> dict:
    """Validate everything a train stage needs, before loading any data or model."""
    s = method_settings(params, paper, method)
    p = section(params, paper)
    backend = _paper_backend(params)
    if paper in ("vpt", "vp") and backend is not None:
        if p.get("subsample"):
            raise ConfigError(f"{paper}.subsample is for the mini profile (its VTAB-mini/VP-mini splits); remove it from the paper params")
        backend.check_method(params, paper, s)
    elif paper in ("vpt", "vp"):
        from .data.mini import all_tasks

        known = all_tasks(section(params, "data").get("sizes"))
        for key in s["tasks"]:
            if key not in known:
                raise unknown_name(f"{paper}.tasks entry", key, [k for k, t in known.items() if t.suite in ("vtab", "fgvc", "vp")])
        if not s["tasks"]:
            raise ConfigError(f"{paper}.tasks is empty; list tasks such as vtab/shapes")
        _check_subsample(p.get("subsample"), paper)
    else:
        for proto in s["protocols"]:
            if proto not in RPO_PROTOCOLS:
                raise unknown_name("rpo protocol", proto, RPO_PROTOCOLS)
            if proto not in p:
                raise ConfigError(f"rpo.{proto} section missing in params.yaml")
        split_shots = {int(k) for k in section(params, "splits")["shots"]}
        split_seeds = {int(k) for k in section(params, "splits")["seeds"]}
        needed = set()
        if "fewshot" in s["protocols"]:
            needed |= {int(k) for k in p["fewshot"]["shots"]}
        for proto in ("base2new", "dg"):
            if proto in s["protocols"]:
                needed.add(int(p[proto]["shots"]))
        if needed - split_shots:
            raise ConfigError(f"rpo needs shots {sorted(needed - split_shots)} that splits.shots does not make; add them to splits.shots")
        seeds = set(s["seeds"]) | {int(x) for x in p.get("fewshot", {}).get("seeds", [])}
        if seeds - split_seeds:
            raise ConfigError(f"rpo needs seeds {sorted(seeds - split_seeds)} that splits.seeds does not make; add them to splits.seeds")
        if backend is not None:
            backend.check_method(params, paper, s)
    return s


def _check_subsample(sizes, paper: str) -> None:
    """``<paper>.subsample``: ``{train: N, val: M}`` with positive integers (mini profile only)."""
    if not sizes:
        return
    if not isinstance(sizes, dict) or set(sizes) - {"train", "val"}:
        raise ConfigError(f"{paper}.subsample must map train/val to image counts, e.g. {{train: 400, val: 100}}; got {sizes!r}")
    for k, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{paper}.subsample.{k} must be a positive integer, got {v!r}")


def run_method(params: dict, paper: str, method: str, progress: bool | None = None, runs_root: str | None = None) -> dict:
    """Every cell of ``method`` for ``paper``; returns the metrics written by the train stage."""
    s = check_method(params, paper, method)
    s["code"] = cell_code_hash(params, s["method"])
    t0 = time.perf_counter()
    set_threads(params)
    store = CellStore(runs_root or section(params, "data").get("runs", "data/runs"), paper, method)  # run name
    if PAPERS[paper] == "vit":
        backbone = load_vit(params)
        cells = _run_supervised(params, s, backbone, s["tasks"], {}, progress, store)
    elif paper == "vp":
        backbone = load_clip(params, "vp")
        cells = _run_supervised(params, s, backbone, s["tasks"], vp_shifted_tests(params), progress, store)
    else:
        backbone = load_clip(params, "rpo")
        cells = _run_rpo(params, s, backbone, progress, store)
    return {
        "paper": paper,
        "method": method,  # the run name (params key)
        "registered_method": s["method"],
        "settings": {k: s[k] for k in ("cfg", "recipe", "grid", "seeds", "tasks", "protocols")},
        "code_hash": s["code"],
        "cells": [{k: v for k, v in c.items() if k not in ("fingerprint",)} for c in cells],
        "summary": summarise(cells),
        "stage_time_s": round(time.perf_counter() - t0, 1),
        "compute_time_s": round(store.compute_time_s(), 1),
        "cells_trained": store.trained,  # selection cells included
        "cells_reused": store.reused,
        "computed_at": max((r["computed_at"] for r in store.served if r.get("computed_at")), default=None),  # the newest cell
        "environment": environment_info(),
    }


def summarise(cells: list) -> dict:
    """Mean and std over seeds of every ``*_top1`` (and ``hm``) per task/protocol, for `dvc metrics show`."""
    groups: dict = {}
    for c in cells:
        key = c.get("task") or f"{c['protocol']}/{c['dataset']}" + (f"/shots{c['shots']}" if c.get("protocol") == "fewshot" else "")
        for k, v in c.items():
            if (k.endswith("_top1") or k == "hm") and isinstance(v, (int, float)):
                groups.setdefault(key, {}).setdefault(k, []).append(v)
    out = {}
    for key, metrics in groups.items():
        out[key] = {}
        for k, vals in metrics.items():
            out[key][k] = round(float(np.mean(vals)), 2)
            if len(vals) > 1:
                out[key][k + "_std"] = round(float(np.std(vals, ddof=1)), 2)
    return out


def flat_metrics(result: dict) -> dict:
    """A run's few headline numbers, the same keys for every run of a paper (a DVC ``metrics:``
    file: ``dvc metrics show`` and ``dvc exp show`` print one column per key, so they stay short).
    vpt/vp: ``top1`` (mean over tasks of the seed mean), ``std`` (mean over tasks of the seed
    std), vp ``shift`` (the same on the shifted copies); rpo: ``hm`` (base→new HM of the average
    base and new), ``fewshot`` (mean over datasets and shots) and its ``std``; every trained run:
    ``conv``, the fraction of its cells whose training loss plateaued."""
    summary, out = result.get("summary") or {}, {}

    def mean_of(keys, field):
        vals = [summary[k][field] for k in keys if isinstance(summary[k].get(field), (int, float))]
        return round(float(np.mean(vals)), 2) if vals else None

    if result["paper"] == "rpo":
        b2n = [k for k in summary if k.startswith("base2new/")]
        base, new = mean_of(b2n, "base_top1"), mean_of(b2n, "new_top1")
        few = [k for k in summary if k.startswith("fewshot/")]
        out = {"hm": round(harmonic_mean(base, new), 2) if base is not None and new is not None else None,
               "fewshot": mean_of(few, "test_top1"), "std": mean_of(few, "test_top1_std")}
    else:
        out = {"top1": mean_of(summary, "test_top1"), "std": mean_of(summary, "test_top1_std")}
        if result["paper"] == "vp":
            out["shift"] = mean_of(summary, "shifted_test_top1")
    trained = [c for c in result["cells"] if "plateau" in c]
    if trained:
        out["conv"] = round(sum(bool((c["plateau"] or {}).get("converged")) for c in trained) / len(trained), 2)
    return {k: v for k, v in out.items() if v is not None}


def history_rows(result: dict) -> list[dict]:
    """Per epoch, the run's mean training loss and top-1 over its final cells (a DVC ``plots:``
    TSV; the per-cell curves are in the run record and the training notebook)."""
    by_epoch: dict = {}
    for c in result["cells"]:
        for h in c.get("history") or []:
            by_epoch.setdefault(int(h["epoch"]) + 1, []).append(h)
    rows = []
    for epoch in sorted(by_epoch):
        hs = by_epoch[epoch]
        row = {"epoch": epoch, "train_loss": round(float(np.mean([h["loss"] for h in hs])), 4)}
        tops = [h["train_top1"] for h in hs if isinstance(h.get("train_top1"), (int, float))]
        if tops:
            row["train_top1"] = round(float(np.mean(tops)), 2)
        rows.append({**row, "cells": len(hs)})
    return rows


def output_paths(out_root, paper: str, run: str) -> dict:
    """Where a run's outputs go under ``out_root``: the whole record (``records/``), the flat
    metrics (``metrics/``) and the per-epoch history (``plots/``)."""
    root = Path(out_root)
    return {"record": root / "records" / paper / f"{run}.json", "metrics": root / "metrics" / paper / f"{run}.json",
            "plots": root / "plots" / paper / f"{run}.tsv"}


def write_outputs(result: dict, out_root) -> dict:
    """The run record, its flat metrics and its history TSV under ``out_root`` (``reports`` in the
    DVC stages; a scratch folder when a notebook or ``visprompt train`` is run by hand)."""
    paths = output_paths(out_root, result["paper"], result["method"])
    write_json(paths["record"], result)
    write_json(paths["metrics"], flat_metrics(result))
    rows = history_rows(result)
    cols = ["epoch", "train_loss", "train_top1", "cells"]
    cols = [c for c in cols if any(c in r for r in rows)] or ["epoch", "train_loss"]
    paths["plots"].parent.mkdir(parents=True, exist_ok=True)
    paths["plots"].write_text("\t".join(cols) + "\n" + "".join("\t".join(str(r.get(c, "")) for c in cols) + "\n" for r in rows))
    return {k: str(v) for k, v in paths.items()}


def cells_frame(result: dict):
    """The cells of a run as a pandas DataFrame (one row per cell; no histories)."""
    import pandas as pd

    rows = []
    for c in result["cells"]:
        row = {k: v for k, v in c.items() if not isinstance(v, (list, dict))}
        row.update({"trainable_params": c["params"]["trainable"], "total_params": c["params"]["total"]})
        rows.append(row)
    return pd.DataFrame(rows)
