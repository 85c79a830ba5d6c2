"""Verdict records (``reports/claims.json``) on SYNTHETIC metrics written into tmp_path.

Every accuracy here is made up for the test (round numbers chosen so the verdicts can be checked by
hand); none is a measured number. Published strings are compared with ``visprompt.published`` itself.
"""

import json

import pytest
from test_reports import _b2n, _dgc, _fs, _vp_cells, _vpt_cells, _write

from visprompt.index import write_index
from visprompt.published import rpo as published_rpo
from visprompt.published import vpt as published_vpt
from visprompt.reports import claims as K
from visprompt.reports import rpo as rpo_report
from visprompt.reports import visual_prompting as vp_report
from visprompt.reports import vpt as vpt_report

KEYS = {"paper", "kind", "claim", "published", "mini", "holds", "evidence"}


def _find(records, start):
    hits = [r for r in records if r["claim"].startswith(start)]
    assert len(hits) == 1, [r["claim"] for r in records]
    return hits[0]


def _check_records(records, paper):
    assert records and all(set(r) == KEYS for r in records)
    assert {r["paper"] for r in records} == {paper}
    assert {r["kind"] for r in records} == {"claim", "regime"}
    for r in records:
        assert r["holds"] in (True, False, None) and isinstance(r["mini"], str) and isinstance(r["evidence"], str)
        assert r["published"] is None or isinstance(r["published"], str)


# --- VPT --------------------------------------------------------------------------------------

VPT_TASKS = ["vtab/shapes", "vtab/sensor-shapes", "vtab/count", "fgvc/blue-shades"]


def _trained(cells, converged=True, num_classes=10):
    for c in cells:
        c["history"] = [{"epoch": 0, "loss": 2.0}, {"epoch": 1, "loss": 1.0}]
        c["plateau"] = {"converged": converged, "improvement": 0.01 if converged else 0.3, "window_epochs": 1}
        c["num_classes"] = num_classes
        c["cell"] = f"{c['task']}/seed{c['seed']}"
    return cells


def _vpt_world(tmp_path, full_count=(50, 52), deep=True, linear_shapes=(40, 40), deep_converged=True):
    root = tmp_path / "metrics"
    full = {"vtab/shapes": [60, 62], "vtab/sensor-shapes": [70, 70], "vtab/count": list(full_count), "fgvc/blue-shades": [80, 80]}
    linear = {"vtab/shapes": list(linear_shapes), "vtab/sensor-shapes": [60, 60], "vtab/count": [30, 30], "fgvc/blue-shades": [70, 70]}
    _write(root, "vpt", "full", _trained(_vpt_cells(full, 1010, 1010)))
    _write(root, "vpt", "linear", _trained(_vpt_cells(linear, 10, 1010)))
    if deep:
        vals = {"vtab/shapes": [70, 70], "vtab/sensor-shapes": [75, 75], "vtab/count": [40, 40], "fgvc/blue-shades": [85, 85]}
        _write(root, "vpt", "vpt_deep", _trained(_vpt_cells(vals, 30, 1030), converged=deep_converged))
    params = {"vpt": {"tasks": VPT_TASKS, "seeds": [1, 2], "methods": {"full": {}, "linear": {}, "vpt_deep": {}}}}
    return params, root


def test_vpt_records_verdicts_and_published_from_the_module(tmp_path):
    params, root = _vpt_world(tmp_path)
    r = vpt_report.build(params, str(tmp_path / "out"), metrics_root=str(root))
    records = r["claims_list"]
    _check_records(records, "vpt")
    assert json.loads((tmp_path / "out" / "claims.json").read_text()) == records
    assert (tmp_path / "out" / "claims.md").read_text().startswith("# Verdict per claim")
    deep_full = _find(records, "VPT-deep ≥ Full")
    assert deep_full["holds"] is True and deep_full["mini"].startswith("VPT-deep ≥ Full on 3 of 4 tasks")
    assert _find(records, "VPT-deep > Linear")["holds"] is True
    storage = _find(records, "VPT-deep stores")
    assert storage["holds"] is True and "VPT-deep 1.120× vs Full 4.040×" in storage["mini"]
    # regime: Full > Linear on Structured (51 vs 30) with the paper's 47.64 vs 26.84 read from visprompt.published.vpt
    structured = _find(records, "Full fine-tuning beats Linear probing on the Structured")
    f, lin = published_vpt.published_top1("full", "vtab-structured/mean"), published_vpt.published_top1("linear", "vtab-structured/mean")
    assert structured["published"] == f"Full {f['top1']:.2f} vs Linear {lin['top1']:.2f}"
    assert structured["holds"] is True and structured["kind"] == "regime" and "± 1.4" in structured["mini"]
    coverage = _find(records, "at least two measured tasks in every VTAB group")
    assert coverage["holds"] is False and "Structured: vtab/count" in coverage["evidence"]
    # the table: claims first, published labelled as such
    table = r["claims_table"]
    assert list(table.columns) == ["claim", "published (paper)", "mini (measured)", "holds"]
    assert table["claim"].iloc[0] == deep_full["claim"] and table["claim"].iloc[-1].startswith("(regime)")
    assert any("Sidetune" in d and "randomly initialised" in d and "AlexNet" in d for d in r["deviations"])


def test_vpt_holds_flips_with_the_numbers_and_is_null_without_the_run(tmp_path):
    params, root = _vpt_world(tmp_path / "a", full_count=(20, 22))  # Full below Linear (30) on Structured
    records = vpt_report.build(params, str(tmp_path / "a" / "out"), metrics_root=str(root))["claims_list"]
    assert _find(records, "Full fine-tuning beats Linear probing on the Structured")["holds"] is False
    params, root = _vpt_world(tmp_path / "b", deep=False)
    records = vpt_report.build(params, str(tmp_path / "b" / "out"), metrics_root=str(root))["claims_list"]
    for start in ("VPT-deep ≥ Full", "VPT-deep > Linear", "VPT-deep stores"):
        rec = _find(records, start)
        assert rec["holds"] is None and rec["mini"] == "–" and "vpt_deep" in rec["evidence"]
    assert _find(records, "VPT-deep ≥ Full")["published"].startswith("VPT-deep ≥ Full on 20 of 24 tasks")  # the paper's per-task table


def test_convergence_lists_the_cells_that_did_not_converge(tmp_path):
    params, root = _vpt_world(tmp_path, deep_converged=False)
    rec = _find(vpt_report.build(params, str(tmp_path / "out"), metrics_root=str(root))["claims_list"], "every trained cell converged")
    assert rec["holds"] is False and rec["kind"] == "regime" and rec["mini"] == "16 of 24 trained cells converged"
    assert "vpt_deep:vtab/shapes/seed1" in rec["evidence"] and "full:" not in rec["evidence"].split("not converged")[1]
    # a metrics file from before the plateau record: no verdict
    metrics = {"old": {"cells": [{"task": "t", "seed": 1, "history": [{"epoch": 0, "loss": 1.0}]}]}}
    assert K.convergence("vpt", metrics, ["old"])["holds"] is None
    metrics["old"]["cells"].append({"task": "t", "seed": 2, "history": [{"loss": 1.0}], "plateau": {"converged": False, "improvement": 0.5, "window_epochs": 1}})
    assert K.convergence("vpt", metrics, ["old"])["holds"] is False
    assert K.convergence("vpt", {}, ["old"])["holds"] is None
    many = {"r": {"cells": [{"cell": f"c{i}", "history": [{"loss": 1}], "plateau": {"converged": False}} for i in range(13)]}}
    assert K.convergence("vpt", many, ["r"])["evidence"].endswith("and 3 more")


def test_chance_flag_fires_at_1_2x_chance_and_not_at_3x(tmp_path):
    for best, expected in ((12.0, False), (30.0, True)):  # 10 classes: chance 10%
        root = tmp_path / f"m{int(best)}"
        _write(root, "vpt", "linear", _trained(_vpt_cells({"vtab/shapes": [best, best], "vtab/count": [50, 50]}, 10, 1010)))
        params = {"vpt": {"tasks": ["vtab/shapes", "vtab/count"], "methods": {"linear": {}}}}
        rec = _find(vpt_report.build(params, str(root / "out"), metrics_root=str(root))["claims_list"], "no task has its best")
        assert rec["holds"] is expected
        assert ("vtab/shapes" in rec["evidence"]) is (not expected)
    rec = K.chance_check("rpo", [("objects base", 12.0, "CoOp", 10), ("objects new", 31.0, "CoOp", 10)], what="dataset half", plural="dataset halves")
    assert rec["holds"] is False and rec["mini"].startswith("1 of 2 dataset halves below 1.5× chance")
    assert K.chance_check("rpo", [], ["objects base"])["holds"] is None


# --- visual prompting -------------------------------------------------------------------------


def _vp_world(tmp_path, zs_shifted=(30, 10), lp_sensor=(40, 40)):
    root = tmp_path / "metrics"
    _write(root, "vp", "zeroshot", _vp_cells({"vp/vp-shapes": [40, 40], "vp/vp-sensor": [20, 20]}, {"vp/vp-shapes": [zs_shifted[0]] * 2, "vp/vp-sensor": [zs_shifted[1]] * 2}))
    _write(root, "vp", "vp_pad", _vp_cells({"vp/vp-shapes": [50, 60], "vp/vp-sensor": [30, 30]}, {"vp/vp-shapes": [48, 58], "vp/vp-sensor": [29, 29]}, 1344))
    _write(root, "vp", "logistic_probe", _vp_cells({"vp/vp-shapes": [70, 70], "vp/vp-sensor": list(lp_sensor)}, {"vp/vp-shapes": [40, 40], "vp/vp-sensor": [5, 5]}))
    params = {"vp": {"tasks": ["vp/vp-shapes", "vp/vp-sensor"], "methods": {"zeroshot": {}, "vp_pad": {}, "logistic_probe": {}}}}
    return params, root


def test_vp_verdicts(tmp_path):
    params, root = _vp_world(tmp_path / "a")
    records = vp_report.build(params, str(tmp_path / "a" / "out"), metrics_root=str(root))["claims_list"]
    _check_records(records, "vp")
    beats = _find(records, "VP (padding prompt) beats TP")
    assert beats["holds"] is True and beats["mini"] == "VP (pad) 42.5 ± 3.5 vs TP 30.0 ± 0.0 (average over datasets)"
    robust = _find(records, "VP is more robust")  # drops: VP 1.5, TP 10
    assert robust["holds"] is True and robust["published"] is None
    harder = _find(records, "every style-shifted test copy is harder")
    assert harder["holds"] is True and "vp/vp-sensor 20.0 ± 0.0 → 10.0 ± 0.0" in harder["evidence"]
    assert _find(records, "the linear probe beats zero-shot CLIP on the specialised task vp/vp-sensor")["holds"] is True
    # flip: one shifted copy easier than its source, the probe below zero-shot on vp-sensor
    params, root = _vp_world(tmp_path / "b", zs_shifted=(30, 25), lp_sensor=(15, 15))
    records = vp_report.build(params, str(tmp_path / "b" / "out"), metrics_root=str(root))["claims_list"]
    assert _find(records, "every style-shifted test copy is harder")["holds"] is False
    assert _find(records, "the linear probe beats")["holds"] is False
    # no zero-shot run: every verdict that needs it is open
    _no_module_params = {"vp": {"tasks": ["vp/vp-shapes"], "methods": {"vp_pad": {}, "zeroshot": {}}}}
    records = vp_report.build(_no_module_params, str(tmp_path / "c" / "out"), metrics_root=str(tmp_path / "none"))["claims_list"]
    assert all(r["holds"] is None for r in records)


# --- RPO --------------------------------------------------------------------------------------


def _rpo_world(tmp_path, coop_new=(30, 30), ablation=None):
    root = tmp_path / "metrics"
    rpo_cells = _b2n("objects", [80, 82], [60, 61]) + _b2n("textures", [60, 60], [50, 52]) + _fs("objects", 4, [50, 50, 51])
    coop = _b2n("objects", [90, 90], list(coop_new)) + _b2n("textures", [70, 72], list(coop_new)) + _fs("objects", 4, [40, 50, 60])
    cocoop = _b2n("objects", [85, 85], [40, 44]) + _b2n("textures", [65, 65], [40, 44]) + _fs("objects", 4, [45, 50, 55])
    zs = _b2n("objects", [70, 70], [50, 50]) + _b2n("textures", [50, 50], [40, 40]) + _dgc([60, 60], [55, 55])
    for c in zs:
        if c["protocol"] == "dg":
            c.update({"objects-sketch_top1": 50.0, "objects-a_top1": 40.0, "objects-r_top1": 45.0})
    _write(root, "rpo", "rpo", _trained_rpo(rpo_cells), cfg={"K": 8})
    _write(root, "rpo", "coop", _trained_rpo(coop))
    _write(root, "rpo", "cocoop", _trained_rpo(cocoop))
    _write(root, "rpo", "zeroshot", zs)
    methods = {"zeroshot": {"trainable": False}, "rpo": {"cfg": {"K": 8}}, "coop": {}, "cocoop": {}}
    if ablation:
        _write(root, "rpo", "rpo_write", _trained_rpo(_b2n("objects", [80, 80], [30, 30]) + _b2n("textures", [60, 60], [30, 30])), cfg={"K": 8, "read_only": False})
        methods["rpo_write"] = {"method": "rpo", "cfg": {"K": 8, "read_only": False}, "protocols": ["base2new"]}
    params = {"rpo": {"seeds": [1, 2], "base2new": {"datasets": ["objects", "textures"], "shots": 16},
                      "dg": {"source": "objects", "shots": 16, "targets": ["objects-v2", "objects-sketch", "objects-a", "objects-r"]},
                      "fewshot": {"datasets": ["objects"], "shots": [4], "seeds": [1, 2, 3]}, "methods": methods}}
    return params, root


def _trained_rpo(cells):
    for c in cells:
        c["history"] = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.99}]
        c["plateau"] = {"converged": True, "improvement": 0.01, "window_epochs": 1}
    return cells


def test_rpo_verdicts_flip_with_coop_new_accuracy(tmp_path):
    params, root = _rpo_world(tmp_path / "a", coop_new=(30, 30))  # CoOp new 30 < zero-shot 45
    r = rpo_report.build(params, str(tmp_path / "a" / "out"), metrics_root=str(root))
    records = r["claims_list"]
    _check_records(records, "rpo")
    new = _find(records, "CoOp's new-class accuracy is lower")
    row_c, row_z = published_rpo.published_value("coop", "average", "new"), published_rpo.published_value("zeroshot", "average", "new")
    assert new["holds"] is True and new["published"] == f"CoOp {row_c['value']:.2f} vs CLIP {row_z['value']:.2f}"
    assert new["mini"] == "CoOp 30.0 ± 0.0 vs zero-shot 45.0 ± 0.0 (new, 2 datasets)"
    assert _find(records, "CoOp's base-class accuracy is higher")["holds"] is True
    hm = _find(records, "RPO's base-to-new HM is higher than CoOp's")
    assert hm["holds"] is True and "HM of the average base and new" in hm["evidence"] and "[mean of per-dataset HMs]" in hm["published"]
    assert _find(records, "RPO's base-to-new HM is higher than CoCoOp's")["holds"] is True
    assert _find(records, "RPO's seed std is below CoOp's and CoCoOp's (few-shot")["holds"] is True  # 0.58 vs 10 and 5
    b2n_var = _find(records, "RPO's seed std is below CoOp's and CoCoOp's (base-to-new")
    assert b2n_var["holds"] is False  # CoOp's new accuracy has std 0 on every dataset
    assert "FGVCAircraft 0.75" in b2n_var["published"]
    dg = _find(records, "every domain-generalisation target that is harder")
    # ImageNet-R is easier than ImageNet for CLIP in the paper: only -V2, -Sketch and -A are required
    assert dg["holds"] is True and dg["mini"].startswith("3 of 3 targets below the source") and dg["published"].startswith("CLIP ImageNet 66.73 → ImageNet-V2 60.83")
    for start in ("read-only prompts beat", "ST-initialisation beats"):
        rec = _find(records, start)
        assert rec["holds"] is None and rec["published"] is None
    params, root = _rpo_world(tmp_path / "b", coop_new=(60, 60))  # CoOp new above zero-shot: the paper's regime is not met
    records = rpo_report.build(params, str(tmp_path / "b" / "out"), metrics_root=str(root))["claims_list"]
    assert _find(records, "CoOp's new-class accuracy is lower")["holds"] is False


def test_rpo_ablation_and_missing_runs(tmp_path):
    params, root = _rpo_world(tmp_path / "a", ablation=True)
    r = rpo_report.build(params, str(tmp_path / "a" / "out"), metrics_root=str(root))
    rec = _find(r["claims_list"], "read-only prompts beat")
    assert rec["holds"] is True and "rpo_write" in rec["mini"] and rec["published"] is None
    assert r["claims"]["hm"]["rpo"]["hm"] != r["claims"]["hm"]["rpo_write"]["hm"]  # the ablation run no longer replaces RPO
    (root / "rpo" / "zeroshot.json").unlink()
    records = rpo_report.build(params, str(tmp_path / "a" / "out2"), metrics_root=str(root))["claims_list"]
    for start in ("CoOp's new-class", "CoOp's base-class", "every domain-generalisation target"):
        assert _find(records, start)["holds"] is None
    assert _find(records, "RPO's base-to-new HM is higher than CoOp's")["holds"] is True


def test_rpo_chance_uses_the_manifest_class_halves(tmp_path):
    from visprompt.utils import write_json

    params, root = _rpo_world(tmp_path)
    params["data"] = {"root": str(tmp_path / "data")}
    write_json(tmp_path / "data" / "coop" / "objects.json", {"classnames": [f"c{i}" for i in range(4)]})  # halves of 2: chance 50%
    records = rpo_report.build(params, str(tmp_path / "out"), metrics_root=str(root))["claims_list"]
    rec = _find(records, "no dataset half has its best")
    assert rec["holds"] is False and "objects new 60.5 by RPO" in rec["evidence"] and "textures" in rec["evidence"].split("skipped")[1]


# --- the index --------------------------------------------------------------------------------


def test_index_merges_the_three_papers_into_one_list(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    params, root = _vpt_world(tmp_path / "vpt")
    vpt_report.build(params, str(reports / "vpt" / "report"), metrics_root=str(root))
    params, root = _vp_world(tmp_path / "vp")
    vp_report.build(params, str(reports / "vp" / "report"), metrics_root=str(root))
    params, root = _rpo_world(tmp_path / "rpo")
    rpo_report.build(params, str(reports / "rpo" / "report"), metrics_root=str(root))
    out = write_index({"profile": "mini"}, reports, second_world=tmp_path / "no_second_world.json")
    merged = json.loads((reports / "claims.json").read_text())
    assert isinstance(merged, list) and out["n_claims"] == len(merged)
    papers = [r["paper"] for r in merged]
    assert papers == sorted(papers, key=["vpt", "vp", "rpo"].index) and set(papers) == {"vpt", "vp", "rpo"}
    assert all(set(r) == KEYS for r in merged)
    md = (reports / "index.md").read_text()
    assert md.index("## Verdict per claim") < md.index("## Reports")
    for title in ("### VPT", "### Visual prompting", "### RPO"):
        assert title in md
    assert "| claim | published (paper) | mini (measured) | holds |" in md
    assert "<table>" in (reports / "index.html").read_text()
    # a paper not reported yet is left out, not an error
    (reports / "vp" / "report" / "claims.json").unlink()
    write_index({"profile": "mini"}, reports)
    assert {r["paper"] for r in json.loads((reports / "claims.json").read_text())} == {"vpt", "rpo"}


def test_write_claims_rejects_a_record_with_other_keys(tmp_path):
    bad = K.entry("vpt", "claim", "x", None, "–", None, "e")
    bad["extra"] = 1
    with pytest.raises(ValueError, match="extra"):
        K.write_claims([bad], tmp_path)
