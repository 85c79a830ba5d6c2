"""One attention path for open_clip's CLIP towers: a contiguous q/k/v projection, then SDPA.

open_clip's ``ResidualAttentionBlock`` calls ``nn.MultiheadAttention(batch_first=True)``. Under
autograd or with a mask, PyTorch's module transposes the batch-first input to (N, B, D) and
projects that non-contiguous view, which runs as a per-position batched matmul (about 5x the time
of one contiguous projection). It slows every CLIP user here: the tiny CLIP's pretraining (causal
text mask), visual prompting (backprop to the input), CoOp/CoCoOp (text tower every step), RPO.

:class:`ClipAttention` replaces it inside those blocks: the same parameters under the same names
(``in_proj_weight``, ``in_proj_bias``, ``out_proj``), so open_clip/OpenAI checkpoints and
``tiny_clip.pt`` load unchanged, and the same call as open_clip makes
(``attn(x, x, x, need_weights=False, attn_mask=mask)`` -> ``(out, None)``). It projects the
(B, N, D) input with one ``F.linear`` and attends with ``F.scaled_dot_product_attention``.
RPO's token-level helpers (``methods/rpo.py``) call :meth:`ClipAttention.project` and
:meth:`ClipAttention.attend` too, so its fast path and the towers' own forward share one arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

_ROWS = {"qkv": (0, 3), "q": (0, 1), "kv": (1, 3)}  # which thirds of the packed in_proj rows


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, D) -> (B, H, N, D/H), a view."""
    B, N, D = x.shape
    return x.view(B, N, num_heads, D // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d) -> (B, N, H*d)."""
    B, H, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, H * d)


class ClipAttention(nn.Module):
    """Batch-first multi-head self-attention with ``nn.MultiheadAttention``'s parameters and call.

    Masks follow ``nn.MultiheadAttention``: ``(L, S)`` or ``(B * heads, L, S)``; a float mask is
    added to the scores, a bool mask blocks where True. Attention weights are never formed
    (``need_weights`` must be False), and there is no ``key_padding_mask``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = True
        kw = {"device": device, "dtype": dtype}
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **kw))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **kw)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.MultiheadAttention's initialisation (open_clip re-initialises its towers anyway)."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> "ClipAttention":
        """A ClipAttention holding ``mha``'s own Parameter objects (and its ``out_proj`` module)."""
        if not can_replace(mha):
            raise ValueError(f"cannot replace {mha}: needs batch_first=True, packed q/k/v, no bias_k/bias_v, no add_zero_attn")
        # built on the meta device: its own tensors are replaced by mha's at once
        new = cls(mha.embed_dim, mha.num_heads, mha.dropout, bias=mha.in_proj_bias is not None, device="meta")
        new.in_proj_weight = mha.in_proj_weight
        new.in_proj_bias = mha.in_proj_bias
        new.out_proj = mha.out_proj
        return new.train(mha.training)

    def to_mha(self) -> nn.MultiheadAttention:
        """The ``nn.MultiheadAttention`` holding these Parameter objects (for comparisons and benchmarks)."""
        mha = nn.MultiheadAttention(self.embed_dim, self.num_heads, self.dropout, bias=self.in_proj_bias is not None, batch_first=True, device="meta")
        mha.in_proj_weight = self.in_proj_weight
        mha.in_proj_bias = self.in_proj_bias
        mha.out_proj = self.out_proj
        return mha.train(self.training)

    def project(self, x: torch.Tensor, parts: str = "qkv") -> tuple[torch.Tensor, ...]:
        """Queries, keys and/or values (``parts``: "qkv", "q" or "kv") of ``x`` (B, N, D), each (B, H, N, d).

        One ``F.linear`` over the needed rows of ``in_proj_weight`` on the contiguous input.
        """
        lo, hi = _ROWS[parts]
        D = self.embed_dim
        b = self.in_proj_bias[lo * D : hi * D] if self.in_proj_bias is not None else None
        y = F.linear(x, self.in_proj_weight[lo * D : hi * D], b)
        return tuple(split_heads(t, self.num_heads) for t in y.chunk(hi - lo, dim=-1))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """SDPA of (B, H, L, d) queries over (B, H, S, d) keys/values; ``attn_mask`` as nn.MultiheadAttention takes it."""
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                attn_mask = ~attn_mask  # nn.MultiheadAttention: True = blocked; SDPA: True = may attend
            else:
                attn_mask = attn_mask.to(q.dtype)
            if attn_mask.dim() == 3:
                attn_mask = attn_mask.view(q.shape[0], self.num_heads, *attn_mask.shape[1:])
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = False, attn_mask: torch.Tensor | None = None):
        if need_weights or key_padding_mask is not None:
            raise NotImplementedError("ClipAttention computes no attention weights and takes no key_padding_mask")
        if key is query and value is query:
            q, k, v = self.project(query)
        else:  # cross-attention (open_clip's CoCa decoder): separate projections
            q, = self.project(query, "q")
            w = self.in_proj_weight.chunk(3)
            b = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
            k = split_heads(F.linear(key, w[1], b[1]), self.num_heads)
            v = split_heads(F.linear(value, w[2], b[2]), self.num_heads)
        o = self.attend(q, k, v, attn_mask)
        return self.out_proj(merge_heads(o)), None

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"


def can_replace(attn: nn.Module) -> bool:
    """Whether ``attn`` is an ``nn.MultiheadAttention`` that :class:`ClipAttention` computes exactly."""
    return (
        isinstance(attn, nn.MultiheadAttention)
        and attn.batch_first
        and attn._qkv_same_embed_dim
        and attn.in_proj_weight is not None
        and attn.bias_k is None
        and attn.bias_v is None
        and not attn.add_zero_attn
    )


def _blocks(model: nn.Module) -> list[ResidualAttentionBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualAttentionBlock)]


def use_sdpa_attention(model: nn.Module) -> nn.Module:
    """Swap :class:`ClipAttention` into every open_clip ``ResidualAttentionBlock`` of ``model``, in place.

    The blocks keep their Parameter objects (values, ``requires_grad``, device); blocks that already
    have it, or whose attention it cannot replace (not batch-first, ...), are left alone. Returns ``model``.
    """
    for blk in _blocks(model):
        if can_replace(blk.attn):
            blk.attn = ClipAttention.from_mha(blk.attn)
    return model


def use_torch_attention(model: nn.Module) -> nn.Module:
    """The inverse of :func:`use_sdpa_attention`: back to ``nn.MultiheadAttention`` (for comparisons and benchmarks)."""
    for blk in _blocks(model):
        if isinstance(blk.attn, ClipAttention):
            blk.attn = blk.attn.to_mha()
    return model
