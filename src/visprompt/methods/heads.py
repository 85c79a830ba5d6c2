"""Task heads and the shared plumbing of every VPT-paper method on a timm ``VisionTransformer``.

The head follows the official VPT code (KMnP/vpt, ``src/models/mlp.py``): every Linear is
kaiming-normal (fan_out) initialised and the classifier bias is the constant −log(99) (a prior
probability of 0.01). A constant bias is the same for every class, so it does not change the
softmax; we keep it so the initial logits match the reference.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from ..errors import ConfigError

HEAD_BIAS = -math.log(99.0)  # −log((1 − 0.01) / 0.01)


class MlpHead(nn.Module):
    """``num_layers − 1`` × [Linear(d) → ReLU → BatchNorm1d → Dropout] → Linear(d → C).

    ``num_layers=1`` is the plain linear head of VPT, Linear and most baselines; ``num_layers=3``
    is the MLP-3 baseline.
    """

    def __init__(self, in_dim: int, num_classes: int, num_layers: int = 1, dropout: float = 0.1):
        super().__init__()
        layers = []
        for _ in range(num_layers - 1):
            fc = nn.Linear(in_dim, in_dim)
            nn.init.kaiming_normal_(fc.weight, a=0, mode="fan_out")
            layers += [fc, nn.ReLU(), nn.BatchNorm1d(in_dim), nn.Dropout(dropout)]
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.kaiming_normal_(self.fc.weight, a=0, mode="fan_out")
        nn.init.constant_(self.fc.bias, HEAD_BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1 and len(self.hidden):
            # BatchNorm cannot take batch statistics from one sample (an epoch's last batch can be
            # that small): normalise this batch with the running statistics instead of failing.
            norms = [m for m in self.hidden if isinstance(m, nn.BatchNorm1d)]
            for m in norms:
                m.eval()
            try:
                return self.fc(self.hidden(x))
            finally:
                for m in norms:
                    m.train()
        return self.fc(self.hidden(x))


def check_backbone(backbone, method: str) -> VisionTransformer:
    if not isinstance(backbone, VisionTransformer):
        raise ConfigError(f"method {method!r} needs a timm VisionTransformer backbone, got {type(backbone).__name__}; use a 'vit' backbone")
    return backbone


def check_int(value, key: str, method: str, low: int, high: int | None = None, fix: str = "") -> int:
    """``value`` as an int in ``[low, high]``, or a ConfigError naming the key and the fix."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"method {method!r}: {key} must be an integer {span}, got {value!r}; {fix or f'set {key} to such an integer in params.yaml'}")
    return value


def check_prob(value, key: str, method: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"method {method!r}: {key} must be a probability in [0, 1), got {value!r}; fix it in params.yaml")
    return float(value)


def embed_tokens(backbone: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """Tokens entering block 1: ``[prefix tokens (CLS, registers), patches]`` with position embedding."""
    x = backbone.patch_embed(images)
    x = backbone._pos_embed(x)
    x = backbone.patch_drop(x)
    return backbone.norm_pre(x)


def pool_tokens(backbone: VisionTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """Final norm and the backbone's own pooling (CLS token for ViT-B/16): ``(B, d)`` features."""
    return backbone.forward_head(backbone.norm(tokens), pre_logits=True)


class ViTClassifier(nn.Module):
    """A timm ViT backbone plus a task head.

    ``train(mode)`` keeps the backbone in eval mode (its dropout off, as in the VPT recipe) except
    the sub-modules listed by ``trainable_backbone_modules()``; ``freeze_backbone_mode = False``
    (full fine-tuning) lets the whole backbone follow ``mode``.
    """

    freeze_backbone_mode = True

    def __init__(self, backbone: VisionTransformer, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def trainable_backbone_modules(self) -> list[nn.Module]:
        return []

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone_mode:
            self.backbone.eval()
            for m in self.trainable_backbone_modules():
                m.train(mode)
        return self

    def no_weight_decay(self) -> set[str]:
        """The classifier bias: the VPT recipe applies no weight decay to it."""
        return {"head.fc.bias"}
