"""The dataset type every mini stage produces and every train stage consumes.

Mini datasets are small enough to live in memory as uint8 arrays; :class:`TensorImageDataset`
keeps them that way and normalises on access, and :meth:`tensors` hands the training loop the
whole split as one float tensor so batches are slices, not Python loops over items. Paper-profile
datasets are ordinary torchvision datasets (items ``(image_tensor, label)``, a ``classnames``
attribute); the training loop accepts both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class TensorImageDataset(Dataset):
    """uint8 images ``(N, H, W, 3)`` + integer labels, normalised with ``mean``/``std`` on access."""

    def __init__(self, images: np.ndarray, labels, classnames, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), name: str = ""):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.labels)} labels")
        self.classnames = list(classnames)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.name = name

    def __len__(self) -> int:
        return len(self.labels)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x.permute(0, 3, 1, 2).float().div_(255.0) - mean) / std

    def __getitem__(self, i):
        x = self._normalise(torch.from_numpy(self.images[i : i + 1]))[0]
        return x, int(self.labels[i])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as ``(float images (N,3,H,W), int64 labels (N,))``."""
        return self._normalise(torch.from_numpy(self.images)), torch.from_numpy(self.labels)

    def subset(self, indices, labels=None, classnames=None) -> "TensorImageDataset":
        """A view on ``indices`` (optionally relabelled, e.g. for base/new halves)."""
        indices = np.asarray(indices, dtype=np.int64)
        return TensorImageDataset(
            self.images[indices],
            self.labels[indices] if labels is None else labels,
            self.classnames if classnames is None else classnames,
            self.mean,
            self.std,
            self.name,
        )

    def with_normalisation(self, mean, std) -> "TensorImageDataset":
        return TensorImageDataset(self.images, self.labels, self.classnames, mean, std, self.name)
