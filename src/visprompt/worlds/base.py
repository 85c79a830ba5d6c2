"""The interface between the experiment runner and where its backbones and data come from.

A :class:`World` answers everything :mod:`visprompt.experiments` needs to know about a profile:
the frozen backbones, the datasets and their splits, the prompt templates, the class halves and
shifted test copies, and an identity of each backbone for the cells' fingerprints. The runner
receives one and never asks which profile it is in, so both profiles share every line of
training and evaluation.
"""

from __future__ import annotations


class World:
    """Backbones and data of one profile (``params`` as :func:`visprompt.config.load_params` returns it)."""

    name = "world"
    # Modules whose code decides what a cell computes, hashed with everything they import (part of
    # every cell's fingerprint); the world's own module is hashed on its own.
    code_modules: tuple = ()

    def __init__(self, params: dict):
        self.params = params

    @property
    def device(self):
        """Where every cell trains and evaluates. The mini world is the CPU on every machine (its
        numbers are pinned to the CPU's arithmetic: cpu_numerics), even where a GPU is visible."""
        import torch

        return torch.device("cpu")

    def load_vit(self):
        """VPT's frozen ViT (pretrained weights loaded) and its info (``.mean``/``.std``)."""
        raise NotImplementedError

    def load_clip(self, paper: str):
        """The frozen CLIP of ``paper`` (``vp`` or ``rpo``), its tokenizer and its info."""
        raise NotImplementedError

    def load_data(self, key: str, split: str, mean, std):
        """Split ``split`` (train, val, test, train+val) of task ``key``, normalised by ``mean``/``std``."""
        raise NotImplementedError

    def dataset_template(self, key: str) -> str | None:
        """The dataset's zero-shot prompt template (None: the method's default)."""
        raise NotImplementedError

    def final_split(self, paper: str, key: str) -> str:
        """The split every seed's final run of ``paper`` trains on."""
        raise NotImplementedError

    def base_new_classes(self, key: str) -> tuple[list, list]:
        """Base and new class halves of a CoOp dataset (CoOp's rule)."""
        raise NotImplementedError

    def shifted_tests(self, paper: str) -> dict:
        """Task -> its style-shifted test copy, scored beside the test set (may be empty)."""
        raise NotImplementedError

    def backbone_id(self, paper: str) -> str:
        """Identity of ``paper``'s backbone weights, for the cells' fingerprints."""
        raise NotImplementedError

    def check_method(self, s) -> None:
        """Fail before any work when the tasks, datasets or files that run ``s``
        (:class:`visprompt.settings.RunSettings`) reads do not exist in this world."""
        raise NotImplementedError
