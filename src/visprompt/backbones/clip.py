"""open_clip CLIP backbones, mini and paper-sized, built the same way.

Visual prompting and RPO work on any open_clip ``CLIP`` whose towers are the standard
``VisionTransformer`` / text ``Transformer``; they use ``visual.conv1``, ``class_embedding``,
``positional_embedding``, ``ln_pre``, ``transformer.resblocks``, ``ln_post``, ``proj`` and, on the
text side, ``token_embedding``, ``positional_embedding``, ``transformer``, ``ln_final``,
``text_projection`` and ``attn_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import open_clip
import torch
from open_clip.model import CLIP

from ..errors import ConfigError
from ..utils import load_into, load_weights
from .clip_attention import use_sdpa_attention
from .stem import check_stem, conv_stem

HALF = (0.5, 0.5, 0.5)


@dataclass
class ClipConfig:
    """How to build a CLIP backbone.

    ``arch='mini'`` builds a small open_clip ``CLIP`` from the size fields, with the real BPE
    tokenizer. Any other ``arch`` is an open_clip model name (``ViT-B-16``) with ``pretrained``
    a tag such as ``openai`` (paper profile).
    """

    arch: str = "mini"
    embed_dim: int = 128
    image_size: int = 32
    patch_size: int = 8
    vision_layers: int = 4
    vision_width: int = 128
    vision_head_width: int = 32
    context_length: int = 24
    text_layers: int = 3
    text_width: int = 128
    text_heads: int = 4
    stem: str = "patch"  # mini only: "conv" swaps visual.conv1 for an early-conv stem (backbones/stem.py)
    mean: tuple = HALF
    std: tuple = HALF
    weights: str | None = None
    pretrained: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown CLIP backbone keys {sorted(unknown)}; valid keys: {sorted(known)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.arch == "mini" and self.image_size % self.patch_size:
            raise ConfigError(
                f"CLIP image size {self.image_size} is not divisible by patch size {self.patch_size}; "
                f"choose an image size that is a multiple of {self.patch_size}"
            )
        check_stem(self.stem, self.arch, self.patch_size, "backbones.clip")
        for key in ("vision_layers", "vision_width", "text_layers", "text_width", "text_heads", "context_length", "embed_dim"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"backbones.clip.{key} must be >= 1, got {getattr(self, key)}")


def create_clip(cfg: ClipConfig | dict) -> CLIP:
    """Build a CLIP in fp32, eval mode, its blocks on the contiguous-projection SDPA attention
    (``clip_attention.py``; the parameter names are nn.MultiheadAttention's, so weights load unchanged)."""
    if isinstance(cfg, dict):
        cfg = ClipConfig.from_dict(cfg)
    if cfg.arch == "mini":
        model = CLIP(
            embed_dim=cfg.embed_dim,
            vision_cfg=dict(
                layers=cfg.vision_layers,
                width=cfg.vision_width,
                head_width=cfg.vision_head_width,
                patch_size=cfg.patch_size,
                image_size=cfg.image_size,
            ),
            text_cfg=dict(
                context_length=cfg.context_length,
                width=cfg.text_width,
                heads=cfg.text_heads,
                layers=cfg.text_layers,
            ),
            **cfg.extra,
        )
        if cfg.stem == "conv":
            model.visual.conv1 = conv_stem(cfg.vision_width, cfg.patch_size, bias=False)
    else:
        model = open_clip.create_model(cfg.arch, pretrained=cfg.pretrained, precision="fp32", **cfg.extra)
    use_sdpa_attention(model)
    if cfg.weights:
        load_into(model, load_weights(cfg.weights, "backbone_clip"), cfg.weights, "backbone_clip", "backbones.clip")
    return model.float().eval()


def get_tokenizer(cfg: ClipConfig | dict, model: CLIP | None = None):
    """The real CLIP BPE tokenizer, padding to the model's context length."""
    if isinstance(cfg, dict):
        cfg = ClipConfig.from_dict(cfg)
    context_length = model.context_length if model is not None else cfg.context_length
    name = "ViT-B-32" if cfg.arch == "mini" else cfg.arch
    return open_clip.get_tokenizer(name, context_length=context_length)


def format_classname(name: str) -> str:
    """Class names as CoOp formats them: ``_`` as spaces (hyphens kept: "Mercedes-Benz", "707-320"),
    lower case (the CLIP tokenizer lower-cases anyway)."""
    return name.replace("_", " ").lower().strip()


@torch.no_grad()
def encode_texts(model: CLIP, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text features of ``texts`` with the frozen text tower."""
    device = next(model.parameters()).device
    feats = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[i : i + batch_size]).to(device)
        feats.append(torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1))
    return torch.cat(feats)


@torch.no_grad()
def encode_classnames(model: CLIP, tokenizer, classnames: list[str], templates: list[str] | str) -> torch.Tensor:
    """Zero-shot classifier weights ``(n_classes, embed_dim)``: the normalised mean over templates.

    Each template has one ``{}`` for the (formatted) class name, e.g. ``"a photo of a {}."``.
    """
    templates = [templates] if isinstance(templates, str) else list(templates)
    for t in templates:
        if t.count("{}") != 1:
            raise ConfigError(f"template {t!r} must contain exactly one '{{}}' for the class name")
    names = [format_classname(c) for c in classnames]
    per_template = torch.stack([encode_texts(model, tokenizer, [t.format(n) for n in names]) for t in templates])
    return torch.nn.functional.normalize(per_template.mean(0), dim=-1)
