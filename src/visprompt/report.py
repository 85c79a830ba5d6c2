"""The notebooks' entry to the reports: run tables and figures (:mod:`visprompt.reports.runs`) and
one builder per paper (:mod:`visprompt.reports`).

Measured numbers come only from ``reports/records`` (the train stages' run records); published
numbers come only from ``visprompt.published``. Every table says which is which in its columns.
"""

from __future__ import annotations

from .reports.runs import METRICS_DIR, cells_table, load_metrics, mean_std, plot_histories, run_summary, save_figure, save_table, selection_table

__all__ = ["METRICS_DIR", "cells_table", "load_metrics", "mean_std", "plot_histories", "run_summary", "save_figure", "save_table",
           "selection_table", "vpt_report", "vp_report", "rpo_report"]


def vpt_report(params: dict, out_dir: str) -> dict:
    from .reports.vpt import build

    return build(params, out_dir)


def vp_report(params: dict, out_dir: str) -> dict:
    from .reports.visual_prompting import build

    return build(params, out_dir)


def rpo_report(params: dict, out_dir: str) -> dict:
    from .reports.rpo import build

    return build(params, out_dir)
