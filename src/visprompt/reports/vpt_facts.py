"""VPT's groups and published-row readers, shared by ``reports.vpt`` (the report) and
``reports.vpt_claims`` (its verdicts); imports no other report module.
"""

from __future__ import annotations

import math

from . import _common as C

GROUPS = ("fgvc", "natural", "specialized", "structured")
GROUP_LABEL = {"fgvc": "FGVC", "natural": "Natural", "specialized": "Specialized", "structured": "Structured"}


def group_stats(by_task: dict, tasks) -> dict:
    """Mean over tasks of the per-task seed means; sample std over seeds of the per-seed group mean."""
    present = [t for t in tasks if by_task.get(t)]
    if not present:
        return {"mean": math.nan, "std": math.nan, "n_tasks": 0, "of": len(tasks), "per_seed": {}}
    mean = sum(sum(by_task[t].values()) / len(by_task[t]) for t in present) / len(present)
    common = set.intersection(*(set(by_task[t]) for t in present))
    per_seed = {s: sum(by_task[t][s] for t in present) / len(present) for s in sorted(common)}
    _, std, _ = C.stats(per_seed.values())
    return {"mean": mean, "std": std, "n_tasks": len(present), "of": len(tasks), "per_seed": per_seed}


def _pub_is(row: dict, *names) -> bool:
    """Does a published row belong to one of ``names`` (registry names or paper labels)?"""
    keys = {C.norm(n) for n in names}
    return C.norm(row.get("method", "")) in keys or C.norm(row.get("label", "")) in keys


def _is_param_row(row: dict) -> bool:
    return "total_params_x" in row or (row.get("kind") in (None, "params") and "param" in C.norm(row.get("task_or_group", "")))


def _group_of_pub(row: dict) -> str | None:
    if row.get("kind") not in (None, "group_mean"):
        return None
    n = C.norm(row.get("task_or_group", ""))
    for g in GROUPS:
        if n == g or n in (f"vtab{g}", f"{g}mean", f"vtab{g}mean", f"{g}avg", f"mean{g}"):
            return g
    return None


def _value(row: dict):
    for k in ("top1", "value", "total_params_x", "multiplier"):
        if isinstance(row.get(k), (int, float)):
            return float(row[k])
    return None


def _paper_groups(pub_rows: list, name: str) -> dict:
    return {g: _value(r) for r in pub_rows if _pub_is(r, name) and (g := _group_of_pub(r))}
