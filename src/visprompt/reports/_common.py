"""Helpers shared by the paper report builders (measured vs published, formatting, figures).

Measured numbers come only from the metrics written by the train stages; published numbers come
only from ``visprompt.published.<paper>.published_table()``. A published number is never put in
a column whose label does not say "published".
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
from pathlib import Path

import numpy as np

from . import runs as report

DASH = "–"


# --- names ------------------------------------------------------------------------------------


def norm(name) -> str:
    """Lower-case alphanumerics only: 'VPT-deep' -> 'vptdeep', 'CIFAR-100' -> 'cifar100'."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def run_names(params: dict, paper: str) -> list:
    """Run names of a paper in params order (``<paper>.methods`` keys)."""
    return list(((params.get(paper) or {}).get("methods") or {}).keys())


def current_runs(params: dict, paper: str, metrics: dict) -> dict:
    """The run records of runs still in ``<paper>.methods``: a record left by a run since removed
    from params (or by other params, e.g. the smoke params) is skipped with a note, not reported
    beside the current runs."""
    names = set(run_names(params, paper))
    stale = sorted(set(metrics) - names)
    if stale:
        print(f"note: {paper}: skipped the records of runs no longer in {paper}.methods: {', '.join(stale)} "
              f"(reports/records/{paper}/<run>.json; delete them, or add the runs back)")
    return {k: v for k, v in metrics.items() if k in names}


def registered(params: dict, paper: str, run: str) -> str:
    """The registered method behind a run name (ablation runs alias a method with other settings)."""
    entry = ((params.get(paper) or {}).get("methods") or {}).get(run) or {}
    return entry.get("method", run)


def run_cfg(params: dict, paper: str, run: str, metrics: dict | None = None) -> dict:
    """The method cfg of a run: from its metrics' settings when present, else from params."""
    if metrics and run in metrics:
        cfg = (metrics[run].get("settings") or {}).get("cfg")
        if cfg is not None:
            return dict(cfg)
    entry = ((params.get(paper) or {}).get("methods") or {}).get(run) or {}
    return dict(entry.get("cfg") or {})


def main_run(params: dict, paper: str, method: str, metrics: dict | None = None) -> str | None:
    """The run that stands for a registered method: the run named like it, else the first alias."""
    runs = run_names(params, paper)
    if method in runs:
        return method
    for r in runs:
        if registered(params, paper, r) == method:
            return r
    if metrics and method in metrics:
        return method
    return None


# --- which world the measured numbers come from -----------------------------------------------


def measured_label(params: dict) -> str:
    """Tag of measured columns and claims: ``mini`` (the procedural world, tiny backbones) or
    ``real`` (the paper profile: real datasets, the papers' checkpoints)."""
    return "real" if (params or {}).get("profile") == "paper" else "mini"


def profile_name(params: dict) -> str:
    """The params profile a figure title names: ``mini`` or ``paper``."""
    return "paper" if (params or {}).get("profile") == "paper" else "mini"


def is_ablation(params: dict, paper: str, run: str, metrics: dict | None = None) -> bool:
    """A run that is not the one standing for its registered method (e.g. ``vpt_deep_p2`` beside
    ``vpt_deep``): it never gets the method's published numbers."""
    return main_run(params, paper, registered(params, paper, run), metrics) != run


WORLD = {"mini": "Mini world", "real": "Measured (real data)"}  # how a claim about measured numbers starts
NOT_MEASURED = {"mini": "not measured in the mini world", "real": "not measured"}

# paper-profile task names whose published dataset name differs from the task's own name
PUBLISHED_NAMES = {"vp/pets": "OxfordPets", "vp/clevr_count": "CLEVR", "oxford_flowers": "Flowers102", "coop/oxford_flowers": "Flowers102"}


def real_dataset_name(task: str) -> str | None:
    """The published name behind a paper-profile task (``vp/cifar100`` -> ``cifar100``), None for others."""
    from ..data import real

    key = task if "/" in str(task) else f"coop/{task}"
    if key not in real.REAL_DATASETS:
        return None
    return PUBLISHED_NAMES.get(task) or PUBLISHED_NAMES.get(key) or key.split("/", 1)[1]


# --- numbers ----------------------------------------------------------------------------------


def stats(values) -> tuple:
    """(mean, sample std or nan, n) of the non-missing values; (nan, nan, 0) when there are none."""
    v = np.asarray([x for x in values if x is not None and not _isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else math.nan), len(v)


def _isnan(x) -> bool:
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def fmt_ms(mean: float, std: float = math.nan, digits: int = 1) -> str:
    """'m ± s' (s = sample std over seeds), 'm' for a single seed, '–' for nothing."""
    if _isnan(mean):
        return DASH
    if _isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_values(values, digits: int = 1) -> str:
    """Same output as ``report.mean_std`` for a list of per-seed values."""
    if digits == 1:
        return report.mean_std([v for v in values if not _isnan(v)])
    m, s, _ = stats(values)
    return fmt_ms(m, s, digits)


def hm(a: float, b: float) -> float:
    """Harmonic mean 2ab/(a+b) (0 when both are 0, nan when either is missing)."""
    if _isnan(a) or _isnan(b):
        return math.nan
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


# --- published numbers ------------------------------------------------------------------------


def published_rows(module: str, function: str = "published_table") -> tuple[list, str | None]:
    """Rows of ``visprompt.published.<module>.<function>()``; ([], why) when unavailable."""
    try:
        mod = importlib.import_module(f"visprompt.published.{module}")
    except ImportError as e:
        return [], f"published numbers unavailable (visprompt.published.{module}: {e})"
    fn = getattr(mod, function, None)
    if fn is None:
        return [], f"visprompt.published.{module} has no {function}()"
    return [dict(r) for r in fn()], None


def is_confirmed(row: dict) -> bool:
    c = row.get("confirmed")
    if isinstance(c, str):
        return "unconfirmed" not in c.lower() and c.strip().lower() not in ("", "false", "no", "0")
    return bool(c)


def fmt_published(value, row: dict | None = None, where: str | None = None, unit: str = "") -> str:
    """A published number for a column labelled 'published': '78.48', '75.3 (unconfirmed)',
    '96.4 [EuroSAT]' when ``where`` names the paper's dataset behind a mini analogue."""
    if value is None or _isnan(value):
        return DASH
    v = float(value)
    text = (f"{v:.2f}" if abs(v) < 1000 else f"{v:,.0f}") + unit
    if row is not None and row.get("approximate"):
        text = "≈" + text
    tags = []
    if where:
        tags.append(str(where))
    if row is not None and not is_confirmed(row):
        tags.append("unconfirmed")
    return text + (f" ({', '.join(tags)})" if tags else "")


def analog_names(analog: str | None) -> list:
    """Candidate paper dataset names behind a mini task's ``analog`` ('ImageNet / Caltech101')."""
    if not analog:
        return []
    parts = [p.strip() for p in str(analog).split("/") if p.strip()]
    out = []
    for p in parts:
        out.append(p)
        base = p.split("(")[0].strip()
        if base and base != p:
            out.append(base)
    return out


def dataset_matches(published_name, candidates) -> bool:
    """Exact match of normalised names, also ignoring a parenthesised suffix on either side."""
    pn = norm(published_name)
    pb = norm(str(published_name).split("(")[0])
    for c in candidates:
        cn, cb = norm(c), norm(str(c).split("(")[0])
        if pn and (pn == cn or pn == cb or pb == cn or (pb and pb == cb)):
            return True
    return False


def find_published(rows: list, candidates, key: str = "dataset"):
    """The first row whose ``key`` matches a candidate name, trying candidates in order."""
    for c in candidates:
        for r in rows:
            if dataset_matches(r.get(key, ""), [c]):
                return r
    return None


# --- tables and figures -----------------------------------------------------------------------


def save_table(df, out_dir, name: str):
    report.save_table(df, out_dir, name)
    return df


def pyplot():
    """pyplot on the Agg backend, unless a notebook's inline backend is active (figures still show)."""
    import matplotlib

    backend = str(matplotlib.get_backend()).lower()
    if "inline" not in backend and "ipympl" not in backend and "widget" not in backend and backend != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def fixed_jitter(seed: int = 0):
    """Seaborn's stripplot jitters points with NumPy's global generator: seed it for the block (and
    restore it after) so that the same records give the same figure, byte for byte."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def finish_figure(fig, out_dir, name: str, files: dict):
    """Save as PNG, close (no duplicate display in notebooks), return the figure."""
    files[name] = report.save_figure(fig, out_dir, name)
    pyplot().close(fig)
    return fig


def empty_figure(message: str, size=(4, 1.2)):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=9)
    return fig


def load_image(value, metrics_root) -> np.ndarray | None:
    """A prompt image recorded in a cell: a path to an HxWx3 ``.npy`` (float in [0, 1]) or the
    image itself inline (nested lists, uint8 0–255 or float 0–1). Returns float HxWx3 in [0, 1]."""
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        p = resolve_path(str(value), metrics_root)
        if p is None:
            return None
        arr = np.load(p)
    else:
        arr = np.asarray(value)
    if arr.ndim != 3 or arr.size == 0:
        return None
    arr = arr.astype(np.float32)
    if arr.max() > 1.0:
        arr = arr / 255.0
    return np.clip(arr, 0.0, 1.0)


def resolve_path(path: str | None, metrics_root) -> Path | None:
    """A path recorded by a train stage (relative to the repository root, the stage's cwd)."""
    if not path:
        return None
    p = Path(path)
    if p.is_file():
        return p
    # metrics_root is <repo>/reports/records when given relative to elsewhere
    repo = Path(metrics_root).resolve().parents[1]
    q = repo / path
    return q if q.is_file() else None
