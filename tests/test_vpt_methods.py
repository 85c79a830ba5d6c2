"""VPT-shallow/deep and the Table-1 baselines on tiny timm ViTs, plus VPT's published numbers."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from visprompt.data.base import TensorImageDataset
from visprompt.errors import ConfigError
from visprompt.methods import create_method, get_method_spec, list_methods
from visprompt.methods.vit_baselines import Adapter, SideNetwork, backbone_features
from visprompt.methods.vpt import vpt_parameter_count
from visprompt.published.vpt import GROUPS, METHODS, VTAB_TASKS, published_table, published_total_params, published_top1
from visprompt.train import Recipe, build_optimizer, evaluate, fit
from visprompt.utils import count_parameters

D, DEPTH, HEADS, IMG, PATCH = 64, 3, 4, 32, 8
N_PATCHES = (IMG // PATCH) ** 2
C = 5
VIT_METHODS = ["adapter", "bias", "full", "linear", "mlp", "partial", "sidetune", "vpt_deep", "vpt_shallow"]


def tiny_vit(seed=0, **kw):
    torch.manual_seed(seed)
    return VisionTransformer(img_size=IMG, patch_size=PATCH, embed_dim=D, depth=DEPTH, num_heads=HEADS, num_classes=0, **kw)


def images(n=4, seed=1):
    return torch.randn(n, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def n_trainable(model):
    return count_parameters(model)["trainable"]


def block_params(d, hidden):
    # norm1 + qkv + proj + norm2 + fc1 + fc2
    return 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * hidden + hidden) + (hidden * d + d)


def head_params(d, c):
    return d * c + c


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is fastest, and far faster on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def vit_b16():
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)


# --- VPT: prompt insertion ------------------------------------------------------------------------


def _block_io(model, x):
    """Inputs and outputs of every block of ``model.backbone`` for one forward pass."""
    ins, outs, handles = [], [], []
    for block in model.backbone.blocks:
        handles.append(block.register_forward_pre_hook(lambda m, a: ins.append(a[0].detach().clone())))
        handles.append(block.register_forward_hook(lambda m, a, out: outs.append(out.detach().clone())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return ins, outs


@pytest.mark.parametrize("p", [1, 4])
def test_vpt_deep_replaces_prompts_at_every_layer(p):
    model = create_method("vpt_deep", tiny_vit(), C, prompt_length=p).eval()
    s = model.backbone.num_prefix_tokens
    assert model.prompts.shape == (DEPTH, p, D)
    ins, outs = _block_io(model, images(3))
    assert len(ins) == DEPTH
    for i, x in enumerate(ins):
        assert x.shape == (3, s + p + N_PATCHES, D)  # never accumulates
        assert torch.equal(x[:, s : s + p], model.prompts[i].detach().expand(3, -1, -1))
        if i > 0:  # CLS and patch rows come from the previous block; prompt rows do not
            assert torch.equal(x[:, :s], outs[i - 1][:, :s])
            assert torch.equal(x[:, s + p :], outs[i - 1][:, s + p :])
            assert not torch.equal(x[:, s : s + p], outs[i - 1][:, s : s + p])


def test_vpt_shallow_prompts_enter_once():
    p = 4
    model = create_method("vpt_shallow", tiny_vit(), C, prompt_length=p).eval()
    s = model.backbone.num_prefix_tokens
    assert model.prompts.shape == (1, p, D)
    ins, outs = _block_io(model, images(3))
    assert torch.equal(ins[0][:, s : s + p], model.prompts[0].detach().expand(3, -1, -1))
    for i in range(1, DEPTH):
        assert ins[i].shape == (3, s + p + N_PATCHES, D)
        assert torch.equal(ins[i], outs[i - 1])  # prompt rows are the previous block's outputs
        assert not torch.allclose(ins[i][:, s : s + p], model.prompts[0].detach().expand(3, -1, -1))


@pytest.mark.parametrize("method", ["vpt_shallow", "vpt_deep"])
def test_prompts_carry_no_position_embedding(method):
    model = create_method(method, tiny_vit(), C, prompt_length=3).eval()
    bb = model.backbone
    x = images(2)
    ins, _ = _block_io(model, x)
    s = bb.num_prefix_tokens
    assert torch.equal(ins[0][:, s : s + 3], model.prompts[0].detach().expand(2, -1, -1))
    # CLS and patches do carry the position embedding, exactly as in the unprompted backbone
    with torch.no_grad():
        plain = bb._pos_embed(bb.patch_embed(x))
    assert torch.equal(ins[0][:, :s], plain[:, :s]) and torch.equal(ins[0][:, s + 3 :], plain[:, s:])


def test_vpt_prompt_outputs_discarded_and_init_range():
    model = create_method("vpt_deep", tiny_vit(), C, prompt_length=2).eval()
    tokens = model.forward_tokens(images(2))
    assert tokens.shape == (2, model.backbone.num_prefix_tokens + N_PATCHES, D)
    v = math.sqrt(6.0 / (3 * PATCH * PATCH + D))
    assert model.prompts.abs().max() <= v


# --- frozen weights, gradients, train/eval modes --------------------------------------------------


def test_registered_vit_methods():
    assert set(VIT_METHODS) <= set(list_methods(family="vit"))
    for m in VIT_METHODS:
        assert get_method_spec(m).paper == "vpt"


@pytest.mark.parametrize("method", VIT_METHODS)
def test_frozen_weights_unchanged_after_optimizer_step(method):
    model = create_method(method, tiny_vit(), C)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    trainable = set(before) - frozen
    assert trainable
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.01)
    opt = build_optimizer(model, recipe)
    x, y = images(6), torch.arange(6) % C
    model.train()
    for _ in range(2):  # second step exercises the momentum buffers
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None, n
            assert torch.equal(p.detach(), before[n]), f"frozen {n} changed"
        else:
            assert not torch.equal(p.detach(), before[n]), f"trainable {n} did not change"
    assert n_trainable(model) == sum(before[n].numel() for n in trainable)


@pytest.mark.parametrize("method", VIT_METHODS)
def test_frozen_modules_stay_in_eval_mode(method):
    model = create_method(method, tiny_vit(), C).train()
    bb = model.backbone
    if method == "full":
        assert all(m.training for m in model.modules())
    else:
        # only the trainable backbone parts (Partial's last blocks + norm, the adapters) train
        live = {sub for m in model.trainable_backbone_modules() for sub in m.modules()}
        for name, m in bb.named_modules():
            assert m.training == (m in live), name
        assert model.head.training
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    if method == "partial":
        assert bb.blocks[-1].training and not bb.blocks[0].training and bb.norm.training
    if method == "adapter":
        assert all(a.training for a in model.adapters())
        assert not bb.blocks[0].attn.training and not bb.blocks[0].mlp.ffn.training
    if method in ("linear", "bias", "sidetune", "vpt_deep", "vpt_shallow", "mlp"):
        assert not any(m.training for m in bb.modules())


def test_full_sets_backbone_dropout_and_keeps_attention_dropout():
    model = create_method("full", tiny_vit(), C, dropout=0.1)
    bb = model.backbone
    assert bb.pos_drop.p == 0.1 and bb.blocks[0].mlp.drop1.p == 0.1 and bb.blocks[-1].mlp.drop2.p == 0.1
    assert type(bb.blocks[0].mlp.drop1).__name__ == "FastDropout"
    assert bb.blocks[0].attn.attn_drop.p == 0.0 and bb.blocks[0].attn.proj_drop.p == 0.0
    model.train()
    assert all(m.training for m in bb.modules())
    model = create_method("full", tiny_vit(), C, dropout=None)
    assert model.backbone.pos_drop.p == 0.0


def test_fast_dropout_keeps_1_minus_p_unbiased_and_seeded():
    from visprompt.methods.fast_dropout import FastDropout

    drop = FastDropout(0.1).train()
    x = torch.ones(400, 1000)
    torch.manual_seed(0)
    y = drop(x)
    kept = (y != 0).float()
    assert abs(kept.mean().item() - 0.9) < 0.002  # 400k draws: sd 0.0005
    assert abs(y.mean().item() - 1.0) < 0.003  # kept values scaled to an unbiased mean
    assert abs(torch.corrcoef(torch.stack([kept.flatten()[:-1], kept.flatten()[1:]]))[0, 1].item()) < 0.01  # neighbours independent
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the global generator: a seeded epoch repeats its masks
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros_like(x))
    g = torch.ones(3, 5, requires_grad=True)
    FastDropout(0.5).train()(g).sum().backward()
    assert set(g.grad.unique().tolist()) <= {0.0, 2.0}


def test_adapter_starts_as_identity_and_learns():
    bb = tiny_vit()
    x = images(3)
    with torch.no_grad():
        ref = bb.forward_head(bb.forward_features(x), pre_logits=True)
    model = create_method("adapter", tiny_vit(), C, reduction=4).eval()
    with torch.no_grad():
        assert torch.allclose(backbone_features(model.backbone, x), ref, atol=1e-6)
    a = model.adapters()[0]
    assert a.down.weight.abs().sum() > 0  # not both projections zero-initialised
    assert torch.count_nonzero(a.up.weight) == 0
    F.cross_entropy(model.train()(x), torch.arange(3)).backward()
    assert a.up.weight.grad.abs().sum() > 0  # the up projection's weight gets a gradient at step 0
    # the official both-zero init could not learn: only the up bias would get a gradient
    dead = Adapter(D, 8)
    torch.nn.init.zeros_(dead.down.weight), torch.nn.init.zeros_(dead.down.bias)
    dead(torch.randn(2, 5, D)).pow(2).sum().backward()
    assert dead.up.weight.grad.abs().sum() == 0 and dead.down.weight.grad.abs().sum() == 0


def test_linear_and_mlp_encode_frozen_matches_forward():
    for method in ("linear", "mlp"):
        model = create_method(method, tiny_vit(), C).eval()
        x = images(4)
        with torch.no_grad():
            assert torch.allclose(model(x), model.forward_head(model.encode_frozen(x)))
        assert model.encode_frozen(x).shape == (4, D) and not model.encode_frozen(x).requires_grad


def test_partial_cached_tokens_train_like_the_uncached_forward():
    """Partial-k caches the frozen blocks' output: same logits, and the same gradients on the
    trainable blocks whether a step starts from images or from the cached tokens."""
    torch.manual_seed(0)
    model = create_method("partial", tiny_vit(), C, k=1).eval()
    x, y = images(4), torch.arange(4) % C
    tokens = model.encode_frozen(x)
    assert not tokens.requires_grad and tokens.dim() == 3
    grads = []
    for logits in (model(x), model.forward_head(tokens)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    assert torch.equal(model(x), model.forward_head(tokens))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_sidetune_gate_starts_even():
    model = create_method("sidetune", tiny_vit(), C)
    assert model.alpha.item() == 0.0 and "alpha" in model.no_weight_decay()


# --- parameter counts -----------------------------------------------------------------------------


def test_vpt_deep_paper_count_on_vit_b16(vit_b16):
    model = create_method("vpt_deep", vit_b16, 6, prompt_length=100)
    counts = count_parameters(model)
    assert counts["trainable"] == 926_214 == 12 * 100 * 768 + 768 * 6 + 6
    assert counts["total"] - counts["trainable"] == 85_798_656  # the frozen ViT-B/16
    assert vpt_parameter_count(12, 100, 768, 6, deep=True) == 926_214


def test_vpt_shallow_and_linear_counts_on_vit_b16(vit_b16):
    assert n_trainable(create_method("vpt_shallow", vit_b16, 6, prompt_length=100)) == 100 * 768 + 768 * 6 + 6
    assert n_trainable(create_method("vpt_shallow", vit_b16, 200, prompt_length=50)) == vpt_parameter_count(12, 50, 768, 200, deep=False)
    assert n_trainable(create_method("linear", vit_b16, 100)) == 768 * 100 + 100
    assert n_trainable(create_method("vpt_deep", vit_b16, 10, prompt_length=5, prompt_project=32)) == vpt_parameter_count(12, 5, 768, 10, prompt_project=32)


def test_baseline_counts_on_tiny_vit():
    d, h, head = D, 4 * D, head_params(D, C)
    total = (3 * PATCH * PATCH * d + d) + d + (N_PATCHES + 1) * d + DEPTH * block_params(d, h) + 2 * d
    assert count_parameters(tiny_vit())["total"] == total
    assert n_trainable(create_method("full", tiny_vit(), C)) == total + head
    assert n_trainable(create_method("linear", tiny_vit(), C)) == head
    for k in (1, 2, 3):
        assert n_trainable(create_method("partial", tiny_vit(), C, k=k)) == k * block_params(d, h) + 2 * d + head
        assert n_trainable(create_method("mlp", tiny_vit(), C, k=k)) == (k - 1) * (d * d + d + 2 * d) + head
    biases = d + DEPTH * (d + 3 * d + d + d + h + d) + d  # patch embed, per block, final norm
    assert n_trainable(create_method("bias", tiny_vit(), C)) == biases + head
    for r in (1, 4, 8, 64):
        b = d // r
        assert n_trainable(create_method("adapter", tiny_vit(), C, reduction=r)) == DEPTH * (2 * d * b + b + d) + head
    w = 8
    side = (3 * w * 25 + w) + (w * 2 * w * 9 + 2 * w) + (2 * w * 4 * w * 9 + 4 * w) + (4 * w * d + d)
    assert n_trainable(create_method("sidetune", tiny_vit(), C, width=w)) == side + 1 + head
    assert n_trainable(SideNetwork(d, w)) == side
    for p in (1, 7):
        assert n_trainable(create_method("vpt_deep", tiny_vit(), C, prompt_length=p)) == DEPTH * p * d + head
        assert n_trainable(create_method("vpt_shallow", tiny_vit(), C, prompt_length=p)) == p * d + head


def test_partial_on_avg_pool_vit_trains_fc_norm():
    bb = tiny_vit(global_pool="avg", class_token=False)
    model = create_method("partial", bb, C, k=1)
    assert all(p.requires_grad for p in bb.fc_norm.parameters())
    assert n_trainable(model) == block_params(D, 4 * D) + 2 * D + head_params(D, C)
    assert model(images(2)).shape == (2, C)


# --- configuration errors -------------------------------------------------------------------------


def test_unknown_method_fails_fast():
    with pytest.raises(ConfigError, match="unknown method 'vpt_deeep'.*vpt_deep"):
        create_method("vpt_deeep", tiny_vit(), C)


def test_unknown_cfg_key_names_it():
    with pytest.raises(ConfigError, match="prompt_lenght"):
        create_method("vpt_deep", tiny_vit(), C, prompt_lenght=4)


@pytest.mark.parametrize(
    "method, cfg, key",
    [
        ("vpt_deep", {"prompt_length": 0}, "prompt_length"),
        ("vpt_shallow", {"prompt_length": -3}, "prompt_length"),
        ("vpt_deep", {"prompt_length": 2.5}, "prompt_length"),
        ("vpt_deep", {"prompt_dropout": 1.0}, "prompt_dropout"),
        ("partial", {"k": DEPTH + 1}, "k"),
        ("partial", {"k": 0}, "k"),
        ("mlp", {"k": 0}, "k"),
        ("mlp", {"dropout": -0.1}, "dropout"),
        ("adapter", {"reduction": 0}, "reduction"),
        ("adapter", {"reduction": 3}, "reduction"),  # does not divide 64
        ("adapter", {"reduction": 128}, "reduction"),  # bottleneck would be 0
        ("sidetune", {"width": 0}, "width"),
        ("full", {"dropout": 1.5}, "dropout"),
    ],
)
def test_impossible_settings_raise_config_error(method, cfg, key):
    with pytest.raises(ConfigError, match=key) as e:
        create_method(method, tiny_vit(), C, **cfg)
    assert "params.yaml" in str(e.value) or "set " in str(e.value)


def test_partial_error_names_depth_and_fix():
    with pytest.raises(ConfigError, match=r"k must be an integer in \[1, 3\].*between 1 and 3"):
        create_method("partial", tiny_vit(), C, k=4)


@pytest.mark.parametrize("method", VIT_METHODS)
def test_non_vit_backbone_and_bad_num_classes(method):
    with pytest.raises(ConfigError, match="VisionTransformer"):
        create_method(method, torch.nn.Linear(3, 3), C)
    with pytest.raises(ConfigError, match="num_classes"):
        create_method(method, tiny_vit(), 0)


# --- a short training run -------------------------------------------------------------------------


def _tiny_dataset(n=24, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    imgs = rng.integers(0, 256, size=(n, IMG, IMG, 3), dtype=np.uint8)
    imgs[..., 0] = np.clip(imgs[..., 0].astype(int) // 4 + 60 * labels[:, None, None], 0, 255)  # learnable colour cue
    return TensorImageDataset(imgs, labels, ["a", "b", "c"])


@pytest.mark.parametrize("method, cached", [("vpt_deep", False), ("linear", True)])
def test_short_fit_runs(method, cached, tmp_path):
    data = _tiny_dataset()
    model = create_method(method, tiny_vit(), 3, **({"prompt_length": 2} if method == "vpt_deep" else {}))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    recipe = Recipe(optimizer="sgd", lr=0.5, lr_scaling="batch256", batch_size=8, epochs=2, warmup_epochs=1, step_per="epoch", weight_decay=1e-4)
    rec = fit(model, data, recipe, seed=1, progress=False, checkpoint=tmp_path / "ckpt.pt")
    assert rec["epochs_run"] == 2 and rec["features_cached"] is cached
    assert all(math.isfinite(h["loss"]) and h["lr"] > 0 for h in rec["history"])
    assert rec["params"]["trainable"] == n_trainable(model)
    ev = evaluate(model, data)
    assert math.isfinite(ev["top1"]) and 0 <= ev["top1"] <= 100 and ev["n"] == 24
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p.detach(), frozen[n])


def test_mlp_head_survives_a_last_batch_of_one():
    data = _tiny_dataset(n=17)  # batch 8 → last batch holds one image
    model = create_method("mlp", tiny_vit(), 3, k=3)
    rec = fit(model, data, Recipe(batch_size=8, epochs=1, lr=0.1), seed=0, progress=False)
    assert math.isfinite(rec["history"][0]["loss"])
    assert model.head.training and all(m.training for m in model.head.hidden)


# --- published numbers ----------------------------------------------------------------------------


def test_published_values_are_sourced_percentages():
    rows = published_table()
    assert rows
    for r in rows:
        assert isinstance(r["top1"], (int, float)) and not isinstance(r["top1"], bool)
        assert 0.0 <= r["top1"] <= 100.0, r
        assert isinstance(r["source"], str) and r["source"].strip(), r
        assert isinstance(r["confirmed"], bool)
        assert r["method"] in METHODS and r["method"] in VIT_METHODS
    keys = [(r["method"], r["task_or_group"]) for r in rows]
    assert len(keys) == len(set(keys))
    # every Table-1 method has its four group means; three methods have all 24 tasks
    assert sum(r["kind"] == "group_mean" for r in rows) == len(METHODS) * len(GROUPS)
    assert sum(r["kind"] == "task" for r in rows) == 3 * 24
    for r in published_total_params():
        assert r["total_params_x"] > 0 and r["source"] and r["confirmed"] is False


def test_published_confirmation_flags_follow_reference():
    assert published_top1("vpt_deep", "vtab-structured/mean")["top1"] == 54.98
    assert published_top1("vpt_deep", "DMLab")["top1"] == 46.5
    assert published_top1("partial", "fgvc/mean")["confirmed"] is False
    assert published_top1("mlp", "vtab-natural/mean")["confirmed"] is False
    assert published_top1("bias", "fgvc/mean")["confirmed"] is False
    assert published_top1("bias", "vtab-natural/mean")["confirmed"] is True
    assert published_top1("sidetune", "vtab-structured/mean")["confirmed"] is True
    assert published_top1("full", "fgvc/mean")["confirmed"] is True
    assert published_top1("linear", "DMLab") is None
    from visprompt.published.vpt import published_value

    assert published_value("vpt_deep", "Stanford Cars")["value"] == 83.6


def test_published_per_task_numbers_average_to_group_means():
    rows = published_table()
    for method in ("full", "vpt_deep", "vpt_shallow"):
        for group in GROUPS:
            tasks = [r["top1"] for r in rows if r["method"] == method and r["kind"] == "task" and r["group"] == group]
            assert len(tasks) == (5 if group.startswith("fgvc") else len(VTAB_TASKS[group]))
            mean = published_top1(method, group)["top1"]
            assert abs(sum(tasks) / len(tasks) - mean) < 0.1, (method, group)
