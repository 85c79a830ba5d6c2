"""Spread the paper profile's training over several GPUs, then let DVC record it.

``dvc repro`` runs one stage at a time and holds the repository lock while it runs, so a second
``dvc repro`` on another GPU cannot start beside it. What makes the train stages cheap to re-run is
the runner's cell store (``data.runs``): every finished (task × grid point × seed) or (protocol ×
dataset × shots × seed) cell is a file, reused by any later run with the same settings. So::

    cd profiles/paper
    python -m visprompt.launch --gpus 0,1,2,3      # fills the cell store, one job per GPU at a time
    HF_HUB_OFFLINE=0 dvc repro                     # replays every stage from the store and records it

A job is one (paper, method, task) for VPT and visual prompting — the cells of one task do not
depend on which other tasks are listed — and one (rpo, method) for RPO, whose cell fingerprints
include its protocol sections. Jobs run in ``CUDA_VISIBLE_DEVICES=<gpu>`` subprocesses, largest
grid first, each logging to ``<data.runs>/launch/<job>.log``. A failed job does not stop the
others; the launcher exits non-zero and names it. Run it again to resume: finished cells are
skipped.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from pathlib import Path

from .errors import ConfigError

PAPERS = ("vpt", "vp", "rpo")


def plan(params: dict, papers=PAPERS, only=None) -> list[dict]:
    """The jobs, largest first: ``{"paper", "method", "task" (None for RPO), "cost"}``.

    ``cost`` is a rough ordering key (grid points × seeds, FGVC counted ×10 for its larger
    training sets), not a time estimate. ``only``: ``["vpt/vpt_deep", "rpo", ...]`` filters.
    """
    from . import experiments

    jobs = []
    for paper in papers:
        for method in (params.get(paper) or {}).get("methods") or {}:
            if only and not any(o in (paper, f"{paper}/{method}") for o in only):
                continue
            s = experiments.check_method(params, paper, method)
            points = len(experiments._grid_points(s["grid"]))
            if paper == "rpo":
                jobs.append({"paper": paper, "method": method, "task": None, "cost": points * len(s["seeds"])})
                continue
            for task in s["tasks"]:
                weight = 10 if task.startswith("fgvc/") else 1
                jobs.append({"paper": paper, "method": method, "task": task, "cost": weight * (points + len(s["seeds"]))})
    return sorted(jobs, key=lambda j: -j["cost"])


def job_name(job: dict) -> str:
    return "_".join(x.replace("/", "-") for x in (job["paper"], job["method"], job["task"]) if x)


def run_job(params: dict, paper: str, method: str, task: str | None) -> int:
    """Run one job in this process: the method's cells of one task (VPT/VP) or all of them (RPO)."""
    from . import experiments

    if task is not None:
        params = copy.deepcopy(params)
        entry = params[paper]["methods"][method] = dict(params[paper]["methods"][method] or {})
        if "tasks" in entry:
            entry["tasks"] = [task]
        else:
            params[paper]["tasks"] = [task]
    result = experiments.run_method(params, paper, method, progress=False)
    print(f"{paper}/{method}" + (f" {task}" if task else "") + f": {len(result['cells'])} cells in {result['stage_time_s']} s", flush=True)
    return 0


def launch(params_file: str, gpus: list[str], papers=PAPERS, only=None, poll_s: float = 5.0, dry_run: bool = False) -> int:
    """Run every job of :func:`plan` with at most one job per entry of ``gpus``; 0 if all succeeded."""
    from .config import load_params

    params = load_params(params_file)
    if params.get("profile") != "paper":
        raise ConfigError(f"{params_file}: the launcher is for the paper profile (profile: paper)")
    if not gpus:
        raise ConfigError("give at least one GPU, e.g. --gpus 0,1,2,3")
    jobs = plan(params, papers, only)
    logs = Path((params.get("data") or {}).get("runs", "data/runs")) / "launch"
    print(f"{len(jobs)} jobs on {len(gpus)} GPU(s) ({', '.join(gpus)}); logs in {logs}/", flush=True)
    if dry_run:
        for j in jobs:
            print(f"  {job_name(j)}  (cost {j['cost']})")
        return 0
    logs.mkdir(parents=True, exist_ok=True)
    pending, running, failed = list(jobs), {}, []
    free = list(gpus)
    t0 = time.perf_counter()
    while pending or running:
        while pending and free:
            job, gpu = pending.pop(0), free.pop(0)
            cmd = [sys.executable, "-m", "visprompt.launch", "--params", params_file, "--worker", job["paper"], job["method"]] + (["--task", job["task"]] if job["task"] else [])
            log = open(logs / f"{job_name(job)}.log", "w")
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
            running[gpu] = (job, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            print(f"[{time.perf_counter() - t0:8.0f} s] start {job_name(job)} on GPU {gpu}", flush=True)
        time.sleep(poll_s)
        for gpu, (job, proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[gpu]
            free.append(gpu)
            status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}; see {logs / (job_name(job) + '.log')})"
            if proc.returncode:
                failed.append(job_name(job))
            print(f"[{time.perf_counter() - t0:8.0f} s] {status}: {job_name(job)}", flush=True)
    if failed:
        print(f"{len(failed)} job(s) failed: {', '.join(failed)}. Fix and run again; finished cells are kept.", flush=True)
        return 1
    print("all jobs done; now `HF_HUB_OFFLINE=0 dvc repro` records every stage from the cell store", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visprompt.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="the paper params file (run from profiles/paper; default: params.yaml)")
    parser.add_argument("--gpus", default="", help="comma-separated CUDA device ids, one job per device at a time (e.g. 0,1,2,3)")
    parser.add_argument("--papers", default=",".join(PAPERS), help="which papers (default: vpt,vp,rpo)")
    parser.add_argument("--only", default="", help="comma-separated filters: a paper or paper/method (e.g. vpt/vpt_deep,rpo)")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs, largest first, and stop")
    parser.add_argument("--worker", nargs=2, metavar=("PAPER", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--task", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "0")
    try:
        if args.worker:
            from .config import load_params

            return run_job(load_params(args.params), args.worker[0], args.worker[1], args.task)
        only = [o for o in args.only.split(",") if o]
        papers = tuple(p for p in args.papers.split(",") if p)
        unknown = [p for p in papers if p not in PAPERS]
        if unknown:
            raise ConfigError(f"--papers: unknown {unknown}; choose from {', '.join(PAPERS)}")
        return launch(args.params, [g for g in args.gpus.split(",") if g], papers, only, dry_run=args.dry_run)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
