"""CoOp (Zhou et al., IJCV 2022): learnable context words in front of each class name.

The prompt of class c is ``[SOS][ctx_1..ctx_M][CLASS].[EOS]``; the M context vectors are shared by
all classes and are the only trainable parameters (M * text_width: 2,048 at M=4, width 512). The
class feature is the EOT token's, as in CLIP. The frozen parts of the prompts (SOS, class name,
'.', EOS) are embedded once per class set; the text tower runs every step because the context is
trainable.

Choices (see reference/rpo.md): class names are formatted as CLIP reads them (underscores as
spaces, as CoOp does); text sequences are cut after the longest prompt's EOT, which is exact
because CLIP's causal mask hides later positions from the EOT (it saves most of the text tower on
a 77-token context). The helpers at the top are shared with CoCoOp and RPO.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.clip import format_classname
from ..errors import ConfigError
from ..utils import freeze
from .registry import register_method

DEFAULT_CTX_INIT = "a photo of a"


def check_text_tower(clip, method: str) -> None:
    """Fail early on CLIP variants without the built-in causal text transformer we drive by hand."""
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection", "attn_mask")
    missing = [n for n in needed if getattr(clip, n, None) is None]
    if missing or getattr(clip, "text_pool_type", "argmax") != "argmax":
        raise ConfigError(
            f"method {method!r} needs an open_clip CLIP with its own causal text transformer pooled at the EOT "
            f"token (missing: {missing or 'argmax pooling'}); use a plain CLIP such as ViT-B-16 or the mini CLIP"
        )


def tokenize_fitting(
    tokenizer, texts: list[str], context_length: int, extra: int = 0, what: str = "text prompt", fix: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``(n, context_length)`` and EOT positions ``(n,)``; raise if a text plus ``extra`` tokens doesn't fit.

    The tokenizer silently truncates long texts, so tokenize with room to spare and measure.
    ``fix`` (formatted with ``free``, the number of extra tokens that would fit) replaces the
    generic advice in the error message.
    """
    long = tokenizer(texts, context_length=4 * context_length + extra)
    eot = long.argmax(dim=-1)  # CLIP's EOT id is the largest in the vocabulary
    n_tokens = eot + 1
    worst = int(n_tokens.argmax())
    if int(n_tokens[worst]) + extra > context_length:
        free = context_length - int(n_tokens[worst])
        raise ConfigError(
            f"{what} does not fit the text context: the longest prompt {texts[worst]!r} uses "
            f"{int(n_tokens[worst])} tokens (SOT + text + EOT) of the context length {context_length}"
            + (f" and needs {extra} more, so at most {max(free, 0)} fit" if extra else "")
            + "; "
            + (fix.format(free=max(free, 0)) if fix else "use a shorter template or class name, or fewer prompt tokens")
        )
    return long[:, :context_length].contiguous(), eot


def text_head(clip, x: torch.Tensor) -> torch.Tensor:
    """ln_final then the text projection (a Parameter or an nn.Linear in open_clip)."""
    x = clip.ln_final(x)
    proj = clip.text_projection
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def run_text_tower(clip, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
    """Text features at the EOT of embedded sequences ``x`` (n, L', width), L' <= context length.

    Positions after the longest EOT never reach an EOT under the causal mask, so ``x`` may be cut
    there; the mask is cut to match.
    """
    L = x.shape[1]
    x = x + clip.positional_embedding[:L].to(x.dtype)
    x = clip.transformer(x, attn_mask=clip.attn_mask[:L, :L])
    return text_head(clip, x[torch.arange(x.shape[0], device=x.device), eot])


class PromptContext(nn.Module):
    """The frozen pieces of ``[SOS][ctx][CLASS].[EOS]`` for one class set, around a trainable context.

    Shared by CoOp and CoCoOp: holds ``ctx`` (M, width) and the embedded prefix/suffix buffers.
    """

    def __init__(self, clip, tokenizer, n_ctx: int = 4, ctx_init: str | None = None, seed: int = 0, method: str = "coop"):
        super().__init__()
        check_text_tower(clip, method)
        self.clip_ref = [clip]  # not a submodule: the owner registers CLIP once
        self.tokenizer = tokenizer
        self.method = method
        width = clip.token_embedding.weight.shape[1]
        if ctx_init is None:
            ctx_init = DEFAULT_CTX_INIT if n_ctx == 4 else ""
        if ctx_init:
            tokens, eot = tokenize_fitting(tokenizer, [ctx_init], clip.context_length, what=f"{method} ctx_init")
            ids = tokens[0, 1 : int(eot[0])]
            if len(ids) != n_ctx:
                raise ConfigError(
                    f"{method}: ctx_init {ctx_init!r} is {len(ids)} tokens but n_ctx={n_ctx}; set n_ctx={len(ids)} "
                    f"or ctx_init='' for a random N(0, 0.02) context"
                )
            with torch.no_grad():
                init = clip.token_embedding.weight[ids.to(clip.token_embedding.weight.device)].clone().float()
        else:
            if n_ctx < 1:
                raise ConfigError(f"{method}: n_ctx must be >= 1, got {n_ctx}")
            gen = torch.Generator().manual_seed(seed)
            init = torch.randn(n_ctx, width, generator=gen) * 0.02
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(init.to(clip.token_embedding.weight.device))
        self.register_buffer("prefix", torch.empty(0), persistent=False)
        self.register_buffer("suffix", torch.empty(0), persistent=False)
        self.register_buffer("eot", torch.empty(0, dtype=torch.long), persistent=False)

    @torch.no_grad()
    def set_classnames(self, classnames: list[str]) -> None:
        clip = self.clip_ref[0]
        placeholder = " ".join(["X"] * self.n_ctx)
        texts = [f"{placeholder} {format_classname(c)}." for c in classnames]
        tokens, eot = tokenize_fitting(self.tokenizer, texts, clip.context_length, what=f"{self.method} class prompt")
        cut = int(eot.max()) + 1
        device = clip.token_embedding.weight.device
        emb = clip.token_embedding(tokens[:, :cut].to(device)).float()
        self.prefix = emb[:, :1]
        self.suffix = emb[:, 1 + self.n_ctx :]
        self.eot = eot.to(device)

    def sequences(self, ctx: torch.Tensor) -> torch.Tensor:
        """Embedded prompts: ``ctx`` (M, w) -> (n_cls, L', w); (B, M, w) -> (B, n_cls, L', w)."""
        n_cls = self.prefix.shape[0]
        if ctx.dim() == 2:
            return torch.cat([self.prefix, ctx.unsqueeze(0).expand(n_cls, -1, -1), self.suffix], dim=1)
        B = ctx.shape[0]
        prefix = self.prefix.unsqueeze(0).expand(B, -1, -1, -1)
        suffix = self.suffix.unsqueeze(0).expand(B, -1, -1, -1)
        return torch.cat([prefix, ctx.unsqueeze(1).expand(-1, n_cls, -1, -1), suffix], dim=2)


class CoOp(nn.Module):
    """Frozen CLIP + M learnable context vectors shared by all classes."""

    def __init__(self, clip, tokenizer, classnames, n_ctx: int = 4, ctx_init: str | None = None, seed: int = 0):
        super().__init__()
        self.clip = freeze(clip).eval()
        self.prompt = PromptContext(clip, tokenizer, n_ctx, ctx_init, seed, method="coop")
        self.set_classnames(classnames)

    def set_classnames(self, classnames) -> None:
        self.classnames = list(classnames)
        self.prompt.set_classnames(self.classnames)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def text_features(self) -> torch.Tensor:
        x = self.prompt.sequences(self.prompt.ctx)
        return F.normalize(run_text_tower(self.clip, x, self.prompt.eot), dim=-1)

    def encode_frozen(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image features: the image tower is frozen and nothing trainable touches it."""
        with torch.no_grad():
            return F.normalize(self.clip.encode_image(images).float(), dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.clip.logit_scale.exp() * features @ self.text_features().t().to(features.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.encode_frozen(images))


@register_method("coop", family="clip", paper="rpo")
def coop(clip, tokenizer, classnames, n_ctx: int = 4, ctx_init: str | None = None, seed: int = 0):
    """CoOp: learnable context words (4 from "a photo of a" by default; otherwise N(0, 0.02))."""
    return CoOp(clip, tokenizer, classnames, n_ctx=n_ctx, ctx_init=ctx_init, seed=seed)
