"""Visual prompting report (Bahng et al., 2022): TP / VP / LP / FT in the mini world.

Measured numbers: the runs of ``params['vp']['methods']`` read from ``<metrics_root>/vp/<run>.json``
(test top-1 per dataset and seed, and top-1 on the dataset's style-shifted test copy). Published
numbers: ``visprompt.published.visual_prompting.published_table()`` (CLIP ViT-B/32 on the real
datasets), only in columns labelled "published"; a mini dataset is shown beside the paper's
dataset it stands in for (its manifest ``analog``), named in brackets in the published cell.

Conventions: a dataset cell is the mean ± sample std over seeds; the *Average* row is the mean
over datasets of the per-dataset means, ± the sample std over seeds of the per-seed average
(seeds every dataset has). The published average is the paper's own average over its datasets,
not over the mini analogues. Robustness drop = test − shifted test, in accuracy points.
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
from .vp_claims import vp_claims
from .vp_facts import MAIN, _fmt_avg, published_for  # noqa: F401 - also this module's names

PAPER_METHODS = ("zeroshot", "vp_pad", "logistic_probe", "clip_finetune")  # always get a published column
DESIGNS = {"vp_pad": "pad", "vp_fixed_patch": "fixed patch", "vp_random_patch": "random patch"}
AVERAGE_NAMES = ("average", "avg", "mean")


def _tasks(params: dict, metrics: dict) -> list:
    tasks = list((params.get("vp") or {}).get("tasks") or [])
    for res in metrics.values():
        for c in res.get("cells", []):
            if c.get("task") and c["task"] not in tasks:
                tasks.append(c["task"])
    return tasks


def _analogs(params: dict, tasks) -> dict:
    from ..data.mini import all_tasks

    try:
        known = all_tasks((params.get("data") or {}).get("sizes"))
    except Exception:  # noqa: BLE001
        known = all_tasks()
    return {t: (known[t].analog if t in known else C.real_dataset_name(t)) for t in tasks}


def seed_values(result: dict | None, key: str = "test_top1") -> dict:
    """task -> {seed: value} of one run."""
    out: dict = {}
    for c in (result or {}).get("cells", []):
        if c.get("task") and isinstance(c.get(key), (int, float)):
            out.setdefault(c["task"], {})[int(c.get("seed", 0))] = float(c[key])
    return out


def average_stats(by_task: dict, tasks) -> dict:
    """Mean over datasets of per-dataset seed means; std over seeds of the per-seed average."""
    present = [t for t in tasks if by_task.get(t)]
    if not present:
        return {"mean": math.nan, "std": math.nan, "n": 0, "of": len(tasks)}
    mean = float(np.mean([np.mean(list(by_task[t].values())) for t in present]))
    common = set.intersection(*(set(by_task[t]) for t in present))
    _, std, _ = C.stats([np.mean([by_task[t][s] for t in present]) for s in common])
    return {"mean": mean, "std": std, "n": len(present), "of": len(tasks)}


def drop_stats(measured: dict, shifted: dict, tasks) -> dict:
    """method -> {'by_task': task -> {seed: test − shifted test}, 'avg': average_stats of those}."""
    out = {}
    for m in measured:
        d = {t: {s: measured[m][t][s] - shifted[m][t][s] for s in measured[m].get(t, {}) if s in shifted[m].get(t, {})} for t in tasks}
        out[m] = {"by_task": d, "avg": average_stats(d, tasks)}
    return out


# --- published --------------------------------------------------------------------------------


def _is_average(name) -> bool:
    n = C.norm(name)
    return any(n.startswith(a) for a in AVERAGE_NAMES)


def published_cell(rows: list, analog: str | None, average: bool = False) -> str:
    if average:
        r = next((r for r in rows if _is_average(r.get("dataset", ""))), None)
    else:
        r = C.find_published(rows, C.analog_names(analog))
    return C.fmt_published(r["value"], r, where=str(r.get("dataset", ""))) if r else C.DASH


# --- the report -------------------------------------------------------------------------------


def build(params: dict, out_dir: str, metrics_root="reports/records") -> dict:
    """Main table (TP / VP / LP / FT per dataset + average, measured beside published), prompt
    design ablation (+ heatmap), robustness to the style-shifted copies, the learned prompts and
    the claims; tables (.md/.csv) and figures (.png) also go to ``out_dir``. Missing runs show '–'."""
    plt = C.pyplot()
    metrics = C.current_runs(params, "vp", report.load_metrics("vp", metrics_root))
    tasks = _tasks(params, metrics)
    analogs = _analogs(params, tasks)
    pub_rows, pub_note = C.published_rows("visual_prompting")
    files: dict = {}

    mains = [(m, C.main_run(params, "vp", m, metrics)) for m in MAIN]
    mains = [(m, r) for m, r in mains if r is not None]  # methods in params (or measured)
    measured = {m: seed_values(metrics.get(r)) for m, r in mains}
    shifted = {m: seed_values(metrics.get(r), "shifted_test_top1") for m, r in mains}
    averages = {m: average_stats(measured[m], tasks) for m in measured}
    drops = drop_stats(measured, shifted, tasks)
    L = C.measured_label(params)

    # main table: datasets x methods, measured beside published
    rows = []
    for t in tasks + ["Average"]:
        avg = t == "Average"
        row = {"dataset": t, "analogue of (paper dataset)": "–" if avg else (analogs.get(t) or "–")}
        for m, _ in mains:
            lab = MAIN[m][0]
            row[f"{lab} ({L})"] = _fmt_avg(averages[m]) if avg else C.fmt_values(list(measured[m].get(t, {}).values()))
            if m in PAPER_METHODS or published_for(pub_rows, m):
                row[f"{lab} (published)"] = published_cell(published_for(pub_rows, m), analogs.get(t), average=avg)
        rows.append(row)
    main = C.save_table(pd.DataFrame(rows), out_dir, "main")

    ablation, abl_info = _ablation(params, metrics, tasks, out_dir, files, plt)
    robustness = _robustness(mains, averages, shifted, drops, tasks, out_dir, L)
    prompt_figure = _prompt_figure(params, metrics, mains, tasks, metrics_root, out_dir, files, plt)
    size_figure = _size_curve(params, metrics, out_dir, files, plt)
    prompted_figure = _prompted_examples(params, metrics, mains, metrics_root, out_dir, files, plt)
    claims = compute_claims(measured, drops, tasks, pub_rows, analogs, abl_info)
    try:
        from ..published import visual_prompting as published

        claims["paper_qualitative"] = [str(q) for q in getattr(published, "QUALITATIVE", [])]
    except ImportError:
        claims["paper_qualitative"] = []
    text = claims_text(claims, L)
    if pub_note:
        text += f"\nNote: {pub_note}."
    verdicts = vp_claims(params, metrics, tasks, dict(mains), measured, shifted, averages, drops, claims, pub_rows, analogs)
    claims_table = K.write_claims(verdicts, out_dir, L)
    files.update({k: f"{out_dir}/{k}.md" for k in ("main", "ablation", "robustness", "claims")})
    files["claims_json"] = f"{out_dir}/claims.json"
    return {"claims_table": claims_table, "claims_list": verdicts, "main": main, "ablation": ablation, "ablation_figure": abl_info["figure"], "robustness": robustness,
            "prompt_figure": prompt_figure, "size_figure": size_figure, "prompted_figure": prompted_figure, "claims": claims, "claims_text": text, "files": files, "published_note": pub_note}


def _prompt_size(params: dict, run: str, metrics: dict, cell: dict | None = None):
    chosen = (cell or {}).get("chosen") or {}
    if "prompt_size" in chosen:
        return chosen["prompt_size"]
    return C.run_cfg(params, "vp", run, metrics).get("prompt_size")


def _ablation(params, metrics, tasks, out_dir, files, plt):
    """Design × prompt size on one seed (the smallest seed every design run has)."""
    runs = [r for r in C.run_names(params, "vp") if C.registered(params, "vp", r) in DESIGNS]
    runs += [r for r in metrics if r not in runs and metrics[r].get("method") in DESIGNS]
    have = {r: seed_values(metrics.get(r)) for r in runs if r in metrics}
    seed_sets = [set().union(*(set(v) for v in bt.values())) for bt in have.values() if bt]
    common = set.intersection(*seed_sets) if seed_sets else set()
    seed = min(common) if common else (min(set().union(*seed_sets)) if seed_sets else None)
    rows, grid = [], []
    for r in runs:
        design = DESIGNS[C.registered(params, "vp", r) if r in C.run_names(params, "vp") else metrics[r]["method"]]
        res = metrics.get(r)
        cells = [c for c in (res or {}).get("cells", []) if c.get("seed") == seed]
        size = _prompt_size(params, r, metrics, cells[0] if cells else None)
        bt = have.get(r, {})
        row = {"design": design, "prompt size": size, "run": r,
               "trainable params": (f"{cells[0]['params']['trainable']:,}" if cells and "params" in cells[0] else C.DASH)}
        vals = []
        for t in tasks:
            v = bt.get(t, {}).get(seed)
            row[t] = C.DASH if v is None else f"{v:.1f}"
            if v is not None:
                vals.append(v)
        avg = float(np.mean(vals)) if vals and len(vals) == len(tasks) else math.nan
        row["average"] = C.DASH if math.isnan(avg) else f"{avg:.1f}"
        rows.append(row)
        grid.append({"design": design, "prompt size": size, "average": avg})
    order = list(DESIGNS.values())
    df = pd.DataFrame(rows, columns=["design", "prompt size", "run", "trainable params", *tasks, "average"])
    if len(df):
        df = df.assign(_d=df["design"].map(order.index), _s=pd.to_numeric(df["prompt size"], errors="coerce")).sort_values(["_d", "_s"]).drop(columns=["_d", "_s"]).reset_index(drop=True)
    L = C.measured_label(params)
    df.columns = [c if c in ("design", "prompt size", "run", "trainable params") else f"{c} ({L}, seed {seed})" for c in df.columns]
    C.save_table(df, out_dir, "ablation")
    g = pd.DataFrame(grid)
    info = {"seed": seed, "grid": g}
    piv = g.pivot_table(index="design", columns="prompt size", values="average", aggfunc="mean") if len(g) and g["average"].notna().any() else None
    if piv is not None and piv.size:  # a run without a known prompt size has no cell in the heatmap
        import seaborn as sns

        piv = piv.reindex([d for d in order if d in piv.index])
        fig, ax = plt.subplots(figsize=(2.4 + 0.7 * piv.shape[1], 0.9 + 0.5 * piv.shape[0]))
        sns.heatmap(piv, annot=True, fmt=".1f", cmap="viridis", cbar=True, cbar_kws={"label": "test top-1 (%)"}, ax=ax, annot_kws={"fontsize": 8})
        ax.set_title(f"VP, {C.profile_name(params)} profile: average test top-1 over datasets, seed {seed}\n"
                     "(no published number per design or size in visprompt.published)", fontsize=8)
        ax.set_ylabel("")
        fig.tight_layout()
        info["figure"] = C.finish_figure(fig, out_dir, "ablation", files)
    else:
        info["figure"] = C.finish_figure(C.empty_figure(f"no complete ablation run yet ({C.profile_name(params)} profile)"), out_dir, "ablation", files)
    return df, info


def _size_curve(params, metrics, out_dir, files, plt):
    """Accuracy vs prompt size per design: every run of a design (main and ablation), on the tasks
    that all of them ran, one point per seed (mean over those tasks), error bars = std over seeds."""
    import seaborn as sns

    runs = [r for r in metrics if metrics[r].get("registered_method", metrics[r].get("method")) in DESIGNS]
    task_sets = [{c.get("task") for c in metrics[r].get("cells", [])} for r in runs]
    common = sorted(set.intersection(*task_sets)) if task_sets else []
    rows = []
    for r in runs:
        design = DESIGNS[metrics[r].get("registered_method", metrics[r].get("method"))]
        for seed, by_task in _by_seed(metrics[r], common).items():
            cell = next(c for c in metrics[r]["cells"] if c.get("seed") == seed)
            rows.append({"design": design, "prompt size": _prompt_size(params, r, metrics, cell), "seed": seed,
                         "test top-1 (%)": float(np.mean(list(by_task.values())))})
    df = pd.DataFrame(rows)
    if df.empty or df["prompt size"].isna().all():
        return C.finish_figure(C.empty_figure(f"no prompt-size runs yet ({C.profile_name(params)} profile)"), out_dir, "prompt_size", files)
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    sns.lineplot(df, x="prompt size", y="test top-1 (%)", hue="design", hue_order=[d for d in DESIGNS.values() if d in set(df["design"])],
                 errorbar="sd", marker="o", err_style="bars", ax=ax)
    ax.set_xticks(sorted(df["prompt size"].dropna().unique()))
    ax.set_title(f"VP, {C.profile_name(params)} profile: test top-1 vs prompt size\n(mean over {', '.join(t.split('/')[-1] for t in common)}; "
                 f"bars: std over seeds; no published curve)", fontsize=8)
    fig.tight_layout()
    return C.finish_figure(fig, out_dir, "prompt_size", files)


def _by_seed(result: dict, tasks) -> dict:
    """seed -> {task: test top-1} for the seeds that have every one of ``tasks``."""
    out: dict = {}
    for task, by_seed in seed_values(result).items():
        if task in tasks:
            for seed, v in by_seed.items():
                out.setdefault(seed, {})[task] = v
    return {s: v for s, v in out.items() if len(v) == len(tasks)}


def _prompted_examples(params, metrics, mains, metrics_root, out_dir, files, plt, n: int = 4):
    """A few test images of the first task before and after the learned pad prompt is added.
    The prompt is stored de-normalised (``prompt·std + mean``), so adding it back to an image in
    pixel space is ``image + (prompt − mean colour)``; the mean colour is the prompt image's most
    common pixel (the untouched inside of the pad). Needs the mini data (skipped elsewhere)."""
    run = dict(mains).get("vp_pad")
    cells = sorted((metrics.get(run) or {}).get("cells", []), key=lambda c: (c.get("seed", 0), c.get("task", "")))
    cell = next((c for c in cells if c.get("prompt_image") is not None), None)
    images = None
    root = Path((params.get("data") or {}).get("root", "data/mini"))
    # the paper profile's datasets are not arrays on disk; a checkout without `dvc repro data` has none either
    if cell is not None and C.profile_name(params) == "mini" and (root / f"{cell['task']}.json").is_file():
        from ..data.store import load_arrays

        images = load_arrays(root, cell["task"], "test")["images"][:n]
    if images is None or not len(images):
        return C.finish_figure(C.empty_figure(f"no prompted example ({C.profile_name(params)} profile: needs vp_pad and the rendered mini data)"),
                               out_dir, "prompted", files)
    prompt = C.load_image(cell["prompt_image"], metrics_root)
    flat = np.round(prompt.reshape(-1, 3) * 255).astype(int)
    values, counts = np.unique(flat, axis=0, return_counts=True)
    mean_colour = values[counts.argmax()] / 255.0
    fig, axes = plt.subplots(2, len(images), figsize=(1.5 * len(images), 3.3), squeeze=False)
    for j, img in enumerate(images):
        x = img.astype(np.float32) / 255.0
        for i, shown in enumerate((x, np.clip(x + prompt - mean_colour, 0, 1))):
            axes[i][j].imshow(shown, interpolation="nearest")
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
        if j == 0:
            axes[0][0].set_ylabel("test image", fontsize=8)
            axes[1][0].set_ylabel("+ learned pad", fontsize=8)
    fig.suptitle(f"VP, {C.profile_name(params)} profile: {cell['task'].split('/')[-1]} test images with the learned pad "
                 f"(run {run}, seed {cell.get('seed')})", fontsize=8)
    fig.tight_layout()
    return C.finish_figure(fig, out_dir, "prompted", files)


def _robustness(mains, averages, shifted, drops, tasks, out_dir, L: str = "mini"):
    rows = []
    for m, _ in mains:
        ss = average_stats(shifted[m], tasks)
        row = {"method": MAIN[m][0], f"test ({L})": _fmt_avg(averages[m]), f"shifted test ({L})": _fmt_avg(ss), f"drop, points ({L})": _fmt_avg(drops[m]["avg"])}
        for t in tasks:
            row[f"drop {t}"] = C.fmt_values(list(drops[m]["by_task"][t].values()))
        rows.append(row)
    return C.save_table(pd.DataFrame(rows), out_dir, "robustness")


def _prompt_figure(params, metrics, mains, tasks, metrics_root, out_dir, files, plt):
    designs = [(m, r) for m, r in mains if m in DESIGNS and r in metrics]
    images = {}
    for m, r in designs:
        for c in sorted(metrics[r].get("cells", []), key=lambda c: c.get("seed", 0)):
            if (m, c.get("task")) in images:
                continue
            arr = C.load_image(c.get("prompt_image"), metrics_root)
            if arr is not None:
                images[(m, c["task"])] = (arr, c.get("seed"))
    if not images:
        return C.finish_figure(C.empty_figure(f"no learned prompt images yet (run vp_pad; {C.profile_name(params)} profile)"), out_dir, "prompts", files)
    rows = [m for m, _ in designs if any(k[0] == m for k in images)]
    fig, axes = plt.subplots(len(rows), len(tasks), figsize=(1.7 * len(tasks), 1.9 * len(rows)), squeeze=False)
    for i, m in enumerate(rows):
        for j, t in enumerate(tasks):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if (m, t) in images:
                arr, seed = images[(m, t)]
                ax.imshow(arr, interpolation="nearest")
                ax.set_title(f"{t.split('/')[-1]} (seed {seed})", fontsize=8)
            else:
                ax.axis("off")
                ax.text(0.5, 0.5, "–", ha="center", va="center")
            if j == 0:
                ax.set_ylabel(MAIN[m][0], fontsize=8)
    fig.suptitle(f"VP, {C.profile_name(params)} profile: learned prompts, de-normalised (inside of a pad = mean colour)", fontsize=9)
    fig.tight_layout()
    return C.finish_figure(fig, out_dir, "prompts", files)


# --- claims -----------------------------------------------------------------------------------


def _means(by_task: dict) -> dict:
    return {t: float(np.mean(list(v.values()))) for t, v in by_task.items() if v}


def _mini_compare(measured, a, b, tasks) -> dict | None:
    if a not in measured or b not in measured:
        return None
    ma, mb = _means(measured[a]), _means(measured[b])
    common = [t for t in tasks if t in ma and t in mb]
    if not common:
        return None
    return {"wins": [t for t in common if ma[t] > mb[t]], "of": common,
            "avg_diff": float(np.mean([ma[t] - mb[t] for t in common]))}


def _paper_compare(pub_rows, a, b) -> dict | None:
    pa = {C.norm(r["dataset"]): (r["dataset"], r["value"]) for r in published_for(pub_rows, a) if not _is_average(r["dataset"])}
    pb = {C.norm(r["dataset"]): r["value"] for r in published_for(pub_rows, b) if not _is_average(r["dataset"])}
    common = [k for k in pa if k in pb]
    if not common:
        return None
    ra = {C.norm(r["dataset"]): r for r in published_for(pub_rows, a)}
    rb = {C.norm(r["dataset"]): r for r in published_for(pub_rows, b)}
    return {"wins": [pa[k][0] for k in common if pa[k][1] > pb[k]], "of": [pa[k][0] for k in common],
            "pairs": {pa[k][0]: (ra[k], rb[k]) for k in common},
            "unconfirmed": _unconfirmed_tag([r for r in published_for(pub_rows, a) + published_for(pub_rows, b) if C.norm(r["dataset"]) in common])}


def _unconfirmed_tag(rows) -> str:
    n = sum(not C.is_confirmed(r) for r in rows)
    return "" if n == 0 else (", unconfirmed" if n == len(rows) else ", partly unconfirmed")


def compute_claims(measured, drops, tasks, pub_rows, analogs, abl_info) -> dict:
    claims = {}
    for other in ("zeroshot", "logistic_probe", "clip_finetune"):
        claims[f"vp_vs_{other}"] = {"mini": _mini_compare(measured, "vp_pad", other, tasks), "paper": _paper_compare(pub_rows, "vp_pad", other)}
    claims["robustness_drop"] = {MAIN[m][0]: d["avg"]["mean"] for m, d in drops.items() if d["avg"]["n"]}
    g = abl_info.get("grid")
    if g is not None and len(g) and g["average"].notna().any():
        best = g.loc[g["average"].idxmax()]
        claims["ablation_best"] = {"design": best["design"], "prompt_size": best["prompt size"], "average": float(best["average"]), "seed": abl_info["seed"]}
    return claims


def _sentence(name, other, c, label: str = "mini") -> str:
    mini, paper = c["mini"], c["paper"]
    if mini is None:
        s = f"VP (pad) vs {other}: {C.NOT_MEASURED[label]} (run missing)."
    else:
        s = (f"{C.WORLD[label]}: VP (pad) beats {other} on {len(mini['wins'])} of {len(mini['of'])} datasets"
             + (f" ({', '.join(t.split('/')[-1] for t in mini['wins'])})" if mini["wins"] else "")
             + f"; mean difference {mini['avg_diff']:+.1f} points.")
    if paper:
        s += (f" Paper (published{paper['unconfirmed']}): VP beats {other} on {len(paper['wins'])} of {len(paper['of'])} datasets with both numbers"
              + (f" ({', '.join(map(str, paper['wins']))})." if paper["wins"] else "."))
    else:
        s += f" Paper: no published VP/{other} pair per dataset in visprompt.published.visual_prompting."
    return s


def claims_text(claims: dict, label: str = "mini") -> str:
    lines = [_sentence("VP", "TP (zero-shot text prompt)", claims["vp_vs_zeroshot"], label),
             _sentence("VP", "LP (linear probe)", claims["vp_vs_logistic_probe"], label),
             _sentence("VP", "FT (full fine-tuning)", claims["vp_vs_clip_finetune"], label)]
    if claims["robustness_drop"]:
        d = claims["robustness_drop"]
        lines.append(f"Average drop from test to style-shifted test (points, {label}): " + ", ".join(f"{k} {v:+.1f}" for k, v in d.items())
                     + (("; VP (pad) drops less than LP." if d["VP (pad)"] < d["LP"] else "; VP (pad) drops at least as much as LP.") if "VP (pad)" in d and "LP" in d else "."))
    if "ablation_best" in claims:
        b = claims["ablation_best"]
        lines.append(f"Prompt-design ablation (seed {b['seed']}): best average {b['average']:.1f} with {b['design']}, prompt size {b['prompt_size']}.")
    for q in claims.get("paper_qualitative", []):
        lines.append(f"Paper (qualitative, as the reference states it): {q}")
    lines.append("Mini-world numbers are measurements with a tiny CLIP on procedural datasets; they are not the paper's numbers." if label == "mini" else
                 "Measured numbers come from this pipeline on the real datasets with CLIP ViT-B/32; the last epoch is reported (the official code picks the best test epoch).")
    return "\n".join(lines)


# --- HTML (paper-shaped tables; the numbers are the .md/.csv tables' own) ---------------------


def _method_groups(columns, label: str, skip=()) -> list:
    """'TP (mini)' / 'TP (published)' -> [('TP', label, col, 'mini'), ('TP', 'published', col, 'pub')] in column order."""
    spec = []
    for c in columns:
        if c in skip:
            continue
        m = re.match(rf"^(.*) \(({label}|published)\)$", str(c))
        if m:
            spec.append((m.group(1), m.group(2), c, "pub" if m.group(2) == "published" else "mini"))
    return spec


def main_html(main: pd.DataFrame) -> "P.HTML":
    """Datasets × methods, each method mini | published, the Average row last."""
    L = P.measured_label(main.columns)
    spec = [("dataset", "", "dataset", "txt"), ("analogue of (paper dataset)", "", "analogue of (paper dataset)", "txt")]
    spec += _method_groups(main.columns, L)
    kinds = ["avg" if str(d) == "Average" else "" for d in main["dataset"]]
    return P.table(main, spec, uuid="vp_main", row_kinds=kinds, notes=[
        "Test top-1 (%), mean ± std over seeds; Average: mean over the datasets (the published average is the paper's own, over its 12 datasets). "
        "A mini dataset stands beside the paper dataset it is the analogue of (named under each published number)."])


def ablation_html(ablation: pd.DataFrame) -> "P.HTML":
    """Design × prompt size, one seed; every row here is a design or size run (measured only)."""
    spec = [(c, "", c, "txt" if c in ("design", "run") else "mini") for c in ("design", "prompt size", "run", "trainable params") if c in ablation.columns]
    group = None
    for c in ablation.columns[len(spec):]:
        m = re.match(r"^(.*) \((\w+, seed .*)\)$", str(c))
        group = f"test top-1 ({m.group(2)})" if m else group or "test top-1"
        spec.append((group, m.group(1) if m else str(c), c, "mini"))
    return P.table(ablation, spec, uuid="vp_ablation", notes=[
        "The padding / fixed-patch / random-patch prompters at several prompt sizes; average: mean over the datasets (– unless every dataset ran)."])


def robustness_html(rob: pd.DataFrame) -> "P.HTML":
    """Average test, shifted test and drop, then the drop per dataset (measured only)."""
    L = P.measured_label(rob.columns)
    spec = [("method", "", "method", "txt")]
    for c in rob.columns[1:]:
        m = re.match(rf"^(.*) \({L}\)$", str(c))
        if m:
            spec.append((f"average over datasets ({L})", m.group(1), c, "mini"))
        elif str(c).startswith("drop "):
            spec.append((f"drop per dataset, points ({L})", str(c)[5:], c, "mini"))
    return P.table(rob, spec, uuid="vp_robustness", notes=["Drop = test − style-shifted test, accuracy points (mean ± std over seeds)."])


def html_tables(r: dict) -> dict:
    """The report's tables and lists as HTML, keyed like the notebook shows them."""
    return {"claims": P.claims(r["claims_table"], uuid="vp_claims"), "main": main_html(r["main"]), "ablation": ablation_html(r["ablation"]),
            "robustness": robustness_html(r["robustness"]), "claims_text": P.bullets(r["claims_text"].splitlines())}


def headline(report_dir) -> tuple[str, str] | None:
    """(Markdown, HTML) of the main table for the index, read from the report stage's files."""
    d = Path(report_dir)
    if not (d / "main.csv").is_file():
        return None
    main = pd.read_csv(d / "main.csv", dtype=str, keep_default_na=False)
    return (d / "main.md").read_text() if (d / "main.md").is_file() else main.to_markdown(index=False), main_html(main)
