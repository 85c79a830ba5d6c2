"""CLIP's linear probe: visual prompting's 'Linear Probe (LP)' baseline.

As in the CLIP paper, a scikit-learn ``LogisticRegression`` (L-BFGS, L2) on frozen image features,
with the inverse regularisation strength ``C`` chosen on a validation split. Our choices:

* features are the L2-normalised outputs of ``clip.encode_image`` in fp32, computed once per split
  under ``torch.no_grad``;
* ``C`` comes from a small log-spaced grid (default 1e-2 … 1e3, one value per decade); the value
  with the best validation top-1 wins, values within 1 point of it (``utils.first_within``) going
  to the smaller ``C`` (stronger regularisation).
  The test split is never seen: neither function below takes it;
* ``refit='train'`` (default) keeps the probe fitted on the training split alone, so LP sees the
  same labelled images as the prompting methods, which use val only for selection;
  ``refit='train+val'`` refits on both with the chosen ``C``.

The fitted weights become a frozen ``nn.Linear``, so evaluation code treats the probe like any
other method: ``model(images) -> logits``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..utils import first_within, freeze
from .registry import register_method

DEFAULT_C_GRID = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)
REFITS = ("train", "train+val")
_ABSENT = -1e9  # bias of a class with no training image: never predicted


@torch.no_grad()
def extract_features(clip, data, batch_size: int = 256, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """L2-normalised fp32 image features ``(N, D)`` on the CPU, and labels if ``data`` has them.

    ``data``: an image tensor ``(N, C, H, W)`` (already normalised), a dataset with ``tensors()``
    (the mini datasets), or any dataset of ``(image, label)`` items (streamed with a DataLoader,
    so a large split never sits in memory as images).
    """
    device = next(clip.parameters()).device
    was_training = clip.training
    clip.eval()

    def encode(x):
        return F.normalize(clip.encode_image(x.to(device)).float(), dim=-1).cpu()

    if isinstance(data, torch.Tensor):
        images, labels = data, None
    elif callable(getattr(data, "tensors", None)):  # not TensorDataset.tensors (a tuple)
        images, labels = data.tensors()
    else:
        images = None
    if images is not None:
        feats = torch.cat([encode(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    else:
        feats, labels = [], []
        for x, y in torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers):
            feats.append(encode(x))
            labels.append(torch.as_tensor(y))
        feats, labels = torch.cat(feats), torch.cat(labels)
    clip.train(was_training)
    return feats, labels


def _check_grid(C_grid, refit: str) -> tuple[float, ...]:
    grid = tuple(sorted(float(c) for c in C_grid))
    if not grid or any(c <= 0 for c in grid):
        raise ConfigError(f"logistic probe C_grid must be a non-empty list of positive numbers, got {C_grid!r}; e.g. {list(DEFAULT_C_GRID)}")
    if refit not in REFITS:
        raise ConfigError(f"logistic probe refit must be one of {REFITS}, got {refit!r}")
    return grid


def _fit(x: np.ndarray, y: np.ndarray, C: float, seed: int, max_iter: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        raise ConfigError("the logistic probe needs training images from at least two classes; check the training split")
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded in the info instead
        clf.fit(x, y)
    return clf


def _linear_weights(clf, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn coefficients as ``(num_classes, D)`` weights and biases with the same argmax/softmax."""
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row (logit of classes_[1] against classes_[0])
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    weight = torch.zeros(num_classes, coef.shape[1])
    bias = torch.full((num_classes,), _ABSENT)
    idx = torch.as_tensor(clf.classes_, dtype=torch.long)
    weight[idx] = torch.as_tensor(coef, dtype=torch.float32)
    bias[idx] = torch.as_tensor(intercept, dtype=torch.float32)
    return weight, bias


def fit_probe_features(train_x, train_y, val_x, val_y, C_grid=DEFAULT_C_GRID, seed: int = 0, max_iter: int = 1000, refit: str = "train", num_classes: int | None = None):
    """Choose ``C`` on val, fit on train (or train+val); return ``(weight, bias, info)``."""
    grid = _check_grid(C_grid, refit)
    tx, ty = np.asarray(train_x, dtype=np.float64), np.asarray(train_y)
    vx, vy = np.asarray(val_x, dtype=np.float64), np.asarray(val_y)
    if len(vy) == 0:
        raise ConfigError("the logistic probe chooses C on a validation split, which is empty; give it a non-empty val split")
    num_classes = int(num_classes if num_classes is not None else max(ty.max(), vy.max()) + 1)
    val_top1, converged, fits = [], [], []
    for C in grid:
        clf = _fit(tx, ty, C, seed, max_iter)
        fits.append(clf)
        val_top1.append(float((clf.predict(vx) == vy).mean() * 100))
        converged.append(bool(np.all(clf.n_iter_ < max_iter)))
    best = first_within(val_top1)  # near-ties (utils.SELECTION_TOLERANCE) go to the smallest C: the strongest regularisation
    clf = fits[best] if refit == "train" else _fit(np.concatenate([tx, vx]), np.concatenate([ty, vy]), grid[best], seed, max_iter)
    weight, bias = _linear_weights(clf, num_classes)
    info = {
        "C": grid[best],
        "C_grid": list(grid),
        "val_top1": val_top1,
        "converged": converged,
        "refit": refit,
        "max_iter": max_iter,
        "n_train": int(len(ty) + (len(vy) if refit == "train+val" else 0)),
        "n_val": int(len(vy)),
    }
    return weight, bias, info


class LogisticProbeCLIP(nn.Module):
    """Frozen CLIP image features + a logistic-regression head fitted by :meth:`fit_probe`.

    Nothing here trains by SGD (no parameter requires grad), so :func:`visprompt.train.fit`
    refuses it; call :meth:`fit_probe` instead, then evaluate as usual.
    """

    def __init__(self, clip, classnames=None, num_classes: int | None = None, C_grid=DEFAULT_C_GRID, max_iter: int = 1000, refit: str = "train", seed: int = 0, batch_size: int = 256):
        super().__init__()
        if classnames is None and num_classes is None:
            raise ValueError("give classnames or num_classes")
        self.C_grid = _check_grid(C_grid, refit)
        self.max_iter, self.refit, self.seed, self.batch_size = max_iter, refit, seed, batch_size
        self.clip = freeze(clip).eval()
        self.classnames = list(classnames) if classnames is not None else None
        self.head = freeze(nn.Linear(clip.visual.output_dim, len(self.classnames) if classnames is not None else num_classes))
        self.fitted = False
        self.info: dict | None = None
        self.register_load_state_dict_post_hook(_mark_fitted)

    def set_classnames(self, classnames) -> None:
        """A probe is tied to the classes it was fitted on; another class set needs a new fit."""
        if self.classnames is not None and list(classnames) == self.classnames:
            return
        self.classnames = list(classnames)
        device = self.head.weight.device
        self.head = freeze(nn.Linear(self.head.in_features, len(self.classnames))).to(device)
        self.fitted, self.info = False, None

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def fit_features(self, train_x, train_y, val_x, val_y) -> dict:
        weight, bias, info = fit_probe_features(train_x, train_y, val_x, val_y, self.C_grid, self.seed, self.max_iter, self.refit, self.head.out_features)
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)
        self.fitted, self.info = True, info
        return info

    def fit_probe(self, train, val) -> dict:
        """Fit on ``train`` with ``C`` chosen on ``val`` (datasets, see :func:`extract_features`)."""
        tx, ty = extract_features(self.clip, train, self.batch_size)
        vx, vy = extract_features(self.clip, val, self.batch_size)
        return self.fit_features(tx, ty, vx, vy)

    def encode_frozen(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.clip.encode_image(images).float(), dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise RuntimeError("the logistic probe is not fitted: call fit_probe(train, val) first")
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.encode_frozen(images))

    predict_logits = forward


def _mark_fitted(module: LogisticProbeCLIP, incompatible) -> None:
    # A probe restored from a state dict that holds its head is a fitted probe.
    if not any(k.endswith("head.weight") for k in incompatible.missing_keys):
        module.fitted = True


def fit_logistic_probe(clip, train_images, train_labels, val_images, val_labels, C_grid=DEFAULT_C_GRID, seed: int = 0, *, max_iter: int = 1000, refit: str = "train", num_classes: int | None = None, batch_size: int = 256):
    """Frozen-feature logistic regression, ``C`` chosen on val; returns ``(probe, info)``.

    ``*_images`` are normalised image tensors ``(N, C, H, W)``; ``probe(images)`` gives logits.
    """
    train_labels, val_labels = torch.as_tensor(train_labels), torch.as_tensor(val_labels)
    if num_classes is None:
        num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    probe = LogisticProbeCLIP(clip, num_classes=num_classes, C_grid=C_grid, max_iter=max_iter, refit=refit, seed=seed, batch_size=batch_size)
    tx, _ = extract_features(probe.clip, train_images, batch_size)
    vx, _ = extract_features(probe.clip, val_images, batch_size)
    info = probe.fit_features(tx, train_labels, vx, val_labels)
    return probe, info


@register_method("logistic_probe", family="clip", paper="vp")
def logistic_probe(clip, tokenizer, classnames, C_grid=DEFAULT_C_GRID, max_iter: int = 1000, refit: str = "train", seed: int = 0, batch_size: int = 256):
    """CLIP linear probe: logistic regression on frozen features, C chosen on val (call fit_probe)."""
    return LogisticProbeCLIP(clip, classnames, C_grid=C_grid, max_iter=max_iter, refit=refit, seed=seed, batch_size=batch_size)
