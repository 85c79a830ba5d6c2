"""What a train stage writes for DVC and the reports: the whole run record, a few flat metrics
(``dvc metrics show``), the per-epoch history (``dvc plots``), and summaries over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .utils import harmonic_mean, write_json


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


def compute_summary(cells: list) -> dict:
    """Where a run's cells were computed: each distinct device name, count and precision, with how
    many cells each (a run replayed from a cell store may mix machines)."""
    seen: dict = {}
    for c in cells:
        if "device" in c:
            key = (c["device"], c.get("device_name"), c.get("device_count"), c.get("precision"))
            seen[key] = seen.get(key, 0) + 1
    return {"devices": [{"device": d, "device_name": n, "device_count": k, "precision": p, "cells": m} for (d, n, k, p), m in seen.items()]}


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
