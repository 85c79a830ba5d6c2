"""Spread the training over Ray (several GPUs, or a cluster), then let DVC record it.

``dvc repro`` runs one stage at a time and holds the repository lock while it runs, so a second
``dvc repro`` on another GPU cannot start beside it. What makes the train stages cheap to re-run is
the runner's cell store (``data.runs``): every finished (task × grid point × seed) or (protocol ×
dataset × shots × seed) cell is a file, reused by any later run with the same settings. So::

    cd profiles/paper
    python -m visprompt.launch                     # fills the cell store: one Ray task per job
    HF_HUB_OFFLINE=0 dvc repro                     # replays every stage from the store and records it

A job is one cell (:func:`visprompt.experiments.plan_cells`): one grid point of one task's
selection, one seed of a final run, one (protocol, dataset, shots, seed) of RPO. A final VPT/VP
cell is handed the Ray references of its task's selection cells, so Ray starts it once they are
done; every other cell is independent. Scheduling is Ray's, not ours: each job is a Ray task
asking for ``--gpus-per-job`` GPUs (a fraction packs small jobs onto one GPU; 0 runs on CPUs, e.g.
the mini profile), retried ``--retries`` times if it fails or its worker dies, stopped after
``--timeout-h``.
Ray sets ``CUDA_VISIBLE_DEVICES`` per task and kills the tasks when the launcher exits, so an
interrupted launch leaves nothing running; run it again to resume (finished cells are skipped).
Without ``--address`` Ray starts on this machine; ``--address auto`` joins a running cluster
(``ray start --head`` / ``ray start --address ...`` on each machine; ``data.runs`` and the data
must then be on a filesystem every machine sees). Ray is optional (``pip install -e '.[scale]'``):
nothing else in the project needs it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from .errors import ConfigError
from .papers import PAPERS


def plan(params: dict, papers=PAPERS, only=None) -> list[dict]:
    """The jobs, one per cell, largest first (a job always after the jobs it needs):
    ``{"paper", "method", "cell", "after", "cost"}``.

    ``cost`` is a rough ordering key (FGVC cells count 10 for their larger training sets), not a
    time estimate. ``only``: ``["vpt/vpt_deep", "rpo", ...]`` filters.
    """
    from . import experiments

    jobs = []
    for paper in papers:
        for method in (params.get(paper) or {}).get("methods") or {}:
            if only and not any(o in (paper, f"{paper}/{method}") for o in only):
                continue
            experiments.check_method(params, paper, method)
            for c in experiments.plan_cells(params, paper, method):
                jobs.append({"paper": paper, "method": method, **c, "cost": 10 if c["cell"].startswith("fgvc/") else 1})
    jobs.sort(key=lambda j: (bool(j["after"]), -j["cost"]))  # stable: the store's own order within a cost
    return jobs


def job_name(job: dict) -> str:
    return "_".join(x.replace("/", "-") for x in (job["paper"], job["method"], job["cell"]))


def run_job(params: dict, paper: str, method: str, cell: str) -> int:
    """Run one job in this process: one cell of a method (finished cells it needs are reused)."""
    from . import experiments

    result = experiments.run_method(params, paper, method, progress=False, cells=[cell])
    print(f"{paper}/{method} {cell}: done in {result['stage_time_s']} s", flush=True)
    return 0


def _ray_job(params_file: str, cwd: str, job: dict, log_file: str, timeout_s: float | None, *after) -> dict:
    """One job inside a Ray worker: its output goes to ``log_file``; past ``timeout_s`` the worker
    exits, which Ray reports as a failed task (and retries). ``after``: the results of the jobs it
    needs (Ray starts it only once they are done)."""
    import contextlib
    import threading

    os.chdir(cwd)
    if timeout_s:
        threading.Timer(timeout_s, lambda: os._exit(124)).start()
    from .config import load_params

    t0 = time.perf_counter()
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"--- {job_name(job)} on {os.environ.get('CUDA_VISIBLE_DEVICES') or 'CPU'} ---", flush=True)
        run_job(load_params(params_file), job["paper"], job["method"], job["cell"])
    return {"job": job_name(job), "time_s": round(time.perf_counter() - t0, 1)}


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def launch(params_file: str, papers=PAPERS, only=None, gpus_per_job: float = 1.0, retries: int = 2, timeout_h: float | None = None,
           address: str | None = None, num_cpus: int | None = None, dry_run: bool = False) -> int:
    """Run every job of :func:`plan` as a Ray task; 0 if all succeeded."""
    from .config import load_params

    params = load_params(params_file)
    if gpus_per_job < 0 or retries < 0 or (timeout_h is not None and timeout_h <= 0):
        raise ConfigError("--gpus-per-job and --retries must be >= 0 and --timeout-h > 0")
    if params.get("profile") == "paper" and gpus_per_job == 0 and os.environ.get("VISPROMPT_ALLOW_CPU") != "1" and params.get("device") != "cpu":
        raise ConfigError("the paper profile trains on GPUs: give --gpus-per-job > 0 (e.g. 1, or 0.5 to pack two small jobs per GPU), "
                          "or put `device: cpu` in the params to train on CPUs")
    jobs = plan(params, papers, only)
    logs = Path((params.get("data") or {}).get("runs", "data/runs")).resolve() / "launch"
    print(f"{len(jobs)} jobs, {gpus_per_job:g} GPU(s) each, {retries} retries; logs in {logs}/", flush=True)
    if dry_run:
        for j in jobs:
            print(f"  {job_name(j)}  (cost {j['cost']}" + (f", after {len(j['after'])}" if j["after"] else "") + ")")
        return 0
    try:
        import ray
    except ImportError:
        raise ConfigError("the launcher runs on Ray: pip install -e '.[scale]' (the pipeline itself does not need it)") from None

    env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "VISPROMPT_ALLOW_CPU") if k in os.environ}
    ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": env} if env else None)
    have = ray.cluster_resources().get("GPU", 0)
    if gpus_per_job > have:  # Ray would wait for them forever
        ray.shutdown()
        raise ConfigError(f"each job asks for {gpus_per_job:g} GPU(s) but Ray sees {have:g} (check `nvidia-smi`, --gpus and the cluster); "
                          "--gpus-per-job 0 runs on CPUs")
    remote = ray.remote(num_gpus=gpus_per_job, max_retries=retries, retry_exceptions=True)(_ray_job)
    timeout_s = timeout_h * 3600 if timeout_h else None
    refs, by_cell = {}, {}
    for j in jobs:  # a job's "after" jobs come first in the plan, so their references exist
        after = [by_cell[(j["paper"], j["method"], c)] for c in j["after"]]
        ref = remote.remote(str(Path(params_file).resolve()), os.getcwd(), j, str(logs / f"{job_name(j)}.log"), timeout_s, *after)
        refs[ref], by_cell[(j["paper"], j["method"], j["cell"])] = j, ref
    failed, t0 = [], time.perf_counter()
    pending = list(refs)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` as Ctrl-C: cancel everything below
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            job = refs[done[0]]
            try:
                r = ray.get(done[0])
                print(f"[{time.perf_counter() - t0:8.0f} s] done: {r['job']} ({r['time_s']} s)", flush=True)
            except Exception as e:  # the task failed after its retries (an error, a dead worker, the timeout)
                failed.append(job_name(job))
                why = next((ln.strip() for ln in reversed(str(e).splitlines()) if ln.strip()), type(e).__name__)
                print(f"[{time.perf_counter() - t0:8.0f} s] FAILED: {job_name(job)}: {why} (log: {logs / (job_name(job) + '.log')})", flush=True)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop every job; finished cells stay in the store
        # No ray.cancel(force=True) per task: racing a task that is finishing, it can abort the driver
        # (Ray 2.60). Shutting down ends this job, and Ray kills the tasks a job owns when it ends.
        print(f"interrupted: {len(pending)} job(s) stopped; finished cells are kept, run again to resume", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        ray.shutdown()  # a local Ray stops its workers with it
    if failed:
        print(f"{len(failed)} job(s) failed: {', '.join(failed)}. Fix and run again; finished cells are kept.", flush=True)
        return 1
    print("all jobs done; now `dvc repro` records every stage from the cell store", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visprompt.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="the paper params file (run from profiles/paper; default: params.yaml)")
    parser.add_argument("--gpus", default="", help="use only these CUDA devices on this machine (sets CUDA_VISIBLE_DEVICES; default: all)")
    parser.add_argument("--gpus-per-job", type=float, default=1.0, help="GPUs each job asks Ray for (0.5 packs two per GPU; 0: CPU only, the mini profile)")
    parser.add_argument("--retries", type=int, default=2, help="times Ray retries a failed job (default 2)")
    parser.add_argument("--timeout-h", type=float, default=None, help="stop a job after this many hours (it then counts as failed and is retried)")
    parser.add_argument("--address", default=None, help="a Ray cluster to join ('auto': the one `ray start` runs here); default: a local Ray")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs the local Ray may use (default: all)")
    parser.add_argument("--papers", default=",".join(PAPERS), help="which papers (default: vpt,vp,rpo)")
    parser.add_argument("--only", default="", help="comma-separated filters: a paper or paper/method (e.g. vpt/vpt_deep,rpo)")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs, largest first, and stop")
    parser.add_argument("--worker", nargs=3, metavar=("PAPER", "METHOD", "CELL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "0")
    try:
        if args.worker:
            from .config import load_params

            return run_job(load_params(args.params), *args.worker)
        only = [o for o in args.only.split(",") if o]
        papers = tuple(p for p in args.papers.split(",") if p)
        unknown = [p for p in papers if p not in PAPERS]
        if unknown:
            raise ConfigError(f"--papers: unknown {unknown}; choose from {', '.join(PAPERS)}")
        if args.gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = args.gpus
        return launch(args.params, papers, only, gpus_per_job=args.gpus_per_job, retries=args.retries, timeout_h=args.timeout_h,
                      address=args.address, num_cpus=args.num_cpus, dry_run=args.dry_run)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
