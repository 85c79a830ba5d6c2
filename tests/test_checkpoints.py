"""Paper checkpoints: state dicts in the real OpenAI/open_clip and timm/Google layouts (random values,
real key names and shapes) load into the real architectures through the same function the hub
weights go through; offline hub requests fail fast with instructions."""

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from visprompt.backbones import checkpoints as ck
from visprompt.errors import ConfigError


@pytest.fixture(scope="module")
def vit():
    model, cfg = ck.load_vit_in21k(False)
    with torch.no_grad():  # distinct values everywhere, so a wrong mapping cannot pass
        for i, p in enumerate(model.parameters()):
            p.copy_(torch.randn_like(p) * 0.02 + i * 1e-3)
    return model


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_vit_in21k_timm_state_dict_file(vit, tmp_path):
    sd = {k: v.contiguous() for k, v in vit.state_dict().items()}
    assert not any(k.startswith("head.") for k in sd) and sd["pos_embed"].shape == (1, 197, 768)
    save_file(sd, tmp_path / "model.safetensors")  # the hub file's format (timm/vit_base_patch16_224.orig_in21k)
    model, cfg = ck.load_vit_in21k(tmp_path / "model.safetensors")
    _same(model.state_dict(), vit.state_dict())
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)  # VPT's, not timm's 0.5
    assert model.num_classes == 0 and not model.training


def _google_npz(model, path):
    """Write ``model`` in the layout of Google's ViT-B_16.npz (JAX/Flax names, HWIO / (D, heads, head_dim) kernels)."""
    w = {}
    t = lambda x: x.detach().numpy()  # noqa: E731
    w["embedding/kernel"] = t(model.patch_embed.proj.weight.permute(2, 3, 1, 0))
    w["embedding/bias"] = t(model.patch_embed.proj.bias)
    w["cls"] = t(model.cls_token)
    w["Transformer/posembed_input/pos_embedding"] = t(model.pos_embed)
    w["Transformer/encoder_norm/scale"], w["Transformer/encoder_norm/bias"] = t(model.norm.weight), t(model.norm.bias)
    for i, b in enumerate(model.blocks):
        p = f"Transformer/encoderblock_{i}/"
        heads, d = b.attn.num_heads, b.attn.qkv.in_features
        w[p + "LayerNorm_0/scale"], w[p + "LayerNorm_0/bias"] = t(b.norm1.weight), t(b.norm1.bias)
        w[p + "LayerNorm_2/scale"], w[p + "LayerNorm_2/bias"] = t(b.norm2.weight), t(b.norm2.bias)
        for n, (wt, bs) in zip(("query", "key", "value"), zip(b.attn.qkv.weight.chunk(3), b.attn.qkv.bias.chunk(3))):
            w[p + f"MultiHeadDotProductAttention_1/{n}/kernel"] = t(wt.T.reshape(d, heads, d // heads))
            w[p + f"MultiHeadDotProductAttention_1/{n}/bias"] = t(bs.reshape(heads, d // heads))
        w[p + "MultiHeadDotProductAttention_1/out/kernel"] = t(b.attn.proj.weight.reshape(d, heads, d // heads).permute(1, 2, 0))
        w[p + "MultiHeadDotProductAttention_1/out/bias"] = t(b.attn.proj.bias)
        for r, fc in enumerate((b.mlp.fc1, b.mlp.fc2)):
            w[p + f"MlpBlock_3/Dense_{r}/kernel"], w[p + f"MlpBlock_3/Dense_{r}/bias"] = t(fc.weight.T), t(fc.bias)
    np.savez(path, **w)


def test_vit_in21k_google_npz(vit, tmp_path):
    _google_npz(vit, tmp_path / "ViT-B_16.npz")
    model, _ = ck.load_vit_in21k(tmp_path / "ViT-B_16.npz")
    for (k, a), b in zip(model.state_dict().items(), vit.state_dict().values()):
        assert torch.allclose(a, b, atol=0, rtol=0), k


def test_vit_in21k_wrong_file_is_a_clear_error(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="could not be loaded into timm vit_base_patch16_224.orig_in21k"):
        ck.load_vit_in21k(tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not found"):
        ck.load_vit_in21k(tmp_path / "absent.npz")


@pytest.fixture(scope="module")
def clip32():
    model, tok, pp = ck.load_openai_clip("ViT-B-32", None)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.02)
    return model


def test_openai_clip_state_dict_in_openai_layout(clip32, tmp_path):
    # OpenAI's released weights are fp16 with these key names; open_clip's hub file uses the same names
    sd = {k: v.half() if v.is_floating_point() else v for k, v in clip32.state_dict().items()}
    for key in ("visual.conv1.weight", "visual.class_embedding", "visual.transformer.resblocks.11.attn.in_proj_weight",
                "positional_embedding", "text_projection", "logit_scale", "token_embedding.weight", "ln_final.weight"):
        assert key in sd
    assert sd["visual.conv1.weight"].shape == (768, 3, 32, 32) and sd["text_projection"].shape == (512, 512)
    torch.save(sd, tmp_path / "ViT-B-32.bin")
    model, tokenizer, pp = ck.load_openai_clip("ViT-B-32", tmp_path / "ViT-B-32.bin")
    _same(model.state_dict(), {k: v.float() for k, v in sd.items()})
    assert type(model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"  # OpenAI's activation
    assert pp["mean"] == pytest.approx((0.48145466, 0.4578275, 0.40821073)) and pp["image_size"] == 224 and pp["interpolation"] == "bicubic"
    assert tokenizer(["a photo of a dog"]).shape == (1, 77)


def test_openai_clip_torchscript_archive(clip32, tmp_path):
    """OpenAI's original ViT-B-32.pt is a TorchScript archive: no attn_mask entry, plus
    input_resolution/context_length/vocab_size entries. Build one with those names and load it."""
    import open_clip

    m = open_clip.create_model("ViT-B-32", force_quick_gelu=True).eval()
    m.load_state_dict(clip32.state_dict())
    mask = m.attn_mask
    del m._buffers["attn_mask"]
    m.attn_mask = mask  # a plain attribute, as in OpenAI's model (traced as a constant)
    for name, v in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(m, name):
            delattr(m, name)  # plain ints on open_clip's CLIP; tensors in OpenAI's archive
        m.register_buffer(name, torch.tensor(v))
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo"])
    with torch.no_grad():
        traced = torch.jit.trace_module(m, {"encode_text": (tokens,)}, check_trace=False)
    traced.save(str(tmp_path / "ViT-B-32.pt"))
    assert ck.is_torchscript_archive(tmp_path / "ViT-B-32.pt")
    assert "attn_mask" not in traced.state_dict() and "input_resolution" in traced.state_dict()
    model, _, pp = ck.load_openai_clip("ViT-B-32", tmp_path / "ViT-B-32.pt")
    _same(model.state_dict(), clip32.state_dict())
    assert pp["weights"].endswith("(TorchScript)")


def test_clip_wrong_architecture_and_name_are_clear_errors(clip32, tmp_path):
    torch.save(clip32.state_dict(), tmp_path / "b32.bin")
    with pytest.raises(ConfigError, match="could not be loaded into open_clip ViT-B-16"):
        ck.load_openai_clip("ViT-B-16", tmp_path / "b32.bin")
    with pytest.raises(ConfigError, match="ViT-B-32, ViT-B-16"):
        ck.load_openai_clip("RN50", "openai")


def test_offline_hub_weights_fail_fast_with_instructions(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    t = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        ck.load_openai_clip("ViT-B-16", "openai")
    msg = str(e.value)
    assert time.perf_counter() - t < 20
    for text in ("HF_HUB_OFFLINE", "timm/vit_base_patch16_clip_224.openai", "open_clip.create_model('ViT-B-16', pretrained='openai')", "profiles/paper/params.yaml"):
        assert text in msg
    t = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        ck.load_vit_in21k(True)
    assert time.perf_counter() - t < 20
    for text in ("HF_HUB_OFFLINE", "timm/vit_base_patch16_224.orig_in21k", "timm.create_model('vit_base_patch16_224.orig_in21k', pretrained=True)", "ViT-B_16.npz"):
        assert text in str(e.value)
    assert constants.HF_HUB_OFFLINE is True  # the guard restores the setting it found
