"""Benchmark the CLIP users' steps with open_clip's ``nn.MultiheadAttention`` against :class:`ClipAttention`.

The same CLIP (random weights: timing does not depend on them) is run with each attention path
(``torch``: as open_clip builds it; ``sdpa``: as :func:`create_clip` builds it, see
``backbones/clip_attention.py``), round-robin, one warm-up round first; it reports the median
wall-clock seconds of ``--repeats`` rounds. Steps:

* ``pretrain``: one contrastive step of ``pretrain_clip`` (image + text forward/backward, AdamW);
* ``vp_pad``: one visual-prompting step (backprop through the frozen image tower to the input);
* ``coop``: one CoOp step on cached image features (text tower forward/backward, 10 classes);
* ``frozen``: a frozen image forward (zero-shot, feature caching);
* ``vp_official``: the same VP step as the official code trains it (issue: performance): CLIP not
  frozen (autograd keeps its weight gradients, though only the pad is optimised), the class texts
  re-encoded every step, open_clip's own attention; written here from the paper's description;
* ``vp_floor``: the least a VP step must do: a frozen image forward and a backward to the input;
* ``rpo_official``: the same RPO step as the official code runs it (:func:`official_layout`:
  OpenAI's sequence-first attention, every class prompt through the text tower every step), to
  measure plain >= official and fast / frozen in one run;
* ``rpo_plain`` / ``rpo_fast``: one RPO step (K=24 on ViT-B-16, 4 on the mini CLIP; 10 classes).
  ``rpo_fast`` runs RPO's own helpers, which exist only with ClipAttention; its ``torch`` cell is
  empty (the code before the switch: ``python -m visprompt.bench_rpo`` on an older commit).

With ``--mini`` it also times the tiny ViT's training steps (VPT and its baselines) on the ViT of
params.yaml and on attempt 1's 6 x 128 ViT, in images/s (Partial-k from its cached tokens).

Usage::

    python -m visprompt.bench --mini --threads 1            # the mini CLIP and tiny ViT of params.yaml
    python -m visprompt.bench --model ViT-B-16 --batch 8 --steps frozen rpo_official rpo_plain rpo_fast --threads 1
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics

import torch
import torch.nn.functional as F

from .backbones.clip import create_clip, encode_classnames, get_tokenizer
from .backbones.clip_attention import use_torch_attention
from .bench_rpo import CLASSNAMES, _time
from .config import load_params, section
from .methods import create_method
from .methods.rpo import RPO
from .utils import write_json

ATTENTIONS = ("torch", "sdpa")
STEPS = ("pretrain", "vp_pad", "vp_official", "vp_floor", "coop", "frozen", "rpo_official", "rpo_plain", "rpo_fast")
MINI_BATCH = {"pretrain": 128, "vp_pad": 64, "vp_official": 64, "vp_floor": 64, "coop": 32, "frozen": 64, "rpo_official": 8, "rpo_plain": 8, "rpo_fast": 8}  # params.yaml's
CLASSES = [CLASSNAMES[i] for i in range(10)]


def _images(clip, n: int) -> torch.Tensor:
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _sgd(module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)


def _pretrain(clip, tokenizer, batch: int):
    """``pretrain_clip``'s step without the auxiliary factor heads."""
    clip.train()
    images = _images(clip, batch)
    tokens = tokenizer([f"a photo of a {CLASSES[i % len(CLASSES)]} number {i}" for i in range(batch)])
    opt = torch.optim.AdamW(clip.parameters(), lr=1e-4)
    target = torch.arange(batch)

    def step():
        img = F.normalize(clip.encode_image(images), dim=-1)
        txt = F.normalize(clip.encode_text(tokens), dim=-1)
        logits = clip.logit_scale.exp() * img @ txt.t()
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _classifier_step(model, inputs: torch.Tensor, forward=None):
    """A training step of a method: cross-entropy, backward, SGD."""
    labels = torch.arange(inputs.shape[0]) % len(CLASSES)
    model.train()
    opt = _sgd(model)
    forward = forward or model

    def step():
        loss = F.cross_entropy(forward(inputs), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _vp_prompt_size(clip) -> int:
    return max(1, round(_images(clip, 1).shape[-1] * 30 / 224))  # the paper's 30 px on 224 px; params.yaml's 4 on the mini CLIP's 32


def _vp_official(clip, tokenizer, batch: int):
    """VP trained as the official code does it: nothing frozen, texts encoded in every step."""
    from .methods.visual_prompt import PadPrompter

    images = _images(clip, batch)
    prompter = PadPrompter(images.shape[-1], _vp_prompt_size(clip))
    for q in clip.parameters():
        q.requires_grad_(True)
    tokens = tokenizer([f"This is a photo of a {c}" for c in CLASSES])
    labels = torch.arange(batch) % len(CLASSES)
    opt = torch.optim.SGD(prompter.parameters(), lr=1e-3, momentum=0.9)

    def step():
        image = F.normalize(clip.encode_image(prompter(images)), dim=-1)
        text = F.normalize(clip.encode_text(tokens), dim=-1)
        loss = F.cross_entropy(clip.logit_scale.exp() * image @ text.t(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _vp_floor(clip, tokenizer, batch: int):
    """A frozen image forward and the backward to its input: what any VP step has to compute."""
    for q in clip.parameters():
        q.requires_grad_(False)
    images = _images(clip, batch).requires_grad_(True)
    text = encode_classnames(clip, tokenizer, CLASSES, "This is a photo of a {}")
    labels = torch.arange(batch) % len(CLASSES)

    def step():
        loss = F.cross_entropy(clip.logit_scale.exp() * F.normalize(clip.encode_image(images), dim=-1) @ text.t(), labels)
        images.grad = None
        loss.backward()

    return step


def _frozen(clip, tokenizer, batch: int):
    images = _images(clip, batch)
    text = encode_classnames(clip, tokenizer, CLASSES, "a photo of a {}.")

    def step():
        with torch.no_grad():
            return clip.logit_scale.exp() * F.normalize(clip.encode_image(images), dim=-1) @ text.t()

    return step


def _rpo(clip, tokenizer, batch: int, fast: bool, attention: str):
    model = RPO(clip, tokenizer, CLASSES, K=24 if clip.context_length == 77 else 4, fast=fast).train()
    if attention == "torch":
        use_torch_attention(model.clip)  # RPO switches its CLIP to ClipAttention; the plain path runs the towers
    return _classifier_step(model, _images(clip, batch))


def official_layout(model: RPO) -> RPO:
    """Put both towers of an RPO model's CLIP in the layout of OpenAI's CLIP code, which the official
    RPO code runs: sequence-first tensors through ``nn.MultiheadAttention(batch_first=False)``
    (open_clip's Transformer transposes in and out when ``batch_first`` is off)."""
    use_torch_attention(model.clip)
    for tower in (model.clip.transformer, model.clip.visual.transformer):
        tower.batch_first = False
        for blk in tower.resblocks:
            blk.attn.batch_first = False
    return model


def _rpo_official(clip, tokenizer, batch: int):
    """RPO trained as the official code does it (written here from the paper and its released
    code's structure, not copied): OpenAI's sequence-first attention with full float masks, every
    class prompt through the whole text tower in every step, CLIP frozen. The shipped script also
    turns on autograd's anomaly detection, which costs more again; it is left off here."""
    model = official_layout(RPO(clip, tokenizer, CLASSES, K=24 if clip.context_length == 77 else 4, fast=False).train())
    return _classifier_step(model, _images(clip, batch))


def make_step(name: str, clip, tokenizer, batch: int, attention: str):
    """A closure running one ``name`` step on ``clip`` (which it may train or wrap), or None if not applicable."""
    if name == "pretrain":
        return _pretrain(clip, tokenizer, batch)
    if name == "vp_pad":
        return _classifier_step(create_method("vp_pad", clip, tokenizer, CLASSES, prompt_size=_vp_prompt_size(clip)), _images(clip, batch))
    if name == "vp_official":  # the official code runs open_clip's (OpenAI's) own attention
        return _vp_official(clip, tokenizer, batch) if attention == "torch" else None
    if name == "vp_floor":
        return _vp_floor(clip, tokenizer, batch) if attention == "sdpa" else None
    if name == "coop":
        model = create_method("coop", clip, tokenizer, CLASSES, n_ctx=4, ctx_init="a photo of a")
        return _classifier_step(model, model.encode_frozen(_images(clip, batch)), model.forward_head)
    if name == "frozen":
        return _frozen(clip, tokenizer, batch)
    if name == "rpo_official":
        return _rpo_official(clip, tokenizer, batch) if attention == "torch" else None
    if name in ("rpo_plain", "rpo_fast"):
        if name == "rpo_fast" and attention == "torch":
            return None
        return _rpo(clip, tokenizer, batch, name == "rpo_fast", attention)
    raise ValueError(f"unknown step {name!r}; choose from {STEPS}")


def clip_config(model: str, params: str = "params.yaml") -> dict:
    """The mini CLIP of ``params`` (``backbones.clip``, without its weights file), or an open_clip model name."""
    if model == "mini":
        return {k: v for k, v in section(load_params(params), "backbones")["clip"].items() if k != "weights"}
    return {"arch": model, "pretrained": None}


def run(model: str = "mini", steps=None, batch: int | None = None, repeats: int = 5, threads: int | None = None, params: str = "params.yaml") -> dict:
    """Median seconds per step for each attention path: ``{"seconds": {step: {attention: s}}, ...}``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        torch.set_num_threads(threads)
    steps = list(steps or (("pretrain", "vp_pad", "vp_official", "vp_floor", "coop", "frozen") if model == "mini" else ("frozen", "rpo_official", "rpo_plain", "rpo_fast")))
    cfg = clip_config(model, params)
    torch.manual_seed(0)
    base = create_clip(cfg)
    tokenizer = get_tokenizer(cfg, base)
    batches = {s: batch or (MINI_BATCH[s] if model == "mini" else 8) for s in steps}
    fns = {}
    for s in steps:
        for attention in ATTENTIONS:
            clip = copy.deepcopy(base)  # every step trains or wraps its own copy
            if attention == "torch":
                use_torch_attention(clip)
            fn = make_step(s, clip, tokenizer, batches[s], attention)
            if fn is not None:
                fns[(s, attention)] = fn
    t = _time(fns, repeats, torch.device("cpu"))
    seconds = {s: {a: statistics.median(t["wall"][(s, a)]) for a in ATTENTIONS if (s, a) in fns} for s in steps}
    return {
        "model": model,
        "clip": cfg,
        "weights": "random init",
        "batch": batches,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "seconds": seconds,
        "all_seconds": {f"{s}/{a}": v for (s, a), v in t["wall"].items()},
    }


# --- the tiny ViT (VPT side): training images/s per method, configurations side by side ------------

VIT_METHODS = ("full", "vpt_deep", "vpt_shallow", "bias", "adapter", "partial", "partial@images", "sidetune")  # @images: no feature cache
VIT_BEFORE = {"depth": 6, "embed_dim": 128, "num_heads": 4}  # the tiny ViT of regime attempt 1


def _vit_step(method: str, backbone, batch: int, num_classes: int = len(CLASSES)):
    """One training step of ``method`` as ``train.fit`` runs it: from cached features where the
    method has ``encode_frozen`` (Partial-k, Linear, MLP), else from images."""
    name, _, source = method.partition("@")
    kw = {"prompt_length": 8} if name.startswith("vpt") else {}
    model = create_method(name, backbone, num_classes, **kw).train()
    x = torch.randn(batch, 3, backbone.patch_embed.img_size[0], backbone.patch_embed.img_size[1], generator=torch.Generator().manual_seed(0))
    if hasattr(model, "encode_frozen") and source != "images":
        return _classifier_step(model, model.encode_frozen(x), model.forward_head)
    return _classifier_step(model, x)


def run_vit(params: str = "params.yaml", methods=VIT_METHODS, batch: int = 32, repeats: int = 10, threads: int | None = None,
            before: dict | None = None) -> dict:
    """Training images/s of each method on the tiny ViT of ``params`` ("now") and on ``before``
    (default: attempt 1's 6 x 128 ViT), random weights, interleaved repeats, medians."""
    from .backbones.vit import VitConfig, create_vit

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        torch.set_num_threads(threads)
    now = {k: v for k, v in section(load_params(params), "backbones")["vit"].items() if k != "weights"}
    configs = {"before": {**now, **(before or VIT_BEFORE)}, "now": now}
    fns = {}
    for name, cfg in configs.items():
        torch.manual_seed(0)
        backbone = create_vit(VitConfig.from_dict(cfg))
        for m in methods:
            fns[(m, name)] = _vit_step(m, copy.deepcopy(backbone), batch)
    t = _time(fns, repeats, torch.device("cpu"))
    ips = {m: {c: batch / statistics.median(t["wall"][(m, c)]) for c in configs} for m in methods}
    return {"configs": configs, "batch": batch, "repeats": repeats, "torch_threads": torch.get_num_threads(), "images_per_s": ips}


def vit_table(res: dict) -> str:
    """Training images/s per method, before and now."""
    b, n = res["configs"]["before"], res["configs"]["now"]
    size = lambda c: f"{c['depth']} x {c['embed_dim']}"  # noqa: E731
    lines = [f"| method | ViT {size(b)} (img/s) | ViT {size(n)} (img/s) | speed-up |", "|---|---:|---:|---:|"]
    for m, v in res["images_per_s"].items():
        lines.append(f"| {m} | {v['before']:.0f} | {v['now']:.0f} | {v['now'] / v['before']:.2f}x |")
    return "\n".join(lines)


def table(res: dict) -> str:
    """The result as a Markdown table: seconds per step with each attention path, and the speed-up;
    then, when measured, VP ours vs the official style vs the floor, as ratios from the same run."""
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    lines = ["| step | batch | nn.MultiheadAttention (s) | ClipAttention (s) | speed-up |", "|---|---:|---:|---:|---:|"]
    for s, v in res["seconds"].items():
        before, after = v.get("torch"), v.get("sdpa")
        ratio = f"{before / after:.2f}x" if before and after else "-"
        lines.append(f"| {s} | {res['batch'][s]} | {fmt(before)} | {fmt(after)} | {ratio} |")
    sec = res["seconds"]
    ours, official, floor = (sec.get(k, {}) for k in ("vp_pad", "vp_official", "vp_floor"))
    if ours.get("sdpa") and official.get("torch") and floor.get("sdpa"):
        lines += ["", "| VP pad step | s | vs ours |", "|---|---:|---:|",
                  f"| official style (CLIP not frozen, texts re-encoded, open_clip attention) | {official['torch']:.4f} | {official['torch'] / ours['sdpa']:.2f}x |",
                  f"| ours (frozen CLIP, cached texts, ClipAttention) | {ours['sdpa']:.4f} | 1.00x |",
                  f"| floor (frozen forward + backward to the input) | {floor['sdpa']:.4f} | {floor['sdpa'] / ours['sdpa']:.2f}x |"]
    official, plain, fast, frozen = (sec.get(k, {}) for k in ("rpo_official", "rpo_plain", "rpo_fast", "frozen"))
    if frozen.get("sdpa") and (official.get("torch") or plain.get("sdpa") or fast.get("sdpa")):
        rows = [("official style (sequence-first nn.MultiheadAttention, every class prompt re-encoded)", "rpo_official", official.get("torch")),
                ("ours, plain path (ClipAttention)", "rpo_plain", plain.get("sdpa")), ("ours, fast path (read-only caches)", "rpo_fast", fast.get("sdpa")),
                ("floor (a frozen image forward)", "frozen", frozen["sdpa"])]
        batch = res["batch"]
        per_frozen = lambda step, t: f"{t / frozen['sdpa']:.2f}" if batch[step] == batch["frozen"] else "- (other batch)"  # noqa: E731
        lines += ["", f"| RPO step (batch {batch.get('rpo_fast') or batch.get('rpo_plain') or batch.get('rpo_official')}) | s | / frozen forward | official / this |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {name} | {t:.4f} | {per_frozen(step, t)} | " + (f"{official['torch'] / t:.2f}x |" if official.get("torch") else "- |")
                  for name, step, t in rows if t]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m visprompt.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mini", action="store_true", help="the mini CLIP of --params (the default model)")
    ap.add_argument("--model", default=None, help="an open_clip model name instead, e.g. ViT-B-16")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=None)
    ap.add_argument("--batch", type=int, default=None, help="one batch size for every step (default: params.yaml's for mini, 8 otherwise)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    args = ap.parse_args(argv)
    if args.mini and args.model:
        ap.error("--mini and --model exclude each other")
    res = run(args.model or "mini", args.steps, args.batch, args.repeats, args.threads, args.params)
    print(f"{res['model']} CLIP, CPU, {res['torch_threads']} threads, median of {res['repeats']} interleaved repeats")
    print(table(res))
    if args.model is None:  # --mini: the tiny ViT's training steps too
        res["vit"] = run_vit(args.params, batch=args.batch or 32, repeats=args.repeats, threads=args.threads)
        print(f"\ntiny ViT training steps, batch {res['vit']['batch']}, random weights, median of {res['vit']['repeats']} interleaved repeats")
        print(vit_table(res["vit"]))
    if args.out:
        write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
