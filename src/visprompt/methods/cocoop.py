"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a small meta-network.

Meta-net ``Linear(D, D//16) -> ReLU -> Linear(D//16, text_width)`` reads the normalised image
feature; its output is added to every context vector, so each image gets its own class prompts and
the text tower runs over (batch x classes) sequences every step. Trainable: the meta-net plus the
4 context vectors from "a photo of a" (35,360 at ViT-B/16: 512*32+32 + 32*512+512 + 4*512). The
hidden width is ``embed_dim // 16`` (32 on ViT-B/16), at least 1, so it scales to small backbones.

The trainable part sits on the frozen image feature, so ``encode_frozen``/``forward_head`` let the
training loop cache image features (without augmentation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import freeze
from .coop import PromptContext, run_text_tower
from .registry import register_method

EVAL_TEXT_ROWS = 4096  # the mini profile's largest evaluation batch (256 images x 16 classes) runs in one pass


class CoCoOp(nn.Module):
    """Frozen CLIP + shared context + meta-net bias conditioned on each image."""

    def __init__(self, clip, tokenizer, classnames, n_ctx: int = 4, ctx_init: str | None = None, seed: int = 0):
        super().__init__()
        self.clip = freeze(clip).eval()
        self.prompt = PromptContext(clip, tokenizer, n_ctx, ctx_init, seed, method="cocoop")
        embed_dim = clip.visual.output_dim
        width = self.prompt.ctx.shape[1]
        hidden = max(embed_dim // 16, 1)
        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global RNG alone
            torch.manual_seed(seed)
            self.meta_net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, width))
        self.meta_net.to(self.prompt.ctx.device)
        self.set_classnames(classnames)

    def set_classnames(self, classnames) -> None:
        self.classnames = list(classnames)
        self.prompt.set_classnames(self.classnames)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def encode_frozen(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image features (the meta-net's input and the scoring vector)."""
        with torch.no_grad():
            return F.normalize(self.clip.encode_image(images).float(), dim=-1)

    def text_features(self, features: torch.Tensor) -> torch.Tensor:
        """Per-image class features (B, n_cls, D) from context + meta-net(image feature)."""
        ctx = self.prompt.ctx.unsqueeze(0) + self.meta_net(features).unsqueeze(1)  # (B, M, width)
        x = self.prompt.sequences(ctx)  # (B, n_cls, L', width)
        B, n_cls = x.shape[:2]
        eot = self.prompt.eot.repeat(B)
        t = run_text_tower(self.clip, x.flatten(0, 1), eot)
        return F.normalize(t, dim=-1).view(B, n_cls, -1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits; without autograd (evaluation) the images go through in chunks of at most
        EVAL_TEXT_ROWS (image, class) text sequences: at batch 256 on ImageNet one pass would hold
        256,000 sequences' activations (tens of GB). Training batches are small and unchunked."""
        n_cls = len(self.classnames)
        if torch.is_grad_enabled() or features.shape[0] * n_cls <= EVAL_TEXT_ROWS:
            return self._logits(features)
        return torch.cat([self._logits(f) for f in features.split(max(1, EVAL_TEXT_ROWS // n_cls))])

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        text = self.text_features(features).to(features.dtype)
        return self.clip.logit_scale.exp() * torch.einsum("bd,bcd->bc", features, text)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.encode_frozen(images))


@register_method("cocoop", family="clip", paper="rpo")
def cocoop(clip, tokenizer, classnames, n_ctx: int = 4, ctx_init: str | None = None, seed: int = 0):
    """CoCoOp: CoOp's 4 context vectors shifted per image by a meta-net on the image feature."""
    return CoCoOp(clip, tokenizer, classnames, n_ctx=n_ctx, ctx_init=ctx_init, seed=seed)
