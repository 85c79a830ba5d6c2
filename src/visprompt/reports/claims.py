"""Verdict per claim: the papers' claims and the regime checks of the run, as plain records.

Each report builder (``reports.vpt``, ``reports.visual_prompting``, ``reports.rpo``) computes its
tables and its ``claims`` dict once and hands those numbers here; the functions below only turn them
into verdicts, so a figure in ``claims.json`` is the number the report's tables show. One record
per claim, always with exactly these keys::

    {"paper": "vpt" | "vp" | "rpo", "kind": "claim" | "regime", "claim": str,
     "published": str | None, "mini": str, "holds": True | False | None, "evidence": str}

* ``kind``: ``"claim"`` is what the paper claims about its method; ``"regime"`` is a check that the
  run sits in the papers' regime (baselines ordered as in the paper, training converged, tasks above
  chance; DESIGN.md "Regime calibration"). Regime checks never look at the method under study.
* ``published``: the paper's figure, read from ``visprompt.published.<paper>`` only; None when the
  reference has no number for it.
* ``mini``: the measured figure(s), mean ± sample std over seeds. The key keeps its name in the
  paper profile, where the measurements come from the real datasets.
* ``holds``: the verdict on the measured numbers; None when a run (or record) it needs is missing.
* ``evidence``: which runs, tasks and numbers the verdict rests on.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import write_json
from . import _common as C

KEYS = ("paper", "kind", "claim", "published", "mini", "holds", "evidence")
CHANCE_FACTOR = 1.5  # a task whose best accuracy is below this multiple of chance says little
MAX_LISTED = 10  # names listed in an evidence string before "and N more"
HOLDS_TEXT = {True: "yes", False: "no", None: "– (not measured)"}


# --- records ----------------------------------------------------------------------------------


def entry(paper: str, kind: str, claim: str, published, mini: str, holds, evidence: str) -> dict:
    """One verdict record (``holds`` coerced to a plain bool so numpy booleans serialise)."""
    return {"paper": paper, "kind": kind, "claim": claim, "published": published, "mini": mini,
            "holds": None if holds is None else bool(holds), "evidence": evidence}


def missing(paper: str, kind: str, claim: str, published, why: str) -> dict:
    """A claim whose runs are not there yet: holds None, the reason as evidence."""
    return entry(paper, kind, claim, published, C.DASH, None, why)


def listed(items, limit: int = MAX_LISTED) -> str:
    """'a, b, c' with at most ``limit`` names, then 'and N more'."""
    items = [str(i) for i in items]
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pv(row: dict, digits: int = 2) -> str:
    """A published value without tags ('≈75.30' for an approximate one)."""
    return ("≈" if row.get("approximate") else "") + f"{float(row['value']):.{digits}f}"


# --- checks shared by the three papers ------------------------------------------------------


def _cell_name(cell: dict) -> str:
    if cell.get("cell"):
        return str(cell["cell"])
    return "/".join(str(cell[k]) for k in ("protocol", "dataset", "task", "shots", "seed") if k in cell)


def convergence(paper: str, metrics: dict, runs) -> dict:
    """Regime: every trained cell's training loss plateaued (``cell['plateau']``, written by
    ``train.fit``). Cells without training (zero-shot, probes) do not count; a metrics file older
    than the plateau record leaves the verdict open (None) unless another cell already failed."""
    claim = "every trained cell converged (training loss plateaued)"
    trained, failed, unknown, runs_seen, by_run = 0, [], [], [], []
    for run in runs:
        cells = [c for c in (metrics.get(run) or {}).get("cells", []) if c.get("history") or "plateau" in c]
        if cells:
            runs_seen.append(run)
        for c in cells:
            trained += 1
            p = c.get("plateau") or {}
            name = f"{run}:{_cell_name(c)}"
            if p.get("converged") is False:
                imp = p.get("improvement")
                failed.append(name + (f" (loss −{100 * imp:.1f}% over its last {p.get('window_epochs')} epochs)" if isinstance(imp, (int, float)) else ""))
            elif p.get("converged") is None:
                unknown.append(name)
        n_bad = sum(1 for c in cells if (c.get("plateau") or {}).get("converged") is False)
        if n_bad:  # the why: how long the cells that still improve were trained
            epochs = sorted({int(c["epochs_run"]) for c in cells if c.get("epochs_run")})
            by_run.append(f"{run} {n_bad}/{len(cells)}" + (f" at {'/'.join(map(str, epochs))} epochs" if epochs else ""))
    if not trained:
        return missing(paper, "regime", claim, None, "no trained cell in the metrics of " + (listed(runs) or "any run"))
    holds = False if failed else (None if unknown else True)
    mini = f"{trained - len(failed) - len(unknown)} of {trained} trained cells converged" + (f", {len(unknown)} without a plateau record" if unknown else "")
    parts = [f"cells with a training history in {len(runs_seen)} runs ({listed(runs_seen)})"]
    if failed:
        parts.append(f"not converged per run (the budget's epochs; docs/mini_world.md): {', '.join(by_run)}")
        parts.append(f"not converged ({len(failed)}): {listed(failed)}")
    if unknown:
        parts.append(f"no plateau verdict ({len(unknown)}; older metrics file or < 2 epochs): {listed(unknown)}")
    return entry(paper, "regime", claim, None, mini, holds, "; ".join(parts))


def chance_check(paper: str, rows: list, skipped=(), what: str = "task", plural: str = "tasks") -> dict:
    """Regime: no task's best measured accuracy is below CHANCE_FACTOR × chance (100 / classes).
    ``rows``: (task, best accuracy, method that reached it, number of classes); ``what`` names a
    row in the texts ('task' / 'tasks', 'dataset half' / 'dataset halves')."""
    claim = f"no {what} has its best measured accuracy below {CHANCE_FACTOR:g}× chance (100 / classes)"
    rows = [r for r in rows if not _nan(r[1]) and r[3]]
    if not rows:
        why = "no measured task with a known class count"
        return missing(paper, "regime", claim, None, why + (f" (skipped: {listed(skipped)})" if skipped else ""))
    ratio = {name: best / (100.0 / n) for name, best, _, n in rows}
    low = [r for r in rows if ratio[r[0]] < CHANCE_FACTOR]
    name, best, by, n = min(rows, key=lambda r: ratio[r[0]])
    mini = f"{len(low)} of {len(rows)} {plural} below {CHANCE_FACTOR:g}× chance; lowest {name}: {best:.1f} ({by}) = {ratio[name]:.2f}× chance ({n} classes)"
    evidence = ("below: " + listed(f"{t} {b:.1f} by {m} vs chance {100 / k:.1f}" for t, b, m, k in low)) if low else "none below"
    evidence += f"; best measured method per {what} over the paper's runs"
    if skipped:
        evidence += f"; skipped (no class count): {listed(skipped)}"
    return entry(paper, "regime", claim, None, mini, not low, evidence)


# --- the table and the files ------------------------------------------------------------------


def claims_table(entries: list, label: str = "mini") -> pd.DataFrame:
    """claim | published (paper) | measured | holds, the paper's claims first, then the regime checks."""
    ordered = [e for e in entries if e["kind"] == "claim"] + [e for e in entries if e["kind"] != "claim"]
    rows = [{"claim": ("(regime) " if e["kind"] == "regime" else "") + e["claim"],
             "published (paper)": e["published"] if e["published"] is not None else C.DASH,
             f"{label} (measured)": e["mini"], "holds": HOLDS_TEXT[e["holds"]]} for e in ordered]
    columns = ["claim", "published (paper)", f"{label} (measured)", "holds"]
    if any("second_world" in e for e in ordered):  # the index attaches the other world's verdicts
        for row, e in zip(rows, ordered):
            o = e.get("second_world")
            row["other world"] = C.DASH if o is None else HOLDS_TEXT[o["holds"]] + (" · unstable" if e.get("stable") is False else "")
        columns.append("other world")
    return pd.DataFrame(rows, columns=columns)


def write_claims(entries: list, out_dir, label: str = "mini") -> pd.DataFrame:
    """``<out_dir>/claims.json`` (the records) and ``<out_dir>/claims.md`` (table + evidence)."""
    for e in entries:
        if set(e) != set(KEYS):
            raise ValueError(f"a claim record must have exactly the keys {KEYS}, got {sorted(e)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "claims.json", entries)
    table = claims_table(entries, label)
    lines = ["# Verdict per claim", "", table.to_markdown(index=False), "", "## Evidence", ""]
    lines += [f"- **{e['claim']}** ({e['kind']}): {e['evidence']}" for e in entries]
    (out / "claims.md").write_text("\n".join(lines) + "\n")
    return table


# --- VPT --------------------------------------------------------------------------------------


def _published_task_counts(pub_rows: list) -> dict:
    """group -> number of tasks in the paper's per-task published rows."""
    from . import vpt as V

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
    from .vpt import GROUP_LABEL

    wins = sum((x > y) if strict else (x >= y) for x, y in pair.values())
    return (f"{a} {'>' if strict else '≥'} {b} in {wins} of {len(pair)} group means ("
            + ", ".join(f"{GROUP_LABEL[g]} {x:.2f} vs {y:.2f}" for g, (x, y) in pair.items()) + ")")


def vpt_claims(params: dict, metrics: dict, numeric: dict, claims: dict, pub_rows: list, tasks, groups: dict) -> list:
    """VPT's claims (VPT-deep vs Full and Linear, storage) and its regime checks, from the numbers
    ``reports.vpt.build`` computed (``numeric``: per run per-task and per-group stats)."""
    from . import vpt as V

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


def _num_classes(metrics: dict) -> dict:
    """task -> number of classes, from the cells (``num_classes``, written by the train stages)."""
    out = {}
    for res in metrics.values():
        for c in res.get("cells", []):
            if c.get("task") and isinstance(c.get("num_classes"), int):
                out.setdefault(c["task"], c["num_classes"])
    return out


# --- visual prompting -------------------------------------------------------------------------


def _specialized_vp_task(tasks, analogs: dict) -> str | None:
    """The VP task standing in for a specialised (satellite) dataset: vp/vp-sensor, or EuroSAT's."""
    if "vp/vp-sensor" in tasks:
        return "vp/vp-sensor"
    return next((t for t in tasks if C.norm(analogs.get(t) or "") == "eurosat"), None)


def vp_claims(params: dict, metrics: dict, tasks, runs: dict, measured: dict, shifted: dict, averages: dict, drops: dict,
              claims: dict, pub_rows: list, analogs: dict) -> list:
    """VP's claims (VP beats TP, VP is more robust to the style shift) and its regime checks, from
    the numbers ``reports.visual_prompting.build`` computed (``runs``: registered method -> run)."""
    from . import visual_prompting as VP

    P = "vp"
    out = []
    have = lambda m: m in measured and measured[m]  # noqa: E731

    # 1. VP (pad) > TP on average
    claim = "VP (padding prompt) beats TP (zero-shot text prompt) on average over the datasets"
    p = claims["vp_vs_zeroshot"]["paper"]
    published = None
    if p:
        tag = p["unconfirmed"].lstrip(", ")
        published = (f"VP > TP on {len(p['wins'])} of {len(p['of'])} datasets with both published: "
                     + ", ".join(f"{d} {_pv(a)} vs {_pv(b)}" for d, (a, b) in p["pairs"].items()) + (f" ({tag})" if tag else ""))
    m = claims["vp_vs_zeroshot"]["mini"]
    if m is None:
        out.append(missing(P, "claim", claim, published, f"run {runs.get('vp_pad') or 'vp_pad'} or {runs.get('zeroshot') or 'zeroshot'} has no metrics"))
    else:
        mini = f"VP (pad) {VP._fmt_avg(averages['vp_pad'])} vs TP {VP._fmt_avg(averages['zeroshot'])} (average over datasets)"
        ev = (f"runs {runs['vp_pad']} vs {runs['zeroshot']}: mean difference {m['avg_diff']:+.1f} points over {len(m['of'])} datasets; "
              f"VP ahead on {len(m['wins'])}" + (f" ({listed(m['wins'])})" if m["wins"] else ""))
        out.append(entry(P, "claim", claim, published, mini, m["avg_diff"] > 0, ev))

    # 2. robustness to the style shift
    claim = "VP is more robust to the style shift than TP (smaller drop from test to shifted test)"
    if not (have("vp_pad") and have("zeroshot")) or not drops["vp_pad"]["avg"]["n"] or not drops["zeroshot"]["avg"]["n"]:
        out.append(missing(P, "claim", claim, None, "needs runs vp_pad and zeroshot with shifted_test_top1"))
    else:
        da, db = drops["vp_pad"]["avg"], drops["zeroshot"]["avg"]
        mini = f"drop VP (pad) {VP._fmt_avg(da)} vs TP {VP._fmt_avg(db)} points"
        ev = (f"drop = test_top1 − shifted_test_top1, averaged over datasets (runs {runs['vp_pad']}, {runs['zeroshot']}); per dataset VP vs TP: "
              + "; ".join(f"{t} {C.fmt_values(list(drops['vp_pad']['by_task'][t].values()))} vs {C.fmt_values(list(drops['zeroshot']['by_task'][t].values()))}"
                          for t in tasks if drops["vp_pad"]["by_task"].get(t) and drops["zeroshot"]["by_task"].get(t))
              + "; the paper states this qualitatively only (visprompt.published.visual_prompting.QUALITATIVE)")
        out.append(entry(P, "claim", claim, None, mini, da["mean"] < db["mean"], ev))

    # 3. regime: every style-shifted copy is harder than its source for zero-shot CLIP
    claim = "every style-shifted test copy is harder than its source for zero-shot CLIP"
    pairs = [(t, C.stats(measured["zeroshot"][t].values()), C.stats(shifted["zeroshot"][t].values()))
             for t in tasks if have("zeroshot") and measured["zeroshot"].get(t) and shifted.get("zeroshot", {}).get(t)]
    if not pairs:
        out.append(missing(P, "regime", claim, None, "needs run zeroshot with test_top1 and shifted_test_top1"))
    else:
        easier = [t for t, a, b in pairs if not b[0] < a[0]]
        mini = f"shifted copy harder on {len(pairs) - len(easier)} of {len(pairs)} datasets"
        ev = f"run {runs['zeroshot']}, test → shifted test: " + "; ".join(f"{t} {C.fmt_ms(*a[:2])} → {C.fmt_ms(*b[:2])}" for t, a, b in pairs)
        if len(pairs) < len(tasks):
            ev += f"; unmeasured: {listed(t for t in tasks if t not in {p[0] for p in pairs})}"
        out.append(entry(P, "regime", claim, None, mini, not easier, ev))

    # 4. regime: the linear probe beats zero-shot on the specialised task
    t = _specialized_vp_task(tasks, analogs)
    claim = f"the linear probe beats zero-shot CLIP on the specialised task {t or 'vp/vp-sensor'}"
    published = None
    if t:
        lp = C.find_published(VP.published_for(pub_rows, "logistic_probe"), C.analog_names(analogs.get(t)))
        tp = C.find_published(VP.published_for(pub_rows, "zeroshot"), C.analog_names(analogs.get(t)))
        if lp and tp:
            published = f"LP {_pv(lp)} vs TP {_pv(tp)} ({lp['dataset']}" + ("" if C.is_confirmed(lp) and C.is_confirmed(tp) else ", unconfirmed") + ")"
    if not t or not (have("logistic_probe") and have("zeroshot")) or not measured["logistic_probe"].get(t) or not measured["zeroshot"].get(t):
        out.append(missing(P, "regime", claim, published, "needs runs logistic_probe and zeroshot on " + (t or "vp/vp-sensor")))
    else:
        a, b = C.stats(measured["logistic_probe"][t].values()), C.stats(measured["zeroshot"][t].values())
        mini = f"LP {C.fmt_ms(*a[:2])} vs TP {C.fmt_ms(*b[:2])} ({t})"
        out.append(entry(P, "regime", claim, published, mini, a[0] > b[0], f"runs {runs['logistic_probe']} vs {runs['zeroshot']}, test_top1 on {t} (analogue of {analogs.get(t) or '–'})"))

    # 5. regime: convergence and chance
    out.append(convergence(P, metrics, [r for r in C.run_names(params, P) if r in metrics]))
    n_cls = _num_classes(metrics)
    rows, skipped = [], []
    for t in tasks:
        cands = [(float(np.mean(list(measured[m][t].values()))), VP.MAIN[m][0]) for m in measured if measured[m].get(t)]
        if not cands:
            continue
        best = max(cands)
        if t in n_cls:
            rows.append((t, best[0], best[1], n_cls[t]))
        else:
            skipped.append(t)
    out.append(chance_check(P, rows, skipped))
    return out


# --- RPO --------------------------------------------------------------------------------------


def _avg(b2n_stats: dict, run: str | None) -> dict | None:
    st = (b2n_stats.get(run) or {}).get("Average") if run else None
    return st if st and st["n"] else None


def _class_halves(params: dict, dataset: str):
    """(base, new) class counts of a CoOp-mini dataset from its manifest; None when unavailable."""
    root = (params.get("data") or {}).get("root")
    if not root:
        return None
    try:
        from ..data.mini import base_new_split
        from ..data.store import load_manifest

        n = len(load_manifest(root, f"coop/{dataset}")["classnames"])
    except Exception:  # noqa: BLE001 - no manifest (not rendered here, or a real dataset): skip
        return None
    base, new = base_new_split(n)
    return len(base), len(new)


def rpo_claims(params: dict, metrics: dict, runs: list, b2n_stats: dict, dg_stats: dict, claims: dict, pub_rows: list, analogs: dict) -> list:
    """RPO's claims (HM, seed variance, the two ablations) and its regime checks, from the numbers
    ``reports.rpo.build`` computed (``b2n_stats`` per run, ``claims['variance']`` from the
    few-shot variance table)."""
    from . import rpo as R

    P = "rpo"
    out = []
    main = claims["main_runs"]
    rpo, coop, cocoop, zs = main["rpo"], main["coop"], main["cocoop"], main["zeroshot"]
    paper = claims.get("b2n_paper", {})
    hm_rule = "HM of the average base and new accuracies (CoCoOp's convention, the report's)"

    def pub_hm(m):
        if m not in paper or "hm" not in paper[m]:
            return None
        v, conf, conv = paper[m]["hm"]
        return f"{v:.2f}" + (f" [{R.HM_CONVENTIONS.get(conv, conv)}]" if conv else "") + ("" if conf else " (unconfirmed)")

    # 1. RPO's HM above CoOp's and CoCoOp's (base-to-new average)
    for other in ("coop", "cocoop"):
        claim = f"RPO's base-to-new HM is higher than {R.LABELS[other]}'s"
        published = f"RPO {pub_hm('rpo')} vs {R.LABELS[other]} {pub_hm(other)}" if pub_hm("rpo") and pub_hm(other) else None
        a, b = _avg(b2n_stats, rpo), _avg(b2n_stats, main[other])
        if not a or not b:
            out.append(missing(P, "claim", claim, published, f"run {'rpo' if not a else other} has no base-to-new metrics"))
            continue
        mini = f"RPO {C.fmt_ms(*a['hm'])} vs {R.LABELS[other]} {C.fmt_ms(*b['hm'])}"
        ev = (f"{hm_rule}; ± = std over seeds of the per-seed HM; runs {rpo} ({a['n']} datasets: B {a['base'][0]:.1f} / N {a['new'][0]:.1f}) vs "
              f"{main[other]} ({b['n']} datasets: B {b['base'][0]:.1f} / N {b['new'][0]:.1f}); mean of per-dataset HMs {a['mean_hm']:.1f} vs {b['mean_hm']:.1f}")
        out.append(entry(P, "claim", claim, published, mini, a["hm"][0] > b["hm"][0], ev))

    # 2. RPO's seed std below CoOp's and CoCoOp's: few-shot, then base-to-new (new classes)
    claim = "RPO's seed std is below CoOp's and CoCoOp's (few-shot protocol)"
    v = claims["variance"]
    have = [o for o in ("coop", "cocoop") if o in v and v[o]["of"]]
    if len(have) < 2:
        out.append(missing(P, "claim", claim, None, "needs few-shot runs rpo, coop and cocoop with ≥ 2 seeds (missing: " + listed(o for o in ("coop", "cocoop") if o not in have) + ")"))
    else:
        mini = "; ".join(f"RPO {v[o]['rpo_mean_std']:.2f} vs {R.LABELS[o]} {v[o]['other_mean_std']:.2f}" for o in have) + " points"
        ev = ("mean over (dataset, shots) of the sample std over seeds of few-shot test top-1 (reports.rpo.variance_table); "
              + "; ".join(f"vs {R.LABELS[o]}: lower in {len(v[o]['lower'])} of {len(v[o]['of'])} cells ({listed(f'{d}/{k}-shot' for d, k in v[o]['of'])})" for o in have))
        out.append(entry(P, "claim", claim, None, mini, all(v[o]["rpo_mean_std"] < v[o]["other_mean_std"] for o in have), ev))

    claim = "RPO's seed std is below CoOp's and CoCoOp's (base-to-new, new classes)"
    vp_ = claims.get("variance_paper") or {}
    published = ("RPO new-class std over 10 seeds " + ", ".join(f"{d} {val:.2f}" for d, (val, _) in vp_.items()) + "; CoOp/CoCoOp not published") if vp_ else None
    datasets = [d for d in (b2n_stats.get(rpo) or {}) if d != "Average"] if rpo else []
    parts, verdicts, lacking = [], [], []
    for o in ("coop", "cocoop"):
        ro = main[o]
        common = [d for d in datasets if ro in b2n_stats and not _nan(b2n_stats[rpo][d]["new"][1]) and not _nan(b2n_stats[ro][d]["new"][1])]
        if not common:
            lacking.append(o)
            continue
        a = float(np.mean([b2n_stats[rpo][d]["new"][1] for d in common]))
        b = float(np.mean([b2n_stats[ro][d]["new"][1] for d in common]))
        parts.append((o, a, b, common))
        verdicts.append(a < b)
    if lacking:
        out.append(missing(P, "claim", claim, published, "needs base-to-new runs rpo, coop and cocoop with ≥ 2 seeds (missing: " + listed(lacking) + ")"))
    else:
        mini = "; ".join(f"RPO {a:.2f} vs {R.LABELS[o]} {b:.2f}" for o, a, b, _ in parts) + " points"
        ev = ("mean over datasets of the per-dataset sample std over seeds of new-class top-1 (reports.rpo.base2new_stats); datasets "
              + listed(parts[0][3]))
        out.append(entry(P, "claim", claim, published, mini, all(verdicts), ev))

    # 3. ablations (published: the reference has no numbers for them)
    for key, value, claim, name in (("read_only", False, "read-only prompts beat prompts that write (base-to-new HM)", "rpo_write"),
                                    ("init", "random", "ST-initialisation beats random initialisation (base-to-new HM)", "rpo_random_init")):
        abl = next((r for r in runs if r != rpo and C.registered(params, P, r) == "rpo" and C.run_cfg(params, P, r, metrics).get(key) == value), None)
        a, b = _avg(b2n_stats, rpo), _avg(b2n_stats, abl)
        if abl is None:
            out.append(missing(P, "claim", claim, None, f"no run of method rpo with cfg {key}: {str(value).lower()} in params (e.g. {name})"))
        elif not a or not b:
            out.append(missing(P, "claim", claim, None, f"run {'rpo' if not a else abl} has no base-to-new metrics"))
        else:
            mini = f"RPO {C.fmt_ms(*a['hm'])} vs {abl} {C.fmt_ms(*b['hm'])}"
            ev = f"{hm_rule}; runs {rpo} vs {abl} (same method, cfg {key}: {str(value).lower()}); B/N {a['base'][0]:.1f}/{a['new'][0]:.1f} vs {b['base'][0]:.1f}/{b['new'][0]:.1f}"
            out.append(entry(P, "claim", claim, None, mini, a["hm"][0] > b["hm"][0], ev))

    # 4. regime: CoOp over zero-shot on base classes, under it on new classes
    for metric, word, sign in (("base", "higher", ">"), ("new", "lower", "<")):
        claim = f"CoOp's {metric}-class accuracy is {word} than zero-shot CLIP's (base-to-new average)"
        pc, pz = paper.get("coop", {}).get(metric), paper.get("zeroshot", {}).get(metric)
        published = f"CoOp {pc[0]:.2f} vs CLIP {pz[0]:.2f}" + ("" if pc[1] and pz[1] else " (unconfirmed)") if pc and pz else None
        a, b = _avg(b2n_stats, coop), _avg(b2n_stats, zs)
        if not a or not b:
            out.append(missing(P, "regime", claim, published, f"run {'coop' if not a else 'zeroshot'} has no base-to-new metrics"))
            continue
        mini = f"CoOp {C.fmt_ms(*a[metric])} vs zero-shot {C.fmt_ms(*b[metric])} ({metric}, {a['n']} datasets)"
        common = [d for d in b2n_stats[coop] if d != "Average" and d in b2n_stats[zs] and not _nan(b2n_stats[coop][d][metric][0]) and not _nan(b2n_stats[zs][d][metric][0])]
        ev = f"runs {coop} vs {zs}, {metric} per dataset: " + "; ".join(f"{d} {C.fmt_ms(*b2n_stats[coop][d][metric])} vs {C.fmt_ms(*b2n_stats[zs][d][metric])}" for d in common)
        holds = a[metric][0] > b[metric][0] if sign == ">" else a[metric][0] < b[metric][0]
        out.append(entry(P, "regime", claim, published, mini, holds, ev))

    # 5. regime: every DG target harder than its source for zero-shot
    dg = (params.get(P) or {}).get("dg") or {}
    source, targets = dg.get("source"), list(dg.get("targets") or [])
    claim = "every domain-generalisation target that is harder for zero-shot CLIP in the paper is harder in mini too"
    published = None
    rows = [r for r in R.published_for(pub_rows, "zeroshot", "dg") if R._metric_is(r, "top1")]
    found = {n: C.find_published(rows, C.analog_names(analogs.get(n))) for n in [source] + targets} if source else {}
    required = list(targets)  # without published numbers every target must be harder
    if found and all(found.values()):
        published = (f"CLIP {found[source]['dataset']} {found[source]['value']:.2f} → " + ", ".join(f"{found[t]['dataset']} {found[t]['value']:.2f}" for t in targets)
                     + ("" if all(C.is_confirmed(r) for r in found.values()) else " (unconfirmed)"))
        required = [t for t in targets if found[t]["value"] < found[source]["value"]]  # ImageNet-R is easier for CLIP
    st = dg_stats.get(zs) if zs else None
    if not source or not st or _nan(st[source]["mean"]):
        out.append(missing(P, "regime", claim, published, "needs run zeroshot with domain-generalisation cells"))
    else:
        src = st[source]["mean"]
        measured_t = [t for t in required if not _nan(st[t]["mean"])]
        easier = [t for t in measured_t if not st[t]["mean"] < src]
        holds = False if easier else (None if len(measured_t) < len(required) else True)
        mini = f"{len(measured_t) - len(easier)} of {len(required)} targets below the source ({source} {C.fmt_ms(st[source]['mean'], st[source]['std'])})"
        ev = (f"run {zs}, test_top1 of {source} → <target>_top1: " + "; ".join(f"{t} {C.fmt_ms(st[t]['mean'], st[t]['std'])}" for t in targets)
              + f"; required (harder in the paper): {listed(required) or 'none'}")
        out.append(entry(P, "regime", claim, published, mini, holds, ev))

    # 6. regime: convergence and chance (base and new halves of each base-to-new dataset)
    out.append(convergence(P, metrics, [r for r in runs if r in metrics]))
    rows, skipped = [], []
    b2n_sets = list(((params.get(P) or {}).get("base2new") or {}).get("datasets") or [])
    for d in b2n_sets:
        halves = _class_halves(params, d)
        for i, half in enumerate(("base", "new")):
            cands = [(st[d][half][0], claims["labels"].get(r, r)) for r, st in b2n_stats.items() if d in st and not _nan(st[d][half][0])]
            if not cands:
                continue
            if halves is None:
                skipped.append(f"{d} {half}")
            else:
                best = max(cands)
                rows.append((f"{d} {half}", best[0], best[1], halves[i]))
    out.append(chance_check(P, rows, skipped, what="dataset half", plural="dataset halves"))
    return out
