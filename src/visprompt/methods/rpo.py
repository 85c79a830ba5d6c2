"""RPO: Read-only Prompt Optimization (Lee et al., ICCV 2023, arXiv 2308.14960).

K learnable prompts on each encoder of a frozen CLIP. Attention masks hide every prompt column
from every row, so the prompts only *read* the original tokens and the original tokens compute
exactly what frozen CLIP computes. Text prompt i overwrites position EOT+1+i after the token and
positional embeddings (it has no positional embedding); visual prompts are appended after
``[CLS; patches] + positional_embedding`` and go through ``ln_pre``. Prompt i of the image is
paired only with prompt i of the text:
``logits = (1/K) sum_i exp(logit_scale) * img_i @ text_i^T``.

Two implementations of the same function (``fast`` in the config):

* plain (``fast=False``): the straightforward masked forward, as in the paper; every step runs
  every class prompt through the whole text tower and all image tokens with autograd.
* fast (default): exploits read-only-ness. The original tokens never see the prompts, so
  (text) each layer's keys/values of the class prompts are computed once per class set and cached,
  and a step pushes only the K prompt rows of each class through the layers; (vision) the image
  tokens run without autograd, keeping each layer's keys/values from the same projection the
  block's attention uses (the last layer computes only those: its outputs are never read), and
  only the K prompt rows are run with autograd. RPO puts its CLIP's blocks on
  ``backbones/clip_attention.py``'s ClipAttention, whose projection and SDPA the fast path's
  helpers call too, so its original tokens are bit-identical to frozen CLIP's, and it gives the
  plain path's logits and prompt gradients to fp32 rounding
  (tests/test_rpo.py). A training step costs about 1.3 frozen image forwards on ViT-B/16
  (batch 8, K=24, 10 classes, CPU, one thread; ``python -m visprompt.bench_rpo``), against 2.8 for
  the plain path (3.3 with nn.MultiheadAttention; ``python -m visprompt.bench``).

Without autograd (evaluation) the text features are cached until the prompts or classes change.

Two switches exist for the paper's ablations (params-only runs): ``read_only=False`` drops the
read-only masks, so the prompts *write*: image tokens attend to the visual prompts and prompts to
each other, and on the text side only CLIP's causal mask remains (prompts then read earlier
prompts; the original tokens precede them and stay unchanged). It always uses the plain path.
``init='random'`` replaces ST-initialisation by N(0, 0.02²) per element (CoOp's random context).

Deliberate differences from the official code (mlvlab/RPO): class names are formatted as CoOp
does (underscores -> spaces); sequence lengths and head counts come from the model (no hard-coded
ViT-B/16 sizes or 8 heads); masks are built per call and never stored on the attention modules
(the official block keeps the last mask on itself and reuses it in later mask-less calls).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from ..backbones.clip import format_classname
from ..backbones.clip_attention import ClipAttention, can_replace, merge_heads, use_sdpa_attention
from ..errors import ConfigError
from ..utils import freeze
from .coop import check_text_tower, text_head, tokenize_fitting
from .registry import register_method

DEFAULT_TEMPLATE = "a photo of a {}."
INIT_NOISE_NORM = 0.1  # ST-initialisation: each prompt = base + a random direction of this L2 norm
TEXT_CACHE_CHUNK = 256  # classes per frozen text pass when building the key/value cache
INITS = ("st", "random")
RANDOM_INIT_STD = 0.02  # init='random': the std of CoOp's random context vectors


def _check_blocks(blocks, where: str) -> None:
    for blk in blocks:
        attn = getattr(blk, "attn", None)
        if not isinstance(blk, ResidualAttentionBlock) or not (isinstance(attn, ClipAttention) or can_replace(attn)):
            raise ConfigError(
                f"RPO needs open_clip's standard ResidualAttentionBlock (batch-first self-attention) in the {where}; "
                f"got {type(blk).__name__}: use a plain CLIP such as ViT-B-16 or the mini CLIP"
            )


def check_rpo_clip(clip) -> None:
    """Fail early on CLIP variants whose towers RPO cannot drive token by token."""
    check_text_tower(clip, "rpo")
    visual = getattr(clip, "visual", None)
    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None or visual.proj is None:
        raise ConfigError(
            "RPO needs an open_clip CLIP whose image tower is a VisionTransformer with a class token, "
            f"ln_post and proj (no attentional pooling); got {type(visual).__name__}"
        )
    _check_blocks(visual.transformer.resblocks, "image tower")
    _check_blocks(clip.transformer.resblocks, "text tower")


def frozen_block(blk, x: torch.Tensor, attn_mask: torch.Tensor | None = None):
    """One frozen block over the original tokens; returns ``(output, keys, values)``.

    The same arithmetic as the block's own forward with :class:`ClipAttention` (one projection,
    SDPA), so the original tokens are bit-identical to frozen CLIP's, while the keys and values
    come out of that projection instead of being computed a second time for the prompts. They are
    returned contiguous: the prompts' attention reads them, and the queries' buffer is freed.
    """
    attn = blk.attn
    q, k, v = attn.project(blk.ln_1(x))
    o = attn.attend(q, k, v, attn_mask)
    x = x + blk.ls_1(attn.out_proj(merge_heads(o)))
    x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    return x, k.contiguous(), v.contiguous()


def frozen_kv(blk, x: torch.Tensor, attn_mask: torch.Tensor | None = None):
    """Only the keys and values of a frozen block (bit-identical to :func:`frozen_block`'s; they do
    not depend on ``attn_mask``, which is taken for symmetry with it)."""
    k, v = blk.attn.project(blk.ln_1(x), "kv")
    return k.contiguous(), v.contiguous()


def frozen_pass(blocks, x: torch.Tensor, attn_mask: torch.Tensor | None = None, keep_states: bool = False):
    """Run frozen ``blocks``; return each layer's output (if ``keep_states``) and its (keys, values).

    Prompts read only the keys and values of the original tokens, so without ``keep_states`` the
    last block computes just those: its attention, output projection and MLP over the original
    tokens (about 20/24 of a block's work) would produce outputs nobody reads.
    """
    states, kvs = [], []
    last = len(blocks) - 1
    for i, blk in enumerate(blocks):
        if i == last and not keep_states:
            kvs.append(frozen_kv(blk, x, attn_mask))
            break
        x, k, v = frozen_block(blk, x, attn_mask)
        kvs.append((k, v))
        if keep_states:
            states.append(x)
    return states, kvs


def prompt_block(blk, p: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One block for the prompt rows ``p`` (B, K, D) only.

    Prompts read the original tokens' keys/values ``k``, ``v`` (B, H, N, d) and never each other
    or themselves, so only their queries are projected. ``key_mask`` (bool, True = may attend)
    limits which original tokens they read.
    """
    attn = blk.attn
    q, = attn.project(blk.ln_1(p), "q")
    k, v = k.to(q.dtype), v.to(q.dtype)
    if q.device.type == "cpu":
        # K queries against N frozen keys: plain matmuls let autograd compute the queries' gradient
        # only (the fused CPU kernel's backward also forms key/value gradients nobody needs: 13.4 vs
        # 8.5 ms a ViT-B/16 layer's attention, forward + backward, at batch 8, K=24, one thread)
        s = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
        if key_mask is not None:
            s = s.masked_fill(~key_mask, float("-inf"))
        o = torch.softmax(s, dim=-1) @ v
    else:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    p = p + blk.ls_1(attn.out_proj(merge_heads(o)))
    return p + blk.ls_2(blk.mlp(blk.ln_2(p)))


def st_init(base: torch.Tensor, K: int, generator: torch.Generator) -> torch.Tensor:
    """K copies of ``base`` each moved by a random direction of L2 norm exactly INIT_NOISE_NORM."""
    noise = torch.randn(K, base.numel(), generator=generator)
    return base.detach().float().cpu().reshape(1, -1) + INIT_NOISE_NORM * F.normalize(noise, dim=-1)


def random_init(base: torch.Tensor, K: int, generator: torch.Generator) -> torch.Tensor:
    """The ablation's baseline: K prompts drawn from N(0, RANDOM_INIT_STD²), ignoring ``base``."""
    return RANDOM_INIT_STD * torch.randn(K, base.numel(), generator=generator)


class RPO(nn.Module):
    """Frozen CLIP + K read-only prompts on each encoder (ST-initialised)."""

    def __init__(self, clip, tokenizer, classnames, K: int = 24, template: str = DEFAULT_TEMPLATE, fast: bool = True, seed: int = 0,
                 read_only: bool = True, init: str = "st"):
        super().__init__()
        if K < 1:
            raise ConfigError(f"rpo: K (prompts per encoder) must be >= 1, got {K}")
        if init not in INITS:
            raise ConfigError(f"rpo: init must be one of {INITS} (ST-initialisation or random), got {init!r}")
        if template.count("{}") != 1:
            raise ConfigError(f"rpo: template {template!r} must contain exactly one '{{}}' for the class name")
        check_rpo_clip(clip)
        # one attention arithmetic for the plain path (the towers' forward) and the fast path's helpers
        self.clip = freeze(use_sdpa_attention(clip)).eval()
        self.tokenizer = tokenizer
        self.template = template
        self.K = K
        self.read_only = bool(read_only)
        self.fast = bool(fast) and self.read_only  # the cached path relies on read-only masks
        device = clip.logit_scale.device

        eot_id = getattr(tokenizer, "eot_token_id", None)
        if eot_id is None:
            eot_id = int(tokenizer([""], context_length=clip.context_length).max())
        gen = torch.Generator().manual_seed(seed)
        make = st_init if init == "st" else random_init
        self.text_prompts = nn.Parameter(make(clip.token_embedding.weight[eot_id], K, gen).to(device))
        self.visual_prompts = nn.Parameter(make(clip.visual.class_embedding, K, gen).to(device))

        for name in ("text_embeds", "eot", "text_k", "text_v", "text_key_mask"):
            self.register_buffer(name, torch.empty(0), persistent=False)
        self._class_set = 0  # bumped by set_classnames; part of the eval-time text-feature cache key
        self._text_cache = None
        self.set_classnames(classnames)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    # ---- class set -------------------------------------------------------------------------
    @torch.no_grad()
    def set_classnames(self, classnames) -> None:
        """Tokenize the class prompts, check K fits, and rebuild the text-side cache."""
        clip = self.clip
        classnames = list(classnames)
        texts = [self.template.format(format_classname(c)) for c in classnames]
        tokens, eot = tokenize_fitting(
            self.tokenizer,
            texts,
            clip.context_length,
            extra=self.K,
            what=f"rpo: K={self.K} text prompts after the class prompt",
            fix="set K <= {free} (rpo cfg key K), or use a shorter template or shorter class names",
        )
        # checked before anything changes, so a class set that does not fit leaves the model as it was
        self.classnames = classnames
        self._class_set += 1
        self._text_cache = None
        device = self.text_prompts.device
        tokens, eot = tokens.to(device), eot.to(device)
        self.eot = eot
        # Token + positional embedding of the class prompts, computed once (the plain path's input).
        self.text_embeds = clip.token_embedding(tokens).float() + clip.positional_embedding.float()
        # Fast path: keys/values of the original tokens at every layer, as CLIP's causal forward
        # computes them; prompts only read positions 0..EOT, so keep columns up to the longest EOT.
        # Classes go through in chunks so a large class set (ImageNet) never holds every layer's
        # full-length keys/values at once.
        cut = int(eot.max()) + 1
        ks, vs = [], []
        for start in range(0, len(classnames), TEXT_CACHE_CHUNK):
            _, kvs = frozen_pass(clip.transformer.resblocks, self.text_embeds[start : start + TEXT_CACHE_CHUNK], clip.attn_mask)
            ks.append(torch.stack([k[:, :, :cut] for k, _ in kvs]))
            vs.append(torch.stack([v[:, :, :cut] for _, v in kvs]))
            del kvs
        self.text_k = torch.cat(ks, dim=1) if len(ks) > 1 else ks[0]  # (layers, n_cls, H, cut, d)
        self.text_v = torch.cat(vs, dim=1) if len(vs) > 1 else vs[0]
        self.text_key_mask = (torch.arange(cut, device=device)[None, :] <= eot[:, None])[:, None, None, :]

    # ---- text side -------------------------------------------------------------------------
    def _prompt_positions(self) -> torch.Tensor:
        """(n_cls, K) positions EOT+1+i of the text prompts."""
        return self.eot[:, None] + 1 + torch.arange(self.K, device=self.eot.device)

    def text_sequences(self) -> torch.Tensor:
        """Embedded class prompts with text prompt i written over position EOT+1+i: (n_cls, L, width)."""
        n_cls, _, width = self.text_embeds.shape
        idx = self._prompt_positions()[..., None].expand(-1, -1, width)
        return self.text_embeds.scatter(1, idx, self.text_prompts.unsqueeze(0).expand(n_cls, -1, -1).to(self.text_embeds.dtype))

    def text_attn_mask(self) -> torch.Tensor:
        """CLIP's causal mask plus -inf on every column after each class's EOT: (n_cls * heads, L, L).
        Without read-only masks (ablation): CLIP's causal mask alone, (L, L)."""
        causal = self.clip.attn_mask
        if not self.read_only:
            return causal
        L = causal.shape[0]
        after_eot = torch.arange(L, device=causal.device)[None, :] > self.eot[:, None]  # (n_cls, L)
        mask = causal.unsqueeze(0).masked_fill(after_eot[:, None, :], float("-inf"))
        return mask.repeat_interleave(self.clip.transformer.resblocks[0].attn.num_heads, dim=0)

    def _text_plain(self) -> torch.Tensor:
        x = self.clip.transformer(self.text_sequences(), attn_mask=self.text_attn_mask())
        idx = self._prompt_positions()[..., None].expand(-1, -1, x.shape[-1])
        return text_head(self.clip, x.gather(1, idx))

    def _text_fast(self) -> torch.Tensor:
        n_cls = self.text_embeds.shape[0]
        p = self.text_prompts.unsqueeze(0).expand(n_cls, -1, -1)
        for i, blk in enumerate(self.clip.transformer.resblocks):
            p = prompt_block(blk, p, self.text_k[i], self.text_v[i], self.text_key_mask)
        return text_head(self.clip, p)

    def text_features(self) -> torch.Tensor:
        """Unnormalised text features of the K prompts for every class: (n_cls, K, embed_dim).

        Without autograd (evaluation) they are computed once and reused until the text prompts,
        the class set, the path or the autocast state change: evaluating a split then costs image
        passes only.
        """
        if torch.is_grad_enabled() and self.text_prompts.requires_grad:
            return self._text_fast() if self.fast else self._text_plain()
        p = self.text_prompts
        key = (self._class_set, p.data_ptr(), p.device, p.dtype, p._version, self.fast, torch.is_autocast_enabled(p.device.type))
        if self._text_cache is None or self._text_cache[0] != key:
            self._text_cache = None  # free the old features before computing new ones
            feats = self._text_fast() if self.fast else self._text_plain()
            self._text_cache = (key, feats.detach())
        return self._text_cache[1]

    # ---- image side ------------------------------------------------------------------------
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``[CLS; patches] + positional_embedding``, before ln_pre: (B, N, width)."""
        visual = self.clip.visual
        x = visual.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        return visual.patch_dropout(x)

    def _image_head(self, p: torch.Tensor) -> torch.Tensor:
        return self.clip.visual.ln_post(p) @ self.clip.visual.proj

    def _image_plain(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        x = self.image_tokens(images)
        B, N, _ = x.shape
        x = torch.cat([x, self.visual_prompts.unsqueeze(0).expand(B, -1, -1).to(x.dtype)], dim=1)
        mask = None
        if self.read_only:
            mask = torch.zeros(N + self.K, N + self.K, device=x.device, dtype=x.dtype)
            mask[:, N:] = float("-inf")
        x = visual.transformer(visual.ln_pre(x), attn_mask=mask)
        return self._image_head(x[:, N:])

    def frozen_image_pass(self, images: torch.Tensor, keep_states: bool = False):
        """The original image tokens through the frozen tower (no autograd): layer outputs, (keys, values)."""
        with torch.no_grad():
            x = self.clip.visual.ln_pre(self.image_tokens(images))
            return frozen_pass(self.clip.visual.transformer.resblocks, x, keep_states=keep_states)

    def _image_fast(self, images: torch.Tensor) -> torch.Tensor:
        _, kvs = self.frozen_image_pass(images)
        visual = self.clip.visual
        p = visual.ln_pre(self.visual_prompts).unsqueeze(0).expand(images.shape[0], -1, -1)
        for blk, (k, v) in zip(visual.transformer.resblocks, kvs):
            p = prompt_block(blk, p, k, v)
        return self._image_head(p)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features of the K prompts: (B, K, embed_dim)."""
        return self._image_fast(images) if self.fast else self._image_plain(images)

    # ---- logits ----------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        img = F.normalize(self.image_features(images), dim=-1)
        txt = F.normalize(self.text_features(), dim=-1).to(img.dtype)
        # prompt i of the image pairs only with prompt i of the text; average over the K pairs
        return self.clip.logit_scale.exp() * torch.einsum("bkd,ckd->bc", img, txt) / self.K


@register_method("rpo", family="clip", paper="rpo", dataset_template=False)
def rpo(clip, tokenizer, classnames, K: int = 24, template: str = DEFAULT_TEMPLATE, fast: bool = True, seed: int = 0, read_only: bool = True, init: str = "st"):
    """RPO: K read-only prompts per encoder of a frozen CLIP (fast cached path by default)."""
    return RPO(clip, tokenizer, classnames, K=K, template=template, fast=fast, seed=seed, read_only=read_only, init=init)
