"""Benchmark RPO's fast path against a frozen CLIP forward and the plain masked implementation.

On the same batch it times, as the median of ``--repeats`` runs after one warm-up:

(a) ``frozen``: one frozen CLIP forward -- image encoder, then logits against text features
    cached beforehand -- under ``torch.no_grad``;
(b) ``plain``: one RPO training step (forward + backward + SGD step) of the straightforward masked
    implementation (``fast=False``: every class prompt through the whole text tower and all image
    tokens with autograd, every step);
(c) ``fast``: the same step with the read-only fast path (``fast=True``).

It reports wall-clock seconds and process CPU seconds (steadier on a shared machine), the
ratios ``fast / frozen`` (target from issue #15: <= 1.2) and ``plain / fast``, torch threads and
device. It also counts each step's arithmetic (``torch.utils.flop_counter``: the matmuls,
convolutions and attention, forward and backward) in frozen forwards: the ratio a faster
implementation of the *same* algorithm could at best reach. The CLIP has random weights: timing
does not depend on them. Usage::

    python -m visprompt.bench_rpo --model ViT-B-16 --batch 8 --K 24 --out reports/bench_rpo.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from .backbones.clip import create_clip, encode_classnames, get_tokenizer
from .methods.rpo import RPO
from .utils import environment_info, write_json

MODELS = ("mini", "ViT-B-16")
CLASSNAMES = ["cat", "dog", "red_circle", "blue square", "airplane", "golden retriever", "sunflower", "pizza", "forest", "bicycle", "tennis ball", "spiral galaxy"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fns: dict, repeats: int, device: torch.device) -> dict:
    """Wall-clock and process-CPU seconds of each function, run round-robin so that a change in
    machine load hits every measurement alike; one warm-up round first."""
    for fn in fns.values():
        fn()
    _sync(device)
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {"wall": wall, "cpu": cpu}


def build(model: str, device: torch.device):
    """A CLIP (random weights for ViT-B-16: timing does not depend on them), its tokenizer and image size."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    if model == "mini":
        cfg = {}
        clip = create_clip(cfg)
    else:
        cfg = {"arch": model, "pretrained": None}
        clip = create_clip(cfg)
    clip = clip.to(device)
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return clip, get_tokenizer(cfg, clip), int(size)


def run(model: str = "mini", batch: int = 8, K: int = 24, classes: int = 10, repeats: int = 5, device: str | None = None, threads: int | None = None) -> dict:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if threads:
        torch.set_num_threads(threads)
    clip, tokenizer, size = build(model, device)
    names = [CLASSNAMES[i % len(CLASSNAMES)] + ("" if i < len(CLASSNAMES) else f" {i}") for i in range(classes)]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.randint(0, classes, (batch,), generator=gen).to(device)

    text = encode_classnames(clip, tokenizer, names, "a photo of a {}.")

    def frozen():
        with torch.no_grad():
            img = F.normalize(clip.encode_image(images), dim=-1)
            return clip.logit_scale.exp() * img @ text.t()

    rpo = RPO(clip, tokenizer, names, K=K).to(device).train()
    opt = torch.optim.SGD([p for p in rpo.parameters() if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(fast: bool):
        def fn():
            rpo.fast = fast
            loss = F.cross_entropy(rpo(images), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return fn

    def fast_frozen_part():
        rpo.frozen_image_pass(images)

    def fast_text_part():  # the K prompt rows of every class through the text tower, forward + backward
        rpo.fast = True
        rpo.text_prompts.grad = None
        rpo.text_features().sum().backward()

    parts = {"fast_frozen_part": fast_frozen_part, "fast_text_part": fast_text_part}
    fns = {"frozen": frozen, "plain": step(False), "fast": step(True), **parts}
    t = _time(fns, repeats, device)
    flops = {k: count_flops(fn) for k, fn in fns.items()}
    med = {kind: {k: statistics.median(v) for k, v in t[kind].items()} for kind in t}
    best = {k: min(v) for k, v in t["wall"].items()}
    env = environment_info(device)
    return {
        "model": model,
        "weights": "random init",
        "batch": batch,
        "K": K,
        "classes": classes,
        "image_size": size,
        "repeats": repeats,
        "seconds": med["wall"],
        "cpu_seconds": med["cpu"],
        "fast_over_frozen": med["wall"]["fast"] / med["wall"]["frozen"],
        # the fast step in frozen forwards: its no-grad image pass + the text prompts (independent of the
        # batch) + the rest (the image prompt rows forward and backward, the head, the optimizer)
        "fast_breakdown": breakdown(med["wall"]),
        # the same in arithmetic: what the fast step costs in frozen forwards if every FLOP ran at the
        # frozen forward's speed (the floor of fast_over_frozen for this algorithm)
        "flops": flops,
        "flops_over_frozen": {k: round(v / flops["frozen"], 3) for k, v in flops.items()},
        "flops_breakdown": breakdown({k: float(v) for k, v in flops.items()}),
        "plain_over_fast": med["wall"]["plain"] / med["wall"]["fast"],
        "cpu_fast_over_frozen": med["cpu"]["fast"] / med["cpu"]["frozen"],
        "cpu_plain_over_fast": med["cpu"]["plain"] / med["cpu"]["fast"],
        "min_seconds": best,
        "min_fast_over_frozen": best["fast"] / best["frozen"],
        "min_plain_over_fast": best["plain"] / best["fast"],
        "target_fast_over_frozen": 1.2,
        "all_seconds": t["wall"],
        "all_cpu_seconds": t["cpu"],
        "notes": (
            "seconds: wall clock, median of repeats; min_seconds: the fastest repeat (least disturbed by "
            "other jobs); cpu_seconds: process CPU time (all threads), steadier than wall clock on a shared "
            "machine with one thread. 'fast_frozen_part' is the fast step's "
            "no-grad pass over the image tokens alone (the frozen forward minus the last layer's unused work)."
        ),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": env["device_name"],
        "cpu_count": env["cpu_count"],
        "torch": env["torch"],
        "open_clip": env["open_clip"],
    }


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's counter knows the CUDA attention kernels but not the CPU one (it counted 0): the same formulas
CPU_SDPA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
                  torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops}


def count_flops(fn) -> int:
    """Floating-point operations of one call of ``fn`` (matmuls, convolutions, attention; forward and
    backward), as torch's own counter sees them (plus the CPU attention kernel)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
        fn()
    return int(counter.get_total_flops())


def breakdown(seconds: dict) -> dict:
    """The fast step as a sum of parts, each in frozen image forwards."""
    f = seconds["frozen"]
    frozen_part, text = seconds["fast_frozen_part"] / f, seconds["fast_text_part"] / f
    return {"frozen_image_pass": round(frozen_part, 3), "text_prompts": round(text, 3),
            "image_prompts_head_optimizer": round(seconds["fast"] / f - frozen_part - text, 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m visprompt.bench_rpo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="mini")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--K", type=int, default=24)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    args = ap.parse_args(argv)
    res = run(args.model, args.batch, args.K, args.classes, args.repeats, args.device, args.threads)
    for kind, key, pre in (("wall", "seconds", ""), ("cpu", "cpu_seconds", "cpu_")):
        s = res[key]
        print(
            f"{res['model']} batch {res['batch']} K {res['K']} classes {res['classes']} on {res['device']} ({res['torch_threads']} threads), {kind}: "
            f"frozen {s['frozen']:.4f} s, plain step {s['plain']:.4f} s, fast step {s['fast']:.4f} s "
            f"(its frozen part {s['fast_frozen_part']:.4f} s); fast/frozen {res[pre + 'fast_over_frozen']:.3f} (target <= {res['target_fast_over_frozen']}), "
            f"plain/fast {res[pre + 'plain_over_fast']:.2f}"
        )
    b = res["fast_breakdown"]
    print(f"  fast step in frozen forwards = no-grad image pass {b['frozen_image_pass']:.2f} + text prompts {b['text_prompts']:.2f} "
          f"+ image prompts, head and optimizer {b['image_prompts_head_optimizer']:.2f}")
    f, b = res["flops_over_frozen"], res["flops_breakdown"]
    print(f"  arithmetic (FLOPs) in frozen forwards: fast step {f['fast']:.2f} = image pass {b['frozen_image_pass']:.2f} + text prompts {b['text_prompts']:.2f} "
          f"+ image prompts, head {b['image_prompts_head_optimizer']:.2f}; plain step {f['plain']:.2f} "
          f"(the fast step's wall-clock ratio can reach {f['fast']:.2f} at best without changing the algorithm)")
    s = res["min_seconds"]
    print(
        f"  fastest repeats (wall): frozen {s['frozen']:.4f} s, plain {s['plain']:.4f} s, fast {s['fast']:.4f} s; "
        f"fast/frozen {res['min_fast_over_frozen']:.3f}, plain/fast {res['min_plain_over_fast']:.2f}"
    )
    if args.out:
        write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
