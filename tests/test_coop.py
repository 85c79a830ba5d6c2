"""CoOp, CoCoOp and RPO's linear probe, and the frozen-CLIP guarantee of every RPO-paper method."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visprompt.backbones.clip import create_clip, encode_classnames, get_tokenizer
from visprompt.errors import ConfigError
from visprompt.methods import create_method
from visprompt.methods.cocoop import CoCoOp
from visprompt.methods.coop import CoOp
from visprompt.train import Recipe, build_optimizer

CLASSES = ["red_circle", "blue-square", "Green star"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mini():
    torch.manual_seed(0)
    clip = create_clip({})
    return clip, get_tokenizer({}, clip)


@pytest.fixture(scope="module")
def vitb16():
    torch.manual_seed(0)
    cfg = {"arch": "ViT-B-16", "pretrained": None}
    clip = create_clip(cfg)
    return clip, get_tokenizer(cfg, clip)


def _images(clip, n, seed=0):
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- frozen CLIP stays frozen -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, cfg",
    [("rpo", {"K": 4}), ("rpo", {"K": 4, "fast": False}), ("coop", {}), ("coop", {"n_ctx": 16, "ctx_init": ""}), ("cocoop", {}), ("clip_linear_probe", {})],
)
def test_frozen_clip_unchanged_after_optimizer_steps(mini, name, cfg):
    clip, tok = mini
    model = create_method(name, clip, tok, CLASSES, **cfg)
    model.train()
    frozen = {k: v.detach().clone() for k, v in clip.state_dict().items()}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("clip.") for n in trainable)
    opt = build_optimizer(model, Recipe(optimizer="sgd", lr=0.5, momentum=0.9, weight_decay=5e-4))
    images, labels = _images(clip, 4), torch.tensor([0, 1, 2, 0])
    for _ in range(2):  # the second step also applies momentum
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        opt.step()
    for k, v in clip.state_dict().items():
        assert torch.equal(v, frozen[k]), f"{name}: frozen {k} changed"
    for n, p in clip.named_parameters():
        assert not p.requires_grad and p.grad is None, f"{name}: frozen {n} has a gradient"
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p.detach(), trainable[n])]
    assert changed == list(trainable), f"{name}: trainable parameters that did not move: {set(trainable) - set(changed)}"
    assert not clip.training and not any(m.training for m in clip.modules())  # frozen CLIP kept in eval mode


# --- CoOp -------------------------------------------------------------------------------------


def test_coop_init_is_the_embedding_of_a_photo_of_a(vitb16):
    clip, tok = vitb16
    model = CoOp(clip, tok, CLASSES[:2])
    ids = tok(["a photo of a"])[0, 1:5]
    assert torch.equal(model.prompt.ctx.detach(), clip.token_embedding.weight[ids])
    assert model.prompt.ctx.shape == (4, 512)


def test_coop_initial_prompts_are_the_zero_shot_prompts(mini):
    """With ctx = "a photo of a", ``[SOS][ctx][CLASS].[EOS]`` is exactly "a photo of a {class}.":
    CoOp starts as zero-shot CLIP (checks the assembly, the EOT index and the sequence cut)."""
    clip, tok = mini
    model = CoOp(clip, tok, CLASSES)
    zero_shot = encode_classnames(clip, tok, CLASSES, "a photo of a {}.")
    with torch.no_grad():
        torch.testing.assert_close(model.text_features(), zero_shot, rtol=1e-5, atol=1e-6)
        seq = model.prompt.sequences(model.prompt.ctx)
        tokens = tok([f"a photo of a {c}." for c in ("red circle", "blue-square", "green star")])
        assert torch.equal(seq, clip.token_embedding(tokens[:, : seq.shape[1]]))
    assert torch.equal(model.prompt.eot, tokens.argmax(-1))


def test_coop_random_init_and_ctx_init_errors(mini):
    clip, tok = mini
    model = CoOp(clip, tok, CLASSES, n_ctx=16, ctx_init="", seed=1)
    assert model.prompt.ctx.shape == (16, clip.token_embedding.weight.shape[1])
    assert 0.015 < model.prompt.ctx.std().item() < 0.025  # N(0, 0.02)
    assert model(_images(clip, 2)).shape == (2, 3)
    assert CoOp(clip, tok, CLASSES, n_ctx=16).prompt.ctx.std().item() < 0.025  # default for n_ctx != 4: random
    with pytest.raises(ConfigError, match="n_ctx"):
        CoOp(clip, tok, CLASSES, n_ctx=8, ctx_init="a photo of a")
    with pytest.raises(ConfigError, match="settings"):
        create_method("coop", clip, tok, CLASSES, n_ctxx=4)


def test_coop_set_classnames_and_feature_caching_protocol(mini):
    clip, tok = mini
    images = _images(clip, 3)
    for name in ("coop", "cocoop", "clip_linear_probe"):
        model = create_method(name, clip, tok, CLASSES).eval()
        with torch.no_grad():
            assert torch.equal(model(images), model.forward_head(model.encode_frozen(images)))
            model.set_classnames(["cat", "dog"])
            assert model(images).shape == (3, 2)


# --- CoCoOp -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["mini", "vitb16"])
def test_cocoop_meta_net_shape(request, which):
    clip, tok = request.getfixturevalue(which)
    model = CoCoOp(clip, tok, CLASSES[:2])
    d = clip.visual.output_dim
    ctx_dim = clip.token_embedding.weight.shape[1]
    first, act, last = model.meta_net
    assert isinstance(first, nn.Linear) and isinstance(act, nn.ReLU) and isinstance(last, nn.Linear)
    assert (first.in_features, first.out_features) == (d, d // 16)
    assert (last.in_features, last.out_features) == (d // 16, ctx_dim)
    if which == "vitb16":
        assert (d, d // 16, ctx_dim) == (512, 32, 512)


def test_cocoop_with_zero_meta_net_equals_coop(mini):
    clip, tok = mini
    cocoop = CoCoOp(clip, tok, CLASSES)
    coop = CoOp(clip, tok, CLASSES)
    with torch.no_grad():
        cocoop.meta_net[2].weight.zero_()
        cocoop.meta_net[2].bias.zero_()
        images = _images(clip, 2)
        torch.testing.assert_close(cocoop(images), coop(images), rtol=1e-5, atol=1e-5)
        # a non-zero meta-net shifts each image's prompts differently
        cocoop.meta_net[2].weight.normal_()
        feats = cocoop.encode_frozen(images)
        text = cocoop.text_features(feats)
        assert text.shape == (2, 3, clip.visual.output_dim)
        assert not torch.allclose(text[0], text[1])


def test_cocoop_evaluation_in_chunks_equals_one_pass(mini, monkeypatch):
    """Evaluation splits the (image x class) text sequences into chunks (ImageNet at batch 256
    would otherwise hold 256,000 of them); the logits are the same."""
    import visprompt.methods.cocoop as cocoop_module

    clip, tok = mini
    model = CoCoOp(clip, tok, CLASSES)
    images = _images(clip, 5)
    with torch.no_grad():
        model.meta_net[2].weight.normal_()
        whole = model(images)
        monkeypatch.setattr(cocoop_module, "EVAL_TEXT_ROWS", 2 * len(CLASSES))  # two images per pass
        passes = []
        monkeypatch.setattr(model, "_logits", lambda f, real=model._logits: (passes.append(len(f)), real(f))[1])
        chunked = model(images)
    assert passes == [2, 2, 1]
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


# --- linear probe -----------------------------------------------------------------------------


def test_linear_probe_starts_as_zero_shot(mini):
    clip, tok = mini
    probe = create_method("clip_linear_probe", clip, tok, CLASSES)
    zs = create_method("zeroshot", clip, tok, CLASSES, templates="a photo of a {}.")
    images = _images(clip, 3)
    with torch.no_grad():
        torch.testing.assert_close(probe(images), zs(images), rtol=1e-5, atol=1e-5)
    assert torch.equal(probe.linear.weight, torch.eye(clip.visual.output_dim))
