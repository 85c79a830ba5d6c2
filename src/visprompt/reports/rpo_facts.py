"""RPO's method labels and published-row readers, shared by ``reports.rpo`` (the report) and
``reports.rpo_claims`` (its verdicts); imports no other report module.
"""

from __future__ import annotations

from . import _common as C

LABELS = {"zeroshot": "CLIP (zero-shot)", "rpo": "RPO", "coop": "CoOp", "cocoop": "CoCoOp", "clip_linear_probe": "Linear probe"}
PUB_NAMES = {
    "zeroshot": {"clip", "zeroshot", "zeroshotclip", "clipzeroshot"},
    "rpo": {"rpo"},
    "coop": {"coop"},
    "cocoop": {"cocoop"},
    "clip_linear_probe": {"linearprobe", "lp", "cliplinearprobe", "linearprobeclip", "linear"},
}
HM_CONVENTIONS = {"hm_of_means": "HM of the average B and N", "mean_of_hms": "mean of per-dataset HMs"}
PROTOCOL_NAMES = {
    "base2new": ("base2new", "basetonew", "b2n", "basenew"),
    "dg": ("dg", "domaingeneralization", "domaingeneralisation", "domain"),
    "fewshot": ("fewshot", "extremefewshot", "variance", "kshot"),
}


def _protocol_matches(row: dict, protocol: str) -> bool:
    """Rows without a protocol/setting field match every protocol (the metric then decides)."""
    proto = row.get("protocol") or row.get("setting")
    if not proto:
        return True
    p = C.norm(proto)
    return any(p == n or p.startswith(n) for n in PROTOCOL_NAMES.get(protocol, (C.norm(protocol),)))


def published_for(rows: list, method: str, protocol: str | None = None) -> list:
    """Published rows of a registered method (registry name, paper name or ``label``)."""
    names = PUB_NAMES.get(method, set()) | {C.norm(method), C.norm(LABELS.get(method, method))}
    out = []
    for r in rows:
        if C.norm(r.get("method", "")) not in names and C.norm(r.get("label", "")) not in names:
            continue
        if not isinstance(r.get("value"), (int, float)):
            continue
        if protocol and not _protocol_matches(r, protocol):
            continue
        out.append(r)
    return out


def _metric_is(r: dict, metric: str) -> bool:
    m = C.norm(r.get("metric", ""))
    if metric == "hm":
        return m in ("hm", "harmonicmean", "h")
    if metric == "base":
        return m in ("base", "basetop1", "baseacc", "baseaccuracy")
    if metric == "new":
        return m in ("new", "newtop1", "newacc", "newaccuracy")
    if metric == "top1":
        return m in ("", "top1", "acc", "accuracy", "testtop1")
    if metric == "params":
        return "param" in m
    return m == C.norm(metric)
