"""VPT's verdict per claim (``claims.json`` of ``reports.vpt``): the paper's claims and the regime
checks, from the numbers ``reports.vpt.build`` computed. Record format: ``reports.claims``.
"""

from __future__ import annotations

import math

from . import _common as C
from . import vpt_facts as V
from .claims import _nan, _num_classes, chance_check, convergence, entry, listed, missing
from .vpt_facts import GROUP_LABEL


def _published_task_counts(pub_rows: list) -> dict:
    """group -> number of tasks in the paper's per-task published rows."""
    tasks: dict = {}
    for r in pub_rows:
        if r.get("kind") == "task" and r.get("group"):
            g = V._group_of_pub({"task_or_group": r["group"], "kind": "group_mean"})
            if g:
                tasks.setdefault(g, set()).add(str(r["task_or_group"]))
    return {g: len(v) for g, v in tasks.items()}


def _vpt_pub_groups(pair: dict | None, strict: bool, a: str, b: str) -> str | None:
    if not pair:
        return None
    wins = sum((x > y) if strict else (x >= y) for x, y in pair.values())
    return (f"{a} {'>' if strict else '≥'} {b} in {wins} of {len(pair)} group means ("
            + ", ".join(f"{GROUP_LABEL[g]} {x:.2f} vs {y:.2f}" for g, (x, y) in pair.items()) + ")")


def vpt_claims(params: dict, metrics: dict, numeric: dict, claims: dict, pub_rows: list, tasks, groups: dict) -> list:
    """VPT's claims (VPT-deep vs Full and Linear, storage) and its regime checks, from the numbers
    ``reports.vpt.build`` computed (``numeric``: per run per-task and per-group stats)."""
    P = "vpt"
    main = claims["main_runs"]
    deep, full, linear = main["vpt_deep"], main["full"], main["linear"]
    out = []

    def task_pair(a, b, t):
        return f"{t} {C.fmt_ms(*numeric[a]['tasks'][t][:2])} vs {C.fmt_ms(*numeric[b]['tasks'][t][:2])}"

    # 1. VPT-deep >= Full on most tasks
    claim = "VPT-deep ≥ Full fine-tuning on most tasks"
    c = claims["vpt_deep_vs_full"]
    paper = c["paper"]
    published = (f"VPT-deep ≥ Full on {paper['ge']} of {paper['of']} tasks (per-task table)" if paper
                 else _vpt_pub_groups(claims["groups_vpt_deep_vs_full"]["paper"], False, "VPT-deep", "Full"))
    m = c["mini"]
    if m is None or not m["of"]:
        out.append(missing(P, "claim", claim, published, "needs runs vpt_deep and full with a common task" if m else f"run {'vpt_deep' if deep is None else 'full'} has no metrics"))
    else:
        a, b = V.group_stats(numeric[deep]["by_task"], m["tasks"]), V.group_stats(numeric[full]["by_task"], m["tasks"])
        mini = f"VPT-deep ≥ Full on {m['ge']} of {m['of']} tasks; mean over them {C.fmt_ms(a['mean'], a['std'])} vs {C.fmt_ms(b['mean'], b['std'])}"
        ev = f"runs {deep} vs {full}, per task (mean ± std over seeds): " + "; ".join(task_pair(deep, full, t) for t in m["tasks"])
        out.append(entry(P, "claim", claim, published, mini, m["ge"] > m["of"] / 2, ev + "; holds = ≥ on more than half of the tasks"))

    # 2. VPT-deep > Linear, by task and by group mean
    claim = "VPT-deep > Linear probing (on most tasks and most group means)"
    c = claims["vpt_deep_vs_linear"]
    paper = c["paper"]
    published = (f"VPT-deep > Linear on {paper['gt']} of {paper['of']} tasks (per-task table)" if paper
                 else _vpt_pub_groups(claims["groups_vpt_deep_vs_linear"]["paper"], True, "VPT-deep", "Linear"))
    m, gm = c["mini"], claims["groups_vpt_deep_vs_linear"]["mini"]
    if m is None or not m["of"]:
        out.append(missing(P, "claim", claim, published, "needs runs vpt_deep and linear with a common task" if m else f"run {'vpt_deep' if deep is None else 'linear'} has no metrics"))
    else:
        gwins = [g for g, (x, y) in gm.items() if x > y]
        mini = (f"VPT-deep > Linear on {m['gt']} of {m['of']} tasks and in {len(gwins)} of {len(gm)} group means ("
                + ", ".join(f"{V.GROUP_LABEL[g]} {C.fmt_ms(numeric[deep]['groups'][g]['mean'], numeric[deep]['groups'][g]['std'])} vs "
                            f"{C.fmt_ms(numeric[linear]['groups'][g]['mean'], numeric[linear]['groups'][g]['std'])}" for g in gm) + ")")
        ev = f"runs {deep} vs {linear}, per task: " + "; ".join(task_pair(deep, linear, t) for t in m["tasks"])
        out.append(entry(P, "claim", claim, published, mini, m["gt"] > m["of"] / 2 and len(gwins) > len(gm) / 2,
                         ev + "; holds = strictly better on more than half of the tasks and of the group means"))

    # 3. storage
    claim = "VPT-deep stores far fewer parameters than Full for all tasks (total-parameter multiplier)"
    pm = claims["multiplier"]["paper"]
    n_pub = sum(_published_task_counts(pub_rows).values())
    published = None
    if "vpt_deep" in pm and "full" in pm:
        tags = ([f"{n_pub} tasks"] if n_pub else []) + ([] if pm["vpt_deep"][1] and pm["full"][1] else ["unconfirmed"])
        published = f"VPT-deep {pm['vpt_deep'][0]:.2f}× vs Full {pm['full'][0]:.2f}×" + (f" ({', '.join(tags)})" if tags else "")
    mm = claims["multiplier"]["mini"]
    x, y = mm.get("vpt_deep", math.nan), mm.get("full", math.nan)
    if _nan(x) or _nan(y):
        out.append(missing(P, "claim", claim, published, "needs metrics of runs vpt_deep and full (and the backbone's parameter count)"))
    else:
        nd, nf = len(numeric[deep]["tasks"]), len(numeric[full]["tasks"])
        mini = f"VPT-deep {x:.3f}× vs Full {y:.3f}× ({nd} tasks)" if nd == nf else f"VPT-deep {x:.3f}× ({nd} tasks) vs Full {y:.3f}× ({nf} tasks)"
        ev = (f"reports.vpt.storage_multiplier of runs {deep} and {full}: (frozen parameters once + Σ trainable per task) / backbone parameters; "
              f"Full stores {y / x:.1f}× what VPT-deep stores; the mini tasks are fewer and the mini heads large relative to the backbone")
        out.append(entry(P, "claim", claim, published, mini, x < y, ev))

    # 4. regime: Full > Linear on the Structured and Specialized group means (the paper's order)
    pf, pl = V._paper_groups(pub_rows, "Full"), V._paper_groups(pub_rows, "Linear")
    for g in ("structured", "specialized"):
        claim = f"Full fine-tuning beats Linear probing on the {V.GROUP_LABEL[g]} group mean"
        published = f"Full {pf[g]:.2f} vs Linear {pl[g]:.2f}" if g in pf and g in pl else None
        sf = numeric[full]["groups"].get(g) if full else None
        sl = numeric[linear]["groups"].get(g) if linear else None
        if not sf or not sl or not sf["n_tasks"] or not sl["n_tasks"]:
            out.append(missing(P, "regime", claim, published, f"needs runs full and linear with a measured {V.GROUP_LABEL[g]} task"))
            continue
        mini = f"Full {C.fmt_ms(sf['mean'], sf['std'])} vs Linear {C.fmt_ms(sl['mean'], sl['std'])} ({V.GROUP_LABEL[g]}, {sf['n_tasks']} task{'s' * (sf['n_tasks'] > 1)})"
        ev = f"runs {full} vs {linear}, tasks " + listed(t for t in tasks if groups.get(t) == g and t in numeric[full]["tasks"])
        out.append(entry(P, "regime", claim, published, mini, sf["mean"] > sl["mean"], ev))

    # 5. regime: enough tasks per group for a group mean to mean something
    claim = "at least two measured tasks in every VTAB group (Natural, Specialized, Structured) plus FGVC"
    pub_counts = _published_task_counts(pub_rows)
    published = ", ".join(f"{V.GROUP_LABEL[g]} {pub_counts[g]}" for g in V.GROUPS if g in pub_counts) + " tasks" if pub_counts else None
    measured = [t for t in tasks if any(t in numeric[r]["tasks"] for r in numeric)]
    counts = {g: [t for t in measured if groups.get(t) == g] for g in V.GROUPS}
    if not measured:
        out.append(missing(P, "regime", claim, published, "no VPT task measured"))
    else:
        mini = ", ".join(f"{V.GROUP_LABEL[g]} {len(counts[g])}" for g in V.GROUPS) + " tasks"
        ev = "measured tasks per group: " + "; ".join(f"{V.GROUP_LABEL[g]}: {listed(counts[g]) or 'none'}" for g in V.GROUPS)
        out.append(entry(P, "regime", claim, published, mini, all(len(v) >= (1 if g == "fgvc" else 2) for g, v in counts.items()), ev))

    # 6. regime: convergence and chance
    out.append(convergence(P, metrics, [r for r in C.run_names(params, P) if r in metrics]))
    n_cls = _num_classes(metrics)
    rows, skipped = [], []
    for t in measured:
        best = max(((numeric[r]["tasks"][t][0], numeric[r]["label"]) for r in numeric if t in numeric[r]["tasks"]), default=None)
        if t in n_cls:
            rows.append((t, best[0], best[1], n_cls[t]))
        else:
            skipped.append(t)
    out.append(chance_check(P, rows, skipped))
    return out
