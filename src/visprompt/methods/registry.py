"""One registry for every method of every paper.

Protocol (what :func:`visprompt.train.fit` and the notebooks rely on):

* A method is an ``nn.Module`` whose ``forward(images)`` takes a batch already normalised with the
  backbone's mean/std, shape ``(B, 3, H, W)``, and returns logits ``(B, num_classes)``.
* Trainable parameters are exactly those with ``requires_grad=True``; everything frozen has
  ``requires_grad=False`` and its values never change.
* ``train(mode)`` keeps frozen sub-modules in eval mode (dropout off), as the VPT recipe does;
  a method that fine-tunes everything (``full``) may leave them in train mode.
* Optional ``no_weight_decay() -> set[str]``: names (as in ``named_parameters()``) excluded from
  weight decay, in the style of timm.
* Optional feature caching: a method whose trainable part sits on top of a frozen, deterministic
  encoder may define ``encode_frozen(images) -> Tensor`` and ``forward_head(features) -> logits``
  with ``forward(x) == forward_head(encode_frozen(x))``. The training loop then computes the frozen
  features once per dataset instead of every epoch (only when no augmentation is used).
* CLIP-family methods are built from class names and expose ``set_classnames(classnames)``,
  which rebuilds whatever depends on the classes (text features, caches) so that base-to-new
  evaluation can swap the class set after training.

Builders receive the backbone and keyword arguments from params.yaml:

* ``family='vit'``: ``builder(backbone: timm VisionTransformer, num_classes: int, **cfg)``
* ``family='clip'``: ``builder(clip: open_clip CLIP, tokenizer, classnames: list[str], **cfg)``

Modules in this package register themselves with :func:`register_method` at import time; the
registry imports every module of the package on first use, so adding a method means adding a
file, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, unknown_name

FAMILIES = ("vit", "clip")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str  # 'vit' or 'clip'
    paper: str  # 'vpt', 'vp' or 'rpo'
    builder: Callable
    description: str = ""
    # True: the runner hands the builder the dataset's zero-shot template (CoOp's per-dataset
    # templates); False: the method keeps its own fixed template (RPO and its linear probe use
    # "a photo of a {}." on every dataset, as in the official code)
    dataset_template: bool = True


_REGISTRY: dict[str, MethodSpec] = {}
_LOADED = False


def register_method(name: str, family: str, paper: str, description: str = "", dataset_template: bool = True):
    """Decorator: register ``builder`` under ``name`` (see :class:`MethodSpec` for the flags)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def wrap(builder: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = MethodSpec(name, family, paper, builder, description or (builder.__doc__ or "").strip().split("\n")[0], dataset_template)
        return builder

    return wrap


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):  # the package's folder, without importing the package
        if mod.name != "registry":
            importlib.import_module(f"{__package__}.{mod.name}")
    _LOADED = True


def list_methods(family: str | None = None, paper: str | None = None) -> list[str]:
    _load_all()
    return sorted(n for n, s in _REGISTRY.items() if (family is None or s.family == family) and (paper is None or s.paper == paper))


def get_method_spec(name: str) -> MethodSpec:
    _load_all()
    if name not in _REGISTRY:
        raise unknown_name("method", name, _REGISTRY)
    return _REGISTRY[name]


def create_method(name: str, backbone, *args, **cfg):
    """Build method ``name`` on ``backbone`` (see the module docstring for the arguments)."""
    spec = get_method_spec(name)
    try:
        return spec.builder(backbone, *args, **cfg)
    except TypeError as e:
        # An unknown keyword from params.yaml: name it rather than showing a stack trace.
        if "unexpected keyword argument" in str(e):
            raise ConfigError(f"method {name!r}: {e}; fix the method's settings in params.yaml") from e
        raise
