"""RPO's verdict per claim (``claims.json`` of ``reports.rpo``): the paper's claims and the regime
checks, from the numbers ``reports.rpo.build`` computed. Record format: ``reports.claims``.
"""

from __future__ import annotations

import numpy as np

from . import _common as C
from . import rpo_facts as R
from .claims import _nan, chance_check, convergence, entry, listed, missing


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
