"""RPO's linear-probe baseline: a D x D linear map on CLIP image features, scored by text features.

``Linear(D, D)`` starts as the identity on the unnormalised image feature, so at step 0 it is
zero-shot CLIP; its output is normalised and scored against frozen "a photo of a {}." text
features times CLIP's logit scale (262,656 parameters at D=512). Unlike a plain linear probe it
keeps working on new classes: only the text features change with the class set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.clip import encode_classnames
from ..utils import freeze
from .registry import register_method

DEFAULT_TEMPLATE = "a photo of a {}."


class CLIPLinearProbe(nn.Module):
    """Frozen CLIP image features -> identity-initialised Linear -> cosine with class text features."""

    def __init__(self, clip, tokenizer, classnames, template: str = DEFAULT_TEMPLATE):
        super().__init__()
        self.clip = freeze(clip).eval()
        self.tokenizer = tokenizer
        self.template = template
        dim = clip.visual.output_dim
        self.linear = nn.Linear(dim, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.zero_()
        self.linear.to(clip.logit_scale.device)
        self.register_buffer("text_features", torch.empty(0), persistent=False)
        self.set_classnames(classnames)

    def set_classnames(self, classnames) -> None:
        self.classnames = list(classnames)
        self.text_features = encode_classnames(self.clip, self.tokenizer, self.classnames, self.template)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def encode_frozen(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features: the linear map acts before normalisation."""
        with torch.no_grad():
            return self.clip.encode_image(images).float()

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.linear(features), dim=-1)
        return self.clip.logit_scale.exp() * z @ self.text_features.t().to(z.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.encode_frozen(images))


@register_method("clip_linear_probe", family="clip", paper="rpo", dataset_template=False)
def clip_linear_probe(clip, tokenizer, classnames, template: str = DEFAULT_TEMPLATE):
    """RPO's linear probe: identity-initialised Linear(D, D) on CLIP image features, text-feature head."""
    return CLIPLinearProbe(clip, tokenizer, classnames, template)
