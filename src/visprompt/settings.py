"""The settings of one run, typed: what :mod:`visprompt.experiments` reads, built once at the edge.

Why: the runner used to thread the parsed params dict through every call and look values up where
it needed them, so a value could be read without ever being checked. Here a run's settings are
merged (paper defaults, then ``<paper>.methods.<run>``) from params that :func:`visprompt.schema.validate`
has checked, into frozen dataclasses; the runner and the worlds read their attributes only.

A method's ``cfg`` and ``recipe`` stay mappings: they are the builder's keyword arguments and the
recipe as written (both checked by the schema, and fingerprinted as written); a cell trains with
``Recipe.from_dict`` of its merged recipe (:class:`visprompt.train.Recipe`, typed).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

from .errors import ConfigError, unknown_name
from .papers import PAPERS

RPO_PROTOCOLS = ("base2new", "dg", "fewshot")


@dataclass(frozen=True)
class Base2New:
    """RPO §4.1: train on the base half of each dataset's classes, test on base and new."""

    datasets: tuple[str, ...]
    shots: int


@dataclass(frozen=True)
class DomainShift:
    """RPO §4.2: train on ``source``, test on its shifted copies ``targets``."""

    source: str
    shots: int
    targets: tuple[str, ...]


@dataclass(frozen=True)
class FewShot:
    """The variance figures: every (dataset, shots, seed) on all classes."""

    datasets: tuple[str, ...]
    shots: tuple[int, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Override:
    """A protocol's (or dataset's) cfg and recipe on top of the run's (RPO runs only)."""

    cfg: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Subsample:
    """The first N of train and val (VTAB-1k's own rule; a cheaper mini VTAB)."""

    train: int | None = None
    val: int | None = None


@dataclass(frozen=True)
class RunSettings:
    """One run (``<paper>.methods.<run>``) merged over its paper's defaults."""

    paper: str
    run: str  # the params key (a run may alias a registered method with other settings: ablations)
    method: str  # the registered method it runs
    cfg: dict  # the method builder's keyword arguments
    recipe: dict  # the training recipe as written (paper's, then the run's)
    grid: dict  # key -> tuple of values, chosen on train/val with the first seed
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]  # vpt/vp
    tasks_key: str  # where the tasks were listed (messages)
    protocols: tuple[str, ...]  # rpo
    trainable: bool
    overrides: dict  # name (protocol or dataset) -> Override
    subsample: Subsample | None
    base2new: Base2New | None
    dg: DomainShift | None
    fewshot: FewShot | None
    splits_root: str  # where the splits stage wrote the few-shot samples
    runs_root: str  # the cell store
    code: str = ""  # hash of the code a cell runs (the runner sets it: experiments.cell_code_hash)

    @classmethod
    def from_params(cls, params: dict, paper: str, run: str) -> "RunSettings":
        """The settings of ``<paper>.methods.<run>`` from params validated by the schema."""
        if paper not in PAPERS:
            raise unknown_name("paper", paper, PAPERS)
        p = params.get(paper) or {}
        methods = p.get("methods") or {}
        if run not in methods:
            raise ConfigError(f"{paper}.methods has no {run!r}; add it to params.yaml or choose one of: {', '.join(methods)}")
        m = methods[run] or {}
        trainable = bool(m.get("trainable", True))
        grid = {**(p.get("grid") or {}), **(m.get("grid") or {})} if trainable else {}
        b2n, dg, few = p.get("base2new"), p.get("dg"), p.get("fewshot")
        seeds = tuple(int(s) for s in (m.get("seeds") or p.get("seeds") or [1]))
        return cls(
            paper=paper,
            run=run,
            method=m.get("method", run),
            cfg=dict(m.get("cfg") or {}),
            recipe={**(p.get("recipe") or {}), **(m.get("recipe") or {})},
            grid={k: tuple(v) for k, v in grid.items() if v is not None},
            seeds=seeds,
            tasks=tuple(m.get("tasks") or p.get("tasks") or ()),
            tasks_key=f"{paper}.methods.{run}.tasks" if m.get("tasks") else f"{paper}.tasks",
            protocols=tuple(m.get("protocols") or p.get("protocols") or RPO_PROTOCOLS),
            trainable=trainable,
            overrides={k: Override(dict(o.get("cfg") or {}), dict(o.get("recipe") or {})) for k, o in (m.get("overrides") or {}).items()},
            subsample=Subsample(**p["subsample"]) if p.get("subsample") else None,
            base2new=Base2New(tuple(map(str, b2n["datasets"])), int(b2n["shots"])) if b2n else None,
            dg=DomainShift(str(dg["source"]), int(dg["shots"]), tuple(map(str, dg["targets"]))) if dg else None,
            fewshot=FewShot(tuple(map(str, few["datasets"])), tuple(int(k) for k in few["shots"]), tuple(int(s) for s in few.get("seeds") or seeds)) if few else None,
            splits_root=(params.get("splits") or {}).get("root", "data/splits"),
            runs_root=(params.get("data") or {}).get("runs", "data/runs"),
        )

    # --- what the runner asks ----------------------------------------------------------------------

    def grid_points(self) -> list[dict]:
        """Every combination of the grid's values, keys sorted (one point, ``{}``, without a grid)."""
        keys = sorted(self.grid)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(self.grid[k] for k in keys))] or [{}]

    def layers(self, *names: str | None) -> tuple[dict, dict]:
        """``(cfg, recipe)`` of the run with the overrides of ``names`` (protocol, then dataset) on top."""
        cfg, recipe = dict(self.cfg), dict(self.recipe)
        for name in names:
            over = self.overrides.get(name) if name else None
            if over is not None:
                cfg.update(over.cfg)
                recipe.update(over.recipe)
        return cfg, recipe

    def protocol(self, name: str):
        """The RPO protocol section ``name`` (base2new, dg, fewshot)."""
        section = {"base2new": self.base2new, "dg": self.dg, "fewshot": self.fewshot}[name]
        if section is None:
            raise ConfigError(f"rpo.{name} section missing in params.yaml")
        return section

    def rpo_jobs(self) -> list[tuple[str, str, int, int]]:
        """Every ``(protocol, dataset, shots, seed)`` cell of an RPO-side run, in order."""
        jobs = []
        if "base2new" in self.protocols:
            b = self.protocol("base2new")
            jobs += [("base2new", d, b.shots, seed) for d in b.datasets for seed in self.seeds]
        if "dg" in self.protocols:
            g = self.protocol("dg")
            jobs += [("dg", g.source, g.shots, seed) for seed in self.seeds]
        if "fewshot" in self.protocols:
            f = self.protocol("fewshot")
            jobs += [("fewshot", d, k, seed) for d in f.datasets for k in f.shots for seed in f.seeds]
        return jobs

    def record(self) -> dict:
        """The settings as a run record lists them (JSON: lists, not tuples)."""
        return {"cfg": self.cfg, "recipe": self.recipe, "grid": {k: list(v) for k, v in self.grid.items()},
                "seeds": list(self.seeds), "tasks": list(self.tasks), "protocols": list(self.protocols)}

    def fingerprinted(self, value):
        """A typed section as its fingerprint sees it (plain data)."""
        return None if value is None else asdict(value)

