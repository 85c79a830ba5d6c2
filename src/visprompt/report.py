"""Tables and figures shared by the notebooks; paper-specific reports live in ``visprompt.reports``.

Measured numbers come only from ``reports/metrics`` (written by the train stages); published
numbers come only from ``visprompt.published``. Every table says which is which in its columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

METRICS_DIR = Path("reports/metrics")


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


def plot_histories(result: dict, max_lines: int = 40):
    """Training loss per epoch of every trained cell (one line per cell)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    n = 0
    for c in result["cells"]:
        h = c.get("history")
        if h and n < max_lines:
            ax.plot([e["epoch"] + 1 for e in h], [e["loss"] for e in h], alpha=0.5, lw=1)
            n += 1
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"{result['paper']} / {result['method']}: {n} runs" if n else "no trained cells (zero-shot / probe)")
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


def vpt_report(params: dict, out_dir: str) -> dict:
    from .reports.vpt import build

    return build(params, out_dir)


def vp_report(params: dict, out_dir: str) -> dict:
    from .reports.visual_prompting import build

    return build(params, out_dir)


def rpo_report(params: dict, out_dir: str) -> dict:
    from .reports.rpo import build

    return build(params, out_dir)
