"""ClipAttention: a drop-in for the nn.MultiheadAttention in open_clip's blocks.

Every comparison is against open_clip's own module, deep-copied before the swap, on small
random-init CLIPs (CPU, fp32, one thread): block outputs and gradients (inputs and weights) without
a mask, with the text tower's causal mask, an additive float mask, a per-head mask and a bool mask;
state dicts; whole-model ``encode_image``/``encode_text``.
"""

import copy
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip
import pytest
import torch
from open_clip.model import CLIP
from torch import nn

from visprompt.backbones.clip import create_clip, get_tokenizer
from visprompt.backbones.clip_attention import ClipAttention, use_sdpa_attention, use_torch_attention
from visprompt.methods.rpo import check_rpo_clip

MINI = dict(embed_dim=64, vision_cfg=dict(layers=2, width=64, head_width=16, patch_size=8, image_size=32),
            text_cfg=dict(context_length=16, width=64, heads=4, layers=2))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _attns(model):
    return [b.attn for b in model.modules() if isinstance(b, open_clip.transformer.ResidualAttentionBlock)]


@pytest.fixture(scope="module")
def pair():
    """(open_clip's CLIP, the same CLIP after the swap), with independent parameters."""
    torch.manual_seed(0)
    ref = CLIP(**MINI).eval()
    return ref, use_sdpa_attention(copy.deepcopy(ref))


def test_swap_reaches_every_block_and_keeps_the_parameters():
    torch.manual_seed(0)
    model = CLIP(**MINI)
    model.transformer.resblocks[0].attn.in_proj_bias.requires_grad_(False)
    before = {n: p for n, p in model.named_parameters()}
    use_sdpa_attention(model)
    attns = _attns(model)
    assert len(attns) == 4 and all(isinstance(a, ClipAttention) for a in attns)
    after = dict(model.named_parameters())
    assert list(after) == list(before)
    assert all(after[n] is before[n] for n in before)  # the same Parameter objects: values, flags, optimiser state
    assert not model.transformer.resblocks[0].attn.in_proj_bias.requires_grad
    assert use_sdpa_attention(model) is model and _attns(model)[0] is attns[0]  # idempotent
    use_torch_attention(model)
    assert all(type(a) is nn.MultiheadAttention for a in _attns(model))
    assert all(p is before[n] for n, p in model.named_parameters())


def test_state_dict_saved_before_the_swap_loads_after_it(pair, tmp_path):
    ref, new = pair
    assert list(new.state_dict()) == list(ref.state_dict())
    path = tmp_path / "clip.pt"
    torch.save(ref.state_dict(), path)
    fresh = use_sdpa_attention(CLIP(**MINI))
    fresh.load_state_dict(torch.load(path, weights_only=True))  # strict
    for k, v in ref.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def _masks(L: int, batch: int, heads: int):
    g = torch.Generator().manual_seed(1)
    additive = torch.randn(L, L, generator=g)
    additive[:, -2:] = float("-inf")
    return {
        "none": None,
        "causal": torch.full((L, L), float("-inf")).triu(1),
        "additive": additive,
        "per_head": torch.randn(batch * heads, L, L, generator=g),
        # True = blocked (nn.MultiheadAttention's convention); the diagonal stays open so no row is empty
        "bool": (torch.rand(L, L, generator=g) < 0.3) & ~torch.eye(L, dtype=torch.bool),
    }


@pytest.mark.parametrize("tower", ["image", "text"])
@pytest.mark.parametrize("mask", ["none", "causal", "additive", "per_head"])
def test_block_matches_open_clip_forward_and_gradients(pair, tower, mask):
    ref, new = (m.visual.transformer if tower == "image" else m.transformer for m in pair)
    rb, nb = ref.resblocks[0], new.resblocks[0]
    B, L, D = 3, 17, rb.attn.embed_dim
    attn_mask = _masks(L, B, rb.attn.num_heads)[mask]
    x = torch.randn(B, L, D, generator=torch.Generator().manual_seed(2))
    # no autograd: nn.MultiheadAttention's native kernel in eval mode
    with torch.no_grad():
        assert _rel(nb(x, attn_mask=attn_mask), rb(x, attn_mask=attn_mask)) < 1e-5
    # autograd: outputs, then gradients w.r.t. the input and every weight of the block
    xr, xn = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yr, yn = rb(xr, attn_mask=attn_mask), nb(xn, attn_mask=attn_mask)
    assert _rel(yn, yr) < 1e-5
    w = torch.randn(yr.shape, generator=torch.Generator().manual_seed(3))
    (yr * w).sum().backward()
    (yn * w).sum().backward()
    assert _rel(xn.grad, xr.grad) < 1e-5
    for (name, pr), (_, pn) in zip(rb.named_parameters(), nb.named_parameters()):
        assert _rel(pn.grad, pr.grad) < 1e-5, name
        pr.grad = pn.grad = None


@pytest.mark.parametrize("mask", ["bool", "per_head"])
def test_module_matches_torch_with_its_mask_conventions(mask):
    """open_clip's blocks cast every mask to float; called directly, a bool mask blocks where True."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True)
    new = ClipAttention.from_mha(copy.deepcopy(mha))
    x = torch.randn(3, 9, 32, requires_grad=True)
    attn_mask = _masks(9, 3, 4)[mask]
    ref = mha(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
    out = new(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
    assert _rel(out, ref) < 1e-5
    gr, = torch.autograd.grad(ref.sum(), x)
    gn, = torch.autograd.grad(out.sum(), x)
    assert _rel(gn, gr) < 1e-5


def test_cross_attention_matches_open_clip():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    new = ClipAttention.from_mha(copy.deepcopy(mha))
    q, kv = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    out, weights = new(q, kv, kv, need_weights=False)
    assert weights is None
    assert _rel(out, mha(q, kv, kv, need_weights=False)[0]) < 1e-5


def test_unsupported_arguments_fail_loudly():
    attn = ClipAttention(32, 4)
    x = torch.randn(1, 3, 32)
    with pytest.raises(NotImplementedError):
        attn(x, x, x, need_weights=True)
    with pytest.raises(NotImplementedError):
        attn(x, x, x, key_padding_mask=torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch_first"):
        ClipAttention.from_mha(nn.MultiheadAttention(32, 4))
    model = nn.Sequential(open_clip.transformer.ResidualAttentionBlock(32, 4, batch_first=False))
    use_sdpa_attention(model)  # not batch-first: left as it is
    assert type(model[0].attn) is nn.MultiheadAttention


def _same_encoders(ref, new, batch: int, tol: float = 1e-5):
    size = ref.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    g = torch.Generator().manual_seed(4)
    images = torch.randn(batch, 3, size, size, generator=g)
    tokens = open_clip.get_tokenizer("ViT-B-32", context_length=ref.context_length)(["a photo of a dog.", "two red circles on a blue ground"][:batch])
    with torch.no_grad():
        assert _rel(new.encode_image(images), ref.encode_image(images)) < tol
        assert _rel(new.encode_text(tokens), ref.encode_text(tokens)) < tol


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_create_clip_uses_it_and_matches_open_clip(stem):
    torch.manual_seed(0)
    new = create_clip({"stem": stem})
    assert all(isinstance(a, ClipAttention) for a in _attns(new))
    _same_encoders(use_torch_attention(copy.deepcopy(new)), new, batch=2)


def test_create_clip_loads_a_state_dict_saved_by_open_clip(tmp_path):
    """tiny_clip.pt and open_clip checkpoints were saved from nn.MultiheadAttention blocks."""
    cfg = dict(embed_dim=32, vision_layers=1, vision_width=32, vision_head_width=16, text_layers=1, text_width=32, text_heads=2)
    torch.manual_seed(0)
    ref = use_torch_attention(create_clip(cfg))
    torch.save(ref.state_dict(), tmp_path / "tiny.pt")
    torch.manual_seed(1)
    new = create_clip({**cfg, "weights": str(tmp_path / "tiny.pt")})
    _same_encoders(ref, new, batch=2)


def test_vit_b_32_encoders_match_open_clip():
    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    new = use_sdpa_attention(copy.deepcopy(ref))
    _same_encoders(ref, new, batch=1)


def test_rpo_accepts_both_attentions(pair):
    ref, new = pair
    check_rpo_clip(ref)
    check_rpo_clip(new)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast_matches_open_clip(pair):
    ref, new = (copy.deepcopy(m).cuda() for m in pair)
    images = torch.randn(4, 3, 32, 32, device="cuda")
    tokens = open_clip.get_tokenizer("ViT-B-32", context_length=16)(["a photo of a dog.", "a cat"]).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert _rel(new.encode_image(images).float(), ref.encode_image(images).float()) < 2e-2
        assert _rel(new.encode_text(tokens).float(), ref.encode_text(tokens).float()) < 2e-2


def test_bench_runs_on_mini(tmp_path):
    import json

    from visprompt.bench import main

    out = tmp_path / "bench.json"
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    res = main(["--mini", "--params", str(params), "--steps", "pretrain", "coop", "frozen", "rpo_official", "rpo_plain", "rpo_fast", "vp_pad", "vp_official", "vp_floor",
                "--batch", "2", "--repeats", "1", "--threads", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["seconds"]["vp_official"]) == {"torch"} and set(saved["seconds"]["vp_floor"]) == {"sdpa"}  # one cell each
    assert saved["seconds"]["pretrain"]["torch"] > 0 and saved["seconds"]["pretrain"]["sdpa"] > 0
    assert "torch" not in saved["seconds"]["rpo_fast"] and res["seconds"]["coop"]["sdpa"] > 0
    assert set(saved["seconds"]["rpo_official"]) == {"torch"}
    vit = saved["vit"]["images_per_s"]  # the tiny ViT's steps, attempt 1's ViT beside params.yaml's
    assert set(vit) >= {"full", "vpt_deep", "partial", "partial@images"} and all(v["before"] > 0 and v["now"] > 0 for v in vit.values())


def test_the_official_style_rpo_step_computes_the_same_function():
    """The bench's official-style RPO (OpenAI's sequence-first attention) is a layout, not another
    model: its logits and prompt gradients equal the plain path's to fp32 rounding."""
    from visprompt.bench import CLASSES, official_layout
    from visprompt.methods.rpo import RPO

    torch.manual_seed(0)
    clip = create_clip({})
    tok = get_tokenizer({}, clip)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ours = RPO(copy.deepcopy(clip), tok, CLASSES, K=4, fast=False)
    official = official_layout(RPO(copy.deepcopy(clip), tok, CLASSES, K=4, fast=False))
    assert isinstance(official.clip.transformer.resblocks[0].attn, torch.nn.MultiheadAttention)
    lo, lp = ours(images), official(images)
    torch.testing.assert_close(lp, lo, rtol=1e-4, atol=1e-5)
    lo.sum().backward()
    lp.sum().backward()
    torch.testing.assert_close(official.text_prompts.grad, ours.text_prompts.grad, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(official.visual_prompts.grad, ours.visual_prompts.grad, rtol=1e-3, atol=1e-6)
