"""One training loop for every method of every paper.

The recipe (optimizer, learning rate and its scaling, warmup, cosine schedule) comes from
params.yaml through :class:`Recipe`. The loop is deterministic on CPU: each epoch's shuffle and
dropout RNG are seeded from ``(seed, epoch)``, so a run resumed from its per-epoch checkpoint ends
with exactly the same weights and metrics as an uninterrupted one.

Two things the official codebases get wrong are avoided on purpose:

* the warmup never gives a learning rate of zero (VPT's schedule spends its whole first epoch at
  lr 0): warmup step ``i`` of ``W`` uses ``lr * (i + 1) / W``;
* AdamW keeps its own weight decay even when it is 0 (it never falls back to SGD).
"""

from __future__ import annotations

import math
import os
import platform
import resource
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import ConfigError
from .utils import bars_off, count_parameters, default_device, save_torch

OPTIMIZERS = ("sgd", "adamw")
LR_SCALINGS = ("none", "batch256")
SCHEDULES = ("cosine", "constant")
AUGMENTS = ("none", "flip", "crop_flip")


@dataclass
class Recipe:
    """How to train: every field can be set from params.yaml."""

    optimizer: str = "sgd"
    lr: float = 0.1  # base learning rate
    lr_scaling: str = "none"  # 'batch256': actual lr = lr * batch_size / 256 (VPT)
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 10
    warmup_epochs: float = 0.0  # linear warmup measured in epochs ...
    warmup_steps: int = 0  # ... or in optimizer steps (visual prompting); steps win if both set
    warmup_lr: float | None = None  # constant lr during warmup instead of a ramp (RPO/CoOp: 1e-5)
    schedule: str = "cosine"
    step_per: str = "step"  # schedule granularity: 'step' or 'epoch'
    augment: str = "none"  # batched augmentation for in-memory datasets
    grad_clip: float | None = None
    micro_batch: int = 0  # > 0: accumulate gradients over micro-batches of this size (a batch that does not fit)
    amp: bool = True  # bf16 autocast when running on CUDA (never on CPU)
    num_workers: int = 0  # DataLoader workers for on-disk (paper) datasets

    @classmethod
    def from_dict(cls, d: dict | None) -> "Recipe":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown recipe keys {sorted(unknown)}; valid keys: {sorted(known)}")
        r = cls(**d)
        r.validate()
        return r

    def validate(self) -> None:
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.lr_scaling in LR_SCALINGS, f"lr_scaling must be one of {LR_SCALINGS}, got {self.lr_scaling!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.step_per in ("step", "epoch"), f"step_per must be 'step' or 'epoch', got {self.step_per!r}"),
            (self.augment in AUGMENTS, f"augment must be one of {AUGMENTS}, got {self.augment!r}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.warmup_epochs >= 0 and self.warmup_steps >= 0, "warmup must be >= 0"),
            (self.micro_batch >= 0, f"micro_batch must be >= 0 (0: the whole batch at once), got {self.micro_batch}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"recipe: {msg}")

    @property
    def actual_lr(self) -> float:
        return self.lr * self.batch_size / 256 if self.lr_scaling == "batch256" else self.lr


def lr_at(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): warmup, then cosine to zero.

    The warmup (``warmup_steps``, or ``warmup_epochs`` which may be fractional) always ramps per
    optimizer step, or holds ``warmup_lr``; the cosine that follows runs per step or per epoch
    (``step_per``), from the first step (epoch) after the warmup. A per-epoch ramp over one warmup
    epoch would already be at full lr in that epoch.
    """
    base = recipe.actual_lr
    total_steps = recipe.epochs * steps_per_epoch
    warm = recipe.warmup_steps or round(recipe.warmup_epochs * steps_per_epoch)
    warm = min(warm, total_steps - 1) if total_steps > 1 else 0
    if step < warm:
        return recipe.warmup_lr if recipe.warmup_lr is not None else base * (step + 1) / warm
    if recipe.schedule == "constant":
        return base
    if recipe.step_per == "epoch":
        start = math.ceil(warm / steps_per_epoch)
        progress = max(0, step // steps_per_epoch - start) / max(1, recipe.epochs - start)
    else:
        progress = (step - warm) / max(1, total_steps - warm)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


# A run has converged when the last PLATEAU_WINDOW of its epochs lowered the training loss by less
# than PLATEAU_REL (relative) or PLATEAU_ABS (nats, for losses already near zero).
PLATEAU_WINDOW, PLATEAU_REL, PLATEAU_ABS = 0.2, 0.02, 0.01

# Per-epoch checkpoints cost a write of the trainable state (Full fine-tuning of ViT-B: ~1 GB with
# AdamW's moments); every 10 minutes bounds the loss from a kill at 10 minutes of one cell.
CHECKPOINT_EVERY_S = 600.0


def plateau(history: list) -> dict:
    """Did the training loss stop improving? Compares the last epoch's loss with the loss just
    before the last 20% of epochs (at least one epoch); ``converged`` is None below 2 epochs."""
    losses = [float(h["loss"]) for h in history]
    if len(losses) < 2:
        return {"converged": None, "improvement": None, "window_epochs": 0}
    k = max(1, math.ceil(PLATEAU_WINDOW * len(losses)))
    before, end = losses[-1 - k], losses[-1]
    rel = (before - end) / before if before > 0 else 0.0
    return {"converged": bool(rel < PLATEAU_REL or before - end < PLATEAU_ABS), "improvement": rel, "window_epochs": k}


def build_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """Trainable parameters in two groups: with and without weight decay (``no_weight_decay()``)."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    if not decay and not no_decay:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters")
    groups = [g for g in ({"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    # multi-tensor updates instead of a Python loop over parameters: the same update rule; AdamW's
    # fused kernel (CPU and CUDA) made a Full step on the tiny ViT 8% faster (44.2 -> 40.8 ms, 2 threads)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.actual_lr, momentum=recipe.momentum, foreach=True)
    device = (decay or no_decay)[0].device
    return torch.optim.AdamW(groups, lr=recipe.actual_lr, fused=device.type in ("cpu", "cuda"))


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31 - 1)


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Batched augmentations for in-memory datasets (same draws on every machine for a seed)."""
    if kind == "none":
        return x
    b = x.shape[0]
    if kind == "crop_flip":
        pad = max(1, x.shape[-1] // 8)
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        h, w = x.shape[-2:]
        x = torch.stack([xp[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    flip = torch.rand(b, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)


class _EpochSampler(torch.utils.data.Sampler):
    """Indices of one epoch, each paired with its own RNG seed: ``(i, seed)``.

    The order is a permutation drawn from the epoch's seed; the seed of an item decides its random
    crop and flip (:class:`_SeededItems`), so an on-disk dataset's augmentations depend only on
    (run seed, epoch, position) — not on the number of DataLoader workers, nor on whether the run
    was resumed — and the workers can live across epochs.
    """

    def __init__(self, n: int, shuffle: bool):
        self.n, self.shuffle, self.seed = n, shuffle, 0

    def set_epoch(self, seed: int) -> None:
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        return iter([(int(i), _epoch_seed(self.seed, k + 1)) for k, i in enumerate(order.tolist())])


class _SeededItems(torch.utils.data.Dataset):
    """``dataset[i]`` drawn with torch's RNG seeded by the sampler's item seed (the caller's RNG
    state is restored afterwards: dropout draws in the main process are not disturbed)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        i, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[i]


class _Batches:
    """Yields (x, y) batches from an in-memory tensor split or a DataLoader, reproducibly per epoch.

    An on-disk dataset gets one DataLoader for the whole run (persistent workers: no process
    start-up per epoch) fed by :class:`_EpochSampler`.
    """

    def __init__(self, data, batch_size: int, shuffle: bool, num_workers: int = 0):
        # an on-disk dataset may say how many decoding processes it wants (paper profile: data.workers)
        num_workers = num_workers or int(getattr(data, "num_workers", 0) or 0)
        self.batch_size, self.shuffle, self.num_workers = batch_size, shuffle, num_workers
        self.data = data
        self.tensors = data.tensors() if callable(getattr(data, "tensors", None)) else None
        self.loader = None

    def __len__(self) -> int:
        n = len(self.tensors[1]) if self.tensors is not None else len(self.data)
        return math.ceil(n / self.batch_size)

    def epoch(self, seed: int):
        if self.tensors is not None:
            g = torch.Generator().manual_seed(seed)
            x, y = self.tensors
            order = torch.randperm(len(y), generator=g) if self.shuffle else torch.arange(len(y))
            for i in range(0, len(y), self.batch_size):
                idx = order[i : i + self.batch_size]
                yield x[idx], y[idx]
            return
        if self.loader is None:  # its own generator: the loader's draws never touch the global RNG (dropout)
            self.loader = torch.utils.data.DataLoader(
                _SeededItems(self.data), batch_size=self.batch_size, sampler=_EpochSampler(len(self.data), self.shuffle),
                num_workers=self.num_workers, persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
                generator=torch.Generator(),
            )
        self.loader.generator.manual_seed(seed)
        self.loader.sampler.set_epoch(seed)
        yield from self.loader


class _FeatureData:
    """A split replaced by its frozen features, for methods with ``encode_frozen``."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor):
        self._t = (feats, labels)

    def tensors(self):
        return self._t


@torch.no_grad()
def encode_split(model, data, batch_size: int = 256, device=None) -> _FeatureData:
    """Run ``model.encode_frozen`` once over a split (no augmentation), keeping features on device."""
    device = device or next(model.parameters()).device
    feats, labels = [], []
    model.eval()
    for x, y in _Batches(data, batch_size, shuffle=False).epoch(0):
        feats.append(model.encode_frozen(x.to(device)))
        labels.append(y.to(device))
    return _FeatureData(torch.cat(feats), torch.cat(labels))


def _accumulate(forward, x: torch.Tensor, y: torch.Tensor, micro: int, use_amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward one batch in micro-batches of ``micro`` rows; the gradients add up to
    the whole batch's mean-loss gradient (each micro-batch's summed loss is divided by the batch
    size). Returns the batch's mean loss and its logits, detached."""
    losses, logits = [], []
    for xs, ys in zip(x.split(micro), y.split(micro)):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = forward(xs)
        loss = F.cross_entropy(out.float(), ys, reduction="sum") / len(y)
        loss.backward()
        losses.append(loss.detach())
        logits.append(out.detach())
    return torch.stack(losses).sum(), torch.cat(logits)


def device_record(device: torch.device, amp: bool) -> dict:
    """Where a run computed and in what precision (every cell's record and metrics carry it)."""
    if device.type == "cuda":
        name, count = torch.cuda.get_device_name(device), torch.cuda.device_count()
    else:
        name, count = platform.processor() or platform.machine(), 1
    return {"device": str(device), "device_name": name, "device_count": count, "precision": "bf16 autocast" if amp else "fp32"}


def _trainable_state(model: torch.nn.Module) -> dict:
    """Trainable parameters and all buffers (e.g. BatchNorm statistics of a head)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names or k in buffers}


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_max_rss"


def _read_checkpoint(path: Path, device) -> dict | None:
    """A per-epoch checkpoint, or None (after a warning, the file removed) when it cannot be read.

    The checkpoint only saves re-training time: a truncated one (a full disk, a killed copy) costs
    this cell's epochs, never a crash on every rerun until someone deletes it by hand.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(state, dict) or not {"epoch", "model", "optimizer", "history"} <= state.keys():
            raise ValueError("not a visprompt training checkpoint")
        return state
    except Exception as err:  # torch.load raises RuntimeError, EOFError, UnpicklingError, ... by damage
        warnings.warn(f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); training this cell from its first epoch", stacklevel=3)
        path.unlink(missing_ok=True)
        return None


def fit(
    model: torch.nn.Module,
    train_data,
    recipe: Recipe | dict,
    *,
    seed: int,
    checkpoint: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    desc: str = "train",
    stop_after_epoch: int | None = None,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> dict:
    """Train ``model``'s trainable parameters on ``train_data``; return the training record.

    ``checkpoint``: a file holding the trainable state, optimizer state and history, written after
    the first epoch that ends ``checkpoint_every_s`` after the last write, and after the last epoch;
    if it exists when ``fit`` starts, training resumes after its epoch (a finished run resumes to
    nothing). ``stop_after_epoch`` simulates an interruption (used by the tests).
    """
    recipe = recipe if isinstance(recipe, Recipe) else Recipe.from_dict(recipe)
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    use_amp = recipe.amp and device.type == "cuda"

    # frozen features are computed once only when every epoch would see the same images: no batch
    # augmentation here and none in the dataset's own transform (paper profile: random crops)
    cache = recipe.augment == "none" and hasattr(model, "encode_frozen") and not getattr(train_data, "augmented", False)
    data = encode_split(model, train_data, device=device) if cache else train_data
    forward = model.forward_head if cache else model
    batches = _Batches(data, recipe.batch_size, shuffle=True, num_workers=recipe.num_workers)
    steps_per_epoch = len(batches)
    optimizer = build_optimizer(model, recipe)

    start_epoch, history = 0, []
    ckpt_path = Path(checkpoint) if checkpoint else None
    state = _read_checkpoint(ckpt_path, device) if ckpt_path and ckpt_path.is_file() else None
    if state is not None:
        if state.get("recipe") != asdict(recipe) or state.get("seed") != seed:
            raise ConfigError(f"checkpoint {ckpt_path} was written with another recipe or seed; delete it to start over")
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, state["history"]

    n_images = 0
    t0 = saved_at = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = tqdm(range(start_epoch, recipe.epochs), desc=desc, disable=bars_off(progress), leave=False, mininterval=2.0)
    for epoch in bar:
        model.train()
        epoch_seed = _epoch_seed(seed, epoch)
        torch.manual_seed(epoch_seed)  # dropout & random-patch draws: reproducible per epoch
        aug_gen = torch.Generator().manual_seed(epoch_seed + 1)
        # summed on the device and read once per epoch: a .item() per step would wait for the GPU
        loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device), 0
        for i, (x, y) in enumerate(batches.epoch(epoch_seed)):
            step = epoch * steps_per_epoch + i
            for g in optimizer.param_groups:
                g["lr"] = lr_at(recipe, step, steps_per_epoch)
            if not cache:
                x = augment_batch(x, recipe.augment, aug_gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            if recipe.micro_batch and recipe.micro_batch < len(y):
                loss, logits = _accumulate(forward, x, y, recipe.micro_batch, use_amp)
            else:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    logits = forward(x)
                loss = F.cross_entropy(logits.float(), y)
                loss.backward()
            if recipe.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], recipe.grad_clip)
            optimizer.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(-1) == y).sum()
            seen += len(y)
        n_images += seen
        epoch_loss, epoch_top1 = loss_sum.item() / seen, 100.0 * correct.item() / seen
        history.append({"epoch": epoch, "loss": epoch_loss, "train_top1": epoch_top1, "lr": optimizer.param_groups[0]["lr"]})
        bar.set_postfix(loss=f"{epoch_loss:.3f}", acc=f"{epoch_top1:.1f}")
        stopping = stop_after_epoch is not None and epoch >= stop_after_epoch
        last = epoch == recipe.epochs - 1 or stopping
        if ckpt_path and (last or time.perf_counter() - saved_at >= checkpoint_every_s):
            save_torch({"epoch": epoch, "model": _trainable_state(model), "optimizer": optimizer.state_dict(), "history": history, "recipe": asdict(recipe), "seed": seed}, ckpt_path)
            saved_at = time.perf_counter()
        if stopping:
            break
    elapsed = time.perf_counter() - t0
    peak, peak_kind = _peak_memory_mb(device)
    return {
        "history": history,
        "plateau": plateau(history),
        "epochs_run": len(history),
        "steps_per_epoch": steps_per_epoch,
        "train_time_s": elapsed,
        "train_images_per_s": n_images / elapsed if elapsed > 0 else None,
        "features_cached": cache,
        "peak_memory_mb": peak,
        "peak_memory_kind": peak_kind,
        "params": count_parameters(model),
        "recipe": asdict(recipe),
        "seed": seed,
        **device_record(device, use_amp),
    }


@torch.no_grad()
def eval_uses_amp(device: torch.device) -> bool:
    """Evaluation runs under bf16 autocast on CUDA (whatever the recipe), in fp32 elsewhere."""
    return device.type == "cuda"


def eval_record(device: torch.device) -> dict:
    """:func:`device_record` of an evaluation on ``device`` (:func:`predict`'s precision)."""
    return device_record(device, eval_uses_amp(device))


def predict(model: torch.nn.Module, data, batch_size: int = 256, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over a whole split (eval mode, no augmentation)."""
    device = device or next(model.parameters()).device
    model.eval()
    logits, labels = [], []
    use_amp = eval_uses_amp(device)
    for x, y in _Batches(data, batch_size, shuffle=False).epoch(0):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: torch.nn.Module, data, batch_size: int = 256, device=None) -> dict:
    """Top-1 accuracy (%) and per-class accuracy over a split."""
    logits, labels = predict(model, data, batch_size, device)
    pred = logits.argmax(-1)
    n_cls = logits.shape[1]
    per_class = [(pred[labels == c] == c).float().mean().item() * 100 if (labels == c).any() else float("nan") for c in range(n_cls)]
    return {"top1": (pred == labels).float().mean().item() * 100, "n": len(labels), "per_class_top1": per_class}
