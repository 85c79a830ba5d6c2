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
    for name in ("dvc.yaml", "notebooks", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, proj / name)
    shutil.copy(ROOT / "tests" / "smoke" / "params.yaml", proj / "params.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    _run(["dvc", "init", "--no-scm", "-q"], proj, env)
    _run(["dvc", "config", "core.analytics", "false"], proj, env)
    _run(["dvc", "repro"], proj, env)

    metrics = proj / "reports" / "metrics"
    for paper in ("vpt", "vp", "rpo"):
        runs = list((metrics / paper).glob("*.json"))
        assert runs, f"no {paper} metrics"
        for path in runs:
            m = json.loads(path.read_text())
            assert m["cells"] and all("params" in c for c in m["cells"])
        assert (proj / "reports" / paper / "report").is_dir()
    assert "visprompt" in (proj / "reports" / "index.md").read_text()
    assert json.loads((metrics / "backbone_clip.json").read_text())["zero_shot_single_factor"]

    second = _run(["dvc", "repro"], proj, env)
    assert "Data and pipelines are up to date" in second, second
    shown = _run(["dvc", "metrics", "show"], proj, env)
    assert "backbone_vit.json" in shown
