"""The baselines of VPT's Table 1 on any timm ``VisionTransformer`` (mini ViT and ViT-B/16 alike).

Registered names (paper label → what trains, besides the task head):

* ``full`` (Full): every backbone weight; the backbone's dropout follows ``train()``.
* ``linear`` (Linear): nothing but a Linear head on the frozen features.
* ``partial`` (Partial-k, paper: k = 1): the last ``k`` blocks and the final norm.
* ``mlp`` (MLP-k, paper: k = 3): a ``k``-layer MLP head on the frozen features.
* ``bias`` (Bias, BitFit / TinyTL-bias): every bias term of the backbone.
* ``adapter`` (Adapter, Pfeiffer style): a bottleneck adapter after the MLP of every block.
* ``sidetune`` (Sidetune): a small side network blended with the frozen features by a learned gate.

Every head is :class:`~visprompt.methods.heads.MlpHead` (kaiming-normal weights, bias −log 99, no
weight decay on the classifier bias). Frozen parts have ``requires_grad=False`` and stay in eval
mode under ``train()``; trainable and total counts come from :func:`visprompt.utils.count_parameters`.
Builders take ownership of the backbone they are given (they change ``requires_grad`` and, for the
adapter and ``full``'s dropout, the backbone's modules): pass a copy if it is shared.
"""

from __future__ import annotations

import torch
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from ..errors import ConfigError
from ..utils import freeze
from .fast_dropout import FastDropout
from .heads import MlpHead, ViTClassifier, check_backbone, check_int, check_prob, embed_tokens, pool_tokens
from .registry import register_method


def _num_classes(num_classes, method: str) -> int:
    return check_int(num_classes, "num_classes", method, 1, fix="the task must have at least one class")


def backbone_features(backbone: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """The backbone's pooled, final-normed features ``(B, d)`` (CLS token for ViT-B/16), with
    gradients wherever the backbone has trainable parameters."""
    x = embed_tokens(backbone, images)
    for block in backbone.blocks:
        x = block(x)
    return pool_tokens(backbone, x)


def _final_norm_modules(backbone: VisionTransformer) -> list[nn.Module]:
    """The modules between the last block and the head: final norm (``norm`` or ``fc_norm``) and an
    attention-pool if the backbone has one. Modules without parameters (Identity) are left out."""
    mods = [backbone.norm, backbone.fc_norm, getattr(backbone, "attn_pool", None)]
    return [m for m in mods if m is not None and any(True for _ in m.parameters())]


# --- Full -----------------------------------------------------------------------------------------


class FullFinetuneViT(ViTClassifier):
    """Every parameter trains; the backbone follows ``train()`` (its dropout is active in training)."""

    freeze_backbone_mode = False

    def __init__(self, backbone, num_classes: int, dropout: float | None = 0.1):
        backbone = check_backbone(backbone, "full")
        num_classes = _num_classes(num_classes, "full")
        if dropout is not None:
            set_backbone_dropout(backbone, check_prob(dropout, "dropout", "full"))
        super().__init__(backbone, MlpHead(backbone.embed_dim, num_classes))
        for p in self.parameters():
            p.requires_grad_(True)
        self.train()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(backbone_features(self.backbone, images))


def set_backbone_dropout(backbone: VisionTransformer, p: float) -> None:
    """Set the dropout that VPT's fine-tuning keeps active (its ViT config ``dropout_rate``).

    The official ViT (KMnP/vpt, taken from jeonsworld/ViT-pytorch) applies ``dropout_rate`` (0.1)
    after the embeddings and inside every MLP (after the activation and after fc2); both attention
    dropouts use ``attention_dropout_rate`` (0.0). In timm those are ``pos_drop`` and each block's
    ``mlp.drop1``/``mlp.drop2``; attention dropouts and the pre-head dropout are left untouched.
    They become :class:`FastDropout` (the same dropout, a cheaper CPU mask).
    """
    owners = [(backbone, "pos_drop")]
    for block in backbone.blocks:
        mlp = getattr(block, "mlp", None)
        owners += [(mlp, "drop1"), (mlp, "drop2")]
    for owner, name in owners:
        if isinstance(getattr(owner, name, None), nn.Dropout):
            setattr(owner, name, FastDropout(p))


@register_method("full", family="vit", paper="vpt")
def full(backbone, num_classes: int, dropout: float | None = 0.1):
    """Full fine-tuning: all backbone weights and a Linear head (``dropout``: backbone dropout, VPT 0.1; null keeps the backbone's own)."""
    return FullFinetuneViT(backbone, num_classes, dropout=dropout)


# --- Linear and MLP-k: heads on frozen features ----------------------------------------------------


class FrozenFeatureViT(ViTClassifier):
    """A frozen backbone and a ``num_layers``-layer head on its pooled features.

    Defines ``encode_frozen``/``forward_head`` so the training loop can compute features once.
    """

    def __init__(self, backbone, num_classes: int, num_layers: int = 1, dropout: float = 0.1, method: str = "linear"):
        backbone = freeze(check_backbone(backbone, method))
        num_classes = _num_classes(num_classes, method)
        super().__init__(backbone, MlpHead(backbone.embed_dim, num_classes, num_layers=num_layers, dropout=dropout))
        self.train()

    @torch.no_grad()
    def encode_frozen(self, images: torch.Tensor) -> torch.Tensor:
        return backbone_features(self.backbone, images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.encode_frozen(images))


@register_method("linear", family="vit", paper="vpt")
def linear(backbone, num_classes: int):
    """Linear probing: a Linear head on the frozen backbone's features."""
    return FrozenFeatureViT(backbone, num_classes, num_layers=1, method="linear")


@register_method("mlp", family="vit", paper="vpt")
def mlp(backbone, num_classes: int, k: int = 3, dropout: float = 0.1):
    """MLP-k: (k−1)×[Linear(d)→ReLU→BatchNorm1d→Dropout] → Linear head on frozen features (paper: k=3)."""
    k = check_int(k, "k", "mlp", 1, fix="set k to the number of Linear layers of the head, e.g. 3 (the paper's MLP-3); k=1 is the 'linear' method")
    return FrozenFeatureViT(backbone, num_classes, num_layers=k, dropout=check_prob(dropout, "dropout", "mlp"), method="mlp")


# --- Partial-k ------------------------------------------------------------------------------------


class PartialViT(ViTClassifier):
    """The last ``k`` blocks, the final norm and the head train; earlier blocks are frozen.

    The frozen blocks run without autograd (nothing before them trains) and, without augmentation,
    only once per dataset (``encode_frozen``), so a step costs the last ``k`` blocks alone.
    """

    def __init__(self, backbone, num_classes: int, k: int = 1):
        backbone = freeze(check_backbone(backbone, "partial"))
        num_classes = _num_classes(num_classes, "partial")
        depth = len(backbone.blocks)
        k = check_int(
            k, "k", "partial", 1, depth,
            fix=f"set k to the number of last blocks to tune, between 1 and {depth} (this backbone's depth); "
            "the paper's Partial-1 is k=1, and k=0 would be the 'linear' method",
        )
        super().__init__(backbone, MlpHead(backbone.embed_dim, num_classes))
        self.k = k
        for m in self.trainable_backbone_modules():
            for p in m.parameters():
                p.requires_grad_(True)
        self.train()

    def trainable_backbone_modules(self) -> list[nn.Module]:
        return list(self.backbone.blocks[len(self.backbone.blocks) - self.k :]) + _final_norm_modules(self.backbone)

    @torch.no_grad()
    def encode_frozen(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens after the frozen blocks ``(B, N, d)``: deterministic, so the training loop can
        compute them once per dataset and each step runs only the last ``k`` blocks."""
        bb = self.backbone
        x = embed_tokens(bb, images)
        for block in bb.blocks[: len(bb.blocks) - self.k]:
            x = block(x)
        return x

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        for block in bb.blocks[len(bb.blocks) - self.k :]:
            tokens = block(tokens)
        return self.head(pool_tokens(bb, tokens))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.encode_frozen(images))


@register_method("partial", family="vit", paper="vpt")
def partial(backbone, num_classes: int, k: int = 1):
    """Partial-k: the last k blocks + final norm + Linear head train (paper: Partial-1)."""
    return PartialViT(backbone, num_classes, k=k)


# --- Bias (BitFit) --------------------------------------------------------------------------------


class BiasViT(ViTClassifier):
    """Every bias term of the backbone (patch embedding, qkv, attention projection, MLP and
    LayerNorm biases) trains, as in the official VPT Bias baseline. A bias is a parameter named
    ``*.bias``; the official code matches ``bias`` anywhere in the name, which is the same set on a
    plain ViT."""

    def __init__(self, backbone, num_classes: int):
        backbone = freeze(check_backbone(backbone, "bias"))
        num_classes = _num_classes(num_classes, "bias")
        names = [n for n, _ in backbone.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
        if not names:
            raise ConfigError("method 'bias': the backbone has no bias terms to tune; choose another method")
        for n, p in backbone.named_parameters():
            if n in names:
                p.requires_grad_(True)
        super().__init__(backbone, MlpHead(backbone.embed_dim, num_classes))
        self.train()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(backbone_features(self.backbone, images))


@register_method("bias", family="vit", paper="vpt")
def bias(backbone, num_classes: int):
    """Bias (BitFit / TinyTL-bias): every backbone bias term + Linear head."""
    return BiasViT(backbone, num_classes)


# --- Adapter --------------------------------------------------------------------------------------


class Adapter(nn.Module):
    """Bottleneck ``x + up(GELU(down(x)))`` with ``down: d → d/r`` and ``up: d/r → d``.

    Only ``up`` is zero-initialised (weight and bias), so the adapter starts as the identity *and*
    learns: the first gradient of ``up.weight`` is ``g ⊗ GELU(down(x))``, non-zero because ``down``
    has a normal random init, and ``down`` gets gradients as soon as ``up`` moves away from zero.

    The official VPT adapter zero-initialises both ``down`` and ``up`` (weights and biases). Then
    ``GELU(down(x)) = 0`` for every input, so ``up.weight`` never receives a gradient and ``down``
    gets ``up.weightᵀ g = 0``: only ``up.bias`` ever learns, i.e. the "adapter" degenerates into one
    learned bias vector per block. We do not reproduce that.
    """

    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class MlpWithAdapter(nn.Module):
    """A block's frozen MLP followed by an adapter: ``adapter(mlp(x))`` (Pfeiffer placement: the
    adapter acts on the FFN output, before the block's own residual connection)."""

    def __init__(self, mlp: nn.Module, adapter: Adapter):
        super().__init__()
        self.ffn = mlp
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.ffn(x))


class AdapterViT(ViTClassifier):
    """A frozen ViT whose every block's MLP is followed by a trainable bottleneck adapter.

    With ``d`` the width and ``r`` the reduction, each adapter has ``2·d·(d/r) + d/r + d`` parameters.
    See :class:`Adapter` for the initialisation (identity at start, but able to learn).
    """

    def __init__(self, backbone, num_classes: int, reduction: int = 8):
        backbone = freeze(check_backbone(backbone, "adapter"))
        num_classes = _num_classes(num_classes, "adapter")
        d = backbone.embed_dim
        fix = f"set reduction to a divisor of the width {d} between 1 and {d} (bottleneck = {d} // reduction; the paper uses 8)"
        reduction = check_int(reduction, "reduction", "adapter", 1, d, fix=fix)
        if d % reduction:
            raise ConfigError(f"method 'adapter': reduction {reduction} does not divide the backbone width {d}; {fix}")
        for i, block in enumerate(backbone.blocks):
            if not hasattr(block, "mlp") or isinstance(block.mlp, MlpWithAdapter):
                raise ConfigError(f"method 'adapter': block {i} has no plain MLP to adapt (already adapted?); build the adapter on a fresh backbone")
            block.mlp = MlpWithAdapter(block.mlp, Adapter(d, d // reduction))
        super().__init__(backbone, MlpHead(d, num_classes))
        self.reduction = reduction
        self.train()

    def adapters(self) -> list[Adapter]:
        return [block.mlp.adapter for block in self.backbone.blocks]

    def trainable_backbone_modules(self) -> list[nn.Module]:
        return self.adapters()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(backbone_features(self.backbone, images))


@register_method("adapter", family="vit", paper="vpt")
def adapter(backbone, num_classes: int, reduction: int = 8):
    """Adapter: a d→d/reduction→GELU→d bottleneck (residual) after every block's MLP + Linear head."""
    return AdapterViT(backbone, num_classes, reduction=reduction)


# --- Side-tuning ----------------------------------------------------------------------------------


class SideNetwork(nn.Module):
    """A small conv net on the input pixels: three strided convs (3→w→2w→4w) with ReLU, global
    average pooling and Linear(4w → d). A light, randomly initialised stand-in for the official
    side network (AlexNet features → Linear(9216 → 768))."""

    def __init__(self, out_dim: int, width: int = 16, in_chans: int = 3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, w, 5, stride=2, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.proj = nn.Linear(4 * w, out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(images))


class SideTuneViT(ViTClassifier):
    """Side-tuning: ``σ(α)·ViT(x) + (1 − σ(α))·side(x)`` → Linear head, with α a learned scalar
    starting at 0 (an even blend). The ViT is frozen; the side network, α and the head train.
    α is excluded from weight decay (decay would pull the blend towards 1/2)."""

    def __init__(self, backbone, num_classes: int, width: int = 16):
        backbone = freeze(check_backbone(backbone, "sidetune"))
        num_classes = _num_classes(num_classes, "sidetune")
        width = check_int(width, "width", "sidetune", 1, fix="set width to the side network's first conv channels, e.g. 16")
        super().__init__(backbone, MlpHead(backbone.embed_dim, num_classes))
        in_chans = getattr(backbone.patch_embed.proj, "in_channels", 3)
        self.side = SideNetwork(backbone.embed_dim, width, in_chans)
        self.alpha = nn.Parameter(torch.zeros(()))
        self.train()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            base = backbone_features(self.backbone, images)
        gate = torch.sigmoid(self.alpha)
        return self.head(gate * base + (1.0 - gate) * self.side(images))

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"alpha"}


@register_method("sidetune", family="vit", paper="vpt")
def sidetune(backbone, num_classes: int, width: int = 16):
    """Sidetune: a small conv side network blended with the frozen ViT features by a learned gate."""
    return SideTuneViT(backbone, num_classes, width=width)
