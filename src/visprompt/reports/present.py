"""Paper-shaped HTML for the report notebooks and the index (pandas Styler, no row index).

The report builders write their tables as plain strings (``mean ± std``, published cells such as
``'76.60 (ImageNet, unconfirmed)'``) to ``.md``/``.csv``; this module only *presents* those same
tables: grouped column headers (group → mini | published), one decimal, ``mean ± std`` that does
not wrap, published columns in their own class (``pub``: grey italic) with a † for numbers the
reference marks unconfirmed, ablation rows (labels ``'Method [run]'``) below the main rows and
never beside a published number. It adds no number of its own.
"""

from __future__ import annotations

import html as _html
import math
import re

import pandas as pd

NBSP = "\u00a0"
DASH = "–"
MARK = "†"

CSS = """
.vpr{margin:.6em 0 1.2em 0;overflow-x:auto}
.vpr table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
.vpr th,.vpr td{padding:3px 8px;text-align:right;white-space:nowrap;vertical-align:top}
.vpr thead th{border-bottom:1px solid #999;font-weight:600}
.vpr thead tr:first-child th{border-bottom:1px solid #ccc}
.vpr td{border-bottom:1px solid #eee}
.vpr td.txt,.vpr th.txt{text-align:left}
.vpr td.wrap{white-space:normal;min-width:14em;max-width:34em}
.vpr td.gs,.vpr th.gs{border-left:1px solid #ccc}
.vpr td.pub,.vpr th.pub{color:#6a6a6a;font-style:italic;background:#f5f5f5}
.vpr td.abl{color:#555;background:#fbfbf4}
.vpr tr.first-abl td,.vpr td.first-abl{border-top:2px solid #bbb}
.vpr td.avg{font-weight:600;border-top:1px solid #999}
.vpr td.yes{color:#1a7f37;font-weight:600}
.vpr td.no{color:#b3261e;font-weight:600}
.vpr td.open{color:#777}
.vpr td.regime{background:#fafafa}
.vpr .note,.vpr .where{color:#777;font-size:85%}
.vpr .where{display:block;font-style:normal}
.vpr p.note{margin:.3em 0 0 0;max-width:60em}
.vpr .cap{font-weight:600;margin:.2em 0}
.vpr .blocks{display:flex;flex-wrap:wrap;gap:0 2.5em}
.vpr ul{margin:.3em 0;padding-left:1.4em}
""".strip()


class HTML(str):
    """A fragment of HTML that notebooks display as HTML (``_repr_html_``) and pages embed."""

    def _repr_html_(self) -> str:
        return str(self)

    def to_html(self) -> str:
        return str(self)

    def __repr__(self) -> str:  # the notebook's text/plain fallback: not the whole HTML a second time
        return f"<HTML fragment, {len(self):,} characters>"


def esc(x) -> str:
    return _html.escape(str(x), quote=False)


def blank(x) -> bool:
    if x is None:
        return True
    if isinstance(x, float) and math.isnan(x):
        return True
    return str(x).strip() in ("", DASH, "-", "nan", "None")


def _split_note(text: str) -> tuple[str, str | None]:
    """'86.1 ± 2.6 (3/4 tasks)' -> ('86.1 ± 2.6', '3/4 tasks'); balanced trailing parentheses only."""
    text = text.strip()
    if not text.endswith(")"):
        return text, None
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            if i > 0 and text[i - 1] == " ":
                return text[: i - 1], text[i + 1 : -1]
            return text, None
    return text, None


_NUM = re.compile(r"^(≈?)(-?[\d,]*\.?\d+)(×?)$")


def _one_decimal(num: str) -> str:
    """'88.54' -> '88.5', '≈75.30' -> '≈75.3'; multipliers ('1.023×') and counts ('1,344') as they are."""
    m = _NUM.match(num)
    if not m or m.group(3) or "." not in m.group(2):
        return num
    return f"{m.group(1)}{float(m.group(2).replace(',', '')):.1f}"


def measured(x, digits: int = 1, extra: str = "") -> str:
    """A measured cell as HTML: floats to ``digits``, 'm ± s' kept on one line, ``extra`` (HTML)
    after the number, a trailing '(3/4 tasks)' note in small type."""
    if blank(x):
        return DASH
    if isinstance(x, int) and not isinstance(x, bool):
        return (f"{x:,}" if abs(x) >= 10000 else str(x)) + extra
    if isinstance(x, float):
        return f"{x:.{digits}f}" + extra
    main, note = _split_note(str(x))
    main = esc(main).replace(" ± ", f"{NBSP}±{NBSP}")
    return main + extra + (f' <span class="note">({esc(note)})</span>' if note else "")


def parse_published(text) -> dict | None:
    """'≈75.30 (CIFAR100, unconfirmed)' -> {'number': '≈75.3', 'unconfirmed': True, 'where': 'CIFAR100'};
    None for a cell that is not one published number (free text is shown as it is)."""
    if blank(text):
        return None
    main, tags = _split_note(str(text))
    if not _NUM.match(main):
        return None
    unconfirmed, where = False, tags
    if tags is not None:
        parts = [t.strip() for t in tags.split(", ")]
        if parts and parts[-1] == "unconfirmed":
            unconfirmed, parts = True, parts[:-1]
        where = ", ".join(parts) or None
    return {"number": _one_decimal(main), "unconfirmed": unconfirmed, "where": where, "approximate": main.startswith("≈")}


def published(x, extra: str = "") -> str:
    """A published cell as HTML: one decimal, † when unconfirmed, the paper's dataset in small type."""
    p = parse_published(x)
    if p is None:
        return DASH if blank(x) else esc(x)
    out = esc(p["number"]) + (f"<sup>{MARK}</sup>" if p["unconfirmed"] else "") + extra
    return out + (f'<span class="where">{esc(p["where"])}</span>' if p["where"] else "")


def without_where(text, prefix: str):
    """A published cell without its where-tag when that tag starts with ``prefix`` (a block whose
    caption already says it): '69.34 (average)' -> '69.34'; '71.70 (average; HM of ...)' -> '71.70 (HM of ...)'."""
    p = parse_published(text)
    if p is None or not p["where"] or not p["where"].startswith(prefix):
        return text
    main, _ = _split_note(str(text))
    tags = [t for t in [p["where"][len(prefix):].lstrip("; ,")] if t] + (["unconfirmed"] if p["unconfirmed"] else [])
    return main + (f" ({', '.join(tags)})" if tags else "")


def is_ablation_label(label) -> bool:
    """Report labels name an ablation run (a method under another run name) as 'Method [run]'."""
    return bool(re.search(r" \[[^\]]+\]$", str(label)))


def measured_label(columns) -> str:
    """'mini' or 'real', read from a report table's column names (e.g. 'FGVC (mini, measured)')."""
    for c in columns:
        m = re.search(r"\((mini|real)\b", str(c))
        if m:
            return m.group(1)
    return "mini"


# --- the generic table -------------------------------------------------------------------------


def prose(x) -> str:
    """Free text (claims, evidence): escaped, 'm ± s' kept on one line."""
    return DASH if blank(x) else esc(x).replace(" ± ", f"{NBSP}±{NBSP}")


VERDICT_CLASS = {"yes": "yes", "no": "no"}
# kind -> (cell formatter, td classes)
KINDS = {
    "txt": (lambda v: DASH if blank(v) else esc(v), "txt"),
    "wrap": (prose, "txt wrap"),
    "mini": (measured, "num"),
    "pub": (published, "num pub"),
    "pubwrap": (prose, "txt wrap pub"),
    "verdict": (lambda v: DASH if blank(v) else esc(v), "txt"),
    "html": (lambda v: DASH if blank(v) else str(v), "num"),
    "pubhtml": (lambda v: DASH if blank(v) else str(v), "num pub"),
}
PUB_KINDS = ("pub", "pubwrap", "pubhtml")


def table(df: pd.DataFrame, spec: list, *, uuid: str, row_kinds=None, caption: str | None = None,
          notes=(), wrap: bool = True, footnotes: bool = True) -> HTML:
    """``spec``: (group, sub, column, kind) per shown column, kind one of :data:`KINDS` ('txt' row
    header, 'wrap' long text, 'mini' measured, 'pub' published, 'pubwrap' published prose, 'verdict'
    yes/no, 'html' ready HTML). An empty ``sub`` in every column gives one header row.
    ``row_kinds``: per row '' / 'abl' (ablation run) / 'avg' (an average row)."""
    from pandas.io.formats.style import Styler

    row_kinds = list(row_kinds) if row_kinds is not None else [""] * len(df)
    two_levels = any(sub for _, sub, _, _ in spec)
    cols = pd.MultiIndex.from_tuples([(g, s) for g, s, _, _ in spec]) if two_levels else pd.Index([g for g, _, _, _ in spec])
    starts = _group_starts(spec)
    first_abl = next((i for i, k in enumerate(row_kinds) if k == "abl"), None)
    flags = {"mark": False, "approx": False, "pub": any(k in PUB_KINDS for *_, k in spec)}
    shown, classes = [], []
    for i, (_, row) in enumerate(df.iterrows()):
        cells, cls = [], []
        for j, (_, _, col, kind) in enumerate(spec):
            v = row.get(col) if col in df.columns else None
            if kind in PUB_KINDS and row_kinds[i] == "abl":
                v = None  # an ablation run never stands beside the method's published number
            if kind == "pub":
                p = parse_published(v)
                flags["mark"] |= bool(p and p["unconfirmed"])
                flags["approx"] |= bool(p and p["approximate"])
            elif kind == "pubhtml" and not blank(v):
                flags["mark"] |= MARK in str(v)
                flags["approx"] |= "≈" in str(v)
            fmt, c = KINDS[kind]
            cells.append(fmt(v))
            c = [c]
            if kind == "verdict":
                c.append(VERDICT_CLASS.get(str(v).strip(), "open"))
            if j in starts and j:
                c.append("gs")
            if row_kinds[i]:
                c.append(row_kinds[i])
            if first_abl and i == first_abl:
                c.append("first-abl")
            cls.append(" ".join(c))
        shown.append(cells)
        classes.append(cls)
    data = pd.DataFrame(shown, columns=cols)
    styler = Styler(data, uuid=uuid, cell_ids=False).hide(axis="index")
    if len(data):
        styler = styler.set_td_classes(pd.DataFrame(classes, columns=cols))
    out = re.sub(r'<style type="text/css">\s*</style>\s*', "", styler.to_html())
    # header classes: published sub-headers grey italic, a rule where a group starts, text columns left
    for j, (_, sub, _, kind) in enumerate(spec):
        extra = (["pub"] if kind in PUB_KINDS else []) + (["txt"] if kind in ("txt", "wrap", "pubwrap", "verdict") else [])
        if j in starts and j:
            extra.append("gs")
        for level in ((0, 1) if two_levels else (0,)):
            e = [x for x in extra if not (level == 0 and two_levels and x == "pub" and sub)]  # a group heading spans mini and published
            if e:
                out = out.replace(f'class="col_heading level{level} col{j}"', f'class="col_heading level{level} col{j} {" ".join(e)}"')
    foot = standard_notes(flags["pub"], flags["mark"], flags["approx"], first_abl is not None) if footnotes else []
    foot += [n for n in notes if n]
    body = (f'<p class="cap">{caption}</p>' if caption else "") + out + "".join(f'<p class="note">{n}</p>' for n in foot)
    return HTML(f'<div class="vpr"><style>{CSS}</style>{body}</div>' if wrap else body)


def standard_notes(pub: bool, mark: bool, approx: bool, ablation: bool) -> list:
    """The footnotes a table with published columns, † marks, ≈ values or ablation rows carries."""
    out = []
    if pub:
        out.append("Grey italic: published (the papers' numbers, from src/visprompt/published, on the papers' own data and backbones); "
                   "every other number was measured by this pipeline.")
    if mark:
        out.append(f"{MARK} unconfirmed in the reference.")
    if approx:
        out.append("≈ approximate.")
    if ablation:
        out.append("Below the rule: ablation runs (a method with other settings); no published number stands beside them.")
    return out


def _group_starts(spec) -> set:
    starts, prev = set(), object()
    for j, (g, sub, _, _) in enumerate(spec):
        if g != prev or not sub:
            starts.add(j)
        prev = g
    return starts


def order_rows(df: pd.DataFrame, label_col: str) -> tuple[pd.DataFrame, list]:
    """Main rows first, ablation rows ('Method [run]') after them, each in their original order."""
    abl = [is_ablation_label(v) for v in df[label_col]] if label_col in df.columns else [False] * len(df)
    order = [i for i, a in enumerate(abl) if not a] + [i for i, a in enumerate(abl) if a]
    return df.iloc[order].reset_index(drop=True), ["abl" if abl[i] else "" for i in order]


def blocks(parts: list, caption: str | None = None, notes=()) -> HTML:
    """Several tables side by side (wrapping), like a paper's (a), (b), ... sub-tables."""
    inner = "".join(f"<div>{p}</div>" for p in parts)
    body = (f'<p class="cap">{caption}</p>' if caption else "") + f'<div class="blocks">{inner}</div>' + "".join(f'<p class="note">{n}</p>' for n in notes if n)
    return HTML(f'<div class="vpr"><style>{CSS}</style>{body}</div>')


def bullets(lines, title: str | None = None) -> HTML:
    """A list of sentences (the claims in words, the deviations) as an HTML list."""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines if str(line).strip())
    return HTML(f'<div class="vpr"><style>{CSS}</style>' + (f'<p class="cap">{esc(title)}</p>' if title else "") + f"<ul>{items}</ul></div>")


def claims(df: pd.DataFrame, uuid: str = "claims") -> HTML:
    """The verdict table (claim | published (paper) | <label> (measured) | holds), holds coloured."""
    measured_col = next((c for c in df.columns if str(c).endswith("(measured)")), None)
    spec = [("claim", "", "claim", "wrap"), ("published (paper)", "", "published (paper)", "pubwrap")]
    if measured_col:
        spec.append((measured_col, "", measured_col, "wrap"))
    spec.append(("holds", "", "holds", "verdict"))
    if "other world" in df.columns:
        spec.append(("other world seed", "", "other world", "wrap"))
    kinds = ["regime" if str(c).startswith("(regime)") else "" for c in df["claim"]]
    return table(df, spec, uuid=uuid, row_kinds=kinds, notes=[
        "(regime) rows check that the run sits in the paper's regime (baselines only, never the method under study); "
        "holds: yes / no on the measured numbers, – when a run it needs is missing."])
