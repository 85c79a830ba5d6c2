"""Writes the thin notebooks in notebooks/ (run once after editing; the .ipynb files are committed).

Keeping their source here makes the notebooks reviewable as code; the logic they call lives in
``visprompt``. ``--only report`` (or ``train``) writes only those notebooks: the training notebooks
are dependencies of every train stage, so a report-only change must leave them byte-identical.
"""

import argparse
from pathlib import Path

import nbformat as nbf

KERNEL = {"display_name": "Python (visprompt)", "language": "python", "name": "visprompt"}


def notebook(cells):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    out = []
    for kind, src in cells:
        if kind == "md":
            out.append(nbf.v4.new_markdown_cell(src.strip()))
        else:
            c = nbf.v4.new_code_cell(src.strip())
            if kind == "params":
                c.metadata["tags"] = ["parameters"]
            out.append(c)
    nb.cells = out
    return nb


def same_cells(path: Path, nb) -> bool:
    """Does the notebook at ``path`` already hold these cells (type, source, metadata; ids aside)?"""
    if not path.is_file():
        return False
    old = nbf.read(path, as_version=4)
    key = lambda cells: [(c.cell_type, c.source, dict(c.metadata)) for c in cells]  # noqa: E731
    return key(old.cells) == key(nb.cells) and old.metadata == nb.metadata


SETUP = ("import os\nos.environ.setdefault('HF_HUB_OFFLINE', '1')\nfrom visprompt.utils import SCRATCH, repo_root\n\n"
         "os.chdir(repo_root())  # opened from notebooks/ (JupyterLab): paths are relative to the folder holding dvc.yaml\n")


def train(paper: str, title: str, default_method: str, extra_md: str):
    return notebook([
        ("md", f"# {title}\n\n{extra_md}\n\nEvery cell of this method (task × seed, after selection on validation) is run by "
               "`visprompt.experiments.run_method`; finished cells are reused on resume. Parameters come from `params.yaml` via DVC. "
               "Run by hand, this notebook writes under `build/notebooks/` (the DVC stage passes `out_root=reports`), "
               "so it never overwrites a tracked output."),
        ("params", f'method = "{default_method}"\nparams_file = "params.yaml"\nout_root = None  # None: build/notebooks (scratch); the DVC stage passes "reports"\n'
                   "progress = None  # None: progress bars only on a terminal; one line per finished cell either way"),
        ("code", SETUP + "from visprompt import experiments, report\nfrom visprompt.config import load_params\n\n"
                 "params = load_params(params_file)\nexperiments.check_method(params, " + repr(paper) + ", method)"),
        ("code", f"result = experiments.run_method(params, {paper!r}, method, progress=progress)\n"
                 "outputs = experiments.write_outputs(result, out_root or SCRATCH)\nprint(report.run_summary(result))"),
        ("md", "## Results per cell"),
        ("code", "report.cells_table(result)"),
        ("md", "## Grid search (validation top-1, first seed)"),
        ("code", "report.selection_table(result)"),
        ("md", "## Training curves"),
        ("code", "report.plot_histories(result);"),
    ])


CLAIMS_MD = ("## Verdict per claim\nThe paper's claims, then *(regime)* checks that this run sits in the paper's regime (baselines only). "
             "The published column (grey) comes from `visprompt.published`; the measured column is this run (mean ± std over seeds). "
             "holds: yes / no, – when a run it needs is missing. The evidence behind each verdict is in `claims.json` / `claims.md` of the report folder.")


def report_nb(paper: str, title: str, build: str, module: str, body):
    """Parameters, imports, the report build, then the verdict table first, then the paper's tables.
    Tables show as HTML (``visprompt.reports.<module>.html_tables``); the rendered report hides the
    code (``nbconvert --no-input``) and warnings are silenced so no machine path reaches it."""
    return notebook([("md", f"# {title}"),
                     ("params", f'params_file = "params.yaml"\nout_dir = None  # None: build/notebooks/{paper}/report (scratch); the DVC stage passes reports/{paper}/report'),
                     ("code", "import warnings\n\nwarnings.filterwarnings('ignore')  # e.g. tqdm's IProgress warning: noise, with a machine path\n"
                              + SETUP + "from visprompt import report\nfrom visprompt.config import load_params\n"
                              f"from visprompt.reports import {module} as paper\n\nparams = load_params(params_file)"),
                     ("code", f"r = report.{build}(params, out_dir or SCRATCH / {paper!r} / 'report')\nt = paper.html_tables(r)"),
                     ("md", CLAIMS_MD), ("code", "t['claims']")] + body)


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1] / "notebooks"
    nbs = {
        "train_vpt.ipynb": train("vpt", "VPT: train one method on VTAB-mini and FGVC-mini", "vpt_deep",
                                 "Protocol (VPT §4.1): grid on the 800/200 split with the first seed, retrain on all 1,000 images per seed, last-epoch test top-1."),
        "train_visual_prompt.ipynb": train("vp", "Visual prompting: train one method on VP-mini", "vp_pad",
                                           "Protocol: grid on train/val, then every seed on train; test top-1 on the test set and on its style-shifted copy."),
        "train_rpo.ipynb": train("rpo", "RPO and baselines: base-to-new, domain generalisation and few-shot on CoOp-mini", "rpo",
                                 "Protocols (RPO §4): base-to-new (16 shots, HM), domain generalisation (train on objects, test on its shifted copies), few-shot × seeds (variance)."),
        "report_vpt.ipynb": report_nb("vpt", "VPT report: Table 1 in the mini world, beside the published numbers", "vpt_report", "vpt", [
            ("md", "## Table 1 (group means)\nMeasured: mean ± std over seeds, mini world. Published: VPT paper, ViT-B/16 ImageNet-21k (see `visprompt.published.vpt`)."),
            ("code", "t['table1']"),
            ("md", "## Per task"), ("code", "t['per_task']"),
            ("md", "## Accuracy by method and group (seeds as points)"), ("code", "r['figure']"),
            ("md", "## Prompt length: VPT-deep and VPT-shallow"), ("code", "r['length_figure']"),
            ("md", "## Deviations from the paper"), ("code", "t['deviations']"),
            ("md", "## Claims in words"), ("code", "t['claims_text']"),
        ]),
        "report_visual_prompt.ipynb": report_nb("vp", "Visual prompting report: TP / VP / LP / FT in the mini world", "vp_report", "visual_prompting", [
            ("md", "## Main table\nMeasured (mini) beside published (CLIP ViT-B/32; see `visprompt.published.visual_prompting`)."),
            ("code", "t['main']"), ("md", "## Prompt design ablation"), ("code", "t['ablation']"),
            ("code", "r['ablation_figure']"), ("md", "### Accuracy vs prompt size"), ("code", "r['size_figure']"),
            ("md", "## Robustness: style-shifted test copies"), ("code", "t['robustness']"),
            ("md", "## The learned prompts"), ("code", "r['prompt_figure']"), ("code", "r['prompted_figure']"),
            ("md", "## Claims in words"), ("code", "t['claims_text']"),
        ]),
        "report_rpo.ipynb": report_nb("rpo", "RPO report: base-to-new, domain generalisation and variance in the mini world", "rpo_report", "rpo", [
            ("md", "## Table 1: base-to-new\nOne block per dataset, as in the paper. HM = 2·B·N/(B+N) per dataset; the average block's HM is the HM of the average base and new accuracies."),
            ("code", "t['base2new']"), ("md", "## Domain generalisation"), ("code", "t['dg']"),
            ("md", "## Variance across seeds (Figure 1 analogue)"), ("code", "r['variance_figure']"),
            ("code", "t['variance']"),
            ("md", "## Accuracy vs shots (Figure 5 analogue)\nNo published curve: the only few-shot number in `visprompt.published.rpo` (1 shot, new classes, "
                   "average over 10 real datasets) measures something else than these panels."), ("code", "r['shots_figure']"),
            ("md", "## Trainable parameters"), ("code", "t['params']"),
            ("md", "## Claims in words"), ("code", "t['claims_text']"),
        ]),

    }
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("train", "report"), help="write only the training or only the report notebooks")
    only = ap.parse_args().only
    for name, nb in nbs.items():
        if only and not name.startswith(only + "_"):
            continue
        if same_cells(root / name, nb):  # new random cell ids alone would re-run every stage that depends on it
            print("unchanged", root / name)
            continue
        nbf.write(nb, root / name)
        print("wrote", root / name)
