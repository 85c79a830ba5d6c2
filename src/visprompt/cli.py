"""``python -m visprompt <stage>``: the commands that ``dvc.yaml`` runs, usable by hand too.

Every command reads ``params.yaml`` (or ``--params``), validates what it needs before doing any
work, and prints a one-line error naming the key and the fix on bad input (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .errors import ConfigError

STAGES = ("data", "splits", "backbone-vit", "backbone-clip", "check", "index")


def _run(stage: str, params: dict, progress: bool) -> dict:
    from . import pipeline

    if stage == "data" and params.get("profile") == "paper":
        from . import paper

        return paper.run_data(params)
    if stage == "splits" and params.get("profile") == "paper":
        from . import paper

        return paper.run_splits(params)
    if stage == "data":
        return pipeline.run_data(params, progress=progress)
    if stage == "splits":
        return pipeline.run_splits(params)
    if stage == "backbone-vit":
        return pipeline.run_backbone_vit(params, progress=progress)
    if stage == "backbone-clip":
        return pipeline.run_backbone_clip(params, progress=progress)
    if stage == "check":
        return pipeline.check_params(params)
    if stage == "index":
        from .index import write_index

        return write_index(params)
    raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visprompt", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=STAGES, help="pipeline stage to run")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1") if _profile_is_mini(args.params) else None
    from .config import load_params

    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        result = _run(args.stage, params, progress=not args.no_progress)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.stage in ("data", "splits"):  # stage timings for reports/index.md
        from .utils import write_json

        write_json(f"reports/metrics/{args.stage}.json", {"stage_time_s": round(time.perf_counter() - t0, 1), **{k: v for k, v in (result or {}).items() if k != "time_s"}})
    summary = {k: v for k, v in (result or {}).items() if not isinstance(v, (list, dict)) or k in ("datasets",)}
    print(json.dumps({"stage": args.stage, "time_s": round(time.perf_counter() - t0, 1), **summary}, default=str)[:2000])
    return 0


def _profile_is_mini(params_path: str) -> bool:
    try:
        import yaml

        with open(params_path) as f:
            return (yaml.safe_load(f) or {}).get("profile", "mini") == "mini"
    except Exception:
        return True


if __name__ == "__main__":
    sys.exit(main())
