"""The mini world's datasets: upstream corpora and the downstream suites of the three papers.

Every dataset is defined here as code (:class:`MiniTask`), rendered by :mod:`.render` and written
once by the ``data`` stage as ``data/mini/<suite>/<name>.npz`` (uint8 images, labels) with a
small ``<name>.json`` manifest (classes, counts, factors, what was held out).

* **Upstream** (the analogue of ImageNet-21k and CLIP's web data): ``upstream/vit`` — supervised
  (shape, colour) classes for the tiny ViT; ``upstream/clip`` — image-caption pairs for the tiny
  CLIP, in groups of images that differ in one factor only (hard negatives for the contrastive
  loss). Both leave out :data:`HELD_OUT` entirely, so CoOp-mini's "new" classes are genuinely new.
* **VTAB-mini / FGVC-mini** (``vtab``, ``fgvc``): 800 train / 200 val / test, for the tiny ViT.
* **VP-mini** (``vp``): named classification datasets for the tiny CLIP.
* **CoOp-mini** (``coop``): named datasets of ``shape × factor`` classes whose base half and new
  half share no shape and no factor value (the values that tell new classes apart were never
  discriminative among base classes), every class seen upstream as a combination (as CLIP has
  seen ImageNet's new classes on the web); style-shifted copies of ``objects`` for domain
  generalisation; ``probe`` sets measure zero-shot accuracy on single factors.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np

from ..errors import ConfigError, unknown_name
from .render import BACKGROUNDS, COLOURS, COUNT_WORDS, PATTERNS, SHAPES, SIZES, STAR_VARIANTS, STYLES, Scene, caption, layout, plural, render

COLOUR_NAMES = tuple(COLOURS)
NON_SOLID = PATTERNS[1:]
UPSTREAM_COUNTS = (1, 2, 3, 4, 5)

# --- what upstream never shows -----------------------------------------------------------------


def _held_out() -> dict:
    """Factor combinations absent from both upstream corpora (a Latin-square pattern, so every
    shape, colour, pattern, count and background still appears upstream on its own)."""
    held = {"colour": set(), "pattern": set(), "count": set(), "background": set()}
    for i, shape in enumerate(SHAPES):
        held["colour"] |= {(shape, COLOUR_NAMES[(i + 3) % 12]), (shape, COLOUR_NAMES[(i + 7) % 12])}
        held["pattern"] |= {(shape, NON_SOLID[i % 4]), (shape, NON_SOLID[(i + 2) % 4])}
        held["count"] |= {(shape, 2 + i % 4), (shape, 2 + (i + 2) % 4)}
        held["background"] |= {(shape, BACKGROUNDS[i % 4]), (shape, BACKGROUNDS[(i + 2) % 4])}
    return held


HELD_OUT = _held_out()


def is_held_out(scene: Scene) -> bool:
    return (
        (scene.shape, scene.colour) in HELD_OUT["colour"]
        or (scene.shape, scene.pattern) in HELD_OUT["pattern"]
        or (scene.shape, scene.count) in HELD_OUT["count"]
        or (scene.shape, scene.background) in HELD_OUT["background"]
    )


# --- task definitions ------------------------------------------------------------------------

DEFAULT_SPACE = {
    "shape": SHAPES,
    "colour": COLOUR_NAMES,
    "pattern": PATTERNS,
    "size": ("medium", "large"),
    "count": (1,),
    "background": BACKGROUNDS,
    "style": ("flat", "shaded"),
    "rotation": (-20.0, 20.0),
}


@dataclass
class MiniTask:
    """One dataset of the mini world: classes as fixed factor values, everything else random."""

    name: str
    suite: str
    group: str  # VTAB group, 'fgvc', or the role in its suite
    analog: str  # the paper dataset it stands in for
    classes: list  # list of dicts of factor values fixed by the class
    classnames: list
    splits: dict  # split name -> number of images
    space: dict = field(default_factory=dict)  # overrides of DEFAULT_SPACE
    template: str = "a photo of a {}."
    asks: tuple = ()  # the factors the label is about
    avoid_held_out: bool = False  # upstream corpora only

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def factor_space(self) -> dict:
        return {**DEFAULT_SPACE, **self.space}


def _classes(factor: str, values) -> list:
    return [{factor: v} for v in values]


def _vtab_tasks(sizes: dict) -> list:
    orient_shapes = ("arrow", "tee", "heart", "crescent")
    x_bins = 4
    return [
        MiniTask("shapes", "vtab", "natural", "CIFAR-100 / Caltech101", _classes("shape", SHAPES), list(SHAPES), sizes, asks=("shape",)),
        MiniTask("patterns", "vtab", "natural", "DTD", _classes("pattern", PATTERNS), list(PATTERNS), sizes, space={"size": ("large",)}, asks=("pattern",)),
        MiniTask("sensor-shapes", "vtab", "specialized", "EuroSAT / Patch Camelyon", _classes("shape", SHAPES), list(SHAPES), sizes, space={"style": ("sensor",)}, asks=("shape",)),
        MiniTask("sketch-shapes", "vtab", "specialized", "Resisc45", _classes("shape", SHAPES), list(SHAPES), sizes, space={"style": ("sketch",)}, asks=("shape",)),
        MiniTask(
            "count", "vtab", "structured", "Clevr/count", _classes("count", range(1, 7)), [COUNT_WORDS[c] for c in range(1, 7)], sizes,
            space={"size": ("medium",)}, asks=("count",),
        ),
        MiniTask(
            "location", "vtab", "structured", "dSprites/location", _classes("x_bin", range(x_bins)), [f"x-bin {b + 1} of {x_bins}" for b in range(x_bins)], sizes,
            space={"size": ("small",)}, asks=("position",),
        ),
        MiniTask(
            "orientation", "vtab", "structured", "dSprites/orientation", _classes("rotation_bin", range(8)), [f"{45 * b} degrees" for b in range(8)], sizes,
            space={"shape": orient_shapes, "size": ("large",)}, asks=("rotation",),
        ),
    ]


# Close shades of blue for the fine-grained colour task (named, RGB).
BLUE_SHADES = {
    "navy": (25, 35, 120),
    "cobalt": (30, 70, 190),
    "royal": (55, 90, 235),
    "azure": (40, 130, 230),
    "cerulean": (40, 160, 200),
    "sky": (110, 180, 235),
    "indigo": (70, 40, 170),
    "steel": (80, 110, 150),
}


def _fgvc_tasks(sizes: dict) -> list:
    return [
        MiniTask(
            "blue-shades", "fgvc", "fgvc", "Stanford Cars / NABirds", [{"rgb": v} for v in BLUE_SHADES.values()], [f"{k} blue" for k in BLUE_SHADES], sizes,
            space={"pattern": ("solid",), "size": ("large",)}, asks=("colour shade",),
        ),
        MiniTask(
            "star-variants", "fgvc", "fgvc", "CUB-200-2011", _classes("shape", STAR_VARIANTS), list(STAR_VARIANTS), sizes,
            space={"size": ("large",), "pattern": ("solid",)}, asks=("shape variant",),
        ),
    ]


# Robustness copies of the VP-mini test sets: same classes, another rendering style (and, where a
# style alone left zero-shot CLIP as accurate as on the source, a cluttered background and, for
# counts, smaller objects too: a shift must make the task harder for zero-shot CLIP, measured in
# both world seeds, docs/mini_world.md attempt 3). Name suffix = the style.
VP_SHIFTS = {
    "vp-shapes": ("sketch", {}),
    "vp-patterns": ("sensor", {"background": ("textured",)}),
    "vp-counts": ("cartoon", {"background": ("textured",), "size": ("small",)}),
    "vp-sensor": ("sketch", {}),
}


def _vp_tasks(sizes: dict) -> list:
    tasks = _vp_sources(sizes)
    for t in list(tasks):
        style, extra = VP_SHIFTS[t.name]
        space = {**t.space, **extra, "style": (style,)}
        template = t.template.replace("noisy photo", "photo")
        tasks.append(MiniTask(f"{t.name}-{style}", "vp", "style-shift", f"{t.analog} ({style} copy)", t.classes, t.classnames, {"test": sizes["test"]}, space=space, template=template, asks=t.asks))
    return tasks


def _vp_sources(sizes: dict) -> list:
    counts = range(1, 6)
    return [
        MiniTask("vp-shapes", "vp", "natural", "CIFAR-100", _classes("shape", SHAPES), list(SHAPES), sizes, template="this is a photo of a {}.", asks=("shape",)),
        MiniTask(
            "vp-patterns", "vp", "natural", "DTD", _classes("pattern", PATTERNS), [f"{p} object" for p in PATTERNS], sizes,
            space={"size": ("large",)}, template="this is a photo of a {}.", asks=("pattern",),
        ),
        MiniTask(
            "vp-counts", "vp", "structured", "CLEVR (count)", _classes("count", counts), [f"{COUNT_WORDS[c]} {'object' if c == 1 else 'objects'}" for c in counts], sizes,
            space={"size": ("medium",)}, template="this is a photo of {}.", asks=("count",),
        ),
        MiniTask(
            "vp-sensor", "vp", "specialized", "EuroSAT", _classes("shape", SHAPES), list(SHAPES), sizes,
            space={"style": ("sensor",)}, template="this is a noisy photo of a {}.", asks=("shape",),
        ),
    ]


def disjoint_halves(shapes, factor: str, values, k_shapes: int = 4, k_values: int = 2) -> tuple[list, list]:
    """Base and new classes of a CoOp-mini dataset: ``A × VA`` then ``B × VB``.

    The first shapes ``A`` and values ``VA`` (in vocabulary order) whose every combination is seen
    upstream, then the first disjoint ``B`` and ``VB`` likewise. Disjoint values are what lets
    CoOp's context overfit the base half (it only ever learns to separate the base values), and
    seen combinations keep zero-shot CLIP strong on the new half, as in the papers' regime.
    """
    held = HELD_OUT[factor]
    seen = lambda ss, vs: all((s, v) not in held for s in ss for v in vs)  # noqa: E731
    for A in itertools.combinations(shapes, k_shapes):
        for VA in itertools.combinations(values, k_values):
            if not seen(A, VA):
                continue
            for B in itertools.combinations([s for s in shapes if s not in A], k_shapes):
                for VB in itertools.combinations([v for v in values if v not in VA], k_values):
                    if seen(B, VB):
                        return [{"shape": s, factor: v} for s in A for v in VA], [{"shape": s, factor: v} for s in B for v in VB]
    raise ValueError(f"no disjoint base/new halves for {factor} over {shapes}")


def _coop_tasks(sizes: dict) -> list:
    """``sizes`` are per class: the train pool must hold the largest shot count."""
    tasks = []

    def add(name, analog, base, new, namer, template, asks, space=None, splits=sizes, group="base-to-new"):
        classes = base + new
        n = len(classes)
        tasks.append(
            MiniTask(name, "coop", group, analog, classes, [namer(c) for c in classes], {k: v * n for k, v in splits.items()}, space=space or {}, template=template, asks=asks)
        )

    b, n = disjoint_halves(SHAPES[:8], "colour", COLOUR_NAMES)
    add("objects", "ImageNet / Caltech101", b, n, lambda c: f"{c['colour']} {c['shape']}", "a photo of a {}.", ("colour", "shape"), space={"pattern": ("solid", "striped", "dotted")})
    b, n = disjoint_halves(SHAPES, "pattern", NON_SOLID)
    add("textures", "DTD", b, n, lambda c: f"{c['pattern']} {c['shape']}", "a photo of a {}.", ("pattern", "shape"), space={"size": ("large",)})
    b, n = disjoint_halves(SHAPES, "count", (2, 3, 4, 5))
    add("counts", "FGVCAircraft (hard)", b, n, lambda c: f"{COUNT_WORDS[c['count']]} {plural(c['shape'])}", "a photo of {}.", ("count", "shape"), space={"size": ("medium",)})
    b, n = disjoint_halves(SHAPES, "background", BACKGROUNDS)
    add("scenes", "SUN397", b, n, lambda c: f"{c['shape']} on a {c['background']} background", "a photo of a {}.", ("background", "shape"))
    b, n = disjoint_halves(SHAPES[4:], "colour", COLOUR_NAMES)
    add("sensor", "EuroSAT", b, n, lambda c: f"{c['colour']} {c['shape']}", "a noisy photo of a {}.", ("colour", "shape"), space={"style": ("sensor",), "pattern": ("solid",)})

    # Domain generalisation: test-only copies of `objects` in shifted styles (ImageNet-V2/-S/-A/-R).
    objects = tasks[0]
    test_only = {"test": sizes["test"] * objects.num_classes}
    # Each as the real copy differs from ImageNet: -V2 a re-collection with busier backgrounds,
    # smaller and more rotated objects; -Sketch mostly grey drawings (a style CLIP never saw
    # upstream); -A adversarially cluttered; -R renditions (cartoons).
    shifts = {
        "objects-v2": ("ImageNet-V2", {"background": ("noisy", "textured"), "size": ("small", "medium"), "rotation": (-45.0, 45.0)}),
        "objects-sketch": ("ImageNet-Sketch", {"style": ("pencil",)}),
        "objects-a": ("ImageNet-A", {"background": ("textured",), "size": ("small",), "rotation": (-90.0, 90.0)}),
        "objects-r": ("ImageNet-R", {"style": ("cartoon",)}),
    }
    for name, (analog, space) in shifts.items():
        tasks.append(MiniTask(name, "coop", "domain-shift", analog, objects.classes, objects.classnames, test_only, space={**objects.space, **space}, template=objects.template, asks=objects.asks))
    return tasks


def _probe_tasks(test: dict) -> list:
    """Zero-shot probes of the tiny CLIP: one factor at a time, everything else random."""
    counts = range(1, 6)
    return [
        MiniTask("probe-shape", "probe", "probe", "-", _classes("shape", SHAPES), list(SHAPES), test, template="a photo of a {}.", asks=("shape",)),
        MiniTask("probe-colour", "probe", "probe", "-", _classes("colour", COLOUR_NAMES), list(COLOUR_NAMES), test, template="a photo of a {} object.", asks=("colour",)),
        MiniTask("probe-pattern", "probe", "probe", "-", _classes("pattern", PATTERNS), list(PATTERNS), test, space={"size": ("large",)}, template="a photo of a {} object.", asks=("pattern",)),
        MiniTask(
            "probe-count", "probe", "probe", "-", _classes("count", counts), [f"{COUNT_WORDS[c]} {'object' if c == 1 else 'objects'}" for c in counts], test,
            space={"size": ("medium",)}, template="a photo of {}.", asks=("count",),
        ),
        MiniTask(
            "probe-background", "probe", "probe", "-", _classes("background", BACKGROUNDS), list(BACKGROUNDS), test,
            template="a photo of an object on a {} background.", asks=("background",),
        ),
    ]


def _upstream_tasks(sizes: dict) -> list:
    vit_classes = [{"shape": s, "colour": c} for s in SHAPES for c in COLOUR_NAMES if (s, c) not in HELD_OUT["colour"]]
    vit = MiniTask(
        "vit", "upstream", "upstream", "ImageNet-21k", vit_classes, [f"{c['colour']} {c['shape']}" for c in vit_classes],
        {"train": sizes["vit_train"], "val": sizes["vit_val"]},
        space={"count": (1, 1, 1, 2, 3, 4), "size": tuple(SIZES), "style": ("flat", "flat", "shaded", "cartoon"), "rotation": (-25.0, 25.0)},
        asks=("shape", "colour"), avoid_held_out=True,
    )
    g = sizes["group_size"]
    clip = MiniTask(
        "clip", "upstream", "upstream", "CLIP web image-text pairs", [{}], ["caption"], {"train": sizes["clip_groups"] * g, "val": sizes["clip_val_groups"] * g},
        space={"count": UPSTREAM_COUNTS, "size": tuple(SIZES), "style": STYLES, "rotation": (-25.0, 25.0)},
        avoid_held_out=True,
    )
    return [vit, clip]


SUITES = ("upstream", "vtab", "fgvc", "vp", "coop", "probe")

DEFAULT_SIZES = {
    "upstream": {"vit_train": 32000, "vit_val": 2000, "clip_groups": 8000, "clip_val_groups": 250, "group_size": 4},
    "vtab": {"train": 800, "val": 200, "test": 1000},
    "fgvc": {"train": 800, "val": 200, "test": 1000},
    "vp": {"train": 1000, "val": 250, "test": 500},
    "coop": {"train": 24, "val": 8, "test": 25},
    "probe": {"test": 600},
}


def resolve_sizes(sizes: dict | None = None) -> dict:
    """DEFAULT_SIZES updated with ``sizes`` (params.yaml ``data.sizes``), checked for unknown keys."""
    out = {k: dict(v) for k, v in DEFAULT_SIZES.items()}
    for suite, d in (sizes or {}).items():
        if suite not in out:
            raise unknown_name("data.sizes suite", suite, out)
        for k, v in d.items():
            if k not in out[suite]:
                raise unknown_name(f"data.sizes.{suite} key", k, out[suite])
            if int(v) < 1:
                raise ConfigError(f"data.sizes.{suite}.{k} must be >= 1, got {v}")
            out[suite][k] = int(v)
    return out


def all_tasks(sizes: dict | None = None) -> dict:
    """Every mini dataset by ``suite/name``."""
    s = resolve_sizes(sizes)
    tasks = _upstream_tasks(s["upstream"]) + _vtab_tasks(s["vtab"]) + _fgvc_tasks(s["fgvc"]) + _vp_tasks(s["vp"]) + _coop_tasks(s["coop"]) + _probe_tasks(s["probe"])
    return {f"{t.suite}/{t.name}": t for t in tasks}


def get_task(key: str, sizes: dict | None = None) -> MiniTask:
    tasks = all_tasks(sizes)
    if key not in tasks:
        raise unknown_name("mini dataset", key, tasks)
    return tasks[key]


# --- sampling scenes ---------------------------------------------------------------------------


def _image_rng(seed: int, task: str, split: str, index: int) -> np.random.Generator:
    """The generator of one image: a pure function of (seed, dataset, split, index)."""
    return np.random.default_rng([seed, zlib.crc32(task.encode()), zlib.crc32(split.encode()), index])


def _choice(rng, values):
    return values[int(rng.integers(len(values)))]


def sample_scene(task: MiniTask, label: int, rng: np.random.Generator, image_size: int = 32, fixed: dict | None = None) -> Scene:
    """A random scene of class ``label``: class factors fixed, the rest drawn from the task's space."""
    space = task.factor_space()
    cls = {**task.classes[label], **(fixed or {})}
    for _ in range(1000):
        pick = lambda f: cls[f] if f in cls else _choice(rng, space[f])  # noqa: E731
        scene = Scene(
            shape=pick("shape"), colour=pick("colour"), pattern=pick("pattern"), size=pick("size"), count=int(pick("count")),
            background=pick("background"), style=pick("style"), rgb=cls.get("rgb"),
        )
        if task.avoid_held_out and is_held_out(scene):
            continue
        lo, hi = space["rotation"]
        scene.rotation = float(rng.uniform(lo, hi))
        x_range = None
        if "rotation_bin" in cls:
            scene.rotation = float(45.0 * cls["rotation_bin"] + rng.uniform(-12.0, 12.0))
        if "x_bin" in cls:
            nb = len(task.classes)
            x_range = (cls["x_bin"] / nb, (cls["x_bin"] + 1) / nb)
        if "rgb" in cls:
            scene.rgb = tuple(float(np.clip(c + rng.uniform(-6, 6), 0, 255)) for c in cls["rgb"])
            scene.colour = "blue"
        return layout(scene, rng, image_size, x_range=x_range)
    raise RuntimeError(f"{task.name}: could not sample a scene for class {label} outside the held-out set")


# Caption detail for the CLIP corpus: how often each factor is mentioned.
MENTION = {"shape": 0.75, "colour": 0.75, "pattern": 0.7, "size": 0.35, "count": 0.8, "background": 0.35, "style": 0.6}
CONTRAST = {"shape": 0.3, "colour": 0.05, "pattern": 0.25, "count": 0.25, "background": 0.15}
# Share of groups whose captions name only the contrast factor ("a photo of three objects."): terse
# web captions, which tie each factor word to the image on its own rather than inside a long phrase.
TERSE = 0.25
# Groups contrasting a fine factor are drawn where that factor is visible at 32 px: patterns on
# large glyphs (a sketch has no fill), counts of small or medium glyphs (five large ones overlap).
GROUP_SPACE = {"pattern": {"size": ("large",), "style": ("flat", "shaded", "sensor", "cartoon")}, "count": {"size": ("small", "medium")}}
# Factor labels stored beside the CLIP corpus (for the auxiliary heads of its pretraining).
FACTOR_LABELS = ("shape", "colour", "pattern", "count", "background")


def factor_label_sizes() -> dict:
    return {"shape": len(SHAPES), "colour": len(COLOUR_NAMES), "pattern": len(PATTERNS), "count": max(UPSTREAM_COUNTS), "background": len(BACKGROUNDS)}


def factor_labels(scene: Scene) -> list:
    """Indices of a scene's factors in FACTOR_LABELS order (count is 0-based)."""
    return [SHAPES.index(scene.shape), COLOUR_NAMES.index(scene.colour), PATTERNS.index(scene.pattern), scene.count - 1, BACKGROUNDS.index(scene.background)]


def _clip_group(task: MiniTask, group: int, seed: int, split: str, image_size: int, group_size: int):
    """``group_size`` images that differ in one factor, with captions that name it.

    Such groups are hard negatives for the contrastive loss: within a group only the contrast
    factor (most often the shape, the hardest factor to learn) tells the captions apart. Where
    the held-out set leaves too few values of that factor, the group is completed with shapes.
    """
    rng = _image_rng(seed, f"{task.suite}/{task.name}", split, group)
    space = task.factor_space()
    factor = list(CONTRAST)[int(rng.choice(len(CONTRAST), p=list(CONTRAST.values())))]
    keep = {f: bool(rng.random() < p) for f, p in MENTION.items()}
    keep[factor] = True
    if rng.random() < TERSE:
        keep = {f: f == factor for f in MENTION}
    keep["say_one"] = factor == "count"
    prefix = "this is " if rng.random() < 0.2 else ""
    base = sample_scene(task, 0, rng, image_size)
    for f, values in GROUP_SPACE.get(factor, {}).items():
        if getattr(base, f) not in values:
            base = _replace(base, f, _choice(rng, values))
    allowed = [v for v in rng.permutation(list(space[factor])).tolist() if not is_held_out(_replace(base, factor, v))]
    scenes = [_replace(base, factor, v) for v in allowed[:group_size]]
    if len(scenes) < group_size:
        keep["shape"] = True
        shapes = [s for s in rng.permutation(list(space["shape"])).tolist() if s != base.shape and not is_held_out(_replace(base, "shape", s))]
        scenes += [_replace(base, "shape", s) for s in shapes[: group_size - len(scenes)]]
    if not (keep["shape"] or keep["colour"] or keep["pattern"] or keep["count"]):
        keep["shape"] = True
    images, captions, factors = [], [], []
    for scene in scenes:
        layout(scene, rng, image_size)
        images.append(render(scene, rng, image_size))
        captions.append(prefix + caption(scene, keep))
        factors.append(factor_labels(scene))
    return images, captions, factors


def _replace(scene: Scene, factor: str, value) -> Scene:
    s = Scene(**{**scene.to_dict(), factor: int(value) if factor == "count" else value})
    return s


# --- rendering whole splits ----------------------------------------------------------------------


def _render_chunk(args):
    key, split, start, stop, seed, image_size, sizes = args
    task = get_task(key, sizes)
    images, labels, captions, factors = [], [], [], []
    if task.suite == "upstream" and task.name == "clip":
        g = resolve_sizes(sizes)["upstream"]["group_size"]
        for group in range(start, stop):
            ims, caps, facs = _clip_group(task, group, seed, split, image_size, g)
            images += ims
            captions += caps
            factors += facs
            labels += [group] * g
    else:
        for i in range(start, stop):
            rng = _image_rng(seed, key, split, i)
            label = i % task.num_classes
            scene = sample_scene(task, label, rng, image_size)
            images.append(render(scene, rng, image_size))
            labels.append(label)
            if task.suite == "upstream":  # factor labels for the auxiliary heads of pretraining
                factors.append(factor_labels(scene))
    return np.stack(images), np.asarray(labels, np.int64), captions, np.asarray(factors, np.int64).reshape(-1, len(FACTOR_LABELS))


def render_split(key: str, split: str, seed: int, image_size: int = 32, workers: int = 1, progress=None, sizes: dict | None = None) -> dict:
    """Render one split of a dataset: ``{'images', 'labels'[, 'captions']}`` (labels balanced).

    For the CLIP corpus the labels are group ids and ``captions`` hold the texts.
    """
    task = get_task(key, sizes)
    n = task.splits[split]
    is_clip = task.suite == "upstream" and task.name == "clip"
    group_size = resolve_sizes(sizes)["upstream"]["group_size"]
    units = n // group_size if is_clip else n
    chunk = max(1, min(2000, math.ceil(units / max(1, workers * 4))))
    jobs = [(key, split, s, min(units, s + chunk), seed, image_size, sizes) for s in range(0, units, chunk)]
    if workers > 1 and len(jobs) > 1:
        with _pool_context().Pool(workers) as pool:
            parts = []
            for part in pool.imap(_render_chunk, jobs):
                parts.append(part)
                if progress:
                    progress(len(part[1]))
    else:
        parts = []
        for job in jobs:
            parts.append(_render_chunk(job))
            if progress:
                progress(len(parts[-1][1]))
    out = {"images": np.concatenate([p[0] for p in parts]), "labels": np.concatenate([p[1] for p in parts])}
    if is_clip:
        out["captions"] = [c for p in parts for c in p[2]]
    if task.suite == "upstream":
        out["factors"] = np.concatenate([p[3] for p in parts])
    return out


def base_new_split(num_classes: int) -> tuple[list, list]:
    """CoOp's rule: sort the labels; base = first ceil(n/2), new = the rest."""
    m = math.ceil(num_classes / 2)
    return list(range(m)), list(range(m, num_classes))


def validate_image_size(image_size: int, patch_sizes=(8,)) -> None:
    for p in patch_sizes:
        if image_size % p:
            raise ConfigError(f"data.image_size={image_size} is not divisible by the backbone patch size {p}; use a multiple of {p} (e.g. 32)")
    if image_size < 16:
        raise ConfigError(f"data.image_size={image_size} is too small to draw the glyphs; use at least 16 (default 32)")


def _pool_context():
    """fork where available (the renderer needs only numpy/PIL, and fork skips re-imports)."""
    import multiprocessing

    return get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else get_context("spawn")
