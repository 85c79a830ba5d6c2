"""Writes docs/second_world/claims.json: the verdicts of a run on another world seed.

The index shows each verdict of the default run beside this file's and marks a verdict that
differs as unstable. The file is measured, never typed: run the default params with another
``data.seed`` in a separate clone (``dvc repro report_vp report_rpo`` and the VPT runs you want),
then, from this repository::

    python tools/second_world_claims.py --clone /path/to/clone --world-seed 1 --vpt-runs full linear vpt_deep

The clone's run records (``reports/records``, or ``reports/metrics`` from before the records
layout) go through this checkout's report code, so the claims are worded as the index expects.
Only the VPT runs named are read: a clone that reran part of VPT still holds world-0 records of
the other runs.
"""

import argparse
import copy
import json
import tempfile
from pathlib import Path

from visprompt.config import load_params
from visprompt.reports import rpo, visual_prompting, vpt

ROOT = Path(__file__).resolve().parents[1]


def records_dir(clone: Path) -> Path:
    for name in ("records", "metrics"):
        if (clone / "reports" / name / "vp").is_dir():
            return clone / "reports" / name
    raise SystemExit(f"no run records under {clone}/reports (records/ or metrics/)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clone", type=Path, required=True, help="the clone that ran the other world seed")
    ap.add_argument("--world-seed", type=int, required=True, help="its data.seed")
    ap.add_argument("--params", type=Path, default=None, help="its params file (default: <clone>/params.yaml)")
    ap.add_argument("--vpt-runs", nargs="*", default=["full", "linear", "vpt_deep"], help="the VPT runs it reran")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "second_world" / "claims.json")
    args = ap.parse_args()

    params = load_params(args.params or args.clone / "params.yaml")
    if params["data"]["seed"] != args.world_seed:
        raise SystemExit(f"the clone's data.seed is {params['data']['seed']}, not {args.world_seed}")
    src = records_dir(args.clone)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "vpt").mkdir()
        for run in args.vpt_runs:
            (tmp / "vpt" / f"{run}.json").write_text((src / "vpt" / f"{run}.json").read_text())
        for paper in ("vp", "rpo"):
            (tmp / paper).symlink_to((src / paper).resolve())
        p_vpt = copy.deepcopy(params)
        p_vpt["vpt"]["methods"] = {k: v for k, v in p_vpt["vpt"]["methods"].items() if k in args.vpt_runs}
        claims = vpt.build(p_vpt, str(tmp / "out" / "vpt"), metrics_root=str(tmp))["claims_list"]
        claims += visual_prompting.build(params, str(tmp / "out" / "vp"), metrics_root=str(tmp))["claims_list"]
        claims += rpo.build(params, str(tmp / "out" / "rpo"), metrics_root=str(tmp))["claims_list"]
    doc = {"world_seed": args.world_seed,
           "how": (f"Measured, not published: the default params with data.seed: {args.world_seed} in a separate clone "
                   f"(docs/mini_world.md, 'Second world seed'); VPT runs {', '.join(args.vpt_runs)}, every VP and RPO run; "
                   "claims written by tools/second_world_claims.py with this checkout's report code."),
           "claims": claims}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}: {len(claims)} claims")


if __name__ == "__main__":
    main()
