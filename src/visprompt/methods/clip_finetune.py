"""Full fine-tuning of CLIP's image tower: visual prompting's 'FT' baseline.

Design (the paper does not spell out its FT recipe; this is ours):

* The model works on a **copy** of the CLIP it is given, so training never changes a backbone the
  caller shares with other methods.
* The whole image tower (``clip.visual``) trains; the text tower and ``logit_scale`` are frozen
  and in eval mode.
* The classifier is an ``nn.Linear`` on L2-normalised image features, initialised from the
  zero-shot text features of the template and class names, times ``logit_scale.exp()`` (bias
  zero). At step 0 the logits therefore equal zero-shot CLIP's, and the text tower is not used
  again, except by :meth:`CLIPFineTune.set_classnames`, which builds a fresh zero-shot head for
  another class set (the trained head is specific to its classes; the tuned image tower is kept).
* No ``encode_frozen``: nothing is frozen in front of the trainable part, so features cannot be
  cached.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.clip import encode_classnames
from ..utils import freeze
from .registry import register_method
from .visual_prompt import DEFAULT_TEMPLATE


class CLIPFineTune(nn.Module):
    """Trainable CLIP image tower + a linear head initialised from zero-shot text features."""

    def __init__(self, clip, tokenizer, classnames, template: str = DEFAULT_TEMPLATE):
        super().__init__()
        self.clip = freeze(copy.deepcopy(clip)).eval()
        for p in self.clip.visual.parameters():
            p.requires_grad_(True)
        self.tokenizer = tokenizer
        self.template = template
        self.head: nn.Linear | None = None
        self.set_classnames(classnames)

    @torch.no_grad()
    def set_classnames(self, classnames) -> None:
        """A zero-shot head for ``classnames`` (scaled text features, zero bias)."""
        self.classnames = list(classnames)
        was_training = self.clip.visual.training
        self.clip.eval()
        text = encode_classnames(self.clip, self.tokenizer, self.classnames, self.template)
        self.clip.visual.train(was_training)
        head = nn.Linear(text.shape[1], len(self.classnames)).to(text.device)
        head.weight.copy_(self.clip.logit_scale.exp() * text)
        head.bias.zero_()
        self.head = head

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        self.clip.visual.train(mode)
        return self

    def no_weight_decay(self) -> set[str]:
        """timm convention: no decay on biases, norms and embeddings (1-D or positional)."""
        return {n for n, p in self.named_parameters() if p.requires_grad and (p.ndim <= 1 or "positional_embedding" in n or "class_embedding" in n)}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(F.normalize(self.clip.encode_image(images).float(), dim=-1))


@register_method("clip_finetune", family="clip", paper="vp")
def clip_finetune(clip, tokenizer, classnames, template: str = DEFAULT_TEMPLATE):
    """Full fine-tuning of the CLIP image tower with a zero-shot-initialised linear head."""
    return CLIPFineTune(clip, tokenizer, classnames, template)
