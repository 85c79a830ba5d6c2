"""VPT's published numbers (Jia et al., ECCV 2022, Table 1: ViT-B/16 pretrained on ImageNet-21k).

Plain data transcribed from ``shared/reference/vpt.md``. Every value carries the paper location the
reference gives and ``confirmed`` exactly as the reference tags it: ``[2×]`` (the same number in
two independent copies of the paper's table) → ``True``; ``[unconfirmed]`` → ``False``; Sidetune
and Bias are tagged "2× (VTAB)", so their VTAB group means are confirmed and their FGVC mean is
not. The "Total params" column is unconfirmed as a whole.

These are the paper's numbers, never ours: reports show them next to our replication.
Method keys are the registry names (``visprompt.methods``); ``label`` is the paper's name.
"""

from __future__ import annotations

REFERENCE = "shared/reference/vpt.md"
BACKBONE = "ViT-B/16, ImageNet-21k (original Google checkpoint)"

#: registry name → paper label, in Table 1's row order
METHODS = {
    "full": "Full",
    "linear": "Linear",
    "partial": "Partial-1",
    "mlp": "MLP-3",
    "sidetune": "Sidetune",
    "bias": "Bias",
    "adapter": "Adapter",
    "vpt_shallow": "VPT-shallow",
    "vpt_deep": "VPT-deep",
}

#: group key → (benchmark, group label)
GROUPS = {
    "fgvc/mean": ("FGVC", "FGVC mean"),
    "vtab-natural/mean": ("VTAB-1k", "VTAB Natural mean"),
    "vtab-specialized/mean": ("VTAB-1k", "VTAB Specialized mean"),
    "vtab-structured/mean": ("VTAB-1k", "VTAB Structured mean"),
}

FGVC_TASKS = ["CUB-200-2011", "NABirds", "Oxford Flowers", "Stanford Dogs", "Stanford Cars"]
VTAB_TASKS = {
    "vtab-natural/mean": ["CIFAR-100", "Caltech101", "DTD", "Flowers102", "Pets", "SVHN", "SUN397"],
    "vtab-specialized/mean": ["Patch Camelyon", "EuroSAT", "Resisc45", "Retinopathy"],
    "vtab-structured/mean": [
        "Clevr/count", "Clevr/distance", "DMLab", "KITTI/distance",
        "dSprites/location", "dSprites/orientation", "SmallNORB/azimuth", "SmallNORB/elevation",
    ],
}

_T1 = "VPT Table 1 (group means)"
_T1_PER_TASK = "VPT per-task results for Table 1 (as listed in the reference; table number not given there)"
_T1_PARAMS = "VPT Table 1, 'Total params' column"

# method → (total params ×, FGVC, Natural, Specialized, Structured)
_GROUP_MEANS = {
    "full": (24.02, 88.54, 75.88, 83.36, 47.64),
    "linear": (1.02, 79.32, 68.93, 77.16, 26.84),
    "partial": (3.00, 82.63, 69.44, 78.53, 34.17),
    "mlp": (1.35, 79.80, 67.80, 72.83, 30.62),
    "sidetune": (3.69, 78.35, 58.21, 68.12, 23.41),
    "bias": (1.05, 88.41, 73.30, 78.25, 44.09),
    "adapter": (1.23, 85.66, 70.39, 77.11, 33.43),
    "vpt_shallow": (1.04, 84.62, 76.81, 79.66, 46.98),
    "vpt_deep": (1.18, 89.11, 78.48, 82.43, 54.98),
}

# The reference's tag per method: which group means are confirmed ("2×").
_CONFIRMED = {
    "full": {"fgvc", "vtab"},
    "linear": {"fgvc", "vtab"},
    "partial": set(),  # unconfirmed
    "mlp": set(),  # unconfirmed
    "sidetune": {"vtab"},  # 2× (VTAB)
    "bias": {"vtab"},  # 2× (VTAB)
    "adapter": {"fgvc", "vtab"},
    "vpt_shallow": {"fgvc", "vtab"},
    "vpt_deep": {"fgvc", "vtab"},
}

# Per task, all tagged [2×] in the reference: FGVC in FGVC_TASKS order, VTAB in VTAB_TASKS order.
_PER_TASK = {
    "full": (
        [87.3, 82.7, 98.8, 89.4, 84.5],
        [68.9, 87.7, 64.3, 97.2, 86.9, 87.4, 38.8, 79.7, 95.7, 84.2, 73.9, 56.3, 58.6, 41.7, 65.5, 57.5, 46.7, 25.7, 29.1],
    ),
    "vpt_deep": (
        [88.5, 84.2, 99.0, 90.2, 83.6],
        [78.8, 90.8, 65.8, 98.0, 88.3, 78.1, 49.6, 81.8, 96.1, 83.4, 68.4, 68.5, 60.0, 46.5, 72.8, 73.6, 47.9, 32.9, 37.8],
    ),
    "vpt_shallow": (
        [86.7, 78.8, 98.4, 90.7, 68.7],
        [77.7, 86.9, 62.6, 97.5, 87.3, 74.5, 51.2, 78.2, 92.0, 75.6, 72.9, 50.5, 58.6, 40.5, 67.1, 68.7, 36.1, 20.2, 34.1],
    ),
}

#: the paper's headline: tasks (of 24) where VPT-deep loses to Full
VPT_DEEP_LOSES_TO_FULL = ["Stanford Cars", "SVHN", "Resisc45", "Retinopathy"]


def _row(method: str, task_or_group: str, top1: float, source: str, confirmed: bool, benchmark: str, group: str, kind: str) -> dict:
    return {
        "method": method,
        "label": METHODS[method],
        "task_or_group": task_or_group,
        "top1": top1,
        "source": source,
        "confirmed": confirmed,
        "benchmark": benchmark,
        "group": group,
        "kind": kind,
        # the keys shared with visprompt.published.rpo / visual_prompting
        "setting": "table1",
        "dataset": task_or_group,
        "metric": "top1",
        "value": top1,
    }


def published_table() -> list[dict]:
    """Every published top-1 (%) as rows: method, task_or_group, top1, source, confirmed, plus
    label (paper name), benchmark ('FGVC' / 'VTAB-1k'), group (group key) and kind ('group_mean'
    or 'task'). Group means use the keys of :data:`GROUPS`; tasks use the reference's names.
    Rows also carry the keys of the other papers' tables: setting ('table1'), dataset (=
    task_or_group), metric ('top1') and value (= top1)."""
    rows = []
    for method, (_, *means) in _GROUP_MEANS.items():
        for (group, (benchmark, _)), value in zip(GROUPS.items(), means):
            confirmed = ("fgvc" if group.startswith("fgvc") else "vtab") in _CONFIRMED[method]
            rows.append(_row(method, group, value, _T1, confirmed, benchmark, group, "group_mean"))
    for method, (fgvc, vtab) in _PER_TASK.items():
        for task, value in zip(FGVC_TASKS, fgvc):
            rows.append(_row(method, task, value, _T1_PER_TASK, True, "FGVC", "fgvc/mean", "task"))
        vtab_tasks = [(g, t) for g, ts in VTAB_TASKS.items() for t in ts]
        for (group, task), value in zip(vtab_tasks, vtab):
            rows.append(_row(method, task, value, _T1_PER_TASK, True, "VTAB-1k", group, "task"))
    return rows


def published_total_params() -> list[dict]:
    """Table 1's "Total params" column: parameters stored for all 24 tasks as a multiple of the
    backbone's (rows: method, label, total_params_x, source, confirmed — unconfirmed in the reference)."""
    return [
        {"method": m, "label": METHODS[m], "total_params_x": v[0], "source": _T1_PARAMS, "confirmed": False}
        for m, v in _GROUP_MEANS.items()
    ]


def published_top1(method: str, task_or_group: str) -> dict | None:
    """The row for ``method`` (registry name) on ``task_or_group``, or None if the paper has none."""
    for row in published_table():
        if row["method"] == method and row["task_or_group"] == task_or_group:
            return row
    return None


def published_value(method: str, dataset: str) -> dict | None:
    """Same as :func:`published_top1`, under the name the other papers' modules use."""
    return published_top1(method, dataset)
