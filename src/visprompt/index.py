"""``reports/index.md`` (and HTML): the page a reader opens first.

It opens with the verdict per claim of each paper (merged from the report stages'
``<paper>/report/claims.json`` into ``reports/claims.json``), links every report and executed
notebook, summarises the backbones' usefulness checks, and states the environment and how long each
stage of the last ``dvc repro`` took (read from the stages' own metrics files, so the numbers are
measured, not typed).
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


def _cell(text) -> str:
    """A markdown table cell: no pipes or newlines (the HTML rendering splits rows on '|')."""
    return "–" if text is None else str(text).replace("|", "/").replace("\n", " ")


def verdict_lines(claims: list, label: str = "mini") -> list:
    """Markdown: one verdict table per paper (claim | published | measured | holds)."""
    from .reports.claims import claims_table

    lines = ["## Verdict per claim", "",
             "Claims are the papers'; *(regime)* rows check that the run sits in the papers' regime (baselines only). "
             "holds: *yes* / *no* on the measured numbers, *–* when a run it needs is missing. All records, with their evidence: "
             "[claims.json](claims.json).", ""]
    if not claims:
        return lines + ["No report has written its claims yet.", ""]
    for paper, (title, _) in PAPERS.items():
        records = [c for c in claims if c.get("paper") == paper]
        if not records:
            continue
        table = claims_table(records, label)
        n = {kind: [c for c in records if (c.get("kind") == "claim") == (kind == "claim")] for kind in ("claim", "regime")}
        summary = ", ".join(f"{sum(c.get('holds') is True for c in v)} of {len(v)} {kind + ('s' if kind == 'claim' else ' checks')} hold" for kind, v in n.items() if v)
        lines += [f"### {title.split(' (')[0]}", "", summary + ".", "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
        lines.append("")
    return lines


def stage_times(root: Path = REPORTS / "metrics") -> list[tuple[str, float]]:
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


def _fmt_s(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def build_index_markdown(params: dict, root: Path = REPORTS, claims: list | None = None) -> str:
    env = environment_info()
    paper = params.get("profile", "mini") == "paper"
    where = ("on the real datasets with the papers' checkpoints (ViT-B/16 ImageNet-21k, CLIP ViT-B/32 and ViT-B/16), columns "
             "tagged *real*; the deviations from the official code are listed in docs/paper_profile.md,") if paper else \
        "in the mini world (procedurally rendered images, backbones pretrained by the pipeline itself)"
    lines = [
        "# visprompt — results of the last `dvc repro`",
        "",
        f"Profile: **{params.get('profile', 'mini')}**. Every number on these pages was measured by this pipeline {where} unless it is labelled "
        "*published*; published numbers come from `src/visprompt/published/` with their source and a confirmed/unconfirmed flag.",
        "",
    ]
    lines += verdict_lines(load_claims(root) if claims is None else claims, "real" if paper else "mini")
    lines += ["## Reports", ""]
    for paper, (title, nb) in PAPERS.items():
        d = root / paper
        links = []
        for label, path in (("report (HTML)", d / f"{nb}.html"), ("executed notebook", d / f"{nb}.ipynb")):
            if path.is_file():
                links.append(f"[{label}]({path.relative_to(root).as_posix()})")
        tables = sorted((d / "report").glob("*.md")) if (d / "report").is_dir() else []
        links += [f"[{t.stem}]({t.relative_to(root).as_posix()})" for t in tables]
        runs = sorted((d / "runs").glob("*.ipynb")) if (d / "runs").is_dir() else []
        lines.append(f"- **{title}**: " + (", ".join(links) if links else "not run yet"))
        if runs:
            lines.append("  - training notebooks: " + ", ".join(f"[{r.stem}]({r.relative_to(root).as_posix()})" for r in runs))
    vit, clip = _read(root / "metrics" / "backbone_vit.json"), _read(root / "metrics" / "backbone_clip.json")
    if vit or clip:  # the mini profile's own pretrained backbones (the paper profile loads released weights)
        lines += ["", "## Mini backbones (are they useful?)", ""]
    if vit:
        lines.append(f"- tiny ViT: upstream val top-1 {vit.get('upstream_val_top1')}%; linear probe on frozen features, "
                     f"lowest ratio to chance over VTAB-/FGVC-mini tasks: {vit.get('min_ratio_to_chance')}× "
                     "(`reports/metrics/backbone_vit.json`).")
    if clip:
        lines.append(f"- tiny CLIP: zero-shot on CoOp-mini new classes, mean ratio to chance {clip.get('mean_new_class_ratio_to_chance')}×; "
                     f"lowest single-factor ratio {clip.get('min_single_factor_ratio_to_chance')}× (`reports/metrics/backbone_clip.json`).")
    times = stage_times(root / "metrics")
    total = sum(t for _, t in times)
    lines += ["", "## Time", "", f"Sum of stage wall times: **{_fmt_s(total)}** (papermill kernel start-up and DVC overhead not included; "
              "a train stage counts the time its cells took when computed, so cells reused from `data/runs/` keep their measured cost).", "",
              "| stage | time |", "|---|---|"]
    lines += [f"| {name} | {_fmt_s(t)} |" for name, t in times]
    lines += ["", "## Environment", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def _to_html(md: str) -> str:
    """A dependency-free rendering: headings, bullets, tables and links (reads offline)."""
    import re

    out, in_table, in_list = [], False, False
    link = lambda s: re.sub(r"\[([^\]]+)\]\(([^)]+)\)", lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', s)  # noqa: E731
    bold = lambda s: re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)  # noqa: E731
    for raw in md.splitlines():
        line = bold(link(html.escape(raw, quote=False)))
        if raw.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set(raw.replace("|", "").strip()) <= {"-"}:
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if raw.startswith("- ") or raw.startswith("  - "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{line.lstrip(' -')}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if raw.startswith("#"):
            level = len(raw) - len(raw.lstrip("#"))
            out.append(f"<h{level}>{line.lstrip('#').strip()}</h{level}>")
        elif raw.strip():
            out.append(f"<p>{line}</p>")
    if in_table:
        out.append("</table>")
    if in_list:
        out.append("</ul>")
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}td{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>visprompt</title><style>{style}</style></head><body>{''.join(out)}</body></html>\n"


def write_index(params: dict, root: Path = REPORTS) -> dict:
    """``index.md``, ``index.html`` and ``claims.json`` (every paper's verdict records, one list)."""
    claims = load_claims(root)
    md = build_index_markdown(params, root, claims)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "claims.json", claims)
    (root / "index.md").write_text(md)
    (root / "index.html").write_text(_to_html(md))
    return {"index": str(root / "index.md"), "claims": str(root / "claims.json"), "n_claims": len(claims), "total_stage_time_s": round(sum(t for _, t in stage_times(root / "metrics")), 1)}
