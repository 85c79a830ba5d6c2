"""Worlds: where the runner's backbones and data come from (``profile`` in params.yaml).

* :class:`~visprompt.worlds.mini.MiniWorld` (``profile: mini``, the default): the generated image
  world of :mod:`visprompt.data.mini` and the tiny backbones the pipeline pretrains.
* :class:`~visprompt.worlds.paper.PaperWorld` (``profile: paper``): the real datasets and the
  papers' checkpoints through timm and open_clip.
"""

from __future__ import annotations

from .base import World


def world_for(params: dict) -> World:
    """The world of ``params['profile']`` (``mini`` unless it says ``paper``)."""
    if params.get("profile", "mini") == "paper":
        from .paper import PaperWorld

        return PaperWorld(params)
    from .mini import MiniWorld

    return MiniWorld(params)


__all__ = ["World", "world_for"]
