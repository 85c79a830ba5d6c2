"""``reports/index.md`` and ``index.html``: the page a reader opens first.

It opens with the results: per paper the verdict per claim (merged from the report stages'
``<paper>/report/claims.json`` into ``reports/claims.json``) and the paper's headline table (read
from the report folder's CSV, shown as the report shows it); then links to every report and every
executed training notebook, both as HTML (the index stage renders the training notebooks to
``reports/runs_html/``, code hidden, warning noise and machine paths removed); then the
backbones' usefulness checks, how long each stage of the last ``dvc repro`` took (read from the
stages' own metrics files, so the numbers are measured, not typed) and the environment. The HTML
is the Markdown rendered by markdown-it-py, with the tables as HTML.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .utils import environment_info, write_json

REPORTS = Path("reports")
PAPERS = {
    "vpt": ("VPT — Visual Prompt Tuning (Jia et al., ECCV 2022)", "report_vpt"),
    "vp": ("Visual prompting — Exploring Visual Prompts for Adapting Large-Scale Models (Bahng et al., 2022)", "report_visual_prompt"),
    "rpo": ("RPO — Read-only Prompt Optimization (Lee et al., ICCV 2023)", "report_rpo"),
}


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def load_claims(root: Path = REPORTS) -> list:
    """The report stages' verdict records, papers in order vpt, vp, rpo (a paper not reported yet
    contributes nothing)."""
    out = []
    for paper in PAPERS:
        try:
            records = json.loads((root / paper / "report" / "claims.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out += [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
    return out


SECOND_WORLD = Path("docs/second_world/claims.json")  # mini profile: the verdicts measured on another world seed


def attach_second_world(claims: list, path: Path = SECOND_WORLD) -> list:
    """Each claim's verdict on the other world seed (a measured file, written once by hand from a
    run with another ``data.seed``): ``second_world`` = its holds and numbers, ``stable`` = the
    same verdict in both worlds. A verdict that flips is unstable, not a finding (issue: regime)."""
    doc = _read(path)
    other = {(c.get("paper"), c.get("claim")): c for c in doc.get("claims", []) if isinstance(c, dict)}
    for c in claims:
        o = other.get((c.get("paper"), c.get("claim")))
        if o is None:
            continue
        c["second_world"] = {"world_seed": doc.get("world_seed"), "holds": o.get("holds"), "mini": o.get("mini")}
        both = c.get("holds") is not None and o.get("holds") is not None
        c["stable"] = (c["holds"] == o["holds"]) if both else None
    return claims


def verdict_lines(root: Path = REPORTS, width: int = 100) -> list[str]:
    """The verdict per claim of the last run, for a terminal (``visprompt summary``, the end of
    ``make repro``): one line per claim, the measured and published values indented below it."""
    import textwrap

    claims = [c for c in _read_list(root / "claims.json") if isinstance(c, dict)]
    if not claims:
        return [f"no verdicts yet: {root / 'claims.json'} is written by the index stage (dvc repro)"]
    mark = {True: "yes", False: "no ", None: " – "}
    lines = [f"Verdicts ({root / 'claims.json'}; regime = checks on the baselines and training):"]
    for c in claims:
        kind = "regime " if c.get("kind") == "regime" else ""
        lines += textwrap.wrap(f"{mark.get(c.get('holds'), ' – ')}  {c.get('paper', ''):<4} {kind}{c.get('claim', '')}", width,
                               initial_indent="  ", subsequent_indent=" " * 11)
        if c.get("stable") is False:
            lines.append(" " * 11 + f"UNSTABLE: on world seed {c['second_world']['world_seed']} it "
                         f"{'holds' if c['second_world']['holds'] else 'does not hold'} ({c['second_world']['mini']})"[:width - 11])
        for label in ("mini", "published"):
            if c.get(label):
                lines += textwrap.wrap(f"{label}: {c[label]}", width, initial_indent=" " * 11, subsequent_indent=" " * 13)
    lines.append(f"Details: {root / 'index.html'}")
    return lines


def _read_list(path: Path) -> list:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return data if isinstance(data, list) else []


def _cell(text) -> str:
    """A markdown table cell: no pipes or newlines (the HTML rendering splits rows on '|')."""
    return "–" if text is None else str(text).replace("|", "/").replace("\n", " ")


def stage_times(root: Path = REPORTS / "records") -> list[tuple[str, float]]:
    """(stage, seconds) for every stage that recorded its wall time, in pipeline order."""
    rows = []
    for name in ("data", "splits", "backbone_vit", "backbone_clip"):
        t = _read(root / f"{name}.json").get("stage_time_s")
        if t is not None:
            rows.append((name, float(t)))
    for paper in PAPERS:
        for path in sorted((root / paper).glob("*.json")):
            m = _read(path)
            t = m.get("compute_time_s", m.get("stage_time_s"))  # cells reused from data/runs count their first run
            if t is not None:
                rows.append((f"train_{paper}@{path.stem}", float(t)))
    return rows


def trained_on(root: Path = REPORTS / "records") -> dict:
    """``device (name) x count, precision`` -> ``{"cells", "runs"}`` computed there, from each
    train-stage record's ``compute`` (every cell says where it ran; a run replayed from a cell store
    may mix machines). Records written before cells carried it count by run (``cells`` None)."""
    out: dict = {}
    for paper in PAPERS:
        for path in sorted((root / paper).glob("*.json")):
            rec = _read(path)
            devices = (rec.get("compute") or {}).get("devices")
            if not devices:
                env = rec.get("environment") or {}
                devices = [{"device": env["device"], "device_name": env.get("device_name"), "cells": None}] if env.get("device") else []
            for d in devices:
                key = f"{d['device']} ({d.get('device_name') or 'unknown'})"
                if d.get("device_count"):
                    key += f" × {d['device_count']}, {d.get('precision')}"
                entry = out.setdefault(key, {"cells": None, "runs": 0})
                entry["runs"] += 1
                if d.get("cells") is not None:
                    entry["cells"] = (entry["cells"] or 0) + d["cells"]
    return out


def _fmt_s(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def _page(title: str, body: str, css: str = "") -> str:
    style = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:92em;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}"
             "h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}h3{margin-top:1.3em}"
             "code{background:#f3f3f3;padding:0 .25em;border-radius:3px}"
             ".md table{border-collapse:collapse}.md td,.md th{border:1px solid #ddd;padding:2px 8px;text-align:left}"
             "li{margin:.15em 0}")
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}{css}</style></head><body>\n{body}\n</body></html>\n")


def markdown_to_html(md: str) -> str:
    """CommonMark + tables by markdown-it-py (raw HTML in the Markdown is escaped, not passed)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(md)


HEADLINES = {"vpt": ("vpt", "Table 1 (group means)"), "vp": ("visual_prompting", "main table"), "rpo": ("rpo", "base-to-new, average over datasets")}


def _headline(paper: str, root: Path):
    """(Markdown, HTML) of a paper's headline table, read from its report folder, or None."""
    import importlib

    module, _ = HEADLINES[paper]
    try:
        return importlib.import_module(f".reports.{module}", __package__).headline(root / paper / "report")
    except (OSError, ValueError, KeyError) as e:  # a report folder from older code: the index still comes out
        return (f"Headline table unreadable ({type(e).__name__}).", None)


def run_html_path(paper: str, run: str, root: Path = REPORTS) -> Path:
    """Where the index stage writes the HTML of an executed training notebook."""
    return root / "runs_html" / paper / f"{run}.html"


def checkpoints_text(params: dict) -> str:
    """Which checkpoint each paper's runs loaded, as the params name it (a local file with the start
    of its SHA-256), and "the papers' checkpoint" only where the arch and the weights are the papers'."""
    import hashlib

    from .worlds.paper import PAPER_ARCHS

    hub = {"vpt": (True, None), "vp": ("openai",), "rpo": ("openai",)}
    parts = []
    for paper, what in (("vpt", "VPT"), ("vp", "visual prompting"), ("rpo", "RPO")):
        name = (params.get(paper) or {}).get("backbone")
        entry = (params.get("backbones") or {}).get(name) or {}
        arch, pre = entry.get("arch", "?"), entry.get("pretrained", True)
        if isinstance(pre, str) and Path(pre).expanduser().is_file():
            digest = hashlib.sha256(Path(pre).expanduser().read_bytes()).hexdigest()[:12]
            parts.append(f"{what}: {arch}, file {Path(pre).name} (sha256 {digest}…; a local file, not checked against the released one)")
            continue
        same = pre in hub[paper] and arch in PAPER_ARCHS[paper]
        weights = "the hub weights" if pre in hub[paper] else f"weights {pre!r}"
        parts.append(f"{what}: {arch}, {weights}" + (" (the paper's checkpoint)" if same else " (**not** the paper's checkpoint)"))
    return "these checkpoints — " + "; ".join(parts)


def sections(params: dict, root: Path = REPORTS, claims: list | None = None) -> list:
    """The index as (Markdown, HTML or None) pieces: None means the HTML is the Markdown rendered."""
    from .reports import present
    from .reports.claims import claims_table

    claims = load_claims(root) if claims is None else claims
    env = environment_info()
    paper_profile = params.get("profile", "mini") == "paper"
    label = "real" if paper_profile else "mini"
    where = (f"on the real datasets with {checkpoints_text(params)}, columns "
             "tagged *real*; the deviations from the official code are listed in docs/paper_profile.md,") if paper_profile else \
        "in the mini world (procedurally rendered images, backbones pretrained by the pipeline itself)"
    out = [("\n".join([
        "# visprompt — results of the last `dvc repro`", "",
        f"Profile: **{params.get('profile', 'mini')}**. Every number on these pages was measured by this pipeline {where} unless it is labelled "
        "*published*; published numbers come from `src/visprompt/published/` with their source and a confirmed/unconfirmed flag "
        "(grey italic in the tables, † where the reference could not confirm them).", "",
        "## Verdict per claim", "",
        "Claims are the papers'; *(regime)* rows check that the run sits in the papers' regime (baselines only). "
        "holds: *yes* / *no* on the measured numbers, *–* when a run it needs is missing. All records, with their evidence: "
        "[claims.json](claims.json)." + (" The *other world* column is the verdict measured on a second world seed "
        "(`docs/second_world/claims.json`, docs/mini_world.md); a verdict that differs there is **unstable**, not a finding."
        if any("second_world" in c for c in claims) else ""), ""]), None)]
    if not claims:
        out.append(("No report has written its claims yet.\n", None))
    for paper, (title, nb) in PAPERS.items():
        records = [c for c in claims if c.get("paper") == paper]
        head = _headline(paper, root)
        if not records and head is None:
            continue
        lines = [f"### {title.split(' (')[0]}", ""]
        if records:
            n = {kind: [c for c in records if (c.get("kind") == "claim") == (kind == "claim")] for kind in ("claim", "regime")}
            lines += [", ".join(f"{sum(c.get('holds') is True for c in v)} of {len(v)} {kind + ('s' if kind == 'claim' else ' checks')} hold"
                                for kind, v in n.items() if v) + ".", ""]
        out.append(("\n".join(lines), None))
        if records:
            table = claims_table(records, label)
            md = "\n".join(["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
                           + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]) + "\n"
            out.append((md, present.claims(table, uuid=f"claims_{paper}")))
        if head is not None:
            report = root / paper / f"{nb}.html"
            link = f" — the whole report: [{report.name}]({report.relative_to(root).as_posix()})" if report.is_file() else ""
            out.append((f"**Headline: {HEADLINES[paper][1]}**{link}\n", None))
            out.append((head[0].rstrip() + "\n", head[1]))
    out.append((_links(root), None))
    out.append((_rest(root, env), None))
    return out


def _links(root: Path) -> str:
    lines = ["## Reports and notebooks", "",
             "Each report is its notebook rendered without code; each training notebook is rendered by the index stage "
             "(the executed .ipynb files sit beside the reports).", ""]
    for paper, (title, nb) in PAPERS.items():
        d = root / paper
        links = []
        report = d / f"{nb}.html"
        if report.is_file():
            links.append(f"[report]({report.relative_to(root).as_posix()})")
        runs = sorted((d / "runs").glob("*.ipynb")) if (d / "runs").is_dir() else []
        tables = sorted((d / "report").glob("*.csv")) if (d / "report").is_dir() else []
        lines.append(f"- **{title}**: " + (", ".join(links) if links else ("no report yet" if not runs else "report not rendered yet")))
        if runs:
            lines.append("  - training notebooks: " + ", ".join(f"[{r.stem}]({run_html_path(paper, r.stem, root).relative_to(root).as_posix()})" for r in runs))
        if tables:
            lines.append("  - tables (CSV): " + ", ".join(f"[{t.stem}]({t.relative_to(root).as_posix()})" for t in tables))
    return "\n".join(lines) + "\n"


def _rest(root: Path, env: dict) -> str:
    lines = []
    vit, clip = _read(root / "records" / "backbone_vit.json"), _read(root / "records" / "backbone_clip.json")
    if vit or clip:  # the mini profile's own pretrained backbones (the paper profile loads released weights)
        lines += ["## Mini backbones (are they useful?)", ""]
    if vit:
        lines.append(f"- tiny ViT: upstream val top-1 {vit.get('upstream_val_top1')}%; linear probe on frozen features, "
                     f"lowest ratio to chance over VTAB-/FGVC-mini tasks: {vit.get('min_ratio_to_chance')}× "
                     "(`reports/records/backbone_vit.json`).")
    if clip:
        lines.append(f"- tiny CLIP: zero-shot on CoOp-mini new classes, mean ratio to chance {clip.get('mean_new_class_ratio_to_chance')}×; "
                     f"lowest single-factor ratio {clip.get('min_single_factor_ratio_to_chance')}× (`reports/records/backbone_clip.json`).")
    devices = trained_on(root / "records")
    if devices:
        lines += ["", "## Trained on", ""] + [f"- {d}: " + (f"{n['cells']} cells in " if n["cells"] is not None else "") + f"{n['runs']} run(s)"
                                               for d, n in devices.items()]
    times = stage_times(root / "records")
    total = sum(t for _, t in times)
    lines += ["", "## Time", "", f"Sum of stage wall times: **{_fmt_s(total)}** (papermill kernel start-up and DVC overhead not included; "
              "a train stage counts the time its cells took when computed, so cells reused from `data/runs/` keep their measured cost).", "",
              "| stage | time |", "|---|---|"]
    lines += [f"| {name} | {_fmt_s(t)} |" for name, t in times]
    lines += ["", "## Environment", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def build_index_markdown(params: dict, root: Path = REPORTS, claims: list | None = None) -> str:
    return "\n".join(md for md, _ in sections(params, root, claims))


def build_index_html(params: dict, root: Path = REPORTS, claims: list | None = None, parts: list | None = None) -> str:
    """The same pieces as index.md: prose rendered by markdown-it-py, tables as the reports' HTML."""
    from .reports import present

    parts = sections(params, root, claims) if parts is None else parts
    body = "".join(f'<div class="md">{markdown_to_html(md)}</div>' if h is None else str(h) for md, h in parts)
    return _page("visprompt — results", body, present.CSS)


# --- executed training notebooks as HTML ------------------------------------------------------

_NOISE = ("IProgress not found", "TqdmWarning")


def _scrub(text: str) -> str:
    """Machine-specific paths out of an output text: the repository root becomes '.', an
    environment's site-packages '<site-packages>', a home directory '~'."""
    import os
    import re
    import sys

    for prefix, name in ((os.getcwd(), "."), (sys.prefix, "<env>"), (os.path.expanduser("~"), "~")):
        if prefix and prefix not in ("/", "."):
            text = text.replace(prefix.rstrip("/") + "/", name + "/").replace(prefix, name)
    return re.sub(r"(?:/[\w.+-]+)+/site-packages/", "<site-packages>/", text)


def _clean(nb, title: str):
    """Drop known warning noise from stderr, scrub machine paths, put a heading on top."""
    import nbformat

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr" and any(n in o.get("text", "") for n in _NOISE):
                continue
            if "text" in o:
                o["text"] = _scrub(o["text"])
            if o.get("output_type") == "error":
                o["traceback"] = [_scrub(t) for t in o.get("traceback", [])]
            if "text/plain" in o.get("data", {}):
                o["data"]["text/plain"] = _scrub(o["data"]["text/plain"])
            kept.append(o)
        cell["outputs"] = kept
    first = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0  # under the notebook's own title
    # a fixed cell id: the same executed notebook renders to the same bytes
    nb.cells.insert(first, nbformat.v4.new_markdown_cell(title, id="run-header"))
    return nb


def render_run(path: Path, paper: str, root: Path = REPORTS) -> Path:
    """One executed training notebook to HTML (code hidden: the notebook's source is notebooks/train_*.ipynb)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    params = next((c.source for c in nb.cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])), "")
    title = (f"*Executed training notebook `{path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name}`, "
             f"run **{path.stem}** ({paper}); code hidden, outputs as executed.*")
    if params:
        title += "\n\nParameters: " + "; ".join(f"`{line.strip()}`" for line in params.splitlines() if "=" in line)
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(_clean(nb, title))
    out = run_html_path(paper, path.stem, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    css = ("table.dataframe{font-size:12px}table.dataframe td,table.dataframe th{text-align:right}"
           "pre{background:#f7f7f7;padding:.4em;overflow-x:auto}img{max-width:100%}")
    out.write_text(_page(f"{paper} / {path.stem} — executed training notebook", body, css))
    return out


def render_runs(root: Path = REPORTS) -> list:
    """Every executed training notebook under ``<root>/<paper>/runs/`` to ``<root>/runs_html/``
    (the folder is rewritten, so a removed run leaves no page behind)."""
    import shutil

    shutil.rmtree(root / "runs_html", ignore_errors=True)
    return [render_run(p, paper, root) for paper in PAPERS for p in sorted((root / paper / "runs").glob("*.ipynb"))]


def write_index(params: dict, root: Path = REPORTS, runs: bool = True, second_world: Path = SECOND_WORLD) -> dict:
    """``index.md``, ``index.html``, ``claims.json`` (every paper's verdict records, one list) and,
    with ``runs``, the training notebooks' HTML under ``runs_html/``."""
    claims = load_claims(root)
    if params.get("profile", "mini") == "mini":  # the other world is a mini-profile measurement
        attach_second_world(claims, second_world)
    root.mkdir(parents=True, exist_ok=True)
    pages = render_runs(root) if runs else []
    parts = sections(params, root, claims)
    write_json(root / "claims.json", claims)
    (root / "index.md").write_text("\n".join(md for md, _ in parts))
    (root / "index.html").write_text(build_index_html(params, root, claims, parts))
    return {"index": str(root / "index.md"), "claims": str(root / "claims.json"), "n_claims": len(claims), "run_pages": len(pages),
            "total_stage_time_s": round(sum(t for _, t in stage_times(root / "records")), 1)}
