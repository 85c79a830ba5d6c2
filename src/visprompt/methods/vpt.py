"""Visual Prompt Tuning (Jia et al., ECCV 2022): VPT-shallow and VPT-deep on any timm ViT.

The token sequence is ``[prefix (CLS, registers), p prompts, patches]``. Prompts are inserted after
the position embedding, so they carry none. VPT-shallow inserts them once, before block 1;
VPT-deep additionally *replaces* the p prompt slots before every later block with that block's own
prompts (depth·p·d parameters). Prompt outputs are discarded: the final norm and the backbone's
own pooling (CLS for ViT-B/16) feed a Linear head. Only prompts (and the optional projection) and
the head train; the backbone is frozen and stays in eval mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..utils import freeze
from .heads import MlpHead, ViTClassifier, check_backbone, check_int, check_prob, embed_tokens, pool_tokens
from .registry import register_method


def vpt_parameter_count(depth: int, prompt_length: int, embed_dim: int, num_classes: int, deep: bool = True, prompt_project: int | None = None) -> int:
    """Trainable parameters of VPT: prompts (+ projection) + Linear head.

    ViT-B/16 (depth 12, d 768), p = 100, 6 classes, deep: 12·100·768 + 768·6 + 6 = 926,214.
    """
    prompt_dim = prompt_project or embed_dim
    layers = depth if deep else 1
    n = layers * prompt_length * prompt_dim
    if prompt_project:
        n += prompt_dim * embed_dim + embed_dim
    return n + embed_dim * num_classes + num_classes


class PromptedViT(ViTClassifier):
    """A frozen timm ViT with learned prompt tokens in front of the patches (VPT)."""

    def __init__(
        self,
        backbone,
        num_classes: int,
        prompt_length: int,
        deep: bool,
        prompt_dropout: float = 0.0,
        prompt_project: int | None = None,
        method: str = "vpt",
    ):
        backbone = freeze(check_backbone(backbone, method))
        check_int(num_classes, "num_classes", method, 1)
        fix = "set prompt_length to a positive integer in params.yaml, e.g. 10 (the paper picks from 1, 5, 10, 50, 100, 200)"
        prompt_length = check_int(prompt_length, "prompt_length", method, 1, fix=fix)
        if prompt_project is not None:
            check_int(prompt_project, "prompt_project", method, 1, fix="set prompt_project to a positive integer (prompt dim before Linear(k→d)) or null to switch it off")
        super().__init__(backbone, MlpHead(backbone.embed_dim, num_classes))
        self.prompt_length = prompt_length
        self.deep = bool(deep)
        d = backbone.embed_dim
        prompt_dim = prompt_project or d
        if prompt_project:
            self.prompt_proj = nn.Linear(prompt_dim, d)
            nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode="fan_out")
        else:
            self.prompt_proj = nn.Identity()
        self.prompt_dropout = nn.Dropout(check_prob(prompt_dropout, "prompt_dropout", method))
        # Xavier-uniform with the patch embedding's fan-in: v = sqrt(6 / (3·ph·pw + prompt_dim)).
        ph, pw = backbone.patch_embed.patch_size
        in_chans = getattr(backbone.patch_embed.proj, "in_channels", 3)
        v = math.sqrt(6.0 / (in_chans * ph * pw + prompt_dim))
        layers = len(backbone.blocks) if self.deep else 1
        # prompts[0] enters block 1 (shallow); prompts[i] replaces the prompt slots before block i+1.
        self.prompts = nn.Parameter(torch.empty(layers, self.prompt_length, prompt_dim).uniform_(-v, v))
        self.train()

    def layer_prompts(self, i: int, batch: int) -> torch.Tensor:
        """Prompts of layer ``i`` (0-based) as ``(batch, p, d)``; dropout after expanding over the batch."""
        return self.prompt_dropout(self.prompt_proj(self.prompts[i]).expand(batch, -1, -1))

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Output tokens of the last block, prompt outputs removed: ``(B, prefix + patches, d)``."""
        bb, p = self.backbone, self.prompt_length
        x = embed_tokens(bb, images)
        s, b = bb.num_prefix_tokens, x.shape[0]
        x = torch.cat([x[:, :s], self.layer_prompts(0, b), x[:, s:]], dim=1)
        for i, block in enumerate(bb.blocks):
            if self.deep and i > 0:
                x = torch.cat([x[:, :s], self.layer_prompts(i, b), x[:, s + p :]], dim=1)
            x = block(x)
        return torch.cat([x[:, :s], x[:, s + p :]], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pool_tokens(self.backbone, self.forward_tokens(images)))


@register_method("vpt_shallow", family="vit", paper="vpt")
def vpt_shallow(backbone, num_classes: int, prompt_length: int = 10, prompt_dropout: float = 0.0, prompt_project: int | None = None):
    """VPT-shallow: p prompts before block 1 only, plus a Linear head."""
    return PromptedViT(backbone, num_classes, prompt_length, deep=False, prompt_dropout=prompt_dropout, prompt_project=prompt_project, method="vpt_shallow")


@register_method("vpt_deep", family="vit", paper="vpt")
def vpt_deep(backbone, num_classes: int, prompt_length: int = 10, prompt_dropout: float = 0.0, prompt_project: int | None = None):
    """VPT-deep: each block gets its own p prompts (replacing the previous ones), plus a Linear head."""
    return PromptedViT(backbone, num_classes, prompt_length, deep=True, prompt_dropout=prompt_dropout, prompt_project=prompt_project, method="vpt_deep")
