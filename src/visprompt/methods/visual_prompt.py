"""Visual prompting (Bahng et al., arXiv 2203.17274): a learned additive image prompt for frozen CLIP.

A prompter adds one learned tensor, shared by all images, to a batch that is *already normalised*
with the backbone's mean/std (the official code prompts after CLIP's preprocess), with no clamping.
Three designs, as in the paper's code:

* :class:`PadPrompter` - a frame of width ``p`` around the image (the default, ``padding``);
* :class:`FixedPatchPrompter` - a ``p x p`` patch at the top-left corner;
* :class:`RandomPatchPrompter` - the same patch at a random location drawn per batch, also at eval.

Prompters know nothing about the backbone, so they run on any device: every tensor they create
follows the input's device. :class:`VisualPromptCLIP` puts a prompter in front of a frozen CLIP and
scores against text features computed once per class set (the official code re-runs the text
encoder, with gradients, every step, and never freezes CLIP's weights).

The paper's baselines: Text Prompt (TP) is :mod:`.zeroshot` with
``templates="This is a photo of a {}"``; FT is :mod:`.clip_finetune`; LP is :mod:`.logistic_probe`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.clip import encode_classnames
from ..errors import ConfigError
from ..utils import freeze
from .registry import register_method

DEFAULT_TEMPLATE = "This is a photo of a {}"  # the official visual prompting template
DEFAULT_PROMPT_SIZE = 30  # paper: p = 30 on 224 px images


def _pair(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def _check_input(x: torch.Tensor, channels: int, size: tuple[int, int], name: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels or tuple(x.shape[-2:]) != size:
        raise ValueError(f"{name} expects images of shape (B, {channels}, {size[0]}, {size[1]}), got {tuple(x.shape)}")


def _init(shape, std: float) -> nn.Parameter:
    """N(0, std²) prompt values (official: std 1).

    At 32 px an N(0, 1) frame covers ~40% of the image with noise as strong as the image itself
    and collapses the tiny CLIP's zero-shot predictions to two classes (measured: 30% -> 10% on
    vp-shapes val); the mini profile starts from std 0, i.e. from the zero-shot model.
    """
    if std < 0:
        raise ConfigError(f"visual prompt init_std must be >= 0, got {std}")
    return nn.Parameter(torch.randn(shape) * std)


class PadPrompter(nn.Module):
    """A learned frame of width ``prompt_size`` added around the image; zero inside.

    Four tensors as in the official code: ``pad_up``/``pad_down`` span the full width (so the
    corners belong to them), ``pad_left``/``pad_right`` fill the ``H - 2p`` rows between.
    Parameters: ``2·C·p·(H−p) + 2·C·p·(W−p)`` (69,840 for C=3, p=30, 224×224).
    ``init_std``: the official N(0, 1) init by default; see :func:`_init`.
    """

    def __init__(self, image_size, prompt_size: int, channels: int = 3, init_std: float = 1.0):
        super().__init__()
        h, w = _pair(image_size)
        p = int(prompt_size)
        if p <= 0 or 2 * p >= min(h, w):
            raise ConfigError(
                f"pad prompt_size must be > 0 and < half the image size {h}x{w}, got {prompt_size}; "
                f"choose prompt_size between 1 and {(min(h, w) - 1) // 2} "
                f"(the paper's 30/224 ratio is {max(1, round(30 * min(h, w) / 224))} at this size)"
            )
        self.image_size, self.prompt_size, self.channels = (h, w), p, channels
        self.pad_up = _init((1, channels, p, w), init_std)
        self.pad_down = _init((1, channels, p, w), init_std)
        self.pad_left = _init((1, channels, h - 2 * p, p), init_std)
        self.pad_right = _init((1, channels, h - 2 * p, p), init_std)

    def prompt(self, device=None) -> torch.Tensor:
        """The assembled prompt ``(1, C, H, W)``: the learned frame, exact zeros inside."""
        h, w = self.image_size
        p = self.prompt_size
        device = device if device is not None else self.pad_up.device
        inside = torch.zeros(1, self.channels, h - 2 * p, w - 2 * p, device=device, dtype=self.pad_up.dtype)
        middle = torch.cat([self.pad_left, inside, self.pad_right], dim=3)
        return torch.cat([self.pad_up, middle, self.pad_down], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.channels, self.image_size, type(self).__name__)
        return x + self.prompt(x.device)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, prompt_size={self.prompt_size}, channels={self.channels}"


class FixedPatchPrompter(nn.Module):
    """A learned ``p x p`` patch added at the top-left corner (``3p²`` parameters)."""

    def __init__(self, image_size, prompt_size: int, channels: int = 3, init_std: float = 1.0):
        super().__init__()
        h, w = _pair(image_size)
        p = int(prompt_size)
        if p <= 0 or p > min(h, w):
            raise ConfigError(
                f"patch prompt_size must be between 1 and the image size {h}x{w}, got {prompt_size}; "
                f"choose prompt_size between 1 and {min(h, w)}"
            )
        self.image_size, self.prompt_size, self.channels = (h, w), p, channels
        self.patch = _init((1, channels, p, p), init_std)

    def prompt(self, top: int = 0, left: int = 0) -> torch.Tensor:
        """The patch placed at ``(top, left)`` on a zero canvas ``(1, C, H, W)`` (F.pad: no in-place ops)."""
        h, w = self.image_size
        p = self.prompt_size
        return F.pad(self.patch, (left, w - p - left, top, h - p - top))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.channels, self.image_size, type(self).__name__)
        return x + self.prompt().to(x.device)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, prompt_size={self.prompt_size}, channels={self.channels}"


class RandomPatchPrompter(FixedPatchPrompter):
    """The patch at a random location drawn once per batch, in training *and* evaluation.

    Draw ``k`` comes from a CPU ``torch.Generator`` seeded from ``(seed, k)``, and ``k`` (the
    ``draws`` buffer) is saved with the trainable state, so a run resumed from a checkpoint makes
    the same draws as an uninterrupted one. Every position ``0..H-p`` × ``0..W-p`` is reachable
    (the official code's ``randint(0, S-p)`` never reaches the last one).
    """

    def __init__(self, image_size, prompt_size: int, seed: int = 0, channels: int = 3, init_std: float = 1.0):
        super().__init__(image_size, prompt_size, channels, init_std)
        self.seed = int(seed)
        self.register_buffer("draws", torch.zeros((), dtype=torch.int64))
        self.last_position: tuple[int, int] | None = None

    def _apply(self, fn, recurse=True):
        # The draw counter is bookkeeping, not data: keep it on the CPU whatever device the
        # module moves to, so reading it never synchronises a GPU (and works on 'meta').
        draws = self._buffers.pop("draws")
        try:
            return super()._apply(fn, recurse)
        finally:
            self._buffers["draws"] = draws

    def draw_position(self) -> tuple[int, int]:
        """Next ``(top, left)``; advances the draw counter."""
        h, w = self.image_size
        p = self.prompt_size
        k = int(self.draws)
        # SeedSequence hashes (seed, k) into a well-mixed 32-bit seed (mt19937 keeps only 32 bits).
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, k]).generate_state(1)[0]))
        top = int(torch.randint(0, h - p + 1, (), generator=g))
        left = int(torch.randint(0, w - p + 1, (), generator=g))
        self.draws.fill_(k + 1)
        self.last_position = (top, left)
        return top, left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.channels, self.image_size, type(self).__name__)
        return x + self.prompt(*self.draw_position()).to(x.device)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", seed={self.seed}"


PROMPTERS = {"pad": PadPrompter, "fixed_patch": FixedPatchPrompter, "random_patch": RandomPatchPrompter}


@torch.no_grad()
def render_prompt(prompter: nn.Module, mean, std, image: torch.Tensor | None = None) -> np.ndarray:
    """The learned prompt as an ``(H, W, C)`` float image in [0, 1], for the report figure.

    The prompt lives in normalised space, so it is de-normalised like an image (``v·std + mean``):
    zeros (the inside of a pad prompt) show as the mean colour. With ``image`` (a normalised
    ``(C, H, W)`` tensor) the prompted image is rendered instead. A random patch is shown at the
    top-left corner.
    """
    if image is None:
        prompt = prompter.prompt()
    elif isinstance(prompter, RandomPatchPrompter):
        prompt = image.unsqueeze(0).to(prompter.patch.device) + prompter.prompt()
    else:
        prompt = prompter(image.unsqueeze(0).to(next(prompter.parameters()).device))
    c = prompt.shape[1]
    mean = torch.as_tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).view(1, c, 1, 1)
    img = (prompt.float().cpu() * std + mean).clamp(0, 1)
    return img[0].permute(1, 2, 0).numpy()


class VisualPromptCLIP(nn.Module):
    """Frozen CLIP classifying ``prompter(x)`` against fixed class-name text features.

    Only the prompter trains. CLIP is frozen (``requires_grad=False``, always in eval mode), so
    autograd never creates weight gradients for it; the text features are constant and computed
    once per class set. Logits: ``logit_scale.exp() · cos(image features, text features)``.
    """

    def __init__(self, clip, tokenizer, classnames, prompter: nn.Module, template: str = DEFAULT_TEMPLATE):
        super().__init__()
        size = tuple(_pair(clip.visual.image_size))
        if getattr(prompter, "image_size", size) != size:
            raise ConfigError(f"prompter image size {prompter.image_size} does not match the CLIP image size {size}; build the prompter at {size}")
        self.clip = freeze(clip).eval()
        self.tokenizer = tokenizer
        self.template = template
        self.prompter = prompter
        self.register_buffer("text_features", torch.empty(0), persistent=False)
        self.set_classnames(classnames)

    def set_classnames(self, classnames) -> None:
        """(Re)compute the text features: the only place the text encoder runs."""
        self.classnames = list(classnames)
        self.text_features = encode_classnames(self.clip, self.tokenizer, self.classnames, self.template)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = F.normalize(self.clip.encode_image(self.prompter(images)).float(), dim=-1)
        return self.clip.logit_scale.exp() * feats @ self.text_features.t()


def _build(kind: str, clip, tokenizer, classnames, prompt_size: int, template: str, **kw) -> VisualPromptCLIP:
    prompter = PROMPTERS[kind](clip.visual.image_size, prompt_size, **kw)
    return VisualPromptCLIP(clip, tokenizer, classnames, prompter, template)


@register_method("vp_pad", family="clip", paper="vp")
def vp_pad(clip, tokenizer, classnames, prompt_size: int = DEFAULT_PROMPT_SIZE, template: str = DEFAULT_TEMPLATE, init_std: float = 1.0):
    """Visual prompting with a pad (frame) prompt on frozen CLIP."""
    return _build("pad", clip, tokenizer, classnames, prompt_size, template, init_std=init_std)


@register_method("vp_fixed_patch", family="clip", paper="vp")
def vp_fixed_patch(clip, tokenizer, classnames, prompt_size: int = DEFAULT_PROMPT_SIZE, template: str = DEFAULT_TEMPLATE, init_std: float = 1.0):
    """Visual prompting with a patch at the top-left corner on frozen CLIP."""
    return _build("fixed_patch", clip, tokenizer, classnames, prompt_size, template, init_std=init_std)


@register_method("vp_random_patch", family="clip", paper="vp")
def vp_random_patch(clip, tokenizer, classnames, prompt_size: int = DEFAULT_PROMPT_SIZE, template: str = DEFAULT_TEMPLATE, seed: int = 0,
                    init_std: float = 1.0):
    """Visual prompting with a patch at a random location per batch on frozen CLIP."""
    return _build("random_patch", clip, tokenizer, classnames, prompt_size, template, seed=seed, init_std=init_std)
