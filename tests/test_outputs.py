"""What a train stage writes: the run record, its flat DVC metrics and its history TSV; the
terminal summary; a notebook's way to the repository root."""

import json

import pytest

from visprompt import experiments
from visprompt.index import verdict_lines
from visprompt.utils import repo_root


def _cell(task, seed, top1, losses, converged):
    history = [{"epoch": i, "loss": loss, "train_top1": 10.0 * (i + 1), "lr": 0.1} for i, loss in enumerate(losses)]
    return {"task": task, "seed": seed, "test_top1": top1, "shifted_test_top1": top1 - 5, "history": history,
            "plateau": {"converged": converged}, "params": {"trainable": 1, "total": 2}}


def _result(paper="vp"):
    cells = [_cell("vp/a", 1, 40.0, [2.0, 1.0], True), _cell("vp/a", 2, 44.0, [3.0, 2.0], False),
             _cell("vp/b", 1, 60.0, [1.0, 0.5], False), _cell("vp/b", 2, 60.0, [1.0, 0.5], False)]
    return {"paper": paper, "method": "vp_pad", "cells": cells, "summary": experiments.summarise(cells)}


def test_flat_metrics_are_the_means_over_tasks_of_the_seed_means():
    flat = experiments.flat_metrics(_result())
    assert flat["top1"] == pytest.approx((42.0 + 60.0) / 2)
    assert flat["shift"] == pytest.approx((37.0 + 55.0) / 2)
    assert flat["std"] == pytest.approx((2.83 + 0.0) / 2, abs=0.01)  # sample std of (40, 44) and of (60, 60)
    assert flat["conv"] == 0.25
    assert "shift" not in experiments.flat_metrics(_result("vpt"))


def test_rpo_flat_hm_is_the_hm_of_the_average_base_and_new():
    cells = [{"protocol": "base2new", "dataset": d, "seed": 1, "base_top1": b, "new_top1": n, "hm": 0.0}
             for d, b, n in (("x", 80.0, 40.0), ("y", 60.0, 60.0))]
    cells += [{"protocol": "fewshot", "dataset": "x", "shots": 1, "seed": s, "test_top1": t} for s, t in ((1, 30.0), (2, 34.0))]
    flat = experiments.flat_metrics({"paper": "rpo", "method": "rpo", "cells": cells, "summary": experiments.summarise(cells)})
    assert flat["hm"] == pytest.approx(experiments.harmonic_mean(70.0, 50.0), abs=0.01)
    assert flat["fewshot"] == 32.0 and flat["std"] == pytest.approx(2.83, abs=0.01)
    assert "conv" not in flat  # no trained cell: nothing to say about plateaus


def test_write_outputs_puts_record_metrics_and_history_side_by_side(tmp_path):
    paths = experiments.write_outputs(_result(), tmp_path)
    assert json.loads((tmp_path / "records" / "vp" / "vp_pad.json").read_text())["cells"]
    flat = json.loads((tmp_path / "metrics" / "vp" / "vp_pad.json").read_text())
    assert set(flat) == {"top1", "std", "shift", "conv"}
    rows = (tmp_path / "plots" / "vp" / "vp_pad.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["epoch", "train_loss", "train_top1", "cells"]
    assert rows[1].split("\t") == ["1", "1.75", "10.0", "4"] and rows[2].split("\t")[:2] == ["2", "1.0"]
    assert sorted(paths) == ["metrics", "plots", "record"]


def test_verdict_lines_show_each_claim_with_its_numbers(tmp_path):
    claims = [{"paper": "vpt", "kind": "claim", "claim": "VPT-deep beats Full", "published": "20 of 24", "mini": "3 of 7", "holds": False},
              {"paper": "rpo", "kind": "regime", "claim": "CoOp new < zero-shot new", "published": None, "mini": "40 vs 43", "holds": True}]
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    text = "\n".join(verdict_lines(tmp_path))
    assert "no   vpt  VPT-deep beats Full" in text and "yes  rpo  regime CoOp new" in text
    assert "mini: 3 of 7" in text and "published: 20 of 24" in text
    assert "no verdicts yet" in verdict_lines(tmp_path / "missing")[0]


def test_repo_root_is_the_nearest_folder_with_a_dvc_yaml(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles" / "paper").mkdir(parents=True)
    (tmp_path / "profiles" / "paper" / "dvc.yaml").write_text("stages: {}\n")
    assert repo_root(tmp_path / "notebooks") == tmp_path.resolve()
    assert repo_root(tmp_path / "profiles" / "paper") == (tmp_path / "profiles" / "paper").resolve()
    with pytest.raises(FileNotFoundError, match="inside a visprompt checkout"):
        repo_root("/")


def test_where_cells_ran_is_summarised_per_run_and_shown_in_the_index(tmp_path):
    from visprompt.index import trained_on
    from visprompt.outputs import compute_summary
    from visprompt.utils import write_json

    gpu = {"device": "cuda", "device_name": "NVIDIA H100", "device_count": 8, "precision": "bf16 autocast"}
    cpu = {"device": "cpu", "device_name": "x86_64", "device_count": 1, "precision": "fp32"}
    cells = [{"cell": "a", **gpu}, {"cell": "b", **gpu}, {"cell": "c", **cpu}, {"cell": "zero-shot without device"}]
    summary = compute_summary(cells)
    assert summary == {"devices": [{**gpu, "cells": 2}, {**cpu, "cells": 1}]}
    write_json(tmp_path / "vpt" / "full.json", {"compute": summary})
    write_json(tmp_path / "rpo" / "old.json", {"environment": {"device": "cpu", "device_name": "x86_64"}})  # a record from before
    assert trained_on(tmp_path) == {"cuda (NVIDIA H100) × 8, bf16 autocast": {"cells": 2, "runs": 1},
                                    "cpu (x86_64) × 1, fp32": {"cells": 1, "runs": 1}, "cpu (x86_64)": {"cells": None, "runs": 1}}
