"""The papers' pretrained weights, loaded through the libraries' own loading functions.

* VPT: timm ``vit_base_patch16_224.orig_in21k`` — Google's original ImageNet-21k ViT-B/16 (the
  paper's ``ViT-B_16.npz``, not AugReg, not the ImageNet-1k fine-tuned one), head removed
  (``num_classes=0``). Normalisation: **ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224,
  0.225)**, as VPT uses (vpt.md, "Training recipe" and "Backbone weights"); timm's own config for this
  checkpoint says mean/std 0.5, which is *not* what the paper did.
* Visual prompting: open_clip ``ViT-B-32``, ``pretrained="openai"``; RPO: open_clip ``ViT-B-16``,
  ``pretrained="openai"``. Built with QuickGELU (``force_quick_gelu=True``): OpenAI's CLIP was trained
  with it and open_clip's tag says so; without it the features are slightly wrong. Preprocessing:
  CLIP's mean/std, bicubic resize 224, centre crop.

A local file goes through the same loader the hub weights do:

* timm: ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": path})`` →
  timm's ``load_pretrained`` (``.safetensors``/``.pth``/``.bin`` state dicts in timm's key layout;
  ``.npz`` in Google's JAX layout through timm's ``VisionTransformer.load_pretrained``).
* open_clip: ``open_clip.create_model(name, pretrained=path)`` → open_clip's ``load_checkpoint``
  (state dicts in OpenAI/open_clip key layout, e.g. the hub's ``open_clip_pytorch_model.bin``; the
  original OpenAI TorchScript ``ViT-B-32.pt``/``ViT-B-16.pt`` archives are read the same way with
  ``weights_only=False``, only for files that are TorchScript archives).

Offline or missing weights raise :class:`~visprompt.errors.ConfigError` within seconds, naming
``HF_HUB_OFFLINE``, the hub repository and how to pre-download. When ``HF_HUB_OFFLINE`` is not set
but huggingface.co cannot be reached (3 s probe), the hub is put in offline mode for the call, so a
cached copy is still used and nothing waits on retries.
"""

from __future__ import annotations

import contextlib
import os
import socket
import zipfile
from pathlib import Path

from ..errors import ConfigError

VIT_IN21K = "vit_base_patch16_224.orig_in21k"
VIT_IN21K_HUB = "timm/vit_base_patch16_224.orig_in21k"
VIT_IN21K_GOOGLE_NPZ = "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # VPT's normalisation (vpt.md)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MODELS = ("ViT-B-32", "ViT-B-16")
PARAMS_FILE = "profiles/paper/params.yaml"


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub is a dependency of timm/open_clip
        return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    """One TCP connect to the hub (DNS failures return at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_guard(what: str, repo: str, predownload: str, alternative: str):
    """Run a hub download with offline mode forced when the hub is unreachable; turn any failure into a ConfigError."""
    from huggingface_hub import constants

    was = constants.HF_HUB_OFFLINE
    offline_env = bool(was)
    reason = "HF_HUB_OFFLINE=1 is set" if offline_env else ""
    if not offline_env and not hub_reachable():
        constants.HF_HUB_OFFLINE = True
        reason = "huggingface.co cannot be reached from this machine"
    try:
        yield
    except ConfigError:
        raise
    except Exception as e:
        cause = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}" if str(e) else type(e).__name__
        raise ConfigError(
            f"could not load {what} ({cause}). The weights come from the Hugging Face hub repository {repo}"
            + (f"; {reason}, so only a copy already in the hub cache (~/.cache/huggingface, or $HF_HOME) can be used" if reason else "")
            + f". To pre-download, on a machine with internet run: {predownload} — then copy ~/.cache/huggingface to this machine "
            f"(or point HF_HOME at it) and keep HF_HUB_OFFLINE=1; or {alternative}"
        ) from e
    finally:
        constants.HF_HUB_OFFLINE = was


def _local_file(path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{what} weights file {p} not found; fix the path in {PARAMS_FILE} or use the hub weights")
    return p


def is_torchscript_archive(path) -> bool:
    """True for a TorchScript zip (e.g. OpenAI's original ``ViT-B-32.pt``), False for a torch.save state dict."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n or n.endswith("/constants.pkl") for n in names)


# --- VPT: timm ViT-B/16 ImageNet-21k ------------------------------------------------------------


def load_vit_in21k(pretrained: bool | str | os.PathLike = True):
    """timm ``vit_base_patch16_224.orig_in21k`` without head, and VPT's preprocessing.

    ``pretrained``: ``True`` (timm hub weights), ``False`` (random init, for tests) or a path to a
    timm-layout state dict (``.safetensors``/``.pth``/``.bin``) or Google's ``ViT-B_16.npz``.
    Returns ``(model, cfg)``; ``cfg`` = ``{"mean", "std", "image_size", "weights", "note"}``.
    """
    return load_timm_vit(VIT_IN21K, pretrained)


def load_timm_vit(arch: str = VIT_IN21K, pretrained: bool | str | os.PathLike = True, img_size: int | None = None):
    """Any timm ViT without head through timm's own loader (what :func:`load_vit_in21k` does for the paper's).

    The paper profile always uses ``vit_base_patch16_224.orig_in21k``; another ``arch`` (and an
    ``img_size`` other than the arch's) exists so tests can drive this exact code path with a small
    model. Normalisation is VPT's ImageNet mean/std whatever the arch.
    """
    import timm

    kwargs = {"num_classes": 0}
    if img_size is not None:
        kwargs["img_size"] = int(img_size)
    cfg = {
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "image_size": int(img_size or 224),
        "note": "ImageNet mean/std as in VPT; timm's config for this checkpoint lists 0.5/0.5, which VPT did not use",
    }
    if pretrained is False or pretrained is None:
        model = timm.create_model(arch, pretrained=False, **kwargs)
        cfg["weights"] = "random init"
    elif pretrained is True or pretrained == "timm":
        hub = f"timm/{arch}"
        with _hub_guard(
            f"timm {arch} weights",
            hub,
            f"python -c \"import timm; timm.create_model('{arch}', pretrained=True)\"",
            f"download Google's original {VIT_IN21K_GOOGLE_NPZ} (the paper's file) or the hub's model.safetensors and set its path as backbones.vit.pretrained in {PARAMS_FILE}",
        ):
            model = timm.create_model(arch, pretrained=True, **kwargs)
        cfg["weights"] = f"hf-hub:{hub}"
    else:
        path = _local_file(pretrained, f"timm {arch}")
        overlay = {"file": str(path)}
        if path.suffix == ".npz":
            overlay["custom_load"] = True  # timm reads Google's JAX layout with VisionTransformer.load_pretrained
        try:
            model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except (RuntimeError, KeyError, ValueError, OSError) as e:
            raise ConfigError(
                f"{path} could not be loaded into timm {arch} ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                "expected a timm-layout state dict without head (.safetensors/.pth) or Google's ViT-B_16.npz"
            ) from e
        cfg["weights"] = str(path)
    img = model.patch_embed.img_size
    cfg["image_size"] = int(img[0] if isinstance(img, (tuple, list)) else img)
    return model.eval(), cfg


# --- Visual prompting / RPO: open_clip CLIP with OpenAI weights --------------------------------


def _pretrained_source(name: str, tag: str = "openai") -> tuple[str, str]:
    import open_clip

    pcfg = open_clip.get_pretrained_cfg(name, tag) or {}
    return pcfg.get("hf_hub", "").rstrip("/"), pcfg.get("url", "")


def load_openai_clip(name: str = "ViT-B-16", pretrained: str | os.PathLike | None = "openai"):
    """open_clip ``ViT-B-32``/``ViT-B-16`` with OpenAI's weights (QuickGELU, fp32, eval).

    ``pretrained``: ``"openai"`` (hub), a path to an OpenAI/open_clip-layout checkpoint (state dict
    or OpenAI's TorchScript archive), or ``None`` (random init, for tests).
    Returns ``(model, tokenizer, preprocess_cfg)``; ``preprocess_cfg`` has ``image_size``, ``mean``,
    ``std``, ``interpolation``, ``resize_mode``, ``weights``.
    """
    if name not in CLIP_MODELS:
        raise ConfigError(f"CLIP backbone {name!r} is not one of the papers' ({', '.join(CLIP_MODELS)})")
    return load_open_clip(name, pretrained)


def load_open_clip(name: str, pretrained: str | os.PathLike | None = "openai", image_size: int | None = None):
    """Any open_clip model through open_clip's own loader (what :func:`load_openai_clip` does for the papers').

    The paper profile uses ``ViT-B-32``/``ViT-B-16``; another ``name`` (and ``image_size``, passed as
    ``force_image_size``) exists so tests can drive this exact code path with a small model.
    ``pretrained``: a pretrained tag of ``name`` (``"openai"``), a checkpoint path, or ``None``.
    """
    import open_clip

    from .clip_attention import use_sdpa_attention

    if name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {name!r}; the papers use {', '.join(CLIP_MODELS)}")
    kwargs = {"precision": "fp32", "force_quick_gelu": True}
    if image_size is not None:
        kwargs["force_image_size"] = int(image_size)
    if pretrained is None or pretrained is False:
        model = open_clip.create_model(name, pretrained=None, **kwargs)
        weights = "random init"
    elif str(pretrained) in open_clip.list_pretrained_tags_by_model(name):
        tag = str(pretrained)
        repo, url = _pretrained_source(name, tag)
        with _hub_guard(
            f"open_clip {name} pretrained='{tag}' weights",
            repo + " (file open_clip_pytorch_model.bin)" + (f"; OpenAI's original file: {url}" if url else ""),
            f"python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{tag}')\"",
            f"download {url or 'the checkpoint'} and set its path as backbones.clip_vp.pretrained (ViT-B-32) or backbones.clip_rpo.pretrained (ViT-B-16) in {PARAMS_FILE}",
        ):
            model = open_clip.create_model(name, pretrained=tag, **kwargs)
        weights = f"{tag} (hf-hub:{repo})"
    else:
        path = _local_file(pretrained, f"CLIP {name}")
        jit = is_torchscript_archive(path)
        try:
            # TorchScript archives cannot be read with weights_only=True; only those get weights_only=False
            model = open_clip.create_model(name, pretrained=str(path), weights_only=not jit, **kwargs)
        except (RuntimeError, KeyError, ValueError, OSError) as e:
            raise ConfigError(
                f"{path} could not be loaded into open_clip {name} ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                "expected OpenAI's checkpoint (TorchScript .pt) or a state dict in OpenAI/open_clip key layout for this architecture"
            ) from e
        weights = str(path) + (" (TorchScript)" if jit else "")
    model = use_sdpa_attention(model.float().eval())  # the same attention path as create_clip's CLIPs
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = pp.get("size", model.visual.image_size)
    preprocess = {
        "image_size": size if isinstance(size, int) else tuple(size)[0],
        "mean": tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        "std": tuple(pp.get("std", open_clip.OPENAI_DATASET_STD)),
        "interpolation": pp.get("interpolation", "bicubic"),
        "resize_mode": pp.get("resize_mode", "shortest"),
        "weights": weights,
    }
    return model, open_clip.get_tokenizer(name), preprocess
