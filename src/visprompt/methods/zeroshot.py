"""Zero-shot CLIP: the RPO/CoOp 'CLIP' row and visual prompting's 'Text Prompt (TP)' baseline."""

from __future__ import annotations

import torch
from torch import nn

from ..backbones.clip import encode_classnames
from ..utils import freeze
from .registry import register_method

DEFAULT_TEMPLATE = "a photo of a {}."


class ZeroShotCLIP(nn.Module):
    """Frozen CLIP scored against class-name text features computed once per class set."""

    def __init__(self, clip, tokenizer, classnames, templates=DEFAULT_TEMPLATE):
        super().__init__()
        self.clip = freeze(clip).eval()
        self.tokenizer = tokenizer
        self.templates = templates
        self.register_buffer("text_features", torch.empty(0), persistent=False)
        self.set_classnames(classnames)

    def set_classnames(self, classnames, templates=None):
        if templates is not None:
            self.templates = templates
        self.classnames = list(classnames)
        self.text_features = encode_classnames(self.clip, self.tokenizer, self.classnames, self.templates)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def encode_frozen(self, images):
        with torch.no_grad():
            return nn.functional.normalize(self.clip.encode_image(images).float(), dim=-1)

    def forward_head(self, features):
        return self.clip.logit_scale.exp() * features @ self.text_features.t()

    def forward(self, images):
        return self.forward_head(self.encode_frozen(images))


@register_method("zeroshot", family="clip", paper="rpo")
def zeroshot(clip, tokenizer, classnames, templates=DEFAULT_TEMPLATE):
    """Zero-shot CLIP with per-dataset templates (nothing is trained)."""
    return ZeroShotCLIP(clip, tokenizer, classnames, templates)
