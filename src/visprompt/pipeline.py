"""The foundation stages of ``dvc.yaml``: ``data`` → ``splits`` → ``backbones``.

Each function takes the whole params dict, checks what it needs first (so a bad key fails in
seconds, before any rendering or training), then does the work with progress bars, writing every
file atomically.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import section
from .data.mini import HELD_OUT, SUITES, all_tasks, base_new_split, factor_label_sizes, render_split, resolve_sizes, validate_image_size
from .data.splits import check_shots, make_split, write_split
from .data.store import is_complete, load_arrays, load_manifest, write_dataset
from .errors import ConfigError, unknown_name
from .utils import bars_off, environment_info, save_torch, set_threads, write_json

PROFILES = ("mini", "paper")


# --- data --------------------------------------------------------------------------------------


def _data_settings(params: dict) -> dict:
    d = section(params, "data")
    profile = d.get("profile", "mini")
    if profile not in PROFILES:
        raise unknown_name("data.profile", profile, PROFILES)
    if profile != "mini":
        raise ConfigError("data.profile is 'paper': run the paper profile with `make paper` (see docs/paper_profile.md)")
    bb = section(params, "backbones")
    patches = [bb.get("vit", {}).get("patch_size", 8), bb.get("clip", {}).get("patch_size", 8)]
    validate_image_size(int(d.get("image_size", 32)), patches)
    for key, cfg in (("vit", bb.get("vit", {})), ("clip", bb.get("clip", {}))):
        size = cfg.get("img_size", cfg.get("image_size"))
        if size is not None and int(size) != int(d.get("image_size", 32)):
            raise ConfigError(f"backbones.{key} image size {size} differs from data.image_size {d.get('image_size', 32)}; make them equal")
    suites = d.get("suites", list(SUITES))
    for s in suites:
        if s not in SUITES:
            raise unknown_name("data.suites entry", s, SUITES)
    return {
        "root": d.get("root", "data/mini"),
        "image_size": int(d.get("image_size", 32)),
        "seed": int(d.get("seed", 0)),
        "workers": int(d.get("workers", 2)),
        "suites": suites,
        "sizes": resolve_sizes(d.get("sizes")),
    }


def _world_code_hash() -> str:
    """Hash of the renderer and the task definitions: a dataset rendered by other code is stale."""
    import hashlib

    from .data import mini, render

    h = hashlib.sha256()
    for module in (render, mini):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def _manifest(task, sizes, cfg) -> dict:
    m = {
        "name": task.name,
        "key": f"{task.suite}/{task.name}",
        "suite": task.suite,
        "group": task.group,
        "analog": task.analog,
        "classnames": task.classnames,
        "classes": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items()} for c in task.classes],
        "template": task.template,
        "asks": list(task.asks),
        "factor_space": {k: list(v) for k, v in task.factor_space().items()},
        "image_size": cfg["image_size"],
        "seed": cfg["seed"],
    }
    if task.suite == "coop" and task.group == "base-to-new":
        base, new = base_new_split(task.num_classes)
        m["base_classes"], m["new_classes"] = base, new
        m["note"] = "base classes are seen upstream as factor combinations; new classes are held out of both upstream corpora"
    if task.suite == "upstream":
        m["held_out"] = {k: sorted([list(p) for p in v]) for k, v in HELD_OUT.items()}
        m["group_size"] = sizes["upstream"]["group_size"]
    return m


def check_params(params: dict) -> dict:
    """Validate every foundation section before any work: data, splits and backbones."""
    from .backbones.clip import ClipConfig
    from .backbones.vit import VitConfig

    cfg = _data_settings(params)
    s = section(params, "splits")
    for key in ("shots", "seeds", "datasets"):
        if not s.get(key):
            raise ConfigError(f"splits.{key} is empty or missing; e.g. shots: [1, 2, 4, 8, 16], seeds: [1, 2, 3], datasets: [objects]")
    coop = {t.name: t for t in all_tasks(cfg["sizes"]).values() if t.suite == "coop" and t.group == "base-to-new"}
    for name in s["datasets"]:
        if name not in coop:
            raise unknown_name("splits.datasets entry", name, coop)
    per_class = cfg["sizes"]["coop"]["train"]
    check_shots({f"coop/{n}": [per_class] for n in s["datasets"]}, [int(k) for k in s["shots"]])
    bb = section(params, "backbones")
    VitConfig.from_dict({k: v for k, v in bb["vit"].items() if k != "weights"})
    ClipConfig.from_dict({k: v for k, v in bb["clip"].items() if k != "weights"})
    for key in ("vit_pretrain", "clip_pretrain"):
        if key not in bb:
            raise ConfigError(f"backbones.{key} missing; see params.yaml in the repository")
    return {"ok": True}


def run_data(params: dict, progress: bool | None = None) -> dict:
    """Render every mini dataset (skipping those already rendered with the same settings)."""
    check_params(params)
    cfg = _data_settings(params)
    tasks = {k: t for k, t in all_tasks(cfg["sizes"]).items() if t.suite in cfg["suites"]}
    total = sum(sum(t.splits.values()) for t in tasks.values())
    t0 = time.perf_counter()
    summary = {}
    code = _world_code_hash()
    bar = tqdm(total=total, desc="render mini world", unit="img", disable=bars_off(progress), mininterval=2)
    for key, task in tasks.items():
        fingerprint = {"image_size": cfg["image_size"], "seed": cfg["seed"], "splits": task.splits, "classes": task.classnames, "code": code}
        n = sum(task.splits.values())
        if is_complete(cfg["root"], key, fingerprint):
            bar.update(n)
            summary[key] = "up to date"
            continue
        splits = {
            split: render_split(key, split, cfg["seed"], cfg["image_size"], cfg["workers"], progress=bar.update, sizes=cfg["sizes"])
            for split in task.splits
        }
        manifest = _manifest(task, cfg["sizes"], cfg)
        manifest["fingerprint"] = fingerprint
        manifest["label_counts"] = {s: np.bincount(d["labels"], minlength=task.num_classes).tolist() for s, d in splits.items()} if key != "upstream/clip" else {}
        write_dataset(cfg["root"], key, splits, manifest)
        summary[key] = {s: len(d["labels"]) for s, d in splits.items()}
    bar.close()
    return {"datasets": summary, "time_s": time.perf_counter() - t0}


# --- splits ------------------------------------------------------------------------------------


def run_splits(params: dict) -> dict:
    """Few-shot samples for every (CoOp-mini dataset, shots, seed), shared by all methods."""
    check_params(params)
    data_root = section(params, "data").get("root", "data/mini")
    s = section(params, "splits")
    root, shots, seeds = s.get("root", "data/splits"), [int(x) for x in s["shots"]], [int(x) for x in s["seeds"]]
    datasets = s.get("datasets", [])
    manifests = {name: load_manifest(data_root, f"coop/{name}") for name in datasets}
    for name, m in manifests.items():
        if m.get("group") != "base-to-new":
            raise ConfigError(f"splits.datasets: coop/{name} is a test-only copy; list source datasets only")
    check_shots({f"coop/{n}": m["label_counts"]["train"] for n, m in manifests.items()}, shots)
    written = 0
    for name in datasets:
        train = load_arrays(data_root, f"coop/{name}", "train")["labels"]
        val = load_arrays(data_root, f"coop/{name}", "val")["labels"]
        for k in shots:
            for seed in seeds:
                write_split(root, make_split(train, val, name, k, seed))
                written += 1
    return {"files": written, "root": root}


# --- backbones ---------------------------------------------------------------------------------


def _write_backbone_outputs(params: dict, name: str, record: dict, flat: dict) -> None:
    """The stage's whole record (``<reports>/records/backbone_<name>.json``) and its one or two
    headline numbers as a flat DVC metric (``<reports>/metrics/backbone_<name>.json``)."""
    root = Path(section(params, "backbones").get("reports_dir", "reports"))
    write_json(root / "records" / f"backbone_{name}.json", record)
    write_json(root / "metrics" / f"backbone_{name}.json", {k: v for k, v in flat.items() if v is not None})


def run_backbone_vit(params: dict, progress: bool | None = None) -> dict:
    """Pretrain the tiny ViT on upstream classes; linear-probe it on every VTAB-/FGVC-mini task."""
    t_stage = time.perf_counter()
    set_threads(params)
    from .backbones.mini import image_features, linear_probe_top1, pretrain_vit
    from .backbones.vit import VitConfig, create_vit

    bb = section(params, "backbones")
    data_root = section(params, "data").get("root", "data/mini")
    cfg = VitConfig.from_dict({k: v for k, v in bb["vit"].items() if k != "weights"})
    pre = dict(bb["vit_pretrain"])
    out = Path(bb.get("root", "data/backbones")) / "tiny_vit.pt"
    probe_tasks = [m for m in _probe_list(data_root, ("vtab", "fgvc"))]
    train = load_arrays(data_root, "upstream/vit", "train")
    val = load_arrays(data_root, "upstream/vit", "val")
    n_cls = len(load_manifest(data_root, "upstream/vit")["classnames"])

    torch.manual_seed(int(pre.get("seed", 0)))
    model = create_vit(cfg)
    res = pretrain_vit(model, train["images"], train["labels"], n_cls, mean=cfg.mean, std=cfg.std, progress=progress,
                       factors=train.get("factors"), factor_sizes=factor_label_sizes(), **pre)
    with torch.no_grad():
        logits = res["head"](image_features(model, val["images"], cfg.mean, cfg.std))
    upstream_val = float((logits.argmax(-1).numpy() == val["labels"]).mean() * 100)
    save_torch(model.state_dict(), out)

    probes = {}
    for key in tqdm(probe_tasks, desc="linear probes", disable=bars_off(progress)):
        feats = {s: image_features(model, load_arrays(data_root, key, s)["images"], cfg.mean, cfg.std).numpy() for s in ("train", "val", "test")}
        labels = {s: load_arrays(data_root, key, s)["labels"] for s in ("train", "val", "test")}
        r = linear_probe_top1(feats["train"], labels["train"], feats["val"], labels["val"], feats["test"], labels["test"])
        n = len(load_manifest(data_root, key)["classnames"])
        probes[key] = {"test_top1": round(r["test_top1"], 2), "chance": round(100 / n, 2), "ratio_to_chance": round(r["test_top1"] * n / 100, 2), "C": r["C"]}
    metrics = {
        "upstream_val_top1": round(upstream_val, 2),
        "upstream_classes": n_cls,
        "linear_probe": probes,
        "min_ratio_to_chance": min(p["ratio_to_chance"] for p in probes.values()) if probes else None,
        "stage_time_s": round(time.perf_counter() - t_stage, 1),
        "pretrain_time_s": round(res["train_time_s"], 1),
        "pretrain_images_per_s": round(res["images_per_s"], 1),
        "history": res["history"],
        "params": sum(p.numel() for p in model.parameters()),
        "environment": environment_info("cpu"),
    }
    _write_backbone_outputs(params, "vit", metrics, {"top1": metrics["upstream_val_top1"]})
    return metrics


def _probe_list(data_root, suites) -> list:
    keys = []
    for key, task in all_tasks().items():
        if task.suite in suites and (Path(data_root) / f"{key}.json").is_file():
            keys.append(key)
    return keys


def run_backbone_clip(params: dict, progress: bool | None = None) -> dict:
    """Pretrain the tiny CLIP contrastively; measure zero-shot on single factors and base/new classes."""
    t_stage = time.perf_counter()
    set_threads(params)
    from .backbones.clip import ClipConfig, create_clip, get_tokenizer
    from .backbones.mini import pretrain_clip

    bb = section(params, "backbones")
    data_root = section(params, "data").get("root", "data/mini")
    cfg = ClipConfig.from_dict({k: v for k, v in bb["clip"].items() if k != "weights"})
    pre = dict(bb["clip_pretrain"])
    out = Path(bb.get("root", "data/backbones")) / "tiny_clip.pt"
    manifest = load_manifest(data_root, "upstream/clip")
    corpus = load_arrays(data_root, "upstream/clip", "train")

    torch.manual_seed(int(pre.get("seed", 0)))
    model = create_clip(cfg)
    tokenizer = get_tokenizer(cfg, model)
    res = pretrain_clip(model, tokenizer, corpus["images"], corpus["captions"], manifest["group_size"], mean=cfg.mean, std=cfg.std, progress=progress,
                        factors=corpus.get("factors"), factor_sizes=factor_label_sizes(), **pre)
    save_torch(model.state_dict(), out)

    zs = lambda key, split, classes=None, ensemble=False: _zero_shot(model, tokenizer, data_root, key, split, cfg, classes, ensemble)  # noqa: E731
    factors = {}
    for key in _probe_list(data_root, ("probe",)):
        # probe images come in every rendering style, so the zero-shot head averages the template
        # over the corpus' style phrases (CLIP's prompt ensembling); the single template is kept too
        factors[key.split("probe-")[-1]] = {**zs(key, "test", ensemble=True), "single_template": zs(key, "test")}
    base_new = {}
    for key in _probe_list(data_root, ("coop",)):
        m = load_manifest(data_root, key)
        if m["group"] != "base-to-new":
            continue
        base_new[key] = {"base": zs(key, "test", m["base_classes"]), "new": zs(key, "test", m["new_classes"]), "all": zs(key, "test")}
    vp = {key: zs(key, "test") for key in _probe_list(data_root, ("vp",))}
    new_ratios = [v["new"]["ratio_to_chance"] for v in base_new.values()]
    metrics = {
        "zero_shot_single_factor": factors,
        "min_single_factor_ratio_to_chance": min(v["ratio_to_chance"] for v in factors.values()) if factors else None,
        "zero_shot_coop_mini": base_new,
        "mean_new_class_ratio_to_chance": round(float(np.mean(new_ratios)), 2) if new_ratios else None,
        "zero_shot_vp_mini": vp,
        "stage_time_s": round(time.perf_counter() - t_stage, 1),
        "pretrain_time_s": round(res["train_time_s"], 1),
        "pretrain_pairs_per_s": round(res["pairs_per_s"], 1),
        "history": res["history"],
        "params": sum(p.numel() for p in model.parameters()),
        "environment": environment_info("cpu"),
    }
    _write_backbone_outputs(params, "clip", metrics, {"zs_ratio": metrics["mean_new_class_ratio_to_chance"]})
    return metrics


def style_ensemble(template: str) -> list[str]:
    """``template`` once per rendering style of the mini world ("a photo of" -> "a sketch of", ...)."""
    from .data.render import STYLE_PREFIX

    if not template.startswith("a photo of"):
        return [template]
    return [template.replace("a photo of", prefix, 1) for prefix in STYLE_PREFIX.values()]


def _zero_shot(model, tokenizer, data_root, key, split, cfg, classes=None, ensemble: bool = False) -> dict:
    from .backbones.mini import zero_shot_top1

    m = load_manifest(data_root, key)
    d = load_arrays(data_root, key, split)
    images, labels, names = d["images"], d["labels"], m["classnames"]
    if classes is not None:
        keep = np.isin(labels, classes)
        images, labels = images[keep], np.searchsorted(classes, labels[keep])
        names = [names[c] for c in classes]
    templates = style_ensemble(m["template"]) if ensemble else m["template"]
    acc = zero_shot_top1(model, tokenizer, images, labels, names, templates, cfg.mean, cfg.std)
    return {"top1": round(acc, 2), "chance": round(100 / len(names), 2), "ratio_to_chance": round(acc * len(names) / 100, 2), "classes": len(names), "template": templates}
