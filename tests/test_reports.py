"""Report builders (VPT, visual prompting, RPO) on SYNTHETIC metrics written into tmp_path.

Every metric dict and every "published" row here is made up for the test (round numbers chosen so
the expected tables can be computed by hand); none of them is a measured or a published number.
"""

import json
import math
import sys
import types

import numpy as np
import pytest

from visprompt.reports import rpo as rpo_report
from visprompt.reports import visual_prompting as vp_report
from visprompt.reports import vpt as vpt_report

SYNTHETIC_PUBLISHED = (12.34, 43.21, 56.78, 87.65)  # values no synthetic measurement uses


def _write(root, paper, run, cells, cfg=None, seeds=None):
    d = root / paper
    d.mkdir(parents=True, exist_ok=True)
    result = {"paper": paper, "method": run, "settings": {"cfg": cfg or {}, "seeds": seeds or [1, 2]}, "cells": cells, "summary": {}, "stage_time_s": 0.0}
    (d / f"{run}.json").write_text(json.dumps(result))


def _fake_module(monkeypatch, name, rows, extra=None):
    mod = types.ModuleType(f"visprompt.published.{name}")
    mod.published_table = lambda: [dict(r) for r in rows]
    for k, v in (extra or {}).items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, f"visprompt.published.{name}", mod)


def _no_module(monkeypatch, name):
    monkeypatch.setitem(sys.modules, f"visprompt.published.{name}", None)  # import raises ImportError


def _cells_text(df, columns):
    return " ".join(str(v) for c in columns for v in df[c].tolist())


# --- VPT --------------------------------------------------------------------------------------

VPT_TASKS = ["vtab/shapes", "vtab/patterns", "vtab/sensor-shapes", "vtab/sketch-shapes", "fgvc/blue-shades"]


def _vpt_cells(acc: dict, trainable: int, total: int):
    """acc: task -> [seed1, seed2] accuracies (synthetic)."""
    return [{"task": t, "seed": s + 1, "test_top1": v, "params": {"trainable": trainable, "total": total}}
            for t, vals in acc.items() for s, v in enumerate(vals)]


@pytest.fixture
def vpt_world(tmp_path):
    root = tmp_path / "metrics"
    # backbone = 1000 parameters (the largest frozen part: total - trainable of linear / vpt_deep)
    _write(root, "vpt", "full", _vpt_cells({"vtab/shapes": [50, 60], "vtab/patterns": [70, 80], "vtab/sensor-shapes": [40, 40], "fgvc/blue-shades": [30, 30]}, 1010, 1010))
    _write(root, "vpt", "linear", _vpt_cells({"vtab/shapes": [40, 40], "vtab/patterns": [50, 50], "vtab/sensor-shapes": [45, 45], "fgvc/blue-shades": [35, 35]}, 10, 1010))
    _write(root, "vpt", "vpt_deep", _vpt_cells({"vtab/shapes": [60, 70], "vtab/patterns": [80, 90], "vtab/sensor-shapes": [30, 30], "fgvc/blue-shades": [30, 30]}, 30, 1030), cfg={"prompt_length": 4})
    # 'bias' is in params but has no metrics: its row must show '–'
    params = {"vpt": {"tasks": VPT_TASKS, "seeds": [1, 2], "methods": {"full": {}, "linear": {}, "bias": {}, "vpt_deep": {"cfg": {"prompt_length": 4}}}}}
    return params, root, tmp_path / "out"


def test_vpt_group_means_multiplier_and_claims(vpt_world, monkeypatch):
    params, root, out = vpt_world
    _no_module(monkeypatch, "vpt")
    r = vpt_report.build(params, str(out), metrics_root=str(root))
    t1 = r["table1"].set_index("method")
    # Natural = shapes + patterns; per-seed group means 70 and 80 -> 75.0 ± 7.1 (sample std)
    assert t1.loc["VPT-deep", "Natural (mini, measured)"] == f"75.0 ± {np.std([70, 80], ddof=1):.1f}"
    assert t1.loc["Full", "Natural (mini, measured)"] == f"65.0 ± {np.std([60, 70], ddof=1):.1f}"
    # Specialized has two tasks in params, one measured: flagged, not silently averaged
    assert t1.loc["VPT-deep", "Specialized (mini, measured)"] == "30.0 ± 0.0 (1/2 tasks)"
    assert t1.loc["Linear", "FGVC (mini, measured)"] == "35.0 ± 0.0"
    assert t1.loc["VPT-deep", "Structured (mini, measured)"] == "–"  # no structured task in this world
    # multiplier: (frozen once + sum of trainable over the 4 measured tasks) / 1000
    assert r["backbone_params"] == 1000
    assert t1.loc["Full", "total params (mini, 5 tasks)"] == "4.040× (4/5 tasks)"  # 4 × 1010 / 1000, nothing frozen; sketch-shapes unmeasured
    assert t1.loc["Linear", "total params (mini, 5 tasks)"] == "1.040× (4/5 tasks)"
    assert t1.loc["VPT-deep", "total params (mini, 5 tasks)"] == "1.120× (4/5 tasks)"
    # missing method
    assert set(t1.loc["Bias"].drop("total params (published, 24 tasks)")) == {"–"}
    assert r["per_task"].set_index("method").loc["Bias", "vtab/shapes (natural)"] == "–"
    # claims: deep >= full on shapes, patterns, blue-shades (tie), not on sensor-shapes
    c = r["claims"]["vpt_deep_vs_full"]["mini"]
    assert (c["ge"], c["gt"], c["of"], c["not_ge"]) == (3, 2, 4, ["vtab/sensor-shapes"])
    assert r["claims"]["vpt_deep_vs_linear"]["mini"]["ge"] == 2
    assert "on 3 of 4 tasks" in r["claims_text"]
    assert r["claims"]["multiplier"]["mini"]["full"] == pytest.approx(4.04)
    assert "published numbers unavailable" in r["claims_text"]


def test_vpt_published_only_in_published_columns(vpt_world, monkeypatch):
    params, root, out = vpt_world
    a, b, c, d = SYNTHETIC_PUBLISHED
    rows = [
        {"method": "vpt_deep", "label": "VPT-deep", "task_or_group": "vtab-natural/mean", "top1": a, "source": "synthetic", "confirmed": True, "kind": "group_mean"},
        {"method": "full", "label": "Full", "task_or_group": "fgvc/mean", "top1": b, "source": "synthetic", "confirmed": False, "kind": "group_mean"},
        {"method": "vpt_deep", "label": "VPT-deep", "task_or_group": "Task A", "top1": c, "source": "synthetic", "confirmed": True, "kind": "task"},
        {"method": "full", "label": "Full", "task_or_group": "Task A", "top1": d, "source": "synthetic", "confirmed": True, "kind": "task"},
    ]
    params_rows = [{"method": "full", "label": "Full", "total_params_x": 24.5, "source": "synthetic", "confirmed": False}]
    _fake_module(monkeypatch, "vpt", rows, {"published_total_params": lambda: params_rows})
    r = vpt_report.build(params, str(out), metrics_root=str(root))
    df = r["table1"]
    pub_cols = [col for col in df.columns if "published" in col]
    other = [col for col in df.columns if "published" not in col]
    for v in (a, b, 24.5):
        assert f"{v:.2f}" in _cells_text(df, pub_cols)
        assert f"{v:.2f}" not in _cells_text(df, other)
    t1 = df.set_index("method")
    assert t1.loc["VPT-deep", "Natural (published)"] == f"{a:.2f}"
    assert t1.loc["Full", "FGVC (published)"] == f"{b:.2f} (unconfirmed)"
    assert t1.loc["Full", "total params (published, 24 tasks)"] == "24.50× (unconfirmed)"
    assert t1.loc["Linear", "Natural (published)"] == "–"
    for v in SYNTHETIC_PUBLISHED:
        assert f"{v:.2f}" not in _cells_text(r["per_task"], r["per_task"].columns)
    # paper count computed from the per-task rows: deep 56.78 < full 87.65 -> 0 of 1
    assert r["claims"]["vpt_deep_vs_full"]["paper"]["ge"] == 0
    assert r["claims"]["vpt_deep_vs_full"]["paper"]["of"] == 1


def test_vpt_files_and_empty_world(vpt_world, tmp_path, monkeypatch):
    params, root, out = vpt_world
    _no_module(monkeypatch, "vpt")
    r = vpt_report.build(params, str(out), metrics_root=str(root))
    for name in ("table1.md", "table1.csv", "per_task.md", "per_task.csv", "accuracy_by_group.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert r["figure"] is not None
    # nothing measured at all: every measured cell is '–', nothing crashes
    r = vpt_report.build(params, str(tmp_path / "out2"), metrics_root=str(tmp_path / "nothing"))
    assert set(r["table1"]["Natural (mini, measured)"]) == {"–"}
    assert "not measured" in r["claims_text"]
    assert (tmp_path / "out2" / "accuracy_by_group.png").is_file()


# --- visual prompting -------------------------------------------------------------------------

VP_TASKS = ["vp/vp-shapes", "vp/vp-sensor"]


def _vp_cells(acc, shifted, trainable=0, prompt=None):
    cells = []
    for t in acc:
        for s, (v, w) in enumerate(zip(acc[t], shifted[t])):
            c = {"task": t, "seed": s + 1, "test_top1": v, "shifted_test_top1": w, "params": {"trainable": trainable, "total": 100 + trainable}, "chosen": {}}
            if prompt is not None:
                c["prompt_image"] = str(prompt)
            cells.append(c)
    return cells


@pytest.fixture
def vp_world(tmp_path):
    root = tmp_path / "metrics"
    img = tmp_path / "prompt.npy"
    np.save(img, np.random.default_rng(0).random((32, 32, 3)).astype(np.float32))
    _write(root, "vp", "zeroshot", _vp_cells({"vp/vp-shapes": [40, 40], "vp/vp-sensor": [20, 20]}, {"vp/vp-shapes": [30, 30], "vp/vp-sensor": [10, 10]}))
    _write(root, "vp", "vp_pad", _vp_cells({"vp/vp-shapes": [50, 60], "vp/vp-sensor": [10, 20]}, {"vp/vp-shapes": [45, 55], "vp/vp-sensor": [10, 20]}, 1344, img), cfg={"prompt_size": 4})
    _write(root, "vp", "logistic_probe", _vp_cells({"vp/vp-shapes": [70, 70], "vp/vp-sensor": [10, 10]}, {"vp/vp-shapes": [40, 40], "vp/vp-sensor": [5, 5]}))
    _write(root, "vp", "vp_pad_p2", _vp_cells({"vp/vp-shapes": [30], "vp/vp-sensor": [12]}, {"vp/vp-shapes": [30], "vp/vp-sensor": [12]}, 700, img), cfg={"prompt_size": 2}, seeds=[1])
    params = {"vp": {"tasks": VP_TASKS, "seeds": [1, 2], "methods": {
        "zeroshot": {"trainable": False}, "vp_pad": {"cfg": {"prompt_size": 4}}, "logistic_probe": {"trainable": False},
        "clip_finetune": {}, "vp_pad_p2": {"method": "vp_pad", "cfg": {"prompt_size": 2}, "seeds": [1]},
        "vp_fixed_patch_p4": {"method": "vp_fixed_patch", "cfg": {"prompt_size": 4}, "seeds": [1]}}}}
    return params, root, tmp_path / "out"


def test_vp_tables_claims_and_files(vp_world, monkeypatch):
    params, root, out = vp_world
    a, b, c, d = SYNTHETIC_PUBLISHED
    rows = [
        {"method": "VP", "dataset": "CIFAR100", "metric": "top1", "value": a, "source": "synthetic", "confirmed": False},
        {"method": "TP", "dataset": "CIFAR100", "metric": "top1", "value": b, "source": "synthetic", "confirmed": True},
        {"method": "LP", "dataset": "EuroSAT", "metric": "top1", "value": c, "source": "synthetic", "confirmed": True},
        {"method": "VP", "dataset": "Average (12 datasets)", "metric": "top1", "value": d, "source": "synthetic", "confirmed": False},
    ]
    _fake_module(monkeypatch, "visual_prompting", rows)
    r = vp_report.build(params, str(out), metrics_root=str(root))
    main = r["main"].set_index("dataset")
    assert main.loc["vp/vp-shapes", "VP (pad) (mini)"] == f"55.0 ± {np.std([50, 60], ddof=1):.1f}"
    # average: mean of dataset means (55, 15) = 35; per-seed averages 30, 40
    assert main.loc["Average", "VP (pad) (mini)"] == f"35.0 ± {np.std([30, 40], ddof=1):.1f}"
    assert main.loc["vp/vp-shapes", "VP (pad) (published)"] == f"{a:.2f} (CIFAR100, unconfirmed)"  # vp-shapes stands in for CIFAR-100
    assert main.loc["vp/vp-sensor", "LP (published)"] == f"{c:.2f} (EuroSAT)"
    assert main.loc["Average", "VP (pad) (published)"].startswith(f"{d:.2f}")
    assert set(main["FT (mini)"]) == {"–"} and set(main["FT (published)"]) == {"–"}  # in params, never run
    pub_cols = [col for col in r["main"].columns if "published" in col]
    other = [col for col in r["main"].columns if "published" not in col]
    for v in SYNTHETIC_PUBLISHED:
        assert f"{v:.2f}" in _cells_text(r["main"], pub_cols)
        assert f"{v:.2f}" not in _cells_text(r["main"], other)
        for key in ("ablation", "robustness"):
            assert f"{v:.2f}" not in _cells_text(r[key], r[key].columns)
    # ablation: one seed (1), design x prompt size, missing run shown as '–'
    abl = r["ablation"].set_index("run")
    assert abl.loc["vp_pad_p2", "prompt size"] == 2 and abl.loc["vp_pad", "prompt size"] == 4
    assert abl.loc["vp_pad", "average (mini, seed 1)"] == "30.0"  # seed 1: (50 + 10) / 2
    assert abl.loc["vp_fixed_patch_p4", "average (mini, seed 1)"] == "–"
    assert r["claims"]["ablation_best"]["design"] == "pad" and r["claims"]["ablation_best"]["prompt_size"] == 4
    # robustness: drop = test - shifted, averaged over datasets
    rob = r["robustness"].set_index("method")
    assert rob.loc["LP", "drop, points (mini)"] == "17.5 ± 0.0"
    assert rob.loc["VP (pad)", "drop, points (mini)"] == "2.5 ± 0.0"
    # claims: VP beats TP on vp-shapes only; VP vs LP on none (55 < 70, 15 > 10 -> 1)
    assert r["claims"]["vp_vs_zeroshot"]["mini"]["wins"] == ["vp/vp-shapes"]
    assert r["claims"]["vp_vs_logistic_probe"]["mini"]["wins"] == ["vp/vp-sensor"]
    assert r["claims"]["vp_vs_clip_finetune"]["mini"] is None
    assert "beats TP" in r["claims_text"] and "1 of 2 datasets" in r["claims_text"]
    assert r["claims"]["vp_vs_zeroshot"]["paper"]["wins"] == []  # synthetic VP 12.34 < TP 43.21 on CIFAR100
    for name in ("main.md", "main.csv", "ablation.md", "robustness.csv", "prompts.png", "ablation.png"):
        assert (out / name).is_file()


def test_vp_missing_everything(tmp_path, monkeypatch):
    _no_module(monkeypatch, "visual_prompting")
    params = {"vp": {"tasks": VP_TASKS, "methods": {"zeroshot": {}, "vp_pad": {}}}}
    r = vp_report.build(params, str(tmp_path / "out"), metrics_root=str(tmp_path / "none"))
    assert set(r["main"]["VP (pad) (mini)"]) == {"–"}
    assert "not measured" in r["claims_text"]
    assert (tmp_path / "out" / "prompts.png").is_file()


# --- RPO --------------------------------------------------------------------------------------


def _b2n(dataset, base, new):
    return [{"protocol": "base2new", "dataset": dataset, "shots": 16, "seed": s + 1, "base_top1": b, "new_top1": n,
             "hm": 2 * b * n / (b + n), "params": {"trainable": 5, "total": 105}} for s, (b, n) in enumerate(zip(base, new))]


def _fs(dataset, shots, values, trainable=5):
    return [{"protocol": "fewshot", "dataset": dataset, "shots": shots, "seed": s + 1, "test_top1": v, "params": {"trainable": trainable, "total": 100 + trainable}}
            for s, v in enumerate(values)]


def _dgc(values, target_values):
    return [{"protocol": "dg", "dataset": "objects", "shots": 16, "seed": s + 1, "test_top1": v, "objects-v2_top1": w, "params": {"trainable": 5, "total": 105}}
            for s, (v, w) in enumerate(zip(values, target_values))]


@pytest.fixture
def rpo_world(tmp_path):
    root = tmp_path / "metrics"
    rpo_cells = (_b2n("objects", [80, 80], [40, 40]) + _b2n("textures", [60, 60], [60, 60]) + _dgc([50, 52], [40, 42])
                 + _fs("objects", 1, [30, 31, 32]) + _fs("objects", 4, [50, 50, 51]))
    coop_cells = (_b2n("objects", [90, 90], [20, 30]) + _b2n("textures", [70, 70], [30, 30]) + _dgc([55, 55], [35, 35])
                  + _fs("objects", 1, [10, 30, 50]) + _fs("objects", 4, [40, 50, 60]))
    _write(root, "rpo", "rpo", rpo_cells, cfg={"K": 24})
    _write(root, "rpo", "coop", coop_cells, cfg={"n_ctx": 4})
    params = {"rpo": {"seeds": [1, 2], "base2new": {"datasets": ["objects", "textures"], "shots": 16},
                      "dg": {"source": "objects", "shots": 16, "targets": ["objects-v2"]},
                      "fewshot": {"datasets": ["objects"], "shots": [1, 4], "seeds": [1, 2, 3]},
                      "methods": {"zeroshot": {"trainable": False}, "rpo": {"cfg": {"K": 24}}, "coop": {"cfg": {"n_ctx": 4}}, "cocoop": {},
                                  "clip_linear_probe": {"protocols": ["dg", "fewshot"]}}}}
    return params, root, tmp_path / "out"


def test_rpo_hm_convention_variance_and_files(rpo_world, monkeypatch):
    params, root, out = rpo_world
    a, b, c, d = SYNTHETIC_PUBLISHED
    rows = [
        {"method": "RPO", "dataset": "Average (11 datasets)", "metric": "HM", "value": a, "source": "synthetic", "confirmed": True},
        {"method": "CoOp", "dataset": "Average (11 datasets)", "metric": "HM", "value": b, "source": "synthetic", "confirmed": False},
        {"method": "RPO", "dataset": "DTD", "metric": "base", "value": c, "source": "synthetic", "confirmed": True},
        {"method": "RPO", "dataset": "ImageNet-V2", "metric": "top1", "value": d, "source": "synthetic", "confirmed": False, "protocol": "dg"},
    ]
    _fake_module(monkeypatch, "rpo", rows)
    r = rpo_report.build(params, str(out), metrics_root=str(root))
    b2n = r["base2new"].set_index(["dataset", "method"])
    # per dataset: HM of the seed-mean base and new
    assert b2n.loc[("objects", "RPO"), "HM (mini)"] == f"{2 * 80 * 40 / 120:.1f} ± 0.0"
    # average row: HM of the average base (70) and new (50) = 58.3; mean of per-dataset HMs = 56.7 beside it
    assert b2n.loc[("Average", "RPO"), "base (mini)"].startswith("70.0")
    assert b2n.loc[("Average", "RPO"), "HM (mini)"].startswith(f"{2 * 70 * 50 / 120:.1f}")
    assert b2n.loc[("Average", "RPO"), "mean of per-dataset HM (mini)"] == f"{(2 * 80 * 40 / 120 + 60) / 2:.1f}"
    assert r["claims"]["hm"]["rpo"]["hm"] == pytest.approx(2 * 70 * 50 / 120)
    # published: only in published columns, with the paper dataset named
    assert b2n.loc[("Average", "RPO"), "HM (published)"] == f"{a:.2f} (Average (11 datasets))"
    assert b2n.loc[("Average", "CoOp"), "HM (published)"].endswith("unconfirmed)")
    assert b2n.loc[("textures", "RPO"), "base (published)"] == f"{c:.2f} (DTD)"
    assert b2n.loc[("textures", "RPO"), "new (published)"] == "–"
    for key in ("base2new", "dg"):
        df = r[key]
        pub_cols = [col for col in df.columns if "published" in col]
        other = [col for col in df.columns if "published" not in col]
        assert not any(f"{v:.2f}" in _cells_text(df, other) for v in SYNTHETIC_PUBLISHED)
    assert f"{d:.2f}" in r["dg"].set_index("method").loc["RPO", "objects-v2 (published)"]
    # methods without metrics show '–'; the linear probe has no base-to-new rows at all
    assert set(b2n.loc[("objects", "CoCoOp")].drop("analogue of (paper dataset)")) <= {"–", ""}
    assert "Linear probe" not in set(r["base2new"]["method"])
    assert set(r["dg"].set_index("method").loc["Linear probe"].drop("method", errors="ignore")) == {"–"}
    # variance: RPO's std is lower than CoOp's at both shot counts
    v = r["claims"]["variance"]["coop"]
    assert len(v["lower"]) == 2 and len(v["of"]) == 2
    assert "lower std across seeds than CoOp in 2 of 2" in r["claims_text"]
    assert r["claims"]["hm_paper"]["rpo"][:2] == (a, True)
    # parameters
    prm = r["params"].set_index("method")
    assert prm.loc["RPO", "trainable, base2new (mini)"] == "5" and prm.loc["CoCoOp", "total (mini)"] == "–"
    for name in ("base2new.md", "base2new.csv", "dg.md", "params.csv", "variance.png", "shots.png"):
        assert (out / name).is_file()


def test_rpo_missing_everything(tmp_path, monkeypatch):
    _no_module(monkeypatch, "rpo")
    params = {"rpo": {"base2new": {"datasets": ["objects"], "shots": 16}, "methods": {"rpo": {}, "coop": {}}}}
    r = rpo_report.build(params, str(tmp_path / "out"), metrics_root=str(tmp_path / "none"))
    assert set(r["base2new"]["HM (mini)"]) == {"–"}
    assert len(r["dg"]) == 2 and (tmp_path / "out" / "variance.png").is_file()
    assert "no measured runs" in r["claims_text"]
    assert math.isnan(rpo_report.base2new_stats([], ["objects"])["Average"]["hm"][0])
