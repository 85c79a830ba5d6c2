"""The layout of params.yaml, checked once when it is read (``config.load_params``).

Why: a wrong value used to surface as a bare ``TypeError`` deep in a stage, after minutes of work,
or not at all (a misspelt key was silently ignored). Here every value of both profiles' params is
checked before anything runs, and every error names the full key path, what was found and what is
expected, with a "did you mean" for misspelt keys. Values that are already right come back
untouched (same types), so the cells' fingerprints do not change; a number that YAML read as a
string (PyYAML reads ``1e-3`` as the string "1e-3") is converted.

Method ``cfg`` values are free-form here: each method's builder checks them
(``experiments.check_method``). Every grid point is checked against the recipe it would train with.
"""

from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import fields

from .errors import ConfigError
from .papers import PAPERS


class Spec:
    """One value's rule: ``check`` returns the (possibly converted) value or raises ConfigError."""

    def check(self, value, path: str):
        raise NotImplementedError

    @staticmethod
    def fail(path: str, found, expected: str):
        raise ConfigError(f"{path}: expected {expected}, got {found!r}")


class Any_(Spec):
    def check(self, value, path):
        return value


class Int(Spec):
    def __init__(self, lo: int | None = None, hi: int | None = None):
        self.lo, self.hi = lo, hi

    def check(self, value, path):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, value, "an integer" + ("" if not isinstance(value, float) else " (no fraction)"))
        if self.lo is not None and value < self.lo or self.hi is not None and value > self.hi:
            self.fail(path, value, f"an integer in [{self.lo}, {'∞' if self.hi is None else self.hi}]")
        return value


class Float(Spec):
    """A number (ints stay ints); ``gt``: strictly above, ``lo``: at least."""

    def __init__(self, lo: float | None = None, gt: float | None = None, none_ok: bool = False):
        self.lo, self.gt, self.none_ok = lo, gt, none_ok

    def check(self, value, path):
        if value is None and self.none_ok:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                self.fail(path, value, "a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(path, value, "a finite number")
        if self.gt is not None and not value > self.gt:
            self.fail(path, value, f"a number > {self.gt}")
        if self.lo is not None and value < self.lo:
            self.fail(path, value, f"a number >= {self.lo}")
        return value


class Str(Spec):
    def __init__(self, choices=None):
        self.choices = tuple(choices) if choices else None

    def check(self, value, path):
        if not isinstance(value, str) or not value:
            self.fail(path, value, "a non-empty string" + (f", one of {list(self.choices)}" if self.choices else ""))
        if self.choices and value not in self.choices:
            raise ConfigError(f"{path}: unknown value {value!r}{_did_you_mean(value, self.choices)}; choose one of {list(self.choices)}")
        return value


class Bool(Spec):
    def check(self, value, path):
        if not isinstance(value, bool):
            self.fail(path, value, "true or false")
        return value


class List(Spec):
    """A list (empty and duplicate items rejected unless allowed); a scalar is not a list."""

    def __init__(self, item: Spec, min_len: int = 1, unique: bool = True):
        self.item, self.min_len, self.unique = item, min_len, unique

    def check(self, value, path):
        if not isinstance(value, list):
            self.fail(path, value, f"a list, e.g. [{'1, 2' if isinstance(self.item, Int) else 'a, b'}]")
        if len(value) < self.min_len:
            raise ConfigError(f"{path}: the list is empty; give at least {self.min_len} item(s) or remove the key")
        out = [self.item.check(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if self.unique:
            seen = [v for i, v in enumerate(out) if v in out[:i]]
            if seen:
                raise ConfigError(f"{path}: {seen[0]!r} is listed twice (a repeated seed would report a std of 0); list each once")
        return out


class Map(Spec):
    """A mapping with known keys (``keys``); other keys go to ``extra`` (e.g. run names) or are
    rejected with a suggestion."""

    def __init__(self, keys: dict | None = None, extra: Spec | None = None, required=()):
        self.keys, self.extra, self.required = keys or {}, extra, tuple(required)

    def check(self, value, path):
        if value is None and not self.required:
            value = {}
        if not isinstance(value, dict):
            self.fail(path, value, "a mapping (key: value)")
        missing = [k for k in self.required if k not in value]
        if missing:
            raise ConfigError(f"{_join(path, missing[0])}: missing; see params.yaml in the repository for the layout")
        out = {}
        for k, v in value.items():
            sub = _join(path, str(k))
            if k in self.keys:
                out[k] = self.keys[k].check(v, sub)
            elif self.extra is not None:
                out[k] = self.extra.check(v, sub)
            else:
                raise ConfigError(f"{sub}: unknown key{_did_you_mean(str(k), self.keys)}; the keys here are {sorted(self.keys)}")
        return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- the recipe and the grid -----------------------------------------------------------------


def recipe_spec() -> Map:
    """Every :class:`visprompt.train.Recipe` field, typed from the dataclass."""
    from . import train

    choices = {"optimizer": train.OPTIMIZERS, "lr_scaling": train.LR_SCALINGS, "schedule": train.SCHEDULES,
               "step_per": ("step", "epoch"), "augment": train.AUGMENTS}
    keys: dict = {}
    for f in fields(train.Recipe):
        t = str(f.type)
        if f.name in choices:
            keys[f.name] = Str(choices[f.name])
        elif f.name == "lr":
            keys[f.name] = Float(gt=0)
        elif t.startswith("int"):
            keys[f.name] = Int(lo=1 if f.name in ("batch_size", "epochs") else 0)
        elif t.startswith("float"):
            keys[f.name] = Float(lo=0, none_ok="None" in t)
        elif t.startswith("bool"):
            keys[f.name] = Bool()
        else:
            keys[f.name] = Any_()
    return Map(keys)


class Grid(Spec):
    """``{key: [values]}``: recipe keys are typed like the recipe, other keys are method cfg keys."""

    def check(self, value, path):
        recipe = recipe_spec().keys
        value = Map(extra=List(Any_())).check(value, path)
        return {k: [recipe[k].check(x, f"{path}.{k}[{i}]") for i, x in enumerate(v)] if k in recipe else v for k, v in value.items()}


SEEDS = List(Int(lo=0))
PROTOCOLS = ("base2new", "dg", "fewshot")


def method_spec() -> Map:
    return Map({"method": Str(), "cfg": Map(extra=Any_()), "recipe": recipe_spec(), "grid": Grid(), "seeds": SEEDS,
                "tasks": List(Str()), "trainable": Bool(), "protocols": List(Str(PROTOCOLS)),
                "overrides": Map(extra=Map({"cfg": Map(extra=Any_()), "recipe": recipe_spec()}))})


def paper_spec(paper: str) -> Map:
    keys = {"backbone": Str(), "tasks": List(Str()), "seeds": SEEDS, "recipe": recipe_spec(), "grid": Grid(),
            "methods": Map(extra=method_spec()), "subsample": Map({"train": Int(lo=1), "val": Int(lo=1)}), "selection": Map(extra=Any_()), "template": Str()}
    if paper == "rpo":
        keys.update({"base2new": Map({"datasets": List(Str()), "shots": Int(lo=1), "hm": Str()}, required=("datasets", "shots")),
                     "dg": Map({"source": Str(), "shots": Int(lo=1), "targets": List(Str())}, required=("source", "shots", "targets")),
                     "fewshot": Map({"datasets": List(Str()), "shots": List(Int(lo=1)), "seeds": SEEDS}, required=("datasets", "shots")),
                     "templates": Map(extra=Str())})
    return Map(keys, required=("methods", "recipe"))


def params_spec() -> Map:
    pretrain = Map({"steps": Int(lo=1), "batch_size": Int(lo=1), "lr": Float(gt=0), "weight_decay": Float(lo=0),
                    "warmup": Int(lo=0), "label_smoothing": Float(lo=0), "aux_weight": Float(lo=0), "seed": Int(lo=0)})
    return Map({
        "profile": Str(("mini", "paper")),
        "threads": Int(lo=0),
        "device": Str(("cuda", "cpu")),
        "data": Map({"root": Str(), "image_size": Int(lo=8), "seed": Int(lo=0), "workers": Int(lo=0),
                     "suites": List(Str(("upstream", "vtab", "fgvc", "vp", "coop", "probe"))), "sizes": Map(extra=Any_()),
                     "runs": Str(), "split_seed": Int(lo=0), "keep_archives": Bool(), "decode_cache": Bool(), "datasets": List(Str()),
                     "strict": Bool()}),
        "splits": Map({"root": Str(), "datasets": List(Str()), "shots": List(Int(lo=1)), "seeds": SEEDS}, required=("datasets", "shots", "seeds")),
        "backbones": Map({"root": Str(), "reports_dir": Str(), "vit": Map(extra=Any_()), "clip": Map(extra=Any_()),
                          "clip_vp": Map(extra=Any_()), "clip_rpo": Map(extra=Any_()),
                          "vit_pretrain": pretrain, "clip_pretrain": pretrain}),
        "transforms": Map(extra=Any_()),
        "vpt": paper_spec("vpt"), "vp": paper_spec("vp"), "rpo": paper_spec("rpo"),
    }, required=("data", "splits", "backbones"))


def check_grid_points(params: dict) -> None:
    """Every grid point of every run, merged into the recipe it would train with, is a valid
    recipe: a bad value fails now, not after the grid's first cells have trained."""
    from .train import Recipe

    for paper in ("vpt", "vp", "rpo"):
        sec = params.get(paper) or {}
        for run, m in (sec.get("methods") or {}).items():
            grid = {**(sec.get("grid") or {}), **(m.get("grid") or {})}
            recipe = {**(sec.get("recipe") or {}), **(m.get("recipe") or {})}
            keys = [k for k in grid if k in {f.name for f in fields(Recipe)}]
            for values in itertools.product(*(grid[k] for k in keys)):
                point = dict(zip(keys, values))
                try:
                    Recipe.from_dict({**recipe, **point})
                except (ConfigError, TypeError) as e:
                    raise ConfigError(f"{paper}.methods.{run}: the grid point {point} gives an invalid recipe: {e}") from None
            for name, over in (m.get("overrides") or {}).items():
                try:
                    Recipe.from_dict({**recipe, **(over.get("recipe") or {})})
                except (ConfigError, TypeError) as e:
                    raise ConfigError(f"{paper}.methods.{run}.overrides.{name}.recipe gives an invalid recipe: {e}") from None


# --- method cfg: typed from each builder's keyword defaults ------------------------------------

AT_LEAST_ONE = {"prompt_length", "prompt_size", "K", "n_ctx", "k", "reduction", "width", "max_iter"}
MAX_PROMPT_LENGTH = 1000  # VPT's largest is 200; attention cost grows with the square of the tokens


def cfg_spec(builder) -> dict:
    """key -> Spec for every keyword a method builder takes with a default (its cfg keys)."""
    import inspect

    out = {}
    for name, p in inspect.signature(builder).parameters.items():
        d = p.default
        if d is inspect.Parameter.empty:
            continue
        if isinstance(d, bool):
            out[name] = Bool()
        elif isinstance(d, int):
            out[name] = Int(lo=1 if name in AT_LEAST_ONE else 0, hi=MAX_PROMPT_LENGTH if name == "prompt_length" else None)
        elif isinstance(d, float):
            out[name] = Float(lo=0)
        elif isinstance(d, str):
            out[name] = Str()
        else:
            out[name] = Any_()
    return out


def _image_size(params: dict) -> int | None:
    bb = params.get("backbones") or {}
    for key in ("clip", "clip_vp"):
        if isinstance(bb.get(key), dict) and bb[key].get("image_size"):
            return int(bb[key]["image_size"])
    return (params.get("data") or {}).get("image_size")


def check_method_cfgs(params: dict) -> dict:
    """Every run's method is registered and its cfg (also in overrides and grids) has that
    method's keys with values of the right type and size; returns params with numbers that YAML
    read as strings converted (``K: '4'`` -> 4)."""
    from .methods.registry import get_method_spec, list_methods

    size = _image_size(params)
    for paper in ("vpt", "vp", "rpo"):
        for run, m in ((params.get(paper) or {}).get("methods") or {}).items():
            path = f"{paper}.methods.{run}"
            name = m.get("method", run)
            if name not in list_methods():
                raise ConfigError(f"{path}: unknown method {name!r}{_did_you_mean(name, list_methods())}; "
                                  f"a run named otherwise must say which registered method it runs (method: ...), one of {sorted(list_methods())}")
            spec = Map(cfg_spec(get_method_spec(name).builder))
            holders = [(f"{path}.cfg", m)] + [(f"{path}.overrides.{k}.cfg", o) for k, o in (m.get("overrides") or {}).items()]
            for where, holder in holders:
                if holder.get("cfg") is None:
                    continue
                holder["cfg"] = spec.check(holder["cfg"], where)
                _check_prompt_size(name, holder["cfg"].get("prompt_size"), size, f"{where}.prompt_size")
            for key, values in (m.get("grid") or {}).items():
                if key not in spec.keys and key not in recipe_spec().keys:
                    raise ConfigError(f"{path}.grid.{key}: neither a recipe field nor a setting of {name!r}{_did_you_mean(key, [*spec.keys, *recipe_spec().keys])}; "
                                      f"its settings: {', '.join(spec.keys) or 'none'}")
                if key in spec.keys:
                    m["grid"][key] = [spec.keys[key].check(v, f"{path}.grid.{key}[{i}]") for i, v in enumerate(values)]
                    for i, v in enumerate(m["grid"][key] if key == "prompt_size" else []):
                        _check_prompt_size(name, v, size, f"{path}.grid.{key}[{i}]")
    return params


def _check_prompt_size(method: str, value, image_size, where: str) -> None:
    """A pad of width p on both sides leaves an image of size - 2p: p must be below half the image;
    a patch must fit in the image. ``where``: the value's key path."""
    if value is None or not image_size:
        return
    limit = (image_size - 1) // 2 if method == "vp_pad" else image_size
    if value > limit:
        what = "a pad of this width covers the whole image" if method == "vp_pad" else "the patch is larger than the image"
        raise ConfigError(f"{where}: {value} does not fit a {image_size}-px image ({what}); use at most {limit}")


NAMES = {"vit": "ViT", "clip": "CLIP"}


def check_layout(params: dict) -> None:
    """What the mini profile builds from and what RPO's runs read, present and consistent: the
    backbones the mini world builds (``backbones.vit``, ``backbones.clip``), every method under a
    paper whose backbone it needs, a section for every RPO protocol a method runs, and few-shot
    samples (``splits.datasets``) for every dataset RPO trains on."""
    from .methods.registry import get_method_spec, list_methods

    if params.get("profile", "mini") == "mini":
        if "device" in params:
            raise ConfigError("device: only the paper profile reads it (`device: cpu` lets it train without a GPU); remove it here")
        for key in ("vit", "clip"):
            if key not in params["backbones"]:
                raise ConfigError(f"backbones.{key}: missing; the mini profile builds its {NAMES[key]} from it (see params.yaml in the repository)")
    for paper, family in PAPERS.items():
        for run, m in ((params.get(paper) or {}).get("methods") or {}).items():
            spec = get_method_spec(m.get("method", run))
            if spec.family != family:
                home = [p for p, f in PAPERS.items() if f == spec.family]
                raise ConfigError(f"{paper}.methods.{run}: {spec.name!r} is a {NAMES[spec.family]} method but {paper} runs on the {NAMES[family]}; "
                                  f"move it under {' or '.join(f'{h}.methods' for h in home)}, or choose one of {list_methods(family)}")
    for paper in ("vpt", "vp"):
        for run, m in ((params.get(paper) or {}).get("methods") or {}).items():
            if m.get("overrides"):
                raise ConfigError(f"{paper}.methods.{run}.overrides: only RPO runs have protocols to override; put the values in its cfg or recipe")
    rpo = params.get("rpo")
    if not rpo:
        return
    for run, m in (rpo.get("methods") or {}).items():
        for proto in m.get("protocols") or PROTOCOLS:
            if proto not in rpo:
                raise ConfigError(f"rpo.{proto}: missing, but rpo.methods.{run} runs the {proto} protocol; add an rpo.{proto} section "
                                  f"(see params.yaml in the repository) or list the protocols it runs (rpo.methods.{run}.protocols)")
    sampled = params["splits"]["datasets"]
    named = [(f"rpo.base2new.datasets[{i}]", d) for i, d in enumerate((rpo.get("base2new") or {}).get("datasets") or [])]
    named += [("rpo.dg.source", (rpo.get("dg") or {}).get("source"))] if (rpo.get("dg") or {}).get("source") else []
    named += [(f"rpo.fewshot.datasets[{i}]", d) for i, d in enumerate((rpo.get("fewshot") or {}).get("datasets") or [])]
    for where, name in named:
        if name not in sampled:
            raise ConfigError(f"{where}: {name!r} has no few-shot samples{_did_you_mean(str(name), sampled)}; "
                              f"splits.datasets lists {', '.join(map(str, sampled))}: fix the name or add it to splits.datasets")
    _check_rpo_runs(params, rpo)


def _check_rpo_runs(params: dict, rpo: dict) -> None:
    """Each RPO run's overrides name a protocol or one of its datasets, and the splits stage makes
    the few-shot samples (shots, seeds) of every protocol the run trains with."""
    from .settings import RunSettings

    datasets = {str(d) for d in ((rpo.get("base2new") or {}).get("datasets") or []) + ((rpo.get("fewshot") or {}).get("datasets") or [])}
    if (rpo.get("dg") or {}).get("source"):
        datasets.add(str(rpo["dg"]["source"]))
    made_shots, made_seeds = set(params["splits"]["shots"]), set(params["splits"]["seeds"])
    for run, m in (rpo.get("methods") or {}).items():
        for name in m.get("overrides") or {}:
            if name not in PROTOCOLS and name not in datasets:
                raise ConfigError(f"rpo.methods.{run}.overrides.{name}: not a protocol ({', '.join(PROTOCOLS)}) nor one of their datasets "
                                  f"({', '.join(sorted(datasets))}){_did_you_mean(name, [*PROTOCOLS, *datasets])}")
        jobs = RunSettings.from_params(params, "rpo", run).rpo_jobs()  # the (protocol, dataset, shots, seed) cells it trains
        shots, seeds = {k for _, _, k, _ in jobs}, {seed for _, _, _, seed in jobs}
        if shots - made_shots:
            raise ConfigError(f"rpo.methods.{run} needs shots {sorted(shots - made_shots)} that splits.shots does not make; add them to splits.shots")
        if seeds - made_seeds:
            raise ConfigError(f"rpo.methods.{run} needs seeds {sorted(seeds - made_seeds)} that splits.seeds does not make; add them to splits.seeds")


def checked(params: dict, source: str = "params") -> dict:
    """``params`` validated again (4 ms): what the runner reads, whoever built or edited the dict."""
    import copy

    return validate(copy.deepcopy(params), source)


def validate(params: dict, source: str = "params.yaml") -> dict:
    """``params`` checked against :func:`params_spec` (and every grid point); returns it with
    numbers that YAML read as strings converted. Errors name ``source`` and the key path."""
    try:
        out = params_spec().check(params, "")
        check_grid_points(out)
        check_method_cfgs(out)
        check_layout(out)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return out
