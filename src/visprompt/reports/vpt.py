"""VPT report: Table 1 of Jia et al. (2022) in the mini world, beside the published numbers.

Measured numbers: every run of ``params['vpt']['methods']`` read from
``<metrics_root>/vpt/<run>.json`` (last-epoch test top-1 per task and seed). Published numbers:
``visprompt.published.vpt.published_table()`` (ViT-B/16 ImageNet-21k, real VTAB-1k / FGVC), always
in columns labelled "published", with their confirmed/unconfirmed flag.

Conventions
-----------
* **Group mean** (FGVC, Natural, Specialized, Structured): the mean over the group's tasks of the
  per-task mean over seeds; the ± is the sample std over seeds of the per-seed group mean (the
  seeds every task of the group has). The task → group mapping is the mini manifest's ``group``.
* **Total-parameter multiplier** (VPT Table 1 "Total params"): the parameters one must store to
  serve *all* tasks of the table, relative to the pretrained backbone:
  ``(frozen parameters, stored once and shared + Σ_tasks trainable parameters of that task) /
  backbone parameters``. Full fine-tuning freezes nothing, so it stores one whole model per task
  (≈ number of tasks ×); a method that tunes a head only stores ≈ 1×. The mini table has fewer
  tasks than the paper's 24, and its heads are large relative to its tiny backbone, so the two
  multipliers are comparable in kind, not in size.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import runs as report
from . import _common as C
from . import claims as K
from . import present as P
from .vpt_claims import vpt_claims
from .vpt_facts import GROUP_LABEL, GROUPS, _group_of_pub, _is_param_row, _paper_groups, _pub_is, _value, group_stats  # noqa: F401 - also this module's names

LABELS = {"full": "Full", "linear": "Linear", "partial": "Partial", "mlp": "MLP", "sidetune": "Sidetune",
          "bias": "Bias", "adapter": "Adapter", "vpt_shallow": "VPT-shallow", "vpt_deep": "VPT-deep"}
PARAM_KEYS = ("totalparams", "totalparameters", "params", "parameters", "totalparamsmultiplier")


def method_label(params: dict, run: str, metrics: dict | None = None) -> str:
    """Paper-style label of a run: 'Partial-1' / 'MLP-3' from the cfg's k, else the registered name."""
    method = C.registered(params, "vpt", run)
    label = LABELS.get(method, run)
    cfg = C.run_cfg(params, "vpt", run, metrics)
    if method in ("partial", "mlp") and "k" in cfg:
        label = f"{label}-{cfg['k']}"
    if run != method:
        label = f"{label} [{run}]"
    return label


def task_groups(params: dict, tasks) -> dict:
    """task key -> group: the mini dataset manifest's, or the paper registry's (VTAB-1k group or
    fgvc) for real tasks; else from the suite name."""
    from ..data import real
    from ..data.mini import all_tasks

    try:
        known = all_tasks((params.get("data") or {}).get("sizes"))
    except Exception:  # noqa: BLE001 - a bad sizes entry must not hide the report
        known = all_tasks()
    out = {}
    for t in tasks:
        if t in known:
            out[t] = known[t].group
        elif t in real.REAL_DATASETS and real.REAL_DATASETS[t].group in GROUPS:
            out[t] = real.REAL_DATASETS[t].group
        else:
            out[t] = "fgvc" if str(t).startswith("fgvc/") else "natural"
    return out


def seed_table(result: dict | None) -> dict:
    """task -> {seed: test top-1} of one run."""
    out: dict = {}
    for c in (result or {}).get("cells", []):
        if "task" in c and isinstance(c.get("test_top1"), (int, float)):
            out.setdefault(c["task"], {})[int(c.get("seed", 0))] = float(c["test_top1"])
    return out


def storage_multiplier(result: dict | None, backbone_params: int | None) -> float:
    """Total parameters stored for all tasks of the run / backbone parameters (see module doc)."""
    if not result or not backbone_params:
        return math.nan
    per_task = {}
    for c in result.get("cells", []):
        if "task" in c and "params" in c and c["task"] not in per_task:
            per_task[c["task"]] = c["params"]
    if not per_task:
        return math.nan
    shared = max(p["total"] - p["trainable"] for p in per_task.values())
    stored = shared + sum(p["trainable"] for p in per_task.values())
    return stored / backbone_params


def backbone_parameters(params: dict, metrics: dict) -> int | None:
    """Parameters of the frozen ViT backbone without head (built from params; else from metrics)."""
    try:
        from ..backbones.vit import create_vit

        cfg = {k: v for k, v in ((params.get("backbones") or {}).get("vit") or {}).items() if k not in ("weights", "pretrained")}
        if cfg:
            model = create_vit(cfg)
            return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - fall back to the counts recorded in the metrics
        pass
    # The largest frozen part of any cell is the whole backbone (linear / prompt / adapter methods).
    frozen = [c["params"]["total"] - c["params"]["trainable"] for r in metrics.values() for c in r.get("cells", []) if "params" in c]
    return max(frozen) if frozen and max(frozen) > 0 else None


# --- published --------------------------------------------------------------------------------


def _pub_method_matches(row: dict, params: dict, run: str, metrics: dict) -> bool:
    """A published row stands beside a run when it is the same method with the same depth k
    (the paper's Partial-1 / MLP-3; a mini run with another k gets no published number)."""
    label = method_label(params, run, metrics).split(" [")[0]
    method = C.registered(params, "vpt", run)
    if not _pub_is(row, method, label):
        return False
    if method in ("partial", "mlp") and "k" in C.run_cfg(params, "vpt", run, metrics) and row.get("label"):
        return C.norm(row["label"]) == C.norm(label)
    return True


def published_lookup(rows: list, params: dict, run: str, metrics: dict) -> dict:
    """{'groups': {group: row}, 'params': row|None, 'tasks': {task: row}} for one run."""
    out = {"groups": {}, "params": None, "tasks": {}}
    for r in rows:
        if not _pub_method_matches(r, params, run, metrics):
            continue
        g = _group_of_pub(r)
        if _is_param_row(r):
            out["params"] = r
        elif g:
            out["groups"][g] = r
        else:
            out["tasks"][str(r.get("task_or_group"))] = r
    return out


def load_published() -> tuple[list, str | None]:
    """Table 1 rows plus its 'Total params' column (``published_total_params`` when provided)."""
    rows, note = C.published_rows("vpt")
    if rows and not any(_is_param_row(r) for r in rows):
        extra, _ = C.published_rows("vpt", "published_total_params")
        rows = rows + extra
    return rows, note


# --- the report -------------------------------------------------------------------------------


def build(params: dict, out_dir: str, metrics_root="reports/records") -> dict:
    """Table 1 (group means + storage multiplier, measured beside published), the per-task table,
    the claims and the accuracy-by-group figure; tables (.md/.csv) and the figure (.png) are also
    written to ``out_dir``. Runs listed in params without metrics show '–'."""
    plt = C.pyplot()
    metrics = C.current_runs(params, "vpt", report.load_metrics("vpt", metrics_root))
    runs = C.run_names(params, "vpt")
    tasks = list((params.get("vpt") or {}).get("tasks") or [])
    for r in runs:  # tasks measured but no longer in params still belong to their run
        for t in seed_table(metrics.get(r)):
            if t not in tasks:
                tasks.append(t)
    groups = task_groups(params, tasks)
    group_tasks = {g: [t for t in tasks if groups[t] == g] for g in GROUPS}
    pub_rows, pub_note = load_published()
    backbone = backbone_parameters(params, metrics)
    n_tasks = len(tasks)
    L = C.measured_label(params)

    table, per_task_rows, fig_rows, pub_points, numeric = [], [], [], [], {}
    for run in runs:
        res = metrics.get(run)
        by_task = seed_table(res)
        label = method_label(params, run, metrics)
        # an ablation run (vpt_deep_p2) is another configuration: never beside the method's published numbers
        pub = {"groups": {}, "params": None, "tasks": {}} if C.is_ablation(params, "vpt", run, metrics) else published_lookup(pub_rows, params, run, metrics)
        row = {"method": label}
        numeric[run] = {"label": label, "by_task": by_task, "tasks": {t: C.stats(v.values()) for t, v in by_task.items()}, "groups": {}}
        for g in GROUPS:
            st = group_stats(by_task, group_tasks[g])
            numeric[run]["groups"][g] = st
            cell = C.fmt_ms(st["mean"], st["std"])
            if st["n_tasks"] and st["n_tasks"] < st["of"]:
                cell += f" ({st['n_tasks']}/{st['of']} tasks)"
            row[f"{GROUP_LABEL[g]} ({L}, measured)"] = cell
            pr = pub["groups"].get(g)
            row[f"{GROUP_LABEL[g]} (published)"] = C.fmt_published(_value(pr), pr) if pr else C.DASH
            for s, v in st["per_seed"].items():
                fig_rows.append({"method": label, "group": GROUP_LABEL[g], "seed": s, "top1": v})
            if pr and _value(pr) is not None:
                pub_points.append({"method": label, "group": GROUP_LABEL[g], "top1": _value(pr)})
        mult = storage_multiplier(res, backbone)
        numeric[run]["multiplier"] = mult
        row[f"total params ({L}, {n_tasks} tasks)"] = C.DASH if math.isnan(mult) else f"{mult:.3f}×" + (f" ({len(by_task)}/{n_tasks} tasks)" if len(by_task) < n_tasks else "")
        pp = pub["params"]
        row["total params (published, 24 tasks)"] = C.fmt_published(_value(pp), pp, unit="×") if pp else C.DASH
        trainable = sorted({c["params"]["trainable"] for c in (res or {}).get("cells", []) if "params" in c})
        row[f"trainable params / task ({L})"] = (f"{trainable[0]:,}" if len(trainable) == 1 else f"{trainable[0]:,}–{trainable[-1]:,}") if trainable else C.DASH
        table.append(row)
        pt = {"method": label}
        for t in tasks:
            pt[f"{t} ({groups[t]})"] = C.fmt_values(list(by_task.get(t, {}).values()))
        per_task_rows.append(pt)

    files: dict = {}
    table1 = C.save_table(pd.DataFrame(table), out_dir, "table1")
    per_task = C.save_table(pd.DataFrame(per_task_rows), out_dir, "per_task")
    wins = C.save_table(wins_table(params, metrics, runs, numeric, group_tasks, pub_rows, L), out_dir, "table1_wins")
    files.update({"table1": f"{out_dir}/table1.md", "per_task": f"{out_dir}/per_task.md", "table1_wins": f"{out_dir}/table1_wins.md"})
    claims = compute_claims(params, metrics, numeric, pub_rows, tasks)
    text = claims_text(claims, n_tasks, backbone, L)
    if pub_note:
        text += f"\nNote: {pub_note}."
    verdicts = vpt_claims(params, metrics, numeric, claims, pub_rows, tasks, groups)
    claims_table = K.write_claims(verdicts, out_dir, L)
    deviations = deviations_from_paper(params)
    (Path(out_dir) / "deviations.md").write_text("# Deviations from the paper\n\n" + "".join(f"- {d}\n" for d in deviations))
    files.update({"claims": f"{out_dir}/claims.md", "claims_json": f"{out_dir}/claims.json", "deviations": f"{out_dir}/deviations.md"})
    figure = _figure(plt, fig_rows, out_dir, files, C.profile_name(params), pub_points)
    length_figure = prompt_length_figure(params, metrics, out_dir, files, plt)
    return {"claims_table": claims_table, "claims_list": verdicts, "table1": table1, "per_task": per_task, "wins": wins, "claims": claims, "claims_text": text,
            "deviations": deviations, "figure": figure, "length_figure": length_figure, "files": files, "published_note": pub_note, "backbone_params": backbone, "group_of_task": groups}


def prompt_length_figure(params: dict, metrics: dict, out_dir, files: dict, plt):
    """Test top-1 vs prompt length, VPT-deep and VPT-shallow: every run of either (main and
    ablation runs such as ``vpt_deep_p2``), on the tasks all of them ran, one point per seed (mean
    over those tasks), error bars = std over seeds. More lengths: add runs to ``vpt.methods``
    (e.g. ``vpt_deep_p16: {method: vpt_deep, cfg: {prompt_length: 16}, ...}``)."""
    import seaborn as sns

    kinds = {"vpt_deep": "VPT-deep", "vpt_shallow": "VPT-shallow"}
    runs = [r for r in metrics if metrics[r].get("registered_method", metrics[r].get("method")) in kinds]
    task_sets = [set(seed_table(metrics[r])) for r in runs]
    common = sorted(set.intersection(*task_sets)) if task_sets else []
    rows = []
    for r in runs:
        length = C.run_cfg(params, "vpt", r, metrics).get("prompt_length")
        by_task = seed_table(metrics[r])
        seeds = set.intersection(*(set(by_task[t]) for t in common)) if common else set()
        for seed in sorted(seeds):
            rows.append({"method": kinds[metrics[r].get("registered_method", metrics[r].get("method"))], "prompt length": length,
                         "seed": seed, "test top-1 (%)": float(np.mean([by_task[t][seed] for t in common]))})
    df = pd.DataFrame(rows)
    if df.empty or df["prompt length"].isna().all():
        return C.finish_figure(C.empty_figure(f"no VPT prompt-length runs yet ({C.profile_name(params)} profile)"), out_dir, "prompt_length", files)
    fig, ax = plt.subplots(figsize=(6.2, 3.2))
    sns.lineplot(df, x="prompt length", y="test top-1 (%)", hue="method", errorbar="sd", marker="o", err_style="bars", ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(df["prompt length"].dropna().unique()), labels=[str(int(v)) for v in sorted(df["prompt length"].dropna().unique())])
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=8, title_fontsize=8)  # never over a point
    ax.set_title(f"VPT, {C.profile_name(params)} profile: test top-1 vs prompt length\n(mean over {', '.join(t.split('/')[-1] for t in common)}; "
                 "bars: std over seeds)", fontsize=8)
    fig.tight_layout()
    return C.finish_figure(fig, out_dir, "prompt_length", files)


def wins_table(params: dict, metrics: dict, runs, numeric: dict, group_tasks: dict, pub_rows: list, label: str = "mini") -> pd.DataFrame:
    """Table 1's "[# wins]": per run and group, the tasks where the run's mean over seeds beats Full's
    (strictly), of the group's tasks both measured; beside it the same count on the paper's per-task
    published numbers, where both the method and Full have them (a main run only, never an ablation)."""
    cols = ["method", "group", f"wins ({label})", f"tasks ({label})", "wins (published)", "tasks (published)"]
    full = _run_for(params, "full", metrics)
    if full is None:
        return pd.DataFrame(columns=cols)
    pub_full = [r for r in pub_rows if _pub_is(r, "full", "Full") and r.get("kind") == "task" and _value(r) is not None]
    rows = []
    for run in runs:
        if run == full or run not in numeric:
            continue
        mine, theirs = numeric[run]["tasks"], numeric[full]["tasks"]
        pub_run = [] if C.is_ablation(params, "vpt", run, metrics) else \
            [r for r in pub_rows if _pub_method_matches(r, params, run, metrics) and r.get("kind") == "task" and _value(r) is not None]
        for g in GROUPS:
            common = [t for t in group_tasks[g] if t in mine and t in theirs and mine[t][2] and theirs[t][2]]
            a = {str(r["task_or_group"]): _value(r) for r in pub_run if g in str(r.get("group", ""))}
            b = {str(r["task_or_group"]): _value(r) for r in pub_full if g in str(r.get("group", ""))}
            both = [t for t in a if t in b]
            if not common and not both:
                continue
            rows.append({"method": numeric[run]["label"], "group": GROUP_LABEL[g],
                         f"wins ({label})": sum(mine[t][0] > theirs[t][0] for t in common) if common else C.DASH, f"tasks ({label})": len(common) or C.DASH,
                         "wins (published)": sum(a[t] > b[t] for t in both) if both else C.DASH, "tasks (published)": len(both) or C.DASH})
    return pd.DataFrame(rows, columns=cols)


def deviations_from_paper(params: dict) -> list:
    """Stated deviations of this replication from the VPT paper, described from the code itself."""
    import inspect

    from ..methods import vit_baselines

    width = C.run_cfg(params, "vpt", "sidetune").get("width", inspect.signature(vit_baselines.sidetune).parameters["width"].default)
    dim = ((params.get("backbones") or {}).get("vit") or {}).get("embed_dim", "d")
    return _budget_deviations(params) + [
        "Sidetune: the side network is a small conv net, randomly initialised and trained from scratch together with the gate and the head "
        f"(three stride-2 convs, 5×5 then 3×3 then 3×3, with 3→{width}→{2 * width}→{4 * width} channels and ReLU; global average pooling; "
        f"Linear({4 * width} → {dim})), not the reference's AlexNet features → Linear(9216 → 768): no ImageNet AlexNet weights exist "
        "offline or in the mini world (methods/vit_baselines.py, SideNetwork).",
    ]


def _budget_deviations(params: dict) -> list:
    """Where the mini run's schedule departs from the reference's (100 epochs, 5 seeds, every method
    on every task, the full grids), read from params.yaml so the text follows the run."""
    from ..settings import RunSettings

    if params.get("profile", "mini") != "mini" or not (params.get("vpt") or {}).get("methods"):
        return []
    runs = {r: RunSettings.from_params(params, "vpt", r) for r in C.run_names(params, "vpt")}
    by_epochs: dict = {}
    for r, st in runs.items():
        by_epochs.setdefault(int(st.recipe.get("epochs", 0)), []).append(r)
    epochs = "; ".join(f"{e} epochs: {', '.join(sorted(rs))}" for e, rs in sorted(by_epochs.items()))
    all_tasks = list((params.get("vpt") or {}).get("tasks") or [])
    fewer = {r: list(st.tasks) for r, st in runs.items() if list(st.tasks) != all_tasks}
    seeds = sorted({len(st.seeds) for st in runs.values()})
    out = [f"Epochs (reference: 100 for every method, warm-up 10): {epochs}. Linear and MLP train on cached features, "
           "so the CPU budget affords them the reference's 100; every other method gets the budget's epochs (docs/mini_world.md).",
           f"Seeds: {seeds[-1]} per task (reference: 5)" + (f", {seeds[0]} in the ablation runs" if len(seeds) > 1 else "") + "; grids are two-point subsets of the reference's "
           "(SGD base lr {50 … 0.05}, AdamW {5e-3, 1e-3, 5e-4, 1e-4}, weight decay {0.01 … 0}), as listed in params.yaml."]
    if fewer:
        out.append("Tasks: " + "; ".join(f"{r} on {', '.join(t)}" for r, t in sorted(fewer.items()))
                   + f" (CPU budget; every other run on all {len(all_tasks)} tasks).")
    return out


def _run_for(params: dict, method: str, metrics: dict) -> str | None:
    r = C.main_run(params, "vpt", method, metrics)
    return r if r in metrics else None


def _compare(numeric: dict, a: str | None, b: str | None, tasks) -> dict | None:
    """Per-task seed means of run a vs run b on the tasks both measured."""
    if a is None or b is None:
        return None
    ta, tb = numeric[a]["tasks"], numeric[b]["tasks"]
    common = [t for t in tasks if t in ta and t in tb and ta[t][2] and tb[t][2]]
    ge = [t for t in common if ta[t][0] >= tb[t][0]]
    gt = [t for t in common if ta[t][0] > tb[t][0]]
    return {"ge": len(ge), "gt": len(gt), "of": len(common), "not_ge": [t for t in common if t not in ge], "tasks": common}


def _paper_compare(pub_rows: list, a: str, b: str) -> dict | None:
    """The same count on the paper's per-task published rows (tasks where both have a number)."""
    def per_task(name):
        return {str(r["task_or_group"]): _value(r) for r in pub_rows
                if _pub_is(r, name) and not _is_param_row(r) and _group_of_pub(r) is None and r.get("kind") in (None, "task") and _value(r) is not None}

    pa, pb = per_task(a), per_task(b)
    common = [t for t in pa if t in pb]
    if not common:
        return None
    return {"ge": sum(pa[t] >= pb[t] for t in common), "gt": sum(pa[t] > pb[t] for t in common), "of": len(common),
            "not_ge": [t for t in common if pa[t] < pb[t]]}


def _paper_multiplier(pub_rows: list, name: str):
    for r in pub_rows:
        if _pub_is(r, name) and _is_param_row(r):
            return _value(r), C.is_confirmed(r)
    return None, None


def compute_claims(params: dict, metrics: dict, numeric: dict, pub_rows: list, tasks) -> dict:
    deep, full, linear = (_run_for(params, m, metrics) for m in ("vpt_deep", "full", "linear"))
    claims = {
        "vpt_deep_vs_full": {"mini": _compare(numeric, deep, full, tasks), "paper": _paper_compare(pub_rows, "VPT-deep", "Full")},
        "vpt_deep_vs_linear": {"mini": _compare(numeric, deep, linear, tasks), "paper": _paper_compare(pub_rows, "VPT-deep", "Linear")},
    }
    # group level (the paper always has these)
    for other, key in ((full, "full"), (linear, "linear")):
        mini = None
        if deep and other:
            gd, go = numeric[deep]["groups"], numeric[other]["groups"]
            mini = {g: (gd[g]["mean"], go[g]["mean"]) for g in GROUPS if g in gd and g in go and gd[g]["n_tasks"] and go[g]["n_tasks"]}
        pd_, po = _paper_groups(pub_rows, "VPT-deep"), _paper_groups(pub_rows, "Full" if key == "full" else "Linear")
        paper = {g: (pd_[g], po[g]) for g in GROUPS if g in pd_ and g in po}
        claims[f"groups_vpt_deep_vs_{key}"] = {"mini": mini, "paper": paper or None}
    claims["multiplier"] = {
        "mini": {k: numeric[r]["multiplier"] for k, r in (("vpt_deep", deep), ("full", full), ("linear", linear)) if r},
        "paper": {k: v for k, n in (("vpt_deep", "VPT-deep"), ("full", "Full"), ("linear", "Linear")) if (v := _paper_multiplier(pub_rows, n))[0] is not None},
    }
    best = {}
    for g in GROUPS:
        cands = [(numeric[r]["groups"][g]["mean"], numeric[r]["label"]) for r in numeric if g in numeric[r]["groups"] and numeric[r]["groups"][g]["n_tasks"]]
        if cands:
            best[g] = max(cands)[1]
    claims["best_per_group_mini"] = best
    claims["main_runs"] = {"vpt_deep": deep, "full": full, "linear": linear}
    return claims


def _count_sentence(name: str, other: str, c: dict, label: str = "mini") -> str:
    mini, paper = c["mini"], c["paper"]
    if mini is None:
        s = f"{name} vs {other}: {C.NOT_MEASURED[label]} (run missing)."
    elif mini["of"] == 0:
        s = f"{name} vs {other}: no task measured by both runs."
    else:
        s = f"{C.WORLD[label]}: {name} ≥ {other} on {mini['ge']} of {mini['of']} tasks (strictly better on {mini['gt']})"
        s += f"; not on {', '.join(mini['not_ge'])}." if mini["not_ge"] else "."
    if paper:
        s += f" Paper (published per-task numbers): {name} ≥ {other} on {paper['ge']} of {paper['of']} tasks (strictly better on {paper['gt']})."
    else:
        s += " Paper: no per-task published numbers for this pair in visprompt.published.vpt."
    return s


def _group_sentence(name: str, other: str, c: dict, label: str = "mini") -> str | None:
    parts = []
    if c["mini"]:
        wins = [GROUP_LABEL[g] for g, (a, b) in c["mini"].items() if a >= b]
        parts.append(f"{label}: {name} ≥ {other} in {len(wins)} of {len(c['mini'])} groups" + (f" ({', '.join(wins)})" if wins else ""))
    if c["paper"]:
        wins = [GROUP_LABEL[g] for g, (a, b) in c["paper"].items() if a >= b]
        parts.append(f"paper: {name} ≥ {other} in {len(wins)} of {len(c['paper'])} groups" + (f" ({', '.join(wins)})" if wins else ""))
    return ("Group means — " + "; ".join(parts) + ".") if parts else None


def claims_text(claims: dict, n_tasks: int, backbone: int | None, label: str = "mini") -> str:
    lines = [_count_sentence("VPT-deep", "Full", claims["vpt_deep_vs_full"], label)]
    g = _group_sentence("VPT-deep", "Full", claims["groups_vpt_deep_vs_full"], label)
    if g:
        lines.append(g)
    lines.append(_count_sentence("VPT-deep", "Linear", claims["vpt_deep_vs_linear"], label))
    g = _group_sentence("VPT-deep", "Linear", claims["groups_vpt_deep_vs_linear"], label)
    if g:
        lines.append(g)
    m = claims["multiplier"]
    mini = {k: v for k, v in m["mini"].items() if not math.isnan(v)}
    if mini:
        names = {"vpt_deep": "VPT-deep", "full": "Full", "linear": "Linear"}
        s = f"Storage for all {n_tasks} {label} tasks (× the {backbone:,}-parameter backbone): " + ", ".join(f"{names[k]} {v:.3f}×" for k, v in mini.items())
        if "vpt_deep" in mini and "full" in mini and mini["vpt_deep"] > 0:
            s += f" — Full stores {mini['full'] / mini['vpt_deep']:.1f}× what VPT-deep stores"
        s += "."
    else:
        s = "Storage multiplier: no measured runs."
    if m["paper"]:
        names = {"vpt_deep": "VPT-deep", "full": "Full", "linear": "Linear"}
        s += " Paper (24 tasks, published" + ("" if all(c for _, c in m["paper"].values()) else ", unconfirmed") + "): " + ", ".join(f"{names[k]} {v:.2f}×" for k, (v, _) in m["paper"].items()) + "."
    lines.append(s)
    if claims["best_per_group_mini"]:
        lines.append(f"Best measured method per group ({label}): " + ", ".join(f"{GROUP_LABEL[g]}: {lab}" for g, lab in claims["best_per_group_mini"].items()) + ".")
    lines.append("Mini-world numbers are measurements on the procedural mini tasks with a tiny ViT; they are not the paper's numbers." if label == "mini" else
                 "Measured numbers come from this pipeline on the real datasets (our VTAB-1k/FGVC split membership, see docs/paper_profile.md); published numbers are the paper's.")
    return "\n".join(lines)


def _figure(plt, rows: list, out_dir: str, files: dict, profile: str = "mini", pub_points: list | None = None):
    """Per group: the per-seed group means (points), their mean (red bar) and, where
    ``visprompt.published.vpt`` has it, the paper's group mean (grey diamond, ViT-B/16 on real data)."""
    import seaborn as sns

    if not rows:
        return C.finish_figure(C.empty_figure(f"no VPT metrics yet ({profile} profile)"), out_dir, "accuracy_by_group", files)
    df = pd.DataFrame(rows)
    pub = pd.DataFrame(pub_points or [], columns=["method", "group", "top1"])
    groups = [GROUP_LABEL[g] for g in GROUPS if GROUP_LABEL[g] in set(df["group"])]
    order = list(dict.fromkeys(df["method"]))
    ncols = 2 if len(groups) >= 3 else len(groups)
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * (1.0 + 0.35 * len(order)), 3.0 * nrows), sharey=False, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(groups):]:
        ax.axis("off")
    for ax, g in zip(flat, groups):
        d = df[df["group"] == g]
        with C.fixed_jitter():
            sns.stripplot(data=d, x="method", y="top1", order=order, ax=ax, size=4, alpha=0.6, jitter=0.15, color="0.35")
        sns.pointplot(data=d, x="method", y="top1", order=order, ax=ax, errorbar=None, linestyle="none", markers="_", markersize=14, color="C3")
        p = pub[(pub["group"] == g) & pub["method"].isin(order)]
        if len(p):
            ax.scatter([order.index(m) for m in p["method"]], p["top1"], marker="D", s=22, facecolors="none", edgecolors="0.45",
                       linewidths=1.0, zorder=4, label="published (paper)")
        ax.set_title(g, fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("test top-1 (%)")
        ax.tick_params(axis="x", rotation=70, labelsize=8)
    if len(pub):
        flat[0].legend(fontsize=7, frameon=False, loc="best")
    fig.suptitle(f"VPT, {profile} profile: group mean per seed (points), mean over seeds (red)"
                 + ("; published paper value (grey diamond, ViT-B/16 on the real tasks)" if len(pub) else ""), fontsize=9)
    fig.tight_layout()
    return C.finish_figure(fig, out_dir, "accuracy_by_group", files)


# --- HTML (paper-shaped tables; the numbers are the .md/.csv tables' own) ---------------------


def table1_html(table1: pd.DataFrame, wins: pd.DataFrame | None = None) -> "P.HTML":
    """Table 1 as in the paper: Total params, FGVC, Natural, Specialized, Structured, each
    mini | published, "[# wins]" against Full where counted; ablation runs below the main rows."""
    L = P.measured_label(table1.columns)
    df, kinds = P.order_rows(table1, "method")
    w = {}
    if wins is not None and len(wins):
        for r in wins.to_dict("records"):
            w[(str(r["method"]), str(r["group"]))] = (r.get(f"wins ({L})"), r.get("wins (published)"))
    df = df.copy()
    spec = [("method", "", "method", "txt")]
    total = [c for c in df.columns if str(c).startswith("total params (")]
    for c in total:
        spec.append(("Total params", c[len("total params ("):-1].replace(", ", " · "), c, "pub" if "published" in c else "mini"))
    for g in GROUPS:
        G = GROUP_LABEL[g]
        mcol, pcol = f"{G} ({L}, measured)", f"{G} (published)"
        if mcol not in df.columns:
            continue
        for col, i in ((mcol, 0), (pcol, 1)):
            if col not in df.columns:
                continue
            vals = []
            for k, (method, v) in enumerate(zip(df["method"], df[col])):
                n = w.get((str(method), G), (None, None))[i]
                tag = f" [{n}]" if not P.blank(n) and not (i == 1 and kinds[k] == "abl") else ""
                vals.append(P.DASH if P.blank(v) else (P.measured(v, extra=tag) if i == 0 else P.published(v, extra=tag)))
            df[col] = vals
        spec += [(G, L, mcol, "html")] + ([(G, "published", pcol, "html")] if pcol in df.columns else [])
    spec += [("trainable / task", L, c, "mini") for c in df.columns if str(c).startswith("trainable params / task")]
    pub_cols = {c for g, s, c, _ in spec if s == "published"}
    spec = [(g, s, c, "pubhtml" if c in pub_cols and k == "html" else k) for g, s, c, k in spec]
    notes = ["Test top-1 (%), mean ± std over seeds; a group's number is the mean over its tasks. "
             "Total params: the parameters stored for all tasks of the table, × the backbone's (module doc of visprompt.reports.vpt)."]
    if w:
        notes.append("[n]: the paper's \"# wins\": tasks of the group where the method's mean beats Full's (published: counted on the paper's per-task numbers).")
    return P.table(df, spec, uuid="vpt_table1", row_kinds=kinds, notes=notes)


def per_task_html(per_task: pd.DataFrame) -> "P.HTML":
    """Per task, grouped under the paper's group headings (measured only: the mini tasks have no published number)."""
    spec = [("method", "", "method", "txt")]
    by_group: dict = {}
    for c in per_task.columns[1:]:
        m = re.match(r"^(.*) \((\w+)\)$", str(c))
        g = m.group(2) if m else "other"
        by_group.setdefault(g, []).append((m.group(1) if m else str(c), c))
    for g in [*GROUPS, *[g for g in by_group if g not in GROUPS]]:
        for task, c in by_group.get(g, []):
            spec.append((GROUP_LABEL.get(g, g), task, c, "mini"))
    df, kinds = P.order_rows(per_task, "method")
    return P.table(df, spec, uuid="vpt_per_task", row_kinds=kinds, notes=["Test top-1 (%), mean ± std over seeds, measured by this pipeline; grouped under the paper's group headings."])


def html_tables(r: dict) -> dict:
    """The report's tables and lists as HTML, keyed like the notebook shows them."""
    return {"claims": P.claims(r["claims_table"], uuid="vpt_claims"), "table1": table1_html(r["table1"], r.get("wins")),
            "per_task": per_task_html(r["per_task"]), "deviations": P.bullets(r["deviations"]),
            "claims_text": P.bullets(r["claims_text"].splitlines())}


def headline(report_dir) -> tuple[str, str] | None:
    """(Markdown, HTML) of Table 1 for the index, read from the report stage's files."""
    d = Path(report_dir)
    if not (d / "table1.csv").is_file():
        return None
    t1 = pd.read_csv(d / "table1.csv", dtype=str, keep_default_na=False)
    wins = pd.read_csv(d / "table1_wins.csv", dtype=str, keep_default_na=False) if (d / "table1_wins.csv").is_file() else None
    return (d / "table1.md").read_text() if (d / "table1.md").is_file() else t1.to_markdown(index=False), table1_html(t1, wins)
