"""Run records as tables and figures: shared by the training notebooks and the paper reports.

Measured numbers come only from ``reports/records`` (the train stages' run records); published
numbers come only from ``visprompt.published``. Every table says which is which in its columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

METRICS_DIR = Path("reports/records")  # the train stages' whole run records (reports/metrics holds their flat summaries)


def cells_table(result: dict) -> pd.DataFrame:
    """One row per finished cell: task/protocol, seed, accuracies, parameter counts, time."""
    rows = []
    for c in result["cells"]:
        row = {k: c[k] for k in ("task", "protocol", "dataset", "shots", "seed") if k in c}
        row.update({k: round(v, 2) for k, v in c.items() if (k.endswith("_top1") or k == "hm") and isinstance(v, (int, float))})
        row["trainable"] = c["params"]["trainable"]
        row["total"] = c["params"]["total"]
        if "chosen" in c:
            row["chosen"] = ", ".join(f"{k}={v}" for k, v in c["chosen"].items()) or "-"
        row["train_s"] = round(c.get("train_time_s", 0.0), 1)
        if c.get("train_images_per_s"):
            row["img/s"] = round(c["train_images_per_s"])
        rows.append(row)
    return pd.DataFrame(rows)


def run_summary(result: dict) -> str:
    """What this execution did: cells trained now vs reused from the cell store, and what their
    computation cost when it happened (a reused cell keeps its first run's time and date)."""
    trained, reused = result.get("cells_trained"), result.get("cells_reused")
    head = (f"{trained} cells trained now, {reused} reused" if trained is not None else f"{len(result['cells'])} cells")
    when = f", newest computed {result['computed_at']}" if result.get("computed_at") else ""
    return (f"{result['paper']}/{result['method']}: {head} (selection cells included); computing them took "
            f"{result.get('compute_time_s', 0.0):.0f} s{when}; this execution took {result.get('stage_time_s', 0.0):.0f} s.")


def selection_table(result: dict) -> pd.DataFrame:
    """The grid search of every task: setting → validation top-1, and which was chosen (first seed)."""
    rows, seen = [], set()
    for c in result["cells"]:
        key = c.get("task")
        if not c.get("selection") or key in seen:
            continue
        seen.add(key)
        for s in c["selection"]:
            setting = ", ".join(f"{k}={v}" for k, v in s["point"].items()) or "-"
            rows.append({"task": key, "setting": setting, "val_top1": round(float(s["val_top1"]), 1),
                         "chosen": "✓" if s["point"] == c.get("chosen") else ""})
    return pd.DataFrame(rows)


def plot_histories(result: dict, max_lines: int = 60):
    """Training loss and training top-1 per epoch of every trained cell: one colour per task (rpo:
    protocol/dataset), one line per seed, a legend naming the colours. The final runs train on
    train + val (VPT's protocol), so there is no per-epoch validation curve to draw; the grid
    search's validation scores are in :func:`selection_table`."""
    import matplotlib.pyplot as plt

    cells = [c for c in result["cells"] if c.get("history")][:max_lines]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    if not cells:
        axes[0].set_title("no trained cells (zero-shot / probe)")
        return fig
    groups = list(dict.fromkeys(c.get("task") or f"{c.get('protocol')}/{c.get('dataset')}" for c in cells))
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    labelled = set()
    for c in cells:
        g = c.get("task") or f"{c.get('protocol')}/{c.get('dataset')}"
        colour, label = colours(groups.index(g) % colours.N), (g if g not in labelled else None)
        labelled.add(g)
        epochs = [e["epoch"] + 1 for e in c["history"]]
        axes[0].plot(epochs, [e["loss"] for e in c["history"]], color=colour, alpha=0.6, lw=1, label=label)
        if all("train_top1" in e for e in c["history"]):
            axes[1].plot(epochs, [e["train_top1"] for e in c["history"]], color=colour, alpha=0.6, lw=1)
    axes[0].set(xlabel="epoch", ylabel="training loss", title=f"{result['paper']} / {result['method']}: {len(cells)} runs")
    axes[1].set(xlabel="epoch", ylabel="training top-1 (%)", title="training accuracy")
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def load_metrics(paper: str, root=METRICS_DIR) -> dict:
    """All train-stage metrics of a paper: run name -> result dict."""
    out = {}
    for path in sorted((Path(root) / paper).glob("*.json")):
        with open(path) as f:
            out[path.stem] = json.load(f)
    return out


def mean_std(values) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return "–"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def save_table(df: pd.DataFrame, out_dir, name: str) -> None:
    """Write a table as markdown and CSV under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(df.to_markdown(index=False) + "\n")


def save_figure(fig, out_dir, name: str) -> str:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return str(path)
