"""``python -m visprompt <command>``: the commands that ``dvc.yaml`` runs, usable by hand too.

Commands: ``data``, ``splits``, ``backbones``, ``train``, ``report``, ``index``, ``check``; each
has its own ``--help``. Every command reads ``params.yaml`` (or ``--params``), validates what it
needs before doing any work, and prints a one-line error naming the key and the fix on bad input
(exit code 2). ``backbone-vit`` and ``backbone-clip`` stay as aliases of ``backbones vit|clip``:
``dvc.yaml`` calls them, and a stage's command is part of its hash.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

from .errors import ConfigError, unknown_name
from .papers import PAPERS

BACKBONES = ("vit", "clip")
SCRATCH = Path("build/cli")  # default output root of `train`: never the DVC-tracked reports/


# --- commands: each takes (args, params) and returns a summary dict (or None) ---------------------


def run_data(args, params: dict) -> dict:
    """Render the mini datasets (``profile: paper``: download and verify the real ones)."""
    t0 = time.perf_counter()
    if params.get("profile") == "paper":
        from . import paper

        result = paper.run_data(params, only=[p for p in (getattr(args, "only", None) or "").split(",") if p] or None)
    else:
        if getattr(args, "only", None):
            raise ConfigError("data --only: the mini profile renders every dataset in seconds; --only is for the paper profile")
        from . import pipeline

        result = pipeline.run_data(params, progress=_progress(args))
    _write_stage_time("data", t0, result)
    return result


def run_splits(args, params: dict) -> dict:
    """The few-shot splits that every RPO method shares."""
    t0 = time.perf_counter()
    if params.get("profile") == "paper":
        from . import paper

        result = paper.run_splits(params)
    else:
        from . import pipeline

        result = pipeline.run_splits(params)
    _write_stage_time("splits", t0, result)
    return result


def _write_stage_time(stage: str, t0: float, result: dict | None) -> None:
    """Stage timings for reports/index.md (``reports/records/<stage>.json``, a plain output)."""
    from .utils import write_json

    write_json(f"reports/records/{stage}.json", {"stage_time_s": round(time.perf_counter() - t0, 1), **{k: v for k, v in (result or {}).items() if k != "time_s"}})


def run_backbones(args, params: dict) -> dict:
    """Pretrain the tiny ViT and/or CLIP; ``both`` runs them one after the other."""
    from . import pipeline

    runners = {"vit": pipeline.run_backbone_vit, "clip": pipeline.run_backbone_clip}
    names = BACKBONES if args.backbone == "both" else (args.backbone,)
    results = {name: runners[name](params, progress=_progress(args)) for name in names}
    if len(results) == 1:
        return results[names[0]]
    return {f"{name}_{k}": v for name, r in results.items() for k, v in (r or {}).items()}


def run_train(args, params: dict) -> dict:
    """One method of one paper through ``experiments.run_method``, as its training notebook runs it."""
    params = restrict_method(params, args.paper, args.method, args.task, args.seed, args.protocol)
    from . import experiments

    result = experiments.run_method(params, args.paper, args.method, progress=_progress(args), runs_root=args.runs_root)
    paths = experiments.write_outputs(result, args.out_root or SCRATCH)
    return {"paper": args.paper, "method": args.method, "cells": len(result["cells"]), **paths,
            "stage_time_s": result["stage_time_s"], "compute_time_s": result["compute_time_s"]}


def run_report(args, params: dict) -> None:
    """Point at the DVC stage: a report is a notebook over every method's metrics, not a function call."""
    _check_paper(args.paper)
    stage = f"report_{args.paper}"
    print(f"the {args.paper} report is the DVC stage {stage} (a papermill notebook over reports/records/{args.paper}/): "
          f"run `dvc repro {stage}`, which first reruns any stale train_{args.paper}@* stage "
          f"(paper profile: `cd profiles/paper && dvc repro {stage}`)")
    return None


def run_index(args, params: dict) -> dict:
    """``reports/index.md``, ``index.html`` and ``claims.json`` from the three reports."""
    from .index import write_index

    return write_index(params)


def run_check(args, params: dict) -> dict:
    """Validate the data, splits and backbones sections without doing any work."""
    from . import pipeline

    return pipeline.check_params(params)


# --- train: restricting a method to some tasks / seeds / protocols -------------------------------


def _progress(args) -> bool | None:
    """``--no-progress`` turns bars off; otherwise they show only on a terminal (tqdm's ``disable=None``)."""
    return False if getattr(args, "no_progress", False) else None


def run_status(args, params: dict) -> None:
    """Paper profile: every dataset's state at once (ready / will download / manual download
    needed, with the missing files), without downloading anything."""
    if params.get("profile", "mini") != "paper":
        print("the mini profile renders its datasets (`python -m visprompt data`); status is for the paper profile's downloads")
        return None
    from . import paper

    rows = paper.status(params)
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        extra = f"  missing: {', '.join(r['missing'])}" if r["missing"] else ""
        print(f"{r['name']:<{width}}  {r['state']:<22}  {r.get('disk') or ''}{extra}")
    blocked = sum(r["state"] == "manual download needed" for r in rows)
    print(f"{len(rows)} datasets: {sum(r['state'] == 'ready' for r in rows)} ready, {blocked} need a manual download (docs/paper_profile.md)")
    return None


def run_summary(args, params: dict) -> None:
    """The verdict table of the last run (``reports/claims.json``), as ``make repro`` ends."""
    from .index import verdict_lines

    print("\n".join(verdict_lines()))
    return None


def _check_paper(paper: str) -> None:
    if paper not in PAPERS:
        raise unknown_name("paper", paper, PAPERS)


def restrict_method(params: dict, paper: str, run: str, tasks=None, seeds=None, protocols=None) -> dict:
    """A copy of ``params`` whose ``<paper>.methods.<run>`` lists only the given tasks, seeds or
    protocols (each must be one the method already runs). Fingerprints do not include these lists,
    so the cells of a restricted run are the pipeline's cells: finished ones are reused."""
    _check_paper(paper)
    from .experiments import method_settings

    s = method_settings(params, paper, run)  # unknown method: one-line error listing the runs
    chosen = {}
    if tasks:
        if paper == "rpo":
            raise ConfigError("rpo runs protocols, not tasks; restrict it with --protocol base2new|dg|fewshot")
        chosen["tasks"] = _subset(tasks, list(s.tasks), "task", _settings_key(params, paper, run, "tasks"))
    if protocols:
        if paper != "rpo":
            raise ConfigError(f"--protocol is for rpo; {paper} runs tasks: restrict it with --task")
        chosen["protocols"] = _subset(protocols, list(s.protocols), "protocol", _settings_key(params, paper, run, "protocols"))
    if seeds:
        chosen["seeds"] = _subset([int(x) for x in seeds], list(s.seeds), "seed", _settings_key(params, paper, run, "seeds"))
        if paper == "rpo":
            _check_rpo_fewshot_seeds(params, chosen.get("protocols", list(s.protocols)))
        else:
            _note_selection_seed(s, chosen["seeds"])
    if not chosen:
        return params
    params = copy.deepcopy(params)
    methods = params[paper]["methods"]
    methods[run] = {**(methods[run] or {}), **chosen}
    return params


def _subset(given: list, listed: list, what: str, key: str) -> list:
    """``given`` in the params' order (the first seed selects the grid), each one of ``listed``."""
    for item in given:
        if item not in listed:
            raise ConfigError(f"{what} {item!r} is not one that {key} lists ({', '.join(map(str, listed))}); choose among them or add it to {key} in params.yaml")
    return [item for item in listed if item in given]


def _settings_key(params: dict, paper: str, run: str, key: str) -> str:
    """Where the method's list comes from: its own entry, or the paper's default."""
    own = (params[paper]["methods"][run] or {}).get(key)
    return f"{paper}.methods.{run}.{key}" if own else f"{paper}.{key}"


def _check_rpo_fewshot_seeds(params: dict, protocols: list) -> None:
    """``fewshot`` runs rpo.fewshot.seeds; changing those would change its cells' fingerprints."""
    if "fewshot" in protocols and "seeds" in (params["rpo"].get("fewshot") or {}):
        raise ConfigError("--seed restricts rpo.seeds (base2new, dg) but fewshot runs rpo.fewshot.seeds; add --protocol base2new or --protocol dg, or leave out --seed")


def _note_selection_seed(settings, seeds: list) -> None:
    """VPT/VP select the grid with the first seed; say so when that is not the pipeline's."""
    multi_point = any(len(v) > 1 for v in settings.grid.values())
    if multi_point and seeds[0] != settings.seeds[0]:
        print(f"note: the grid is selected with seed {seeds[0]}, the pipeline selects with seed {settings.seeds[0]}; "
              f"add --seed {settings.seeds[0]} to reuse its selection", file=sys.stderr)


# --- the parser ----------------------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    """``--params`` and ``--no-progress`` on every subcommand (SUPPRESS: no default overrides the top level's)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=argparse.SUPPRESS, help="params file (default: params.yaml)")
    common.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help="no progress bars (e.g. in CI logs)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visprompt", description="The commands that dvc.yaml runs, usable by hand too; `COMMAND --help` for each.")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()

    def command(name: str, handler, help_: str, **defaults) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(handler=handler, **defaults)
        return p

    dp = command("data", run_data, "render the mini datasets (paper profile: download and verify the real ones)")
    dp.add_argument("--only", metavar="PAPERS", help="paper profile: prepare only the datasets these papers read (e.g. rpo or vpt,vp), "
                    "so one paper can start before the others' downloads; `dvc repro data` prepares them all")
    command("splits", run_splits, "write the few-shot splits that every RPO method shares")
    bb = command("backbones", run_backbones, "pretrain the tiny ViT and/or CLIP backbones")
    bb.add_argument("backbone", nargs="?", choices=(*BACKBONES, "both"), default="both", help="which backbone (default: both)")
    for name in BACKBONES:
        command(f"backbone-{name}", run_backbones, f"same as `backbones {name}` (the name dvc.yaml uses)", backbone=name)
    _add_train(command("train", run_train, "train one method of one paper (every task x seed cell, as its notebook does)"))
    rp = command("report", run_report, "say how to build one paper's report (a DVC stage; this command builds nothing)")
    rp.add_argument("paper", metavar="PAPER", help=f"one of {', '.join(PAPERS)}")
    command("index", run_index, "write reports/index.md, index.html and claims.json from the reports")
    command("status", run_status, "paper profile: every dataset's state (ready / will download / manual), downloading nothing")
    command("summary", run_summary, "print the verdict per claim of the last run (reports/claims.json)")
    command("check", run_check, "validate the data, splits and backbones params without doing any work")
    return parser


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("paper", metavar="PAPER", help=f"one of {', '.join(PAPERS)}")
    p.add_argument("--method", required=True, metavar="RUN", help="a run name under <PAPER>.methods in params.yaml")
    p.add_argument("--task", action="append", metavar="T", help="only this task (repeatable; one the method lists; vpt/vp)")
    p.add_argument("--protocol", action="append", metavar="P", help="only this protocol (repeatable; base2new, dg or fewshot; rpo)")
    p.add_argument("--seed", action="append", type=int, metavar="S",
                   help="only this seed (repeatable; one the method lists; vpt/vp select the grid with the first, in params order)")
    p.add_argument("--out-root", metavar="DIR", help=f"where the run's record, flat metrics and history go (default: {SCRATCH}, never reports/)")
    p.add_argument("--runs-root", metavar="DIR", help="cell store (default: data.runs, the pipeline's, so finished cells are reused)")


# --- entry point ---------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if _profile_is_mini(args.params):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    else:
        _enter_profile_dir(args)
    from .config import load_params

    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        result = args.handler(args, params)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result is not None:
        summary = {k: v for k, v in result.items() if not isinstance(v, (list, dict)) or k in ("datasets",)}
        print(json.dumps({"stage": args.command, "time_s": round(time.perf_counter() - t0, 1), **summary}, default=str)[:2000])
    return 0


def _enter_profile_dir(args) -> None:
    """The paper profile's paths (``data.root: data``, ``reports/``) are relative to its own folder,
    where DVC runs its stages; run by hand from elsewhere (``--params profiles/paper/params.yaml``
    from the repository root), change into that folder rather than write into the mini profile's."""
    folder = Path(args.params).resolve().parent
    if folder != Path.cwd().resolve():
        print(f"note: paper profile: running in {folder} (its paths are relative to it)", file=sys.stderr)
        args.params = str(Path(args.params).resolve())
        os.chdir(folder)


def _profile_is_mini(params_path: str) -> bool:
    try:
        import yaml

        with open(params_path) as f:
            return (yaml.safe_load(f) or {}).get("profile", "mini") == "mini"
    except Exception:
        return True


if __name__ == "__main__":
    sys.exit(main())
