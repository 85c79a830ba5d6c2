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
import dataclasses
import inspect
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .cells import CellStore, fingerprint
from .codehash import code_hash
from .errors import ConfigError
from .methods.registry import create_method, get_method_spec, list_methods
from .outputs import cells_frame, compute_summary, flat_metrics, history_rows, output_paths, summarise, write_outputs  # noqa: F401 (the notebooks' API)
from .papers import PAPERS
from .schema import checked
from .settings import RPO_PROTOCOLS, RunSettings
from .train import Recipe, eval_record, evaluate, fit
from .utils import bars_off, count_parameters, environment_info, first_within, harmonic_mean, seed_everything, set_threads
from .worlds import World, world_for

# --- settings ----------------------------------------------------------------------------------


def method_settings(params: dict, paper: str, method: str) -> RunSettings:
    """Typed settings of one run: paper defaults overridden by ``<paper>.methods.<method>``, from
    params checked by the schema."""
    return RunSettings.from_params(checked(params), paper, method)


def _split_point(point: dict) -> tuple[dict, dict]:
    fields = Recipe.__dataclass_fields__
    return {k: v for k, v in point.items() if k in fields}, {k: v for k, v in point.items() if k not in fields}


# --- backbones and data: the world (visprompt.worlds) ---------------------------------------------


def load_vit(params: dict):
    """The frozen ViT of the VPT experiments and its config (info), from ``params``' world."""
    return world_for(params).load_vit()


def load_clip(params: dict, paper: str = "rpo"):
    """The frozen CLIP of ``paper``'s experiments, its tokenizer and config (info), from ``params``' world."""
    return world_for(params).load_clip(paper)


def cell_code_modules(world: World, method: str) -> tuple[list, list]:
    """The code a cell of registered ``method`` runs, as ``(hashed with their imports, hashed
    alone)``: the method's module, the training loop, the split and backbone code and the world's
    loaders with everything they import (:mod:`visprompt.codehash`); this module (the protocols)
    and the world's own module by themselves. The train stages' DVC deps list the same files."""
    spec = get_method_spec(method)
    backbone = "visprompt.backbones.vit" if spec.family == "vit" else "visprompt.backbones.clip"
    return [spec.builder.__module__, "visprompt.train", "visprompt.data.splits", backbone, *world.code_modules], [__name__, "visprompt.papers", "visprompt.settings", type(world).__module__]


def cell_code_hash(world: World, method: str) -> str:
    """Hash of :func:`cell_code_modules`: part of every cell's fingerprint."""
    closure, alone = cell_code_modules(world, method)
    return code_hash(*closure) + code_hash(*alone, closure=False)


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


def train_and_eval(model, train, evals: dict, recipe: Recipe, seed: int, trainable: bool, val=None, checkpoint=None, progress=False, desc="train",
                   device=None) -> dict:
    """Fit (or, for probes/zero-shot, fit_probe / nothing) then evaluate on each named split, on
    ``device`` (the world's; default the CPU). ``precision``: the training's (``fit``'s record),
    else the evaluation's; ``eval_precision``: the evaluation's (``train.predict``'s rule)."""
    t0 = time.perf_counter()
    device = torch.device(device or "cpu")
    model.to(device)
    record = {"seed": seed, **eval_record(device)}
    record["eval_precision"] = record["precision"]
    if hasattr(model, "fit_probe"):
        record["probe"] = model.fit_probe(train, val if val is not None else train)
    elif trainable and any(p.requires_grad for p in model.parameters()):
        rec = fit(model, train, recipe, seed=seed, checkpoint=checkpoint, progress=progress, desc=desc, device=device)
        record.update({k: rec[k] for k in ("history", "plateau", "train_time_s", "train_images_per_s", "features_cached", "peak_memory_mb", "peak_memory_kind", "recipe", "epochs_run",
                                           "device", "device_name", "device_count", "precision")})
        if checkpoint and Path(checkpoint).is_file():
            Path(checkpoint).unlink()  # the cell record replaces it
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


def _select_cell(task: str, point: dict) -> str:
    return f"{task}/select/" + ",".join(f"{k}={v}" for k, v in sorted(point.items()))


def _select(world: World, store, s: RunSettings, task, train, val, backbone, classnames, progress, fp_base, wanted=None) -> dict | None:
    """Grid search on train/val with the first seed; returns the chosen point and all scores
    (None when ``wanted`` leaves a grid point that is not finished yet)."""
    points = s.grid_points()
    if len(points) == 1:
        return {"chosen": points[0], "scores": []}
    seed = s.seeds[0]
    scores, unfinished = [], False
    for point in points:
        r_over, c_over = _split_point(point)
        cell = _select_cell(task, point)
        fp = fingerprint(fp_base, point, seed)
        if wanted is not None and cell not in wanted:
            rec = store.get(cell, fp)
            if rec is None:  # another job's, still running: this one computes its own points only
                unfinished = True
            else:
                scores.append({"point": point, "val_top1": rec["val_top1"]})
            continue

        def make():
            model = _build(s.paper, s.method, backbone, len(classnames), classnames, {**s.cfg, **c_over}, seed, world.dataset_template(task))
            return train_and_eval(model, train, {"val": (val, None)}, Recipe.from_dict({**s.recipe, **r_over}), seed, s.trainable, val=val, device=world.device,
                                  checkpoint=store.checkpoint(cell, fp), progress=progress, desc=f"{task} select {point}")

        rec, _ = store.compute(cell, fp, make)
        scores.append({"point": point, "val_top1": rec["val_top1"]})
    if unfinished:
        return None
    best = scores[first_within([r["val_top1"] for r in scores])]  # near-ties: the first point in grid order
    return {"chosen": best["point"], "scores": scores}


def _run_supervised(world: World, s: RunSettings, backbone, progress: bool, store, wanted=None) -> list:
    """VPT and VP: select on train/val, then each seed on the final training split, test (and the
    world's shifted copy of the test set, where it has one). ``wanted``: compute only these cells."""
    results = []
    mean, std = backbone[-1].mean, backbone[-1].std
    shifted = world.shifted_tests(s.paper)
    bar = tqdm(total=len(s.tasks) * len(s.seeds), desc=f"{s.paper}/{s.method}", disable=bars_off(progress))
    for key in s.tasks:
        if wanted is not None and not any(c.startswith(f"{key}/") for c in wanted):
            continue
        train, val, test = (world.load_data(key, sp, mean, std) for sp in ("train", "val", "test"))
        sizes = s.subsample
        if sizes:  # the first N of train and val, as VTAB-1k takes the first 800/200 (mini CPU budget)
            train, val = first_n(train, sizes.train), first_n(val, sizes.val)
        classnames = train.classnames
        fp_base = [s.method, s.cfg, s.recipe, key, world.backbone_id(s.paper), s.code, *([s.fingerprinted(sizes)] if sizes else [])]
        sel = _select(world, store, s, key, train, val, backbone, classnames, progress, fp_base, wanted)
        finals = [f"{key}/seed{seed}" for seed in s.seeds if wanted is None or f"{key}/seed{seed}" in wanted]
        if sel is None:
            if finals:
                raise RuntimeError(f"{s.paper}/{s.run} {finals[0]} needs the selection cells of {key} first (plan_cells: 'after')")
            continue
        r_over, c_over = _split_point(sel["chosen"])
        final_split = world.final_split(s.paper, key)
        if sizes and final_split == "train+val":
            final = concat(train, val)
        else:
            final = world.load_data(key, final_split, mean, std) if final_split != "train" else train
        evals = {"test": (test, None)}
        if key in shifted:
            evals["shifted_test"] = (world.load_data(shifted[key], "test", mean, std), None)
        for seed in s.seeds:
            cell = f"{key}/seed{seed}"
            if cell not in finals:
                continue
            fp = fingerprint(fp_base, sel["chosen"], seed, sorted(evals))

            def make():
                model = _build(s.paper, s.method, backbone, len(classnames), classnames, {**s.cfg, **c_over}, seed, world.dataset_template(key))
                rec = train_and_eval(model, final, evals, Recipe.from_dict({**s.recipe, **r_over}), seed, s.trainable, val=val, device=world.device,
                                     checkpoint=store.checkpoint(cell, fp), progress=progress, desc=f"{key} seed {seed}")
                rec.update({"task": key, "chosen": sel["chosen"], "selection": sel["scores"], "train_split": final_split, "num_classes": len(classnames)})
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


def _fewshot_data(world: World, s: RunSettings, dataset: str, shots: int, seed: int, mean, std, classes=None):
    """Few-shot train/val from the shared split file, optionally restricted to ``classes`` (relabelled)."""
    from .data.splits import load_split_indices

    rec = load_split_indices(s.splits_root, dataset, shots, seed)
    out = []
    for split in ("train", "val"):
        full = world.load_data(f"coop/{dataset}", split, mean, std)
        out.append(_restrict(full.subset(np.asarray(rec[split])), classes))
    return out


def _restrict(data, classes):
    if classes is None:
        return data
    keep = np.flatnonzero(np.isin(data.labels, classes))
    return data.subset(keep, labels=np.searchsorted(classes, data.labels[keep]), classnames=[data.classnames[c] for c in classes])


def _rpo_cell(protocol: str, dataset: str, shots: int, seed: int) -> str:
    return f"{protocol}/{dataset}/shots{shots}/seed{seed}"


def _run_rpo(world: World, s: RunSettings, backbone, progress: bool, store, wanted=None) -> list:
    """RPO and its baselines: every (protocol, dataset, shots, seed) cell (``wanted``: only these)."""
    mean, std = backbone[-1].mean, backbone[-1].std
    results = []
    jobs = [j for j in s.rpo_jobs() if wanted is None or _rpo_cell(*j) in wanted]
    bar = tqdm(total=len(jobs), desc=f"rpo/{s.method}", disable=bars_off(progress))
    for protocol, dataset, shots, seed in jobs:
        cell = _rpo_cell(protocol, dataset, shots, seed)
        ds_over = s.overrides.get(dataset)  # a dataset override (paper: CoOp's ImageNet epochs) applies after the protocol's
        fp = fingerprint(s.method, s.cfg, s.recipe, s.fingerprinted(s.overrides.get(protocol)), cell, world.backbone_id("rpo"),
                         s.fingerprinted(s.protocol(protocol)), s.code, *([s.fingerprinted(ds_over)] if ds_over else []))

        def make():
            key = f"coop/{dataset}"
            test = world.load_data(key, "test", mean, std)
            names = test.classnames
            if protocol == "base2new":
                base, new = world.base_new_classes(key)
                train, val = _fewshot_data(world, s, dataset, shots, seed, mean, std, classes=base)
                evals = {"base": (_restrict(test, base), [names[c] for c in base]), "new": (_restrict(test, new), [names[c] for c in new])}
                classnames = [names[c] for c in base]
            else:
                train, val = _fewshot_data(world, s, dataset, shots, seed, mean, std)
                classnames = names
                evals = {"test": (test, names)}
                if protocol == "dg":
                    for target in s.dg.targets:
                        # scored over the target's own classes: ImageNet-A/-R hold 200 of ImageNet's 1,000
                        # (CoOp's rule); the mini copies have exactly the source's classes
                        tgt = world.load_data(f"coop/{target}", "test", mean, std)
                        evals[target] = (tgt, list(tgt.classnames))
            cfg, recipe = s.layers(protocol, dataset)
            model = _build("rpo", s.method, backbone, len(classnames), classnames, cfg, seed, world.dataset_template(key))
            rec = train_and_eval(model, train, evals, Recipe.from_dict(recipe), seed, s.trainable, val=val, device=world.device,
                                 checkpoint=store.checkpoint(cell, fp), progress=progress, desc=cell)
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


def log_cell(bar, s: RunSettings, cell: str, rec: dict, done: int, reused: bool) -> None:
    """One line per finished cell (``paper/method i/N cell: metric (trained T s | reused)``): the
    progress a papermill stage shows on the terminal (``--stdout-file``), and the notebook's log."""
    shown = [f"{k.removesuffix('_top1')} {rec[k]:.1f}" for k in ("test_top1", "base_top1", "new_top1", "hm") if isinstance(rec.get(k), (int, float))]
    when = "reused" if reused else f"trained in {rec.get('wall_time_s', 0.0):.0f} s"
    bar.write(f"[{s.paper}/{s.method}] {done}/{bar.total} {cell}: {', '.join(shown) or 'done'} ({when})")


def check_method(params: dict, paper: str, method: str, world: World | None = None) -> RunSettings:
    """Validate everything a train stage needs, before loading any data or model: the params (the
    schema: types, ranges, the layout, the splits RPO reads), then what only the world knows (its
    tasks and files). Returns the run's typed settings."""
    params = checked(params)
    s = RunSettings.from_params(params, paper, method)
    (world or world_for(params)).check_method(s)
    return s


def plan_cells(params: dict, paper: str, method: str) -> list[dict]:
    """Every cell of a run, named as the cell store names them, without loading anything:
    ``{"cell": name, "after": [cells that must be finished first]}`` (a final VPT/VP cell needs
    its task's grid-search cells). What a scheduler (``visprompt.launch``, Ray) hands out."""
    s = method_settings(params, paper, method)
    if paper == "rpo":
        return [{"cell": _rpo_cell(*job), "after": []} for job in s.rpo_jobs()]
    points = s.grid_points()
    out = []
    for task in s.tasks:
        select = [_select_cell(task, point) for point in points] if len(points) > 1 else []
        out += [{"cell": c, "after": []} for c in select] + [{"cell": f"{task}/seed{seed}", "after": select} for seed in s.seeds]
    return out


def run_method(params: dict, paper: str, method: str, progress: bool | None = None, runs_root: str | None = None, cells=None) -> dict:
    """Every cell of ``method`` for ``paper``; returns the metrics written by the train stage.
    ``cells``: compute only these (names from :func:`plan_cells`; one Ray task each), reusing
    finished ones they need; the result then holds only those."""
    params = checked(params)
    world = world_for(params)
    s = check_method(params, paper, method, world)
    wanted = None if cells is None else set(cells)
    if wanted is not None and wanted - {c["cell"] for c in plan_cells(params, paper, method)}:
        raise ConfigError(f"{paper}/{method} has no cell {sorted(wanted - {c['cell'] for c in plan_cells(params, paper, method)})[0]!r}; see experiments.plan_cells")
    s = dataclasses.replace(s, code=cell_code_hash(world, s.method))
    t0 = time.perf_counter()
    set_threads(params)
    store = CellStore(runs_root or s.runs_root, paper, method)  # run name
    if PAPERS[paper] == "vit":
        cells = _run_supervised(world, s, world.load_vit(), progress, store, wanted)
    elif paper == "vp":
        cells = _run_supervised(world, s, world.load_clip("vp"), progress, store, wanted)
    else:
        cells = _run_rpo(world, s, world.load_clip("rpo"), progress, store, wanted)
    return {
        "paper": paper,
        "method": method,  # the run name (params key)
        "registered_method": s.method,
        "settings": s.record(),
        "code_hash": s.code,
        "cells": [{k: v for k, v in c.items() if k not in ("fingerprint",)} for c in cells],
        "summary": summarise(cells),
        "stage_time_s": round(time.perf_counter() - t0, 1),
        "compute_time_s": round(store.compute_time_s(), 1),
        "cells_trained": store.trained,  # selection cells included
        "cells_reused": store.reused,
        "computed_at": max((r["computed_at"] for r in store.served if r.get("computed_at")), default=None),  # the newest cell
        "compute": compute_summary(cells),
        "environment": environment_info(world.device),
    }
