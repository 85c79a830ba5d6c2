"""End to end: `dvc repro` of every stage on the smoke params, then a second repro that does nothing.

Runs in a scratch copy of the project (dvc.yaml, notebooks, sources for dependency hashing) so
the repository's own data/ and reports/ are never touched. About 2-3 minutes on 2 cores.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd, env):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


@pytest.mark.slow
def test_dvc_repro_smoke_twice(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("dvc.yaml", "notebooks", "src", "docs/second_world"):  # the index reads the other world's verdicts
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, proj / name)
    shutil.copy(ROOT / "tests" / "smoke" / "params.yaml", proj / "params.yaml")
    # the copied sources are the ones that run (PYTHONPATH comes before the editable install), so
    # the stages execute exactly the code their DVC deps hash
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(proj / "src")}
    imported = _run([sys.executable, "-c", "import visprompt; print(visprompt.__file__)"], proj, env).strip()
    assert Path(imported) == proj / "src" / "visprompt" / "__init__.py", imported
    _run(["dvc", "init", "--no-scm", "-q"], proj, env)
    _run(["dvc", "config", "core.analytics", "false"], proj, env)
    _run(["dvc", "repro"], proj, env)

    records, metrics = proj / "reports" / "records", proj / "reports" / "metrics"
    for paper in ("vpt", "vp", "rpo"):
        runs = list((records / paper).glob("*.json"))
        assert runs, f"no {paper} run records"
        for path in runs:
            m = json.loads(path.read_text())
            assert m["cells"] and all("params" in c for c in m["cells"])
            flat = json.loads((metrics / paper / path.name).read_text())  # the DVC metric: a few flat numbers
            assert flat and all(isinstance(v, (int, float)) for v in flat.values()), flat
        assert (proj / "reports" / paper / "report").is_dir()
        assert list((proj / "reports" / "plots" / paper).glob("*.tsv"))
    assert "visprompt" in (proj / "reports" / "index.md").read_text()
    assert json.loads((records / "backbone_clip.json").read_text())["zero_shot_single_factor"]

    second = _run(["dvc", "repro"], proj, env)
    assert "Data and pipelines are up to date" in second, second
    shown = _run(["dvc", "metrics", "show"], proj, env)
    assert "backbone_vit.json" in shown and "vpt/vpt_deep.json" in shown
    assert max(len(line) for line in shown.splitlines()) < 120, shown  # readable: flat metrics, not run records
    plots = json.loads(_run(["dvc", "plots", "show", "--json"], proj, env))["data"]
    assert any("plots/vpt/" in name for name in plots) and any(name.endswith("accuracy_by_group.png") for name in plots), list(plots)
    summary = _run([sys.executable, "-m", "visprompt", "summary"], proj, env)
    assert "vpt" in summary and "regime" in summary

    # A notebook opened where JupyterLab opens it (notebooks/) runs top to bottom, reuses the
    # pipeline's finished cells and writes to build/notebooks, never over a DVC-tracked output.
    tracked = {p: p.read_bytes() for p in (proj / "reports").rglob("*") if p.is_file()}
    for nb in ("train_vpt.ipynb", "report_vpt.ipynb"):
        _run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", nb,
              "--output-dir", str(tmp_path / "executed")], proj / "notebooks", env)
    assert {p: p.read_bytes() for p in (proj / "reports").rglob("*") if p.is_file()} == tracked
    scratch = proj / "build" / "notebooks"
    assert (scratch / "records" / "vpt" / "vpt_deep.json").is_file() and (scratch / "vpt" / "report").is_dir()
    assert "0 cells trained now" in (tmp_path / "executed" / "train_vpt.ipynb").read_text()
