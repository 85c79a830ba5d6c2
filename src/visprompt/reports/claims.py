"""Verdict per claim: the papers' claims and the regime checks of the run, as plain records.

Each report builder (``reports.vpt``, ``reports.visual_prompting``, ``reports.rpo``) computes its
tables and its ``claims`` dict once and hands those numbers to its paper's verdict function
(``reports.vpt_claims``, ``reports.vp_claims``, ``reports.rpo_claims``), which only turns them
into verdicts, so a figure in ``claims.json`` is the number the report's tables show. This module
holds what the three share (the record, the regime checks, the table and the files) and imports no
paper module. One record per claim, always with exactly these keys::

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


def _num_classes(metrics: dict) -> dict:
    """task -> number of classes, from the cells (``num_classes``, written by the train stages)."""
    out = {}
    for res in metrics.values():
        for c in res.get("cells", []):
            if c.get("task") and isinstance(c.get("num_classes"), int):
                out.setdefault(c["task"], c["num_classes"])
    return out


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
