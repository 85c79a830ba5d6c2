"""The paper world (``profile: paper``): real checkpoints and real datasets.

:class:`PaperWorld` is what :mod:`visprompt.experiments` receives in the paper profile; the
functions below are its parts. Both worlds feed the same training and evaluation code.

* **Backbones**: ``backbones[<paper>.backbone]`` of ``profiles/paper/params.yaml``, loaded by
  :mod:`visprompt.backbones.checkpoints` through timm's and open_clip's own loaders (hub weights,
  or a local file in the released layout).
* **Data**: a task name of the paper params (``vtab/cifar100``, ``coop/imagenet``) is read by
  :func:`visprompt.data.real.load` from ``data.root`` once the data stage has prepared it (its
  manifest exists). Items go through ``transforms.<suite>``: the ``train`` rule for the splits a
  model trains on (with augmentation only where the paper's recipe has it), the ``test`` rule for
  val and test; both end with the backbone's mean/std. A split with a deterministic rule is a
  :class:`DecodedSplit`: its images are decoded once into a cache under ``data.root``
  (``data.decode_cache: false`` turns that off).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..backbones import checkpoints as ck
from ..errors import ConfigError, unknown_name
from .base import World

SUITE_PAPER = {"vtab": "vpt", "fgvc": "vpt", "vp": "vp", "coop": "rpo"}  # which paper's backbone reads a suite
PAPER_ARCHS = {"vpt": (ck.VIT_IN21K,), "vp": ("ViT-B-32", "ViT-B-16"), "rpo": ("ViT-B-16",)}
DEFAULT_TEMPLATE = "a photo of a {}."  # CoOp's template for datasets without their own [rpo.md]
VP_TEMPLATE = "This is a photo of a {}"  # the official visual prompting template [vp.md]
DATA_STAGE = "run the paper data stage first: `cd profiles/paper && dvc repro data` (or `make paper` for the whole pipeline)"

# Transform rules (params ``transforms.<suite>.{train,test}``). Sizes scale with the backbone's input
# size S: at S = 224, "resize_*" resize to 256 first, as VPT's FGVC recipe does.
TRANSFORMS = {
    "resize": "Resize((S, S)) (VTAB: straight to the input size, no augmentation)",
    "resize_centercrop": "Resize(S*256/224) -> CenterCrop(S) (VPT's FGVC test transform)",
    "resize_randomcrop_flip": "Resize(S*256/224) -> RandomCrop(S) -> RandomHorizontalFlip (VPT's FGVC train transform)",
    "clip": "Resize(S) short side -> CenterCrop(S) (CLIP's preprocess)",
    "random_resized_crop_flip": "RandomResizedCrop(S, scale=(0.08, 1)) -> RandomHorizontalFlip (CoOp/RPO train transform)",
}
AUGMENTING = frozenset({"resize_randomcrop_flip", "random_resized_crop_flip"})
TRAIN_SPLITS = ("train", "trainval")
RUNNER_SPLITS = {"train": "train", "val": "val", "test": "test", "train+val": "trainval", "trainval": "trainval"}


@dataclass(frozen=True)
class BackboneInfo:
    """What the runner needs to know about a loaded backbone (``.mean``/``.std`` normalise its inputs)."""

    arch: str
    weights: str
    image_size: int
    mean: tuple
    std: tuple
    interpolation: str


def manifest_path(root, name: str) -> Path:
    """Where the paper data stage writes dataset ``name``'s manifest under ``root``."""
    return Path(root) / "manifests" / f"{name}.json"


def coop_name(name: str) -> str:
    """``imagenet`` -> ``coop/imagenet``: rpo.* and splits.* name CoOp datasets as the mini runner does (bare)."""
    name = str(name)
    return name if "/" in name else f"coop/{name}"


# --- backbones ------------------------------------------------------------------------------------


def backbone_entry(params: dict, paper: str) -> dict:
    """``backbones[<paper>.backbone]``: arch, pretrained (tag, True or a file) and input size."""
    name = (params.get(paper) or {}).get("backbone")
    bbs = params.get("backbones") or {}
    if not isinstance(name, str) or not isinstance(bbs.get(name), dict):
        raise ConfigError(f"{paper}.backbone must name an entry of backbones ({', '.join(bbs)}), got {name!r}")
    entry = bbs[name]
    if "arch" not in entry:
        raise ConfigError(f"backbones.{name}.arch is missing (the papers use {' / '.join(PAPER_ARCHS[paper])})")
    if entry["arch"] not in PAPER_ARCHS[paper]:
        warnings.warn(f"backbones.{name}.arch={entry['arch']!r} is not the {paper} paper's ({' / '.join(PAPER_ARCHS[paper])}); "
                      "numbers from it are not a replication", stacklevel=3)
    return entry


def _input_size(params: dict, paper: str) -> tuple[int, str]:
    entry = backbone_entry(params, paper)
    if paper == "vpt":
        return int(entry.get("img_size", 224)), "bilinear"  # torchvision's default, as VPT's transforms
    return int(entry.get("image_size", 224)), "bicubic"  # CLIP's preprocess


def load_vit(params: dict):
    """VPT's frozen ViT (head removed) and its :class:`BackboneInfo` (ImageNet mean/std)."""
    entry = backbone_entry(params, "vpt")
    size, interp = _input_size(params, "vpt")
    model, info = ck.load_timm_vit(entry["arch"], entry.get("pretrained", True), img_size=size)
    got = {"patch_size": model.patch_embed.patch_size[0], "embed_dim": model.embed_dim, "depth": len(model.blocks), "num_heads": model.blocks[0].attn.num_heads}
    wrong = {k: (entry[k], v) for k, v in got.items() if k in entry and int(entry[k]) != int(v)}
    if wrong:
        raise ConfigError(f"backbones.{params['vpt']['backbone']}: {entry['arch']} has " + ", ".join(f"{k}={v}" for k, (_, v) in wrong.items())
                          + ", params say " + ", ".join(f"{k}={p}" for k, (p, _) in wrong.items()) + "; fix the params")
    mean, std = tuple(entry.get("mean", info["mean"])), tuple(entry.get("std", info["std"]))
    return model, BackboneInfo(entry["arch"], info["weights"], info["image_size"], mean, std, interp)


def load_clip(params: dict, paper: str = "rpo"):
    """The frozen CLIP of ``paper`` (``vp``: ViT-B/32, ``rpo``: ViT-B/16), its tokenizer and :class:`BackboneInfo`."""
    if paper not in ("vp", "rpo"):
        raise ConfigError(f"load_clip: paper must be 'vp' or 'rpo', got {paper!r}")
    entry = backbone_entry(params, paper)
    size, interp = _input_size(params, paper)
    model, tokenizer, pp = ck.load_open_clip(entry["arch"], entry.get("pretrained", "openai"), image_size=size)
    info = BackboneInfo(entry["arch"], pp["weights"], int(pp["image_size"]), tuple(pp["mean"]), tuple(pp["std"]), interp)
    return model.eval(), tokenizer, info


def backbone_id(params: dict, paper: str) -> str:
    """Identity of a paper's backbone for cell fingerprints: its params entry, plus size/mtime of a local weights file."""
    entry = backbone_entry(params, paper)
    ident = json.dumps(entry, sort_keys=True, default=str)
    pre = entry.get("pretrained")
    if isinstance(pre, str) and Path(pre).expanduser().is_file():
        st = Path(pre).expanduser().stat()
        ident += f"|{st.st_size}-{int(st.st_mtime)}"
    return ident


# --- datasets -------------------------------------------------------------------------------------


def data_root(params: dict) -> Path:
    return Path((params.get("data") or {}).get("root", "data"))


def check_prepared(params: dict, key: str) -> None:
    """Fail in milliseconds, naming the fix, when the data stage has not prepared ``key``."""
    from ..data import real

    if key not in real.REAL_DATASETS:
        raise unknown_name("paper dataset", key, real.REAL_DATASETS)
    path = manifest_path(data_root(params), key)
    if not path.is_file():
        raise ConfigError(f"dataset {key} is not prepared (no {path.resolve()}); {DATA_STAGE}")


def build_transform(rule: str, size: int, mean, std, interpolation: str = "bilinear"):
    """PIL image -> normalised float tensor ``(3, size, size)`` by one of :data:`TRANSFORMS`."""
    from torchvision import transforms as T

    if rule not in TRANSFORMS:
        raise unknown_name("transform rule", rule, TRANSFORMS)
    mode = T.InterpolationMode(interpolation)
    big = round(size * 256 / 224)
    steps = {
        "resize": lambda: [T.Resize((size, size), interpolation=mode)],
        "resize_centercrop": lambda: [T.Resize(big, interpolation=mode), T.CenterCrop(size)],
        "resize_randomcrop_flip": lambda: [T.Resize(big, interpolation=mode), T.RandomCrop(size), T.RandomHorizontalFlip()],
        "clip": lambda: [T.Resize(size, interpolation=mode), T.CenterCrop(size)],
        "random_resized_crop_flip": lambda: [T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=mode), T.RandomHorizontalFlip()],
    }[rule]()
    return T.Compose([*steps, T.ToTensor(), T.Normalize(tuple(mean), tuple(std))])


def transform_rule(params: dict, key: str, split: str) -> str:
    suite = key.split("/")[0]
    t = (params.get("transforms") or {}).get(suite)
    if not isinstance(t, dict) or "train" not in t or "test" not in t:
        raise ConfigError(f"transforms.{suite} must be {{train: <rule>, test: <rule>}} in the paper params; rules: {', '.join(TRANSFORMS)}")
    return t["train" if split in TRAIN_SPLITS else "test"]


class PaperSplit(Dataset):
    """One split of a real dataset with its transform: items ``(normalised tensor, int label)``.

    ``labels`` (int64), ``classnames`` and ``subset`` as the mini datasets have them, so the runner
    restricts and relabels both the same way. ``augmented`` tells the training loop not to cache
    frozen features (each epoch must see new crops); ``num_workers`` is how many DataLoader
    processes decode its images.
    """

    def __init__(self, data, transform, augmented: bool = False, num_workers: int = 0):
        self.data, self.transform = data, transform
        self.augmented, self.num_workers = bool(augmented), int(num_workers)

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels

    @property
    def classnames(self) -> list:
        return self.data.classnames

    @property
    def name(self) -> str:
        return self.data.name

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        img, label = self.data[i]
        return self.transform(img), label

    def subset(self, indices, labels=None, classnames=None) -> "PaperSplit":
        """A view on ``indices`` (optionally relabelled: few-shot samples, base/new halves)."""
        return self._view(self.data.subset(indices, labels=labels, classnames=classnames))

    def _view(self, data) -> "PaperSplit":
        return PaperSplit(data, self.transform, self.augmented, self.num_workers)


class DecodedSplit(PaperSplit):
    """A :class:`PaperSplit` whose transform is deterministic, so its images are decoded once.

    :meth:`tensors` hands the training loop ``(images, labels)``: images read from a uint8 decode
    cache under the data root (:mod:`visprompt.data.decode_cache`, built on first use with
    ``num_workers`` processes) and normalised per batch, bit-identical to ``self[i]``. A subset
    (few-shot sample, base/new half) has its own item list and so its own cache file.
    """

    def __init__(self, data, transform, num_workers: int, cache):
        super().__init__(data, transform, False, num_workers)
        self.cache = cache

    def _view(self, data) -> "DecodedSplit":
        return DecodedSplit(data, self.transform, self.num_workers, self.cache)

    def tensors(self):
        from ..data.decode_cache import open_cache

        images = open_cache(self.data, self.transform, self.cache, self.num_workers)
        return images, torch.from_numpy(np.array(self.labels, dtype=np.int64))


_LOADED: dict = {}  # (root, key, split, seed) -> RealDataset: the file lists are read once per process


def _real(root: Path, key: str, split: str, seed: int):
    from ..data import real

    k = (str(root.resolve()), key, split, seed)
    if k not in _LOADED:
        _LOADED[k] = real.load(key, split, root, transform=None, seed=seed)
    return _LOADED[k]


def load_data(params: dict, key: str, split: str, mean, std) -> PaperSplit:
    """Split ``split`` (train, val, test, or train+val) of task ``key``, transformed for the backbone that reads its suite."""
    suite = key.split("/")[0]
    if suite not in SUITE_PAPER:
        raise ConfigError(f"{key!r}: paper task names start with one of {', '.join(f'{s}/' for s in SUITE_PAPER)}")
    if split not in RUNNER_SPLITS:
        raise ConfigError(f"{key}: split must be one of {', '.join(RUNNER_SPLITS)}, got {split!r}")
    check_prepared(params, key)
    split = RUNNER_SPLITS[split]
    seed = int((params.get("data") or {}).get("split_seed", 0))
    rule = transform_rule(params, key, split)
    size, interp = _input_size(params, SUITE_PAPER[suite])
    from ..data.decode_cache import CacheSpec

    d = params.get("data") or {}
    workers = int(d.get("workers", 0) or 0)
    data, transform = _real(data_root(params), key, split, seed), build_transform(rule, size, mean, std, interp)
    if rule in AUGMENTING or not d.get("decode_cache", True):
        return PaperSplit(data, transform, rule in AUGMENTING, workers)
    return DecodedSplit(data, transform, workers, CacheSpec(data_root(params), key, rule, size, interp, _source_record(params, key)))


def _source_record(params: dict, key: str) -> str:
    """The manifest's record of the task's source files (names, sizes, checksums): part of its decode caches' key."""
    from ..utils import read_json

    return json.dumps(read_json(manifest_path(data_root(params), key)).get("files", []), sort_keys=True, default=str)


def dataset_template(params: dict, key: str) -> str:
    """The zero-shot prompt template of a task: CoOp's per dataset (``rpo.templates``), visual
    prompting's one template (``vp.template``), else "a photo of a {}."."""
    suite, _, name = key.partition("/")
    if suite == "coop":
        t = (params.get("rpo") or {}).get("templates") or {}
        return t.get(key) or t.get(name) or t.get("default") or DEFAULT_TEMPLATE
    if suite == "vp":
        return (params.get("vp") or {}).get("template") or VP_TEMPLATE
    return DEFAULT_TEMPLATE


# --- protocol facts -------------------------------------------------------------------------------


def final_split(params: dict, paper: str, key: str) -> str:
    """The split every seed's final run trains on: VPT per ``vpt.selection.<suite>.final_train``
    (VTAB: train800val200; FGVC: train), the others their train split."""
    if paper != "vpt":
        return "train"
    suite = key.split("/")[0]
    final = (((params.get("vpt") or {}).get("selection") or {}).get(suite) or {}).get("final_train", "trainval")
    if final not in ("train", "trainval"):
        raise ConfigError(f"vpt.selection.{suite}.final_train must be 'train' or 'trainval', got {final!r}")
    return "train+val" if final == "trainval" else "train"


def base_new_classes(params: dict, key: str) -> tuple[list, list]:
    """CoOp's base/new halves of a dataset's classes (sorted labels; base = first ceil(n/2))."""
    from ..data.coop_splits import base_new_classes as halves
    from ..utils import read_json

    check_prepared(params, key)
    n = int(read_json(manifest_path(data_root(params), key))["num_classes"])
    return halves(range(n))


def rpo_datasets(params: dict, protocols) -> tuple[list, list]:
    """(few-shot source datasets, test-only datasets) that RPO's ``protocols`` read, as ``coop/<name>`` keys."""

    p = params.get("rpo") or {}
    sources, targets = [], []
    if "base2new" in protocols:
        sources += [coop_name(d) for d in p["base2new"]["datasets"]]
    if "dg" in protocols:
        sources.append(coop_name(p["dg"]["source"]))
        targets += [coop_name(d) for d in p["dg"]["targets"]]
    if "fewshot" in protocols:
        sources += [coop_name(d) for d in p["fewshot"]["datasets"]]
    return list(dict.fromkeys(sources)), list(dict.fromkeys(targets))


ALLOW_CPU = "VISPROMPT_ALLOW_CPU"


def require_accelerator(params: dict | None = None) -> None:
    """The paper profile trains ViT-B/16 and CLIP at the papers' settings: weeks on a CPU. A wrong
    GPU id or a driver too old for the installed CUDA wheels used to fall back to the CPU without
    a word; now it stops here, before any work, unless the params say ``device: cpu`` (or
    ``VISPROMPT_ALLOW_CPU=1`` is set: a smoke test)."""
    if torch.cuda.is_available() or os.environ.get(ALLOW_CPU) == "1" or (params or {}).get("device") == "cpu":
        return
    raise ConfigError(
        f"the paper profile needs a CUDA GPU and torch sees none (torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none: a CPU-only wheel'}; "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Check `nvidia-smi`, that the driver supports that CUDA version "
        f"and the GPU ids given to the launcher; to train on the CPU anyway (e.g. a smoke test on fake data) put `device: cpu` in the params "
        f"(or set {ALLOW_CPU}=1)")


def check_method(params: dict, s) -> None:
    """Everything a paper-profile train stage reads exists, checked before any model or image is loaded."""
    from ..data import real
    from ..data.splits import split_file

    require_accelerator(params)
    paper = s.paper
    backbone_entry(params, paper)
    if paper in ("vpt", "vp"):
        allowed = set(real.VTAB_TASKS) | set(real.FGVC_TASKS) if paper == "vpt" else set(real.VP_TASKS)
        if not s.tasks:
            raise ConfigError(f"{paper}.tasks is empty; list tasks such as {sorted(allowed)[0]}")
        for key in s.tasks:
            if key not in allowed:
                raise unknown_name(f"{s.tasks_key} entry", key, allowed)
        for key in s.tasks:
            check_prepared(params, key)
            transform_rule(params, key, "train")
        return
    sources, targets = rpo_datasets(params, s.protocols)
    for key in sources + targets:
        check_prepared(params, key)
        transform_rule(params, key, "train")
    # that splits.datasets lists every source, and splits.shots/seeds what they need: schema.check_layout
    needed = [(d, k, seed) for _, d, k, seed in s.rpo_jobs()]
    root = s.splits_root
    missing = [str(split_file(root, d, k, seed)) for d, k, seed in needed if not split_file(root, d, k, seed).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} few-shot sample file(s) missing, e.g. {missing[0]}; run the paper splits stage first: "
                          "`make paper`, or `cd profiles/paper && dvc repro splits`")


class PaperWorld(World):
    """The real datasets and the papers' checkpoints (``profiles/paper/params.yaml``)."""

    name = "paper"
    code_modules = ("visprompt.worlds.paper",)

    @property
    def device(self):
        """``device`` of the params (``cuda`` unless set); the CPU only when they say so or when
        the smoke-test escape hatch (``VISPROMPT_ALLOW_CPU=1``) is set and no GPU is visible."""
        require_accelerator(self.params)
        wanted = self.params.get("device") or "cuda"
        if wanted == "cuda" and not torch.cuda.is_available() and os.environ.get(ALLOW_CPU) == "1":
            wanted = "cpu"  # the smoke-test escape hatch (require_accelerator let it through)
        return torch.device(wanted)

    def load_vit(self):
        return load_vit(self.params)

    def load_clip(self, paper: str):
        return load_clip(self.params, paper)

    def load_data(self, key: str, split: str, mean, std):
        return load_data(self.params, key, split, mean, std)

    def dataset_template(self, key: str) -> str:
        return dataset_template(self.params, key)

    def final_split(self, paper: str, key: str) -> str:
        return final_split(self.params, paper, key)

    def base_new_classes(self, key: str) -> tuple[list, list]:
        return base_new_classes(self.params, key)

    def shifted_tests(self, paper: str) -> dict:
        return {}  # the real datasets have no style-shifted copies

    def backbone_id(self, paper: str) -> str:
        return backbone_id(self.params, paper)

    def check_method(self, s) -> None:
        if s.subsample is not None:
            raise ConfigError(f"{s.paper}.subsample is for the mini profile (its VTAB-mini/VP-mini splits); remove it from the paper params")
        check_method(self.params, s)
