"""timm VisionTransformer backbones, mini and paper-sized, built the same way.

VPT and its baselines work on any timm ``VisionTransformer``: they use ``patch_embed``,
``_pos_embed``, ``patch_drop``, ``norm_pre``, ``blocks`` and ``norm`` directly, so the tiny mini
ViT and ViT-B/16 go through identical code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer

from ..errors import ConfigError
from ..utils import load_into, load_weights
from .stem import check_stem, conv_stem

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass
class VitConfig:
    """How to build a ViT backbone.

    ``arch='mini'`` builds a random-init timm VisionTransformer from the size fields (its weights
    come from the pipeline's own pretraining). Any other ``arch`` is a timm model name, e.g.
    ``vit_base_patch16_224.orig_in21k`` for the paper profile.
    """

    arch: str = "mini"
    img_size: int = 32
    patch_size: int = 8
    embed_dim: int = 128
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    stem: str = "patch"  # mini only: "conv" swaps the patch projection for an early-conv stem (backbones/stem.py)
    mean: tuple = HALF
    std: tuple = HALF
    weights: str | None = None  # path to a state dict (mini), or None
    pretrained: bool = False  # timm pretrained weights (paper profile; needs internet or a cache)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "VitConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown ViT backbone keys {sorted(unknown)}; valid keys: {sorted(known)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.img_size % self.patch_size:
            raise ConfigError(
                f"backbone image size {self.img_size} is not divisible by patch size {self.patch_size}; "
                f"choose an image size that is a multiple of {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        check_stem(self.stem, self.arch, self.patch_size, "backbones.vit")
        for key in ("depth", "num_heads", "embed_dim", "patch_size"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"backbones.vit.{key} must be >= 1, got {getattr(self, key)}")


def create_vit(cfg: VitConfig | dict) -> VisionTransformer:
    """Build the backbone with its classification head removed (``num_classes=0``)."""
    if isinstance(cfg, dict):
        cfg = VitConfig.from_dict(cfg)
    if cfg.arch == "mini":
        model = VisionTransformer(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            num_classes=0,
            **cfg.extra,
        )
        if cfg.stem == "conv":
            model.patch_embed.proj = conv_stem(cfg.embed_dim, cfg.patch_size)
    else:
        import timm

        model = timm.create_model(cfg.arch, pretrained=cfg.pretrained, num_classes=0, **cfg.extra)
    if cfg.weights:
        load_state(model, cfg.weights)
    return model


def load_state(model: torch.nn.Module, path: str | Path) -> None:
    """Load a state dict saved by the backbones stage, with a clear error if it is missing."""
    # the pretraining head is dropped on purpose; anything else missing is a real mismatch
    load_into(model, load_weights(path, "backbone_vit"), path, "backbone_vit", "backbones.vit", ignore_prefix="head.")
