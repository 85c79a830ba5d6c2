"""The mini world (``profile: mini``, the default): the generated datasets of
:mod:`visprompt.data.mini` written by the ``data`` stage, and the tiny backbones that the
``backbone_vit``/``backbone_clip`` stages pretrain on them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import ConfigError, unknown_name
from ..utils import load_into, load_weights
from .base import World


def _file_id(path: Path) -> str:
    """The weights' content hash: the same file gives the same id on every machine and checkout
    (a size and mtime did not: a fresh clone's ``dvc checkout`` gives new mtimes)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class MiniWorld(World):
    """Generated datasets under ``data.root`` and tiny backbones under ``backbones.root``."""

    name = "mini"
    code_modules = ("visprompt.data.store", "visprompt.data.mini")

    def __init__(self, params: dict):
        super().__init__(params)
        data, backbones = params.get("data") or {}, params.get("backbones") or {}  # checked at load (schema)
        self.data_root: str = data.get("root", "data/mini")
        self.sizes: dict | None = data.get("sizes")  # overrides of data.mini.DEFAULT_SIZES
        self.backbones_root = Path(backbones.get("root", "data/backbones"))
        self.backbone_settings: dict = {name: {k: v for k, v in (backbones.get(name) or {}).items() if k != "weights"} for name in ("vit", "clip")}

    def _weights(self, name: str) -> Path:
        return self.backbones_root / f"tiny_{name}.pt"

    def load_vit(self):
        from ..backbones.vit import VitConfig, create_vit, load_state

        cfg = VitConfig.from_dict(self.backbone_settings["vit"])
        model = create_vit(cfg)
        if cfg.arch == "mini":
            load_state(model, self._weights("vit"))
        return model, cfg

    def load_clip(self, paper: str):
        from ..backbones.clip import ClipConfig, create_clip, get_tokenizer

        cfg = ClipConfig.from_dict(self.backbone_settings["clip"])
        model = create_clip(cfg)
        if cfg.arch == "mini":
            path = self._weights("clip")
            load_into(model, load_weights(path, "backbone_clip"), path, "backbone_clip", "backbones.clip")
        return model.eval(), get_tokenizer(cfg, model), cfg

    def load_data(self, key: str, split: str, mean, std):
        from ..data.store import load_split

        if not (Path(self.data_root) / f"{key}.json").is_file():
            raise ConfigError(f"dataset {key} not found under {self.data_root}: check the task name, or run `dvc repro data`")
        return load_split(self.data_root, key, split, mean, std)

    def dataset_template(self, key: str) -> str | None:
        from ..data.store import load_manifest

        return load_manifest(self.data_root, key).get("template")

    def final_split(self, paper: str, key: str) -> str:
        return "train+val" if paper == "vpt" else "train"  # VPT's final runs train on train800val200

    def base_new_classes(self, key: str) -> tuple[list, list]:
        from ..data.store import load_manifest

        m = load_manifest(self.data_root, key)
        return m["base_classes"], m["new_classes"]

    def shifted_tests(self, paper: str) -> dict:
        if paper != "vp":
            return {}
        from ..data.mini import VP_SHIFTS

        return {f"vp/{n}": f"vp/{n}-{style}" for n, (style, _) in VP_SHIFTS.items()}

    def backbone_id(self, paper: str) -> str:
        name = "vit" if paper == "vpt" else "clip"
        path = self._weights(name)
        return _file_id(path) if path.is_file() else json.dumps(self.backbone_settings[name], sort_keys=True)

    def check_method(self, s) -> None:
        from ..data.mini import all_tasks

        known = all_tasks(self.sizes)
        if s.paper == "rpo":  # every CoOp-mini dataset its protocols read, DG targets included
            needed = [(f"rpo.{proto}", d) for proto, d, _, _ in s.rpo_jobs()]
            needed += [("rpo.dg.targets", t) for t in (s.dg.targets if "dg" in s.protocols else ())]
            coop = [k.split("/", 1)[1] for k, t in known.items() if t.suite == "coop"]
            for where, name in needed:
                if f"coop/{name}" not in known:
                    raise unknown_name(f"{where} entry", name, coop)
            return
        if not s.tasks:
            raise ConfigError(f"{s.tasks_key} is empty; list tasks such as vtab/shapes")
        for key in s.tasks:
            if key not in known:
                raise unknown_name(f"{s.tasks_key} entry", key, [k for k, t in known.items() if t.suite in ("vtab", "fgvc", "vp")])
