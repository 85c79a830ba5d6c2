"""RPO report (Lee et al., 2023): base-to-new, domain generalisation and seed variance, mini world.

Measured numbers: the runs of ``params['rpo']['methods']`` read from ``<metrics_root>/rpo/<run>.json``
(cells with ``protocol`` base2new / dg / fewshot). Published numbers:
``visprompt.published.rpo.published_table()`` (CLIP ViT-B/16 on the real datasets), only in columns
labelled "published"; a mini dataset is shown beside the paper dataset it stands in for (its
manifest ``analog``), named in the published cell.

Conventions
-----------
* Per dataset, base and new are the mean ± sample std over seeds. **HM** = 2·B·N/(B+N) of the
  seed-mean base B and new N accuracies (± the sample std over seeds of the per-seed HM).
* The **Average** row's base and new are the means over datasets of the per-dataset means, and its
  HM is the HM of those two averages (CoCoOp's convention, used for the published baselines). The
  mean of the per-dataset HMs (the convention behind RPO's own published 77.78) is shown beside it
  in its own column.
* Variance: the sample std over seeds of few-shot test accuracy at each (dataset, shots).
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
from .rpo_claims import rpo_claims
from .rpo_facts import HM_CONVENTIONS, LABELS, PROTOCOL_NAMES, PUB_NAMES, _metric_is, _protocol_matches, published_for  # noqa: F401 - also this module's names


def _published_rpo_hm() -> str:
    """RPO's published average HM, read from the cited module (never typed here)."""
    from ..published.rpo import published_value

    v = published_value("rpo", "average", "hm")
    return f"{v['value']:.2f}" if v else "average HM"


PROTOCOLS = ("base2new", "dg", "fewshot")
AVERAGE_NAMES = ("average", "avg", "mean")


def _label(params, run) -> str:
    m = C.registered(params, "rpo", run)
    lab = LABELS.get(m, run)
    return lab if run == m else f"{lab} [{run}]"


def _protocols(params: dict, run: str) -> list:
    entry = ((params.get("rpo") or {}).get("methods") or {}).get(run) or {}
    return list(entry.get("protocols") or (params.get("rpo") or {}).get("protocols") or PROTOCOLS)


def cells_of(result: dict | None, protocol: str) -> list:
    return [c for c in (result or {}).get("cells", []) if c.get("protocol") == protocol]


def by_dataset_seed(cells: list, key: str) -> dict:
    """dataset -> {seed: value}."""
    out: dict = {}
    for c in cells:
        if isinstance(c.get(key), (int, float)):
            out.setdefault(c["dataset"], {})[int(c.get("seed", 0))] = float(c[key])
    return out


def base2new_stats(cells: list, datasets) -> dict:
    """Per dataset and 'Average': base/new means and stds, HM (see module doc), mean of per-dataset HM."""
    base, new = by_dataset_seed(cells, "base_top1"), by_dataset_seed(cells, "new_top1")
    out = {}
    for d in datasets:
        b, n = base.get(d, {}), new.get(d, {})
        bm, bs, _ = C.stats(b.values())
        nm, ns, _ = C.stats(n.values())
        _, hs, _ = C.stats([C.hm(b[s], n[s]) for s in b if s in n])
        out[d] = {"base": (bm, bs), "new": (nm, ns), "hm": (C.hm(bm, nm), hs)}
    present = [d for d in datasets if not math.isnan(out[d]["base"][0]) and not math.isnan(out[d]["new"][0])]
    if present:
        ab = float(np.mean([out[d]["base"][0] for d in present]))
        an = float(np.mean([out[d]["new"][0] for d in present]))
        common = set.intersection(*(set(base[d]) & set(new[d]) for d in present))
        per_seed_b = {s: np.mean([base[d][s] for d in present]) for s in common}
        per_seed_n = {s: np.mean([new[d][s] for d in present]) for s in common}
        _, bs, _ = C.stats(per_seed_b.values())
        _, ns, _ = C.stats(per_seed_n.values())
        _, hs, _ = C.stats([C.hm(per_seed_b[s], per_seed_n[s]) for s in common])
        out["Average"] = {"base": (ab, bs), "new": (an, ns), "hm": (C.hm(ab, an), hs),
                          "mean_hm": float(np.mean([out[d]["hm"][0] for d in present])), "n": len(present), "of": len(datasets)}
    else:
        nan = (math.nan, math.nan)
        out["Average"] = {"base": nan, "new": nan, "hm": nan, "mean_hm": math.nan, "n": 0, "of": len(datasets)}
    return out


# --- published --------------------------------------------------------------------------------


def _is_average(name) -> bool:
    n = C.norm(name)
    return any(n.startswith(a) for a in AVERAGE_NAMES)


def pub_cell(rows: list, metric: str, candidates=None, average: bool = False) -> str:
    rows = [r for r in rows if _metric_is(r, metric)]
    if average:
        r = next((r for r in rows if _is_average(r.get("dataset", ""))), None)
    else:
        r = C.find_published(rows, candidates or [])
    if r is None:
        return C.DASH
    where = str(r.get("dataset", ""))
    if r.get("hm_convention"):
        where += "; " + HM_CONVENTIONS.get(r["hm_convention"], str(r["hm_convention"]))
    return C.fmt_published(r["value"], r, where=where)


# --- the report -------------------------------------------------------------------------------


def _analogs(params: dict, names) -> dict:
    from ..data.mini import all_tasks

    try:
        known = all_tasks((params.get("data") or {}).get("sizes"))
    except Exception:  # noqa: BLE001
        known = all_tasks()
    return {d: (known[f"coop/{d}"].analog if f"coop/{d}" in known else (C.real_dataset_name(d) or d)) for d in names}


def build(params: dict, out_dir: str, metrics_root="reports/records") -> dict:
    """Base-to-new table (HM convention in the module doc), domain generalisation, seed-variance and
    accuracy-vs-shots figures, trainable parameters and the claims; tables (.md/.csv) and figures
    (.png) also go to ``out_dir``. Missing runs show '–'."""
    plt = C.pyplot()
    metrics = C.current_runs(params, "rpo", report.load_metrics("rpo", metrics_root))
    p = params.get("rpo") or {}
    runs = C.run_names(params, "rpo")
    b2n_sets = list((p.get("base2new") or {}).get("datasets") or [])
    dg = p.get("dg") or {}
    fs = p.get("fewshot") or {}
    analogs = _analogs(params, b2n_sets + [dg.get("source")] * bool(dg.get("source")) + list(dg.get("targets") or []) + list(fs.get("datasets") or []))
    pub_rows, pub_note = C.published_rows("rpo")
    files: dict = {}

    b2n, b2n_stats = _base2new(params, metrics, runs, b2n_sets, analogs, pub_rows, out_dir)
    dg_df, dg_stats = _dg(params, metrics, runs, dg, analogs, pub_rows, out_dir)
    fs_data = _fewshot_frame(params, metrics, runs)
    profile = C.profile_name(params)
    variance_figure, var_stats = _variance_figure(plt, fs_data, out_dir, files, profile)
    shots_figure = _shots_figure(plt, fs_data, out_dir, files, profile)
    params_df = _params_table(params, metrics, runs, pub_rows, out_dir)
    claims = compute_claims(params, runs, b2n_stats, dg_stats, var_stats, pub_rows)
    text = claims_text(claims, C.measured_label(params))
    if pub_note:
        text += f"\nNote: {pub_note}."
    verdicts = rpo_claims(params, metrics, runs, b2n_stats, dg_stats, claims, pub_rows, analogs)
    claims_table = K.write_claims(verdicts, out_dir, C.measured_label(params))
    files.update({k: f"{out_dir}/{k}.md" for k in ("base2new", "dg", "params", "claims")})
    files["claims_json"] = f"{out_dir}/claims.json"
    return {"claims_table": claims_table, "claims_list": verdicts, "base2new": b2n, "dg": dg_df, "variance_figure": variance_figure, "shots_figure": shots_figure, "params": params_df,
            "variance": var_stats, "claims": claims, "claims_text": text, "files": files, "published_note": pub_note}


def _base2new(params, metrics, runs, datasets, analogs, pub_rows, out_dir):
    rows, all_stats = [], {}
    L = C.measured_label(params)
    runs = [r for r in runs if "base2new" in _protocols(params, r)]
    for run in runs:
        st = base2new_stats(cells_of(metrics.get(run), "base2new"), datasets)
        all_stats[run] = st
    for d in datasets + ["Average"]:
        avg = d == "Average"
        for run in runs:
            st = all_stats[run][d]
            # an ablation run (rpo_write) is another configuration: never beside RPO's published numbers
            pubs = [] if C.is_ablation(params, "rpo", run, metrics) else published_for(pub_rows, C.registered(params, "rpo", run), "base2new")
            cand = C.analog_names(analogs.get(d))
            row = {"dataset": d, "method": _label(params, run)}
            row["analogue of (paper dataset)"] = "–" if avg else analogs.get(d, "–")
            row[f"base ({L})"] = C.fmt_ms(*st["base"])
            row[f"new ({L})"] = C.fmt_ms(*st["new"])
            row[f"HM ({L})"] = C.fmt_ms(*st["hm"])
            if avg and st["n"] and st["n"] < st["of"]:
                row[f"HM ({L})"] += f" ({st['n']}/{st['of']} datasets)"
            row[f"mean of per-dataset HM ({L})"] = (C.fmt_ms(st["mean_hm"]) if avg else "")
            for metric, name in (("base", "base"), ("new", "new"), ("hm", "HM")):
                row[f"{name} (published)"] = pub_cell(pubs, metric, cand, average=avg)
            rows.append(row)
    df = pd.DataFrame(rows, columns=["dataset", "method", "analogue of (paper dataset)", f"base ({L})", f"new ({L})", f"HM ({L})",
                                     f"mean of per-dataset HM ({L})", "base (published)", "new (published)", "HM (published)"])
    return C.save_table(df, out_dir, "base2new"), all_stats


def _dg(params, metrics, runs, dg, analogs, pub_rows, out_dir):
    source, targets = dg.get("source"), list(dg.get("targets") or [])
    rows, stats = [], {}
    L = C.measured_label(params)
    for run in [r for r in runs if "dg" in _protocols(params, r)]:
        cells = cells_of(metrics.get(run), "dg")
        pubs = [] if C.is_ablation(params, "rpo", run, metrics) else published_for(pub_rows, C.registered(params, "rpo", run), "dg")
        pubs_top1 = [r for r in pubs if _metric_is(r, "top1") or r.get("metric") is None]
        row = {"method": _label(params, run)}
        st = {}
        for name, key in [(source, "test_top1")] + [(t, f"{t}_top1") for t in targets]:
            vals = {int(c.get("seed", 0)): float(c[key]) for c in cells if isinstance(c.get(key), (int, float))}
            m, s, _ = C.stats(vals.values())
            st[name] = {"mean": m, "std": s, "seeds": vals}
            role = "source" if name == source else "target"
            row[f"{name} ({role}, {L})"] = C.fmt_ms(m, s)
            row[f"{name} (published)"] = pub_cell(pubs_top1, "top1", C.analog_names(analogs.get(name)))
        tmeans = [st[t]["mean"] for t in targets if not math.isnan(st[t]["mean"])]
        st["target_avg"] = float(np.mean(tmeans)) if tmeans and len(tmeans) == len(targets) else math.nan
        row[f"target average ({L})"] = C.fmt_ms(st["target_avg"])
        stats[run] = st
        rows.append(row)
    return C.save_table(pd.DataFrame(rows), out_dir, "dg"), stats


def _fewshot_frame(params, metrics, runs) -> pd.DataFrame:
    rows = []
    for run in [r for r in runs if "fewshot" in _protocols(params, r)]:
        for c in cells_of(metrics.get(run), "fewshot"):
            if isinstance(c.get("test_top1"), (int, float)):
                rows.append({"method": _label(params, run), "run": run, "dataset": c["dataset"], "shots": int(c["shots"]), "seed": int(c.get("seed", 0)), "top1": float(c["test_top1"])})
    return pd.DataFrame(rows, columns=["method", "run", "dataset", "shots", "seed", "top1"])


def variance_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and seed count of few-shot accuracy per (run, dataset, shots)."""
    if not len(df):
        return pd.DataFrame(columns=["run", "method", "dataset", "shots", "mean", "std", "n"])
    g = df.groupby(["run", "method", "dataset", "shots"])["top1"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def _variance_figure(plt, df, out_dir, files, profile: str = "mini"):
    """One panel per dataset at 16 shots (or the most shots run): the seeds as points, mean ± 1 sd."""
    import seaborn as sns

    var = variance_table(df)
    if not len(df):
        return C.finish_figure(C.empty_figure(f"no few-shot metrics yet ({profile} profile)"), out_dir, "variance", files), var
    shots = int(16 if (df["shots"] == 16).any() else df["shots"].max())
    d = df[df["shots"] == shots]
    datasets = list(dict.fromkeys(d["dataset"]))
    order = list(dict.fromkeys(df["method"]))
    palette = {m: f"C{i}" for i, m in enumerate(order)}
    fig, axes = plt.subplots(1, len(datasets), figsize=(0.6 + (0.55 * len(order) + 0.6) * len(datasets), 3.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        x = d[d["dataset"] == ds]
        with C.fixed_jitter():
            sns.stripplot(data=x, x="method", y="top1", order=order, hue="method", palette=palette, legend=False, ax=ax,
                          size=4, alpha=0.7, jitter=0.12, zorder=3)
        sns.pointplot(data=x, x="method", y="top1", order=order, errorbar="sd", color="0.15", markers="_", markersize=12,
                      linestyle="none", capsize=0.25, err_kws={"linewidth": 1.0}, ax=ax)
        ax.set_title(f"{ds}, {shots} shots", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("test top-1 (%)")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    fig.suptitle(f"RPO, {profile} profile: few-shot accuracy over seeds (points = seeds, n = {d['seed'].nunique()}; bar = mean ± 1 sd)", fontsize=9)
    fig.tight_layout()
    return C.finish_figure(fig, out_dir, "variance", files), var


def _shots_figure(plt, df, out_dir, files, profile: str = "mini"):
    """Accuracy vs shots per dataset on a log2 axis, mean over seeds ± 1 sd (seaborn errorbar='sd').
    No published curve: visprompt.published.rpo's only few-shot number (1 shot, new classes,
    average over 10 real datasets) measures something else than these panels."""
    import seaborn as sns

    if not len(df):
        return C.finish_figure(C.empty_figure(f"no few-shot metrics yet ({profile} profile)"), out_dir, "shots", files)
    datasets = list(dict.fromkeys(df["dataset"]))
    order = list(dict.fromkeys(df["method"]))
    palette = {m: f"C{i}" for i, m in enumerate(order)}
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.3 * len(datasets), 2.9), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        x = df[df["dataset"] == ds]
        sns.lineplot(data=x, x="shots", y="top1", hue="method", hue_order=order, palette=palette, errorbar="sd",
                     marker="o", markersize=4, linewidth=1.3, err_kws={"alpha": 0.15}, ax=ax, legend=ax is axes[0][-1])
        ax.set_xscale("log", base=2)
        ticks = sorted(df["shots"].unique())
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_title(ds, fontsize=9)
        ax.set_xlabel("shots per class (log2)")
        ax.set_ylabel("test top-1 (%)")
    leg = axes[0][-1].get_legend()
    if leg is not None:
        leg.set_frame_on(False)
        for t in leg.get_texts():
            t.set_fontsize(7)
        leg.set_title(None)
    fig.suptitle(f"RPO, {profile} profile: accuracy vs shots, mean over seeds, band = ± 1 sd", fontsize=9)
    fig.tight_layout()
    return C.finish_figure(fig, out_dir, "shots", files)


def _params_table(params, metrics, runs, pub_rows, out_dir):
    rows = []
    L = C.measured_label(params)
    for run in runs:
        res = metrics.get(run)
        row = {"method": _label(params, run), "cfg": ", ".join(f"{k}={v}" for k, v in C.run_cfg(params, "rpo", run, metrics).items()) or "–"}
        for proto in PROTOCOLS:
            vals = sorted({c["params"]["trainable"] for c in cells_of(res, proto) if "params" in c})
            row[f"trainable, {proto} ({L})"] = ", ".join(f"{v:,}" for v in vals) if vals else C.DASH
        totals = sorted({c["params"]["total"] for c in (res or {}).get("cells", []) if "params" in c})
        row[f"total ({L})"] = ", ".join(f"{v:,}" for v in totals) if totals else C.DASH
        pubs = [] if C.is_ablation(params, "rpo", run, metrics) else [r for r in published_for(pub_rows, C.registered(params, "rpo", run)) if _metric_is(r, "params")]
        row["trainable (published)"] = "; ".join(C.fmt_published(r["value"], r, where=r.get("dataset") or r.get("metric")) for r in pubs) or C.DASH
        rows.append(row)
    return C.save_table(pd.DataFrame(rows), out_dir, "params")


# --- claims -----------------------------------------------------------------------------------


def _run(params, runs, method):
    return C.main_run(params, "rpo", method) if C.main_run(params, "rpo", method) in runs else None


def compute_claims(params, runs, b2n_stats, dg_stats, var, pub_rows) -> dict:
    rpo = _run(params, runs, "rpo")
    claims: dict = {"variance": {}, "hm": {}, "dg": {}, "labels": {r: _label(params, r) for r in runs},
                    "main_runs": {m: _run(params, runs, m) for m in LABELS}}
    # variance across seeds: RPO vs each prompt baseline at every (dataset, shots)
    if rpo and len(var):
        mine = var[var["run"] == rpo].set_index(["dataset", "shots"])
        for other in ("coop", "cocoop", "clip_linear_probe"):
            o = _run(params, runs, other)
            if not o:
                continue
            theirs = var[var["run"] == o].set_index(["dataset", "shots"])
            keys = [k for k in mine.index if k in theirs.index and not math.isnan(mine.loc[k, "std"]) and not math.isnan(theirs.loc[k, "std"])]
            claims["variance"][other] = {"lower": [k for k in keys if mine.loc[k, "std"] < theirs.loc[k, "std"]], "of": keys,
                                         "rpo_mean_std": float(np.mean([mine.loc[k, "std"] for k in keys])) if keys else math.nan,
                                         "other_mean_std": float(np.mean([theirs.loc[k, "std"] for k in keys])) if keys else math.nan}
        trained = var[var["run"].isin([r for r in (rpo, _run(params, runs, "coop"), _run(params, runs, "cocoop"), _run(params, runs, "clip_linear_probe")) if r])]
        lowest = []
        for k, g in trained.dropna(subset=["std"]).groupby(["dataset", "shots"]):
            if g["run"].nunique() > 1 and (g["run"] == rpo).any():
                lowest.append((k, bool(g.loc[g["run"] == rpo, "std"].min() <= g["std"].min())))
        claims["variance"]["rpo_lowest"] = {"count": sum(v for _, v in lowest), "of": len(lowest)}
        const = trained[(trained["n"] > 1) & (trained["std"] == 0)]
        claims["variance"]["constant"] = [(C.registered(params, "rpo", r.run), r.dataset, int(r.shots)) for r in const.itertuples()]
    # base-to-new HM (average row), per run: an ablation run aliases its method and must not replace it
    for run, st in b2n_stats.items():
        a = st["Average"]
        if a["n"]:
            claims["hm"][run] = {"base": a["base"][0], "new": a["new"][0], "hm": a["hm"][0], "mean_hm": a["mean_hm"], "n": a["n"], "of": a["of"]}
    # the paper's base-to-new averages: method -> metric -> (value, confirmed, hm convention)
    paper_b2n: dict = {}
    for m in ("zeroshot", "coop", "cocoop", "rpo"):
        for metric in ("base", "new", "hm"):
            r = next((r for r in published_for(pub_rows, m, "base2new") if _metric_is(r, metric) and _is_average(r.get("dataset", ""))), None)
            if r:
                paper_b2n.setdefault(m, {})[metric] = (float(r["value"]), C.is_confirmed(r), r.get("hm_convention"))
    claims["b2n_paper"] = paper_b2n
    claims["hm_paper"] = {m: v["hm"] for m, v in paper_b2n.items() if "hm" in v}
    for run, st in dg_stats.items():
        if not math.isnan(st.get("target_avg", math.nan)):
            claims["dg"][run] = st["target_avg"]
    # the paper's DG target average, computed from its per-target rows
    dg_targets = list(((params.get("rpo") or {}).get("dg") or {}).get("targets") or [])
    if dg_targets:
        from ..data.mini import all_tasks

        known = all_tasks()
        cands = [C.analog_names(known[f"coop/{t}"].analog if f"coop/{t}" in known else (C.real_dataset_name(t) or t)) for t in dg_targets]
        paper_dg = {}
        for m in LABELS:
            rows = [r for r in published_for(pub_rows, m, "dg") if _metric_is(r, "top1")]
            found = [C.find_published(rows, c) for c in cands]
            if rows and all(found):
                paper_dg[m] = (float(np.mean([r["value"] for r in found])), all(C.is_confirmed(r) for r in found))
        claims["dg_paper"] = paper_dg
    # the paper's logged RPO seed std (Figure 1 runs)
    claims["variance_paper"] = {r["dataset"]: (float(r["value"]), C.is_confirmed(r)) for r in published_for(pub_rows, "rpo", "fewshot")
                                if C.norm(r.get("metric", "")) in ("newstd", "std")}
    return claims


def claims_text(claims: dict, label: str = "mini") -> str:
    lines = []
    run_label = lambda run: (claims.get("labels") or {}).get(run) or LABELS.get(run, run)  # noqa: E731
    v = claims["variance"]
    for other in ("coop", "cocoop", "clip_linear_probe"):
        if other in v and v[other]["of"]:
            c = v[other]
            lines.append(f"Seed variance (few-shot, {label}): RPO has a lower std across seeds than {LABELS[other]} in {len(c['lower'])} of {len(c['of'])} (dataset, shots) cells"
                         f" (mean std {c['rpo_mean_std']:.2f} vs {c['other_mean_std']:.2f} points).")
    if v.get("constant"):
        lines.append("Caution: identical accuracy on every seed (std 0) in " + ", ".join(f"{LABELS.get(m, m)} {d}/{k}-shot" for m, d, k in v["constant"])
                     + " — a zero std there can mean training did not move the prediction, not stability.")
    if "rpo_lowest" in v and v["rpo_lowest"]["of"]:
        lines.append(f"RPO has the lowest (or tied lowest) seed std of the trained methods in {v['rpo_lowest']['count']} of {v['rpo_lowest']['of']} (dataset, shots) cells.")
    if not lines:
        lines.append("Seed variance: RPO or its baselines have no few-shot runs with ≥ 2 seeds yet.")
    hm = claims["hm"]
    if hm:
        ranked = sorted(hm.items(), key=lambda kv: -kv[1]["hm"])
        lines.append(f"Base-to-new average ({label}; HM of the average base and new): " + ", ".join(
            f"{run_label(m)} B {s['base']:.1f} / N {s['new']:.1f} / HM {s['hm']:.1f}" for m, s in ranked) + ".")
        main = (claims.get("main_runs") or {}).get("rpo") or "rpo"
        if main in hm and len(hm) > 1:
            r = hm[main]["hm"]
            below = [f"{run_label(m)} ({s['hm']:.1f})" for m, s in hm.items() if m != main and s["hm"] < r]
            above = [f"{run_label(m)} ({s['hm']:.1f})" for m, s in hm.items() if m != main and s["hm"] >= r]
            s = f"Better HM? RPO's average HM ({r:.1f}) is " + ("higher than " + ", ".join(below) if below else "")
            s += ("; " if below and above else "") + ("not higher than " + ", ".join(above) if above else "") + "."
            lines.append(s)
    else:
        lines.append("Base-to-new: no measured runs yet.")
    if claims.get("hm_paper"):
        ph = claims["hm_paper"]
        conv = {c for _, _, c in ph.values() if c}
        lines.append("Paper (published average HM" + ("" if all(c for _, c, _ in ph.values()) else ", partly unconfirmed") + "): "
                     + ", ".join(f"{LABELS.get(m, m)} {val:.2f}" + (f" [{HM_CONVENTIONS.get(cv, cv)}]" if len(conv) > 1 and cv else "") for m, (val, _, cv) in ph.items())
                     + (f"; RPO highest: {'yes' if max(ph, key=lambda m: ph[m][0]) == 'rpo' else 'no'}." if "rpo" in ph else "."))
    if claims.get("variance_paper"):
        vp = claims["variance_paper"]
        lines.append("Paper (RPO's own logs, new classes, 10 seeds): seed std " + ", ".join(f"{d} {v:.2f}" for d, (v, _) in vp.items())
                     + " points; the published table has no CoOp/CoCoOp std to compare with.")
    if claims["dg"]:
        d = claims["dg"]
        lines.append(f"Domain generalisation, average over target {'copies' if label == 'mini' else 'datasets'} ({label}): " + ", ".join(f"{run_label(m)} {val:.1f}" for m, val in sorted(d.items(), key=lambda kv: -kv[1])) + ".")
    if claims.get("dg_paper"):
        d = claims["dg_paper"]
        lines.append("Paper (published" + ("" if all(c for _, c in d.values()) else ", unconfirmed") + "), average over the matching target datasets: "
                     + ", ".join(f"{LABELS.get(m, m)} {val:.2f}" for m, (val, _) in sorted(d.items(), key=lambda kv: -kv[1][0])) + ".")
    lines.append("Mini-world numbers are measurements with a tiny CLIP on procedural datasets; they are not the paper's numbers." if label == "mini" else
                 "Measured numbers come from this pipeline on the real datasets with CLIP ViT-B/16 and CoOp's split files; published numbers are the paper's.")
    return "\n".join(lines)


# --- HTML (paper-shaped tables; the numbers are the .md/.csv tables' own) ---------------------


def _b2n_block(rows: pd.DataFrame, L: str, average: bool, uuid: str) -> "P.HTML":
    spec = [("method", "", "method", "txt")]
    for metric, name in (("base", "Base"), ("new", "New"), ("HM", "HM")):
        spec += [(name, L, f"{metric} ({L})", "mini"), (name, "published", f"{metric} (published)", "pub")]
    if average:
        spec.append(("HM, mean of per-dataset HMs", L, f"mean of per-dataset HM ({L})", "mini"))
    df, kinds = P.order_rows(rows, "method")
    if average:  # the caption says it: no 'average' under every published number
        df = df.copy()
        for c in ("base (published)", "new (published)", "HM (published)"):
            if c in df.columns:
                df[c] = [P.without_where(v, "average") for v in df[c]]
    return P.table(df, spec, uuid=uuid, row_kinds=kinds, wrap=False, footnotes=False)


def base2new_html(b2n: pd.DataFrame, only_average: bool = False) -> "P.HTML":
    """The RPO paper's base-to-new table: one block per dataset ((a) Average first), rows the
    methods, columns Base / New / HM, each mini | published."""
    L = P.measured_label(b2n.columns)
    datasets = list(dict.fromkeys(b2n["dataset"]))
    datasets = [d for d in datasets if d == "Average"] + ([] if only_average else [d for d in datasets if d != "Average"])
    parts = []
    for i, d in enumerate(datasets):
        rows = b2n[b2n["dataset"] == d]
        avg = d == "Average"
        if avg:
            cap = f"({chr(97 + i)}) Average over {len(set(b2n['dataset'])) - 1} datasets"
        else:
            analog = next((a for a in rows.get("analogue of (paper dataset)", []) if not P.blank(a)), None)
            cap = f"({chr(97 + i)}) {P.esc(d)}" + (f' <span class="note">mini analogue of {P.esc(analog)}</span>' if analog and L == "mini" else "")
        parts.append(f'<p class="cap">{cap}</p>' + _b2n_block(rows, L, avg, f"rpo_b2n_{i}"))
    shown = b2n[b2n["dataset"].isin(datasets)]
    marks = [P.parse_published(v) for c in shown.columns if "published" in str(c) for v in shown[c]]
    notes = P.standard_notes(True, any(m and m["unconfirmed"] for m in marks if m), any(m and m["approximate"] for m in marks if m),
                             any(P.is_ablation_label(m) for m in shown["method"]))
    notes.append("Base / New: test top-1 (%) on the base and new halves, mean ± std over seeds; HM = 2·B·N/(B+N) of the seed means. "
                 "Average block: base and new averaged over the datasets, HM of those averages (CoCoOp's convention; the published baselines' too); "
                 f"RPO's published {_published_rpo_hm()} is the mean of its per-dataset HMs, shown under the number and beside our own mean of per-dataset HMs.")
    return P.blocks(parts, notes=notes)


def dg_html(dg: pd.DataFrame) -> "P.HTML":
    """Domain generalisation: source then each target, mini | published, then the target average."""
    L = P.measured_label(dg.columns)
    spec, pub = [("method", "", "method", "txt")], {}
    for c in dg.columns:
        m = re.match(r"^(.*) \(published\)$", str(c))
        if m:
            pub[m.group(1)] = c
    for c in dg.columns[1:]:
        m = re.match(rf"^(.*) \((source|target), {L}\)$", str(c))
        if m:
            g = f"{m.group(1)} ({m.group(2)})"
            spec.append((g, L, c, "mini"))
            if m.group(1) in pub:
                spec.append((g, "published", pub[m.group(1)], "pub"))
        elif str(c).startswith("target average"):
            spec.append(("target average", L, c, "mini"))
    df, kinds = P.order_rows(dg, "method")
    return P.table(df, spec, uuid="rpo_dg", row_kinds=kinds, notes=[
        "Trained on the source, tested on its style-shifted copies (mini) or the ImageNet variants (paper); test top-1 (%), mean ± std over seeds."])


def params_html(params_df: pd.DataFrame) -> "P.HTML":
    L = P.measured_label(params_df.columns)
    spec = [("method", "", "method", "txt"), ("cfg", "", "cfg", "txt")]
    for c in params_df.columns[2:]:
        m = re.match(rf"^trainable, (\w+) \({L}\)$", str(c))
        if m:
            spec.append((f"trainable ({L})", m.group(1), c, "mini"))
        elif str(c) == f"total ({L})":
            spec.append(("total", L, c, "mini"))
        elif str(c) == "trainable (published)":
            spec.append(("trainable", "published", c, "pub"))
    df, kinds = P.order_rows(params_df, "method")
    return P.table(df, spec, uuid="rpo_params", row_kinds=kinds, notes=["Parameters per protocol (published: ViT-B/16, the configuration named under the number)."])


def variance_html(var: pd.DataFrame) -> "P.HTML":
    """Few-shot accuracy per dataset × method (rows) and shots (columns): mean ± sd over seeds."""
    if not len(var):
        return P.table(pd.DataFrame({"dataset": []}), [("dataset", "", "dataset", "txt")], uuid="rpo_variance", notes=["No few-shot metrics yet."])
    v = var.copy()
    v["cell"] = [C.fmt_ms(m, s) for m, s in zip(v["mean"], v["std"])]
    wide = v.pivot_table(index=["dataset", "method"], columns="shots", values="cell", aggfunc="first", sort=False)
    order = list(dict.fromkeys(var["method"]))
    wide = wide.reset_index()
    wide["_m"] = wide["method"].map(order.index)
    wide = wide.sort_values(["dataset", "_m"], kind="stable").drop(columns="_m").reset_index(drop=True)
    shots = sorted(c for c in wide.columns if isinstance(c, (int, np.integer)))
    wide.columns = [f"{c} shots" if c in shots else c for c in wide.columns]
    spec = [("dataset", "", "dataset", "txt"), ("method", "", "method", "txt")] + [("shots per class", str(s), f"{s} shots", "mini") for s in shots]
    n = sorted(set(int(x) for x in var["n"]))
    return P.table(wide, spec, uuid="rpo_variance", notes=[
        f"Test top-1 (%), mean ± sample std over {n[0] if len(n) == 1 else f'{n[0]}–{n[-1]}'} seeds (the few-shot splits' seeds)."])


def html_tables(r: dict) -> dict:
    """The report's tables and lists as HTML, keyed like the notebook shows them."""
    return {"claims": P.claims(r["claims_table"], uuid="rpo_claims"), "base2new": base2new_html(r["base2new"]), "dg": dg_html(r["dg"]),
            "variance": variance_html(r["variance"]), "params": params_html(r["params"]), "claims_text": P.bullets(r["claims_text"].splitlines())}


def headline(report_dir) -> tuple[str, str] | None:
    """(Markdown, HTML) of the base-to-new average block for the index, from the report stage's files."""
    d = Path(report_dir)
    if not (d / "base2new.csv").is_file():
        return None
    b2n = pd.read_csv(d / "base2new.csv", dtype=str, keep_default_na=False)
    avg = b2n[b2n["dataset"] == "Average"].drop(columns=["analogue of (paper dataset)"], errors="ignore")
    return avg.to_markdown(index=False), base2new_html(b2n, only_average=True)
