"""Pretraining the mini profile's own backbones, and measuring that they are useful.

* tiny ViT: supervised on the upstream (shape, colour) classes, the ImageNet-21k analogue;
* tiny CLIP: contrastive on upstream image-caption pairs, batched in groups of images that differ
  in one factor (hard negatives), the analogue of CLIP's web pretraining.

A prompt on a random backbone means nothing, so the backbones stage also measures what the
papers take for granted: linear-probe accuracy of frozen ViT features on every VTAB-mini task, and
CLIP zero-shot accuracy on single factors and on CoOp-mini's new classes.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..utils import bars_off
from .clip import encode_classnames


def _normalise(images_u8: torch.Tensor, mean, std) -> torch.Tensor:
    x = images_u8.permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list:
    """Weight decay on matrices only (not on biases, norms, embeddings' scale or logit_scale)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embedding" not in name and "token" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _factor_heads(dim: int, factors, factor_sizes: dict | None, aux_weight: float):
    """Linear heads classifying each upstream factor from the embedding (none if unused)."""
    if aux_weight <= 0 or factors is None or not factor_sizes:
        return torch.nn.ModuleList(), None
    return torch.nn.ModuleList([torch.nn.Linear(dim, n) for n in factor_sizes.values()]), torch.from_numpy(np.asarray(factors))


def _aux_loss(heads, emb: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return sum(F.cross_entropy(h(emb), factors[:, j]) for j, h in enumerate(heads)) / len(heads)


def pretrain_vit(model, images: np.ndarray, labels: np.ndarray, num_classes: int, *, steps: int, batch_size: int, lr: float, weight_decay: float,
                 warmup: int, label_smoothing: float, mean, std, seed: int, progress: bool | None = None, factors: np.ndarray | None = None,
                 factor_sizes: dict | None = None, aux_weight: float = 0.0) -> dict:
    """Supervised pretraining with a temporary linear head (dropped afterwards, as in VPT).

    ImageNet-21k's labels are richer than one class per image; with ``aux_weight > 0`` the
    upstream factor labels (pattern, count, background, ...) are classified by extra linear
    heads on the same features, also dropped afterwards.
    """
    torch.manual_seed(seed)
    head = torch.nn.Linear(model.num_features, num_classes)
    aux_heads, f_all = _factor_heads(model.num_features, factors, factor_sizes, aux_weight)
    net = torch.nn.ModuleList([model, head, aux_heads])
    opt = torch.optim.AdamW(_param_groups(net, weight_decay), lr=lr, betas=(0.9, 0.999), fused=True)  # CPU/CUDA kernel, not a Python loop
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y_all), generator=g)
    pos, history, t0 = 0, [], time.perf_counter()
    net.train()
    bar = tqdm(range(steps), desc="pretrain tiny ViT", disable=bars_off(progress), mininterval=5)
    loss_ema, acc_ema = None, None
    for step in bar:
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(y_all), generator=g), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, steps, warmup, lr)
        feats = model(_normalise(x_all[idx], mean, std))
        logits = head(feats)
        loss = F.cross_entropy(logits, y_all[idx], label_smoothing=label_smoothing)
        if len(aux_heads):
            loss = loss + aux_weight * _aux_loss(aux_heads, feats, f_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (logits.argmax(-1) == y_all[idx]).float().mean().item()
        loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
        acc_ema = acc if acc_ema is None else 0.98 * acc_ema + 0.02 * acc
        if step % 50 == 0 or step == steps - 1:
            history.append({"step": step, "loss": loss_ema, "train_top1": 100 * acc_ema})
            bar.set_postfix(loss=f"{loss_ema:.3f}", acc=f"{100 * acc_ema:.1f}")
    elapsed = time.perf_counter() - t0
    net.eval()
    return {"head": head, "history": history, "train_time_s": elapsed, "images_per_s": steps * batch_size / elapsed}


def pretrain_clip(model, tokenizer, images: np.ndarray, captions: list, group_size: int, *, steps: int, batch_size: int, lr: float,
                  weight_decay: float, warmup: int, mean, std, seed: int, progress: bool | None = None, factors: np.ndarray | None = None,
                  factor_sizes: dict | None = None, aux_weight: float = 0.0) -> dict:
    """Contrastive pretraining; each batch is made of whole groups (hard negatives).

    With ``aux_weight > 0`` and the corpus' factor labels, linear heads on the image embedding
    also classify each factor (shape, colour, pattern, count, background) during pretraining and
    are dropped afterwards: the supervised nudge that makes the small image tower see fine
    factors (patterns, counts) that a few minutes of contrastive learning alone barely picks up.
    """
    torch.manual_seed(seed)
    tokens = tokenizer(captions)
    x_all = torch.from_numpy(images)
    n_groups = len(captions) // group_size
    groups_per_batch = max(1, batch_size // group_size)
    heads, f_all = _factor_heads(model.visual.output_dim, factors, factor_sizes, aux_weight)
    opt = torch.optim.AdamW(_param_groups(model, weight_decay) + [{"params": list(heads.parameters()), "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    g = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(n_groups, generator=g), 0
    history, t0 = [], time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc="pretrain tiny CLIP", disable=bars_off(progress), mininterval=5)
    loss_ema, acc_ema = None, None
    offsets = torch.arange(group_size)
    for step in bar:
        if pos + groups_per_batch > n_groups:
            order, pos = torch.randperm(n_groups, generator=g), 0
        idx = (order[pos : pos + groups_per_batch, None] * group_size + offsets).reshape(-1)
        pos += groups_per_batch
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, steps, warmup, lr)
        emb = model.encode_image(_normalise(x_all[idx], mean, std))
        img = F.normalize(emb, dim=-1)
        txt = F.normalize(model.encode_text(tokens[idx]), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()
        target = torch.arange(len(idx))
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
        if len(heads):
            loss = loss + aux_weight * _aux_loss(heads, emb, f_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        acc = (logits.argmax(-1) == target).float().mean().item()
        loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
        acc_ema = acc if acc_ema is None else 0.98 * acc_ema + 0.02 * acc
        if step % 50 == 0 or step == steps - 1:
            history.append({"step": step, "loss": loss_ema, "batch_i2t_top1": 100 * acc_ema})
            bar.set_postfix(loss=f"{loss_ema:.3f}", acc=f"{100 * acc_ema:.1f}")
    elapsed = time.perf_counter() - t0
    model.eval()
    return {"history": history, "train_time_s": elapsed, "pairs_per_s": steps * groups_per_batch * group_size / elapsed}


# --- measuring usefulness ------------------------------------------------------------------------


@torch.no_grad()
def image_features(encode, images: np.ndarray, mean, std, batch_size: int = 512) -> torch.Tensor:
    x = torch.from_numpy(images)
    return torch.cat([encode(_normalise(x[i : i + batch_size], mean, std)).float() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def zero_shot_top1(clip, tokenizer, images: np.ndarray, labels: np.ndarray, classnames: list, template: str | list, mean, std) -> float:
    text = encode_classnames(clip, tokenizer, classnames, template)
    feats = F.normalize(image_features(clip.encode_image, images, mean, std), dim=-1)
    pred = (feats @ text.t()).argmax(-1).numpy()
    return float((pred == labels).mean() * 100)


def linear_probe_top1(train_x, train_y, val_x, val_y, test_x, test_y, c_grid=(0.01, 0.1, 1.0, 10.0)) -> dict:
    """Logistic regression on frozen features; C chosen on val, refit on train+val, scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    tr, va, te = scaler.transform(train_x), scaler.transform(val_x), scaler.transform(test_x)
    val_acc = {}
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=2000).fit(tr, train_y)
        val_acc[c] = float((clf.predict(va) == val_y).mean() * 100)
    best = max(c_grid, key=lambda c: (val_acc[c], -c))
    both_x = np.concatenate([tr, va])
    clf = LogisticRegression(C=best, max_iter=2000).fit(both_x, np.concatenate([train_y, val_y]))
    return {"test_top1": float((clf.predict(te) == test_y).mean() * 100), "C": best, "val_top1_by_C": {str(k): v for k, v in val_acc.items()}}
