"""Visual prompting's method names and published-row readers, shared by ``reports.visual_prompting``
(the report) and ``reports.vp_claims`` (its verdicts); imports no other report module.
"""

from __future__ import annotations

from . import _common as C

# registered method -> (short label, names the paper / published table may use)
MAIN = {
    "zeroshot": ("TP", {"tp", "textprompt", "textprompting", "zeroshot", "clipzeroshot"}),
    "vp_pad": ("VP (pad)", {"vp", "vppad", "visualprompt", "visualprompting", "vppadding", "padding", "pad"}),
    "vp_fixed_patch": ("VP (fixed patch)", {"vpfixedpatch", "fixedpatch"}),
    "vp_random_patch": ("VP (random patch)", {"vprandompatch", "randompatch"}),
    "logistic_probe": ("LP", {"lp", "linearprobe", "logisticprobe", "linearprobing"}),
    "clip_finetune": ("FT", {"ft", "finetune", "finetuning", "fullfinetune", "fullfinetuning", "clipfinetune"}),
}


def _fmt_avg(st: dict) -> str:
    s = C.fmt_ms(st["mean"], st["std"])
    if st["n"] and st["n"] < st["of"]:
        s += f" ({st['n']}/{st['of']} datasets)"
    return s


def _accuracy_row(r: dict) -> bool:
    m = C.norm(r.get("metric", "top1"))
    return m in ("", "top1", "acc", "accuracy", "top1accuracy", "testtop1") or "top1" in m or "acc" in m


def published_for(rows: list, method: str) -> list:
    """Published accuracy rows of a registered method (matched on the registry name, the paper's
    short name or the row's ``label``)."""
    names = MAIN[method][1] | {C.norm(method), C.norm(MAIN[method][0])}
    return [r for r in rows if (C.norm(r.get("method", "")) in names or C.norm(r.get("label", "")) in names)
            and _accuracy_row(r) and isinstance(r.get("value"), (int, float))]
