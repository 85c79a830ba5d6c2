"""Visual prompting's verdict per claim (``claims.json`` of ``reports.visual_prompting``): the paper's
claims and the regime checks, from the numbers ``reports.visual_prompting.build`` computed. Record
format: ``reports.claims``.
"""

from __future__ import annotations

import numpy as np

from . import _common as C
from . import vp_facts as VP
from .claims import _num_classes, _pv, chance_check, convergence, entry, listed, missing


def _specialized_vp_task(tasks, analogs: dict) -> str | None:
    """The VP task standing in for a specialised (satellite) dataset: vp/vp-sensor, or EuroSAT's."""
    if "vp/vp-sensor" in tasks:
        return "vp/vp-sensor"
    return next((t for t in tasks if C.norm(analogs.get(t) or "") == "eurosat"), None)


def vp_claims(params: dict, metrics: dict, tasks, runs: dict, measured: dict, shifted: dict, averages: dict, drops: dict,
              claims: dict, pub_rows: list, analogs: dict) -> list:
    """VP's claims (VP beats TP, VP is more robust to the style shift) and its regime checks, from
    the numbers ``reports.visual_prompting.build`` computed (``runs``: registered method -> run)."""
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
