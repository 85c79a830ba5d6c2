"""Visual prompting: prompters, frozen-CLIP classification, and the FT / LP baselines."""

import inspect
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visprompt.backbones.clip import create_clip, encode_classnames, get_tokenizer
from visprompt.errors import ConfigError
from visprompt.methods import create_method, get_method_spec, list_methods
from visprompt.methods.logistic_probe import LogisticProbeCLIP, fit_logistic_probe, fit_probe_features
from visprompt.methods.visual_prompt import (
    FixedPatchPrompter,
    PadPrompter,
    RandomPatchPrompter,
    VisualPromptCLIP,
    render_prompt,
)
from visprompt.utils import count_parameters

CLASSES = ["red_circle", "blue-square", "Green star"]


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer({})


def _clip(seed=0):
    torch.manual_seed(seed)
    return create_clip({})


def _n(module):
    return count_parameters(module)["trainable"]


# --- parameter counts -------------------------------------------------------------------------


@pytest.mark.parametrize("p, expected", [(1, 2_676), (5, 13_140), (10, 25_680), (30, 69_840), (50, 104_400), (70, 129_360)])
def test_pad_prompter_parameter_count(p, expected):
    assert _n(PadPrompter(224, p)) == expected


@pytest.mark.parametrize("p", [1, 5, 10, 30, 50, 70])
def test_patch_prompter_parameter_count(p):
    assert _n(FixedPatchPrompter(224, p)) == 3 * p * p
    assert _n(RandomPatchPrompter(224, p, seed=0)) == 3 * p * p


def test_pad_prompter_non_square():
    pr = PadPrompter((20, 30), 3)
    assert _n(pr) == 2 * 3 * 3 * (20 - 3) + 2 * 3 * 3 * (30 - 3)
    assert pr(torch.zeros(2, 3, 20, 30)).shape == (2, 3, 20, 30)


# --- what the prompts look like ---------------------------------------------------------------


def test_pad_prompt_is_the_parameters_on_the_border_and_zero_inside():
    p, h, w = 3, 12, 16
    pr = PadPrompter((h, w), p)
    x = torch.randn(4, 3, h, w)
    prompt = pr(x) - x
    assert torch.allclose(prompt, prompt[:1].expand_as(prompt), atol=1e-6)  # one prompt shared by the batch
    prompt = pr.prompt()
    assert torch.equal(prompt[..., p : h - p, p : w - p], torch.zeros(1, 3, h - 2 * p, w - 2 * p))
    assert torch.equal(prompt[..., :p, :], pr.pad_up.detach())
    assert torch.equal(prompt[..., h - p :, :], pr.pad_down.detach())
    assert torch.equal(prompt[..., p : h - p, :p], pr.pad_left.detach())
    assert torch.equal(prompt[..., p : h - p, w - p :], pr.pad_right.detach())
    # added exactly, no clamping: a huge input value survives
    x = torch.full((1, 3, h, w), 1e6)
    assert torch.equal(pr(x), x + prompt)


def test_fixed_patch_at_top_left():
    pr = FixedPatchPrompter(10, 4)
    x = torch.randn(2, 3, 10, 10)
    delta = pr(x) - x
    assert torch.allclose(delta[:, :, :4, :4], pr.patch.detach().expand(2, -1, -1, -1))
    assert torch.equal(delta[:, :, 4:, :], torch.zeros(2, 3, 6, 10))
    assert torch.equal(delta[:, :, :, 4:], torch.zeros(2, 3, 10, 6))


def _positions(seed, n, size=8, p=3):
    pr = RandomPatchPrompter(size, p, seed=seed)
    return [pr.draw_position() for _ in range(n)]


def test_random_patch_positions_seeded_and_cover_everything():
    assert _positions(1, 50) == _positions(1, 50)
    assert _positions(1, 50) != _positions(2, 50)
    pos = _positions(0, 2000)
    assert {t for t, _ in pos} == set(range(0, 8 - 3 + 1))  # the last position (5) is reachable
    assert {l for _, l in pos} == set(range(0, 8 - 3 + 1))
    assert len(set(pos)) == 36


def test_random_patch_forward_uses_drawn_location_in_train_and_eval():
    pr = RandomPatchPrompter(8, 3, seed=3)
    x = torch.zeros(2, 3, 8, 8)
    for mode in (True, False):
        pr.train(mode)
        delta = pr(x)
        t, l = pr.last_position
        assert torch.equal(delta, pr.prompt(t, l).expand(2, -1, -1, -1))
        assert torch.allclose(delta[:, :, t : t + 3, l : l + 3], pr.patch.detach().expand(2, -1, -1, -1))
    assert int(pr.draws) == 2


def test_random_patch_draw_counter_resumes_from_state_dict():
    a = RandomPatchPrompter(8, 3, seed=5)
    [a.draw_position() for _ in range(7)]
    b = RandomPatchPrompter(8, 3, seed=5)
    b.load_state_dict(a.state_dict())
    assert [a.draw_position() for _ in range(10)] == [b.draw_position() for _ in range(10)]


def test_render_prompt():
    pr = PadPrompter(12, 2)
    img = render_prompt(pr, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert img.shape == (12, 12, 3) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    assert np.all(img[2:10, 2:10] == 0.5)  # zero prompt = the mean colour
    expected = (pr.pad_up.detach()[0].permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1).numpy()
    assert np.allclose(img[:2], expected)
    assert render_prompt(pr, (0.5,) * 3, (0.5,) * 3, image=torch.zeros(3, 12, 12)).shape == (12, 12, 3)
    assert render_prompt(RandomPatchPrompter(12, 3), (0.5,) * 3, (0.5,) * 3).shape == (12, 12, 3)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0, -1, 16, 17, 40])
def test_pad_prompt_size_fails_fast(p):
    with pytest.raises(ConfigError, match="prompt_size"):
        PadPrompter(32, p)


def test_pad_prompt_size_checks_both_sides():
    with pytest.raises(ConfigError):
        PadPrompter((32, 10), 5)  # 2p == W
    PadPrompter((32, 11), 5)


@pytest.mark.parametrize("cls", [FixedPatchPrompter, RandomPatchPrompter])
@pytest.mark.parametrize("p", [0, -3, 33])
def test_patch_prompt_size_fails_fast(cls, p):
    with pytest.raises(ConfigError, match="prompt_size"):
        cls(32, p)


def test_vp_method_fails_fast_on_paper_prompt_size_for_mini_clip(tokenizer):
    with pytest.raises(ConfigError, match="between 1 and 15"):
        create_method("vp_pad", _clip(), tokenizer, CLASSES)  # default p=30 is ≥ half of 32 px


def test_wrong_input_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        PadPrompter(16, 2)(torch.zeros(1, 3, 32, 32))


# --- devices ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: PadPrompter((16, 24), 3), lambda: FixedPatchPrompter(16, 5), lambda: RandomPatchPrompter(16, 5, seed=1)])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_prompters_follow_the_input_device(make, device):
    pr = make().to(device)
    h, w = pr.image_size
    x = torch.zeros(2, 3, h, w, device=device)
    out = pr(x)
    assert out.device == x.device and out.shape == x.shape


def test_random_patch_counter_stays_on_cpu():
    pr = RandomPatchPrompter(16, 5).to("meta")
    assert pr.patch.device.type == "meta" and pr.draws.device.type == "cpu"


# --- frozen CLIP + prompt ---------------------------------------------------------------------


def test_registered_names():
    for name in ("vp_pad", "vp_fixed_patch", "vp_random_patch", "clip_finetune", "logistic_probe"):
        spec = get_method_spec(name)
        assert spec.family == "clip" and spec.paper == "vp"
    assert {"vp_pad", "vp_fixed_patch", "vp_random_patch"} <= set(list_methods(paper="vp"))


def test_unknown_cfg_key_is_config_error(tokenizer):
    with pytest.raises(ConfigError, match="prompt_sz"):
        create_method("vp_pad", _clip(), tokenizer, CLASSES, prompt_sz=4)


@pytest.mark.parametrize("name, cfg", [("vp_pad", {"prompt_size": 4}), ("vp_fixed_patch", {"prompt_size": 8}), ("vp_random_patch", {"prompt_size": 8, "seed": 1})])
def test_clip_frozen_prompt_learns(tokenizer, name, cfg):
    clip = _clip()
    model = create_method(name, clip, tokenizer, CLASSES, **cfg)
    model.train()
    assert not model.clip.training
    assert _n(model) == _n(model.prompter)
    before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    prompt_before = [p.detach().clone() for p in model.prompter.parameters()]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=40, momentum=0.9)
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for p in model.clip.parameters():
        assert p.grad is None and not p.requires_grad
    after = model.clip.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not torch.equal(a, b) for a, b in zip(prompt_before, model.prompter.parameters()))


def test_logits_are_scaled_cosine(tokenizer):
    clip = _clip()
    model = create_method("vp_pad", clip, tokenizer, CLASSES, prompt_size=4, template="a {} thing")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        img = F.normalize(clip.encode_image(model.prompter(x)), dim=-1)
        txt = encode_classnames(clip, tokenizer, CLASSES, "a {} thing")
        expected = clip.logit_scale.exp() * img @ txt.t()
        assert torch.allclose(model(x), expected, atol=1e-5)
    assert model.text_features.shape == (3, 128)
    assert "text_features" not in model.state_dict()


def test_text_features_computed_once_per_class_set(tokenizer):
    clip = _clip()
    calls = []
    encode_text = clip.encode_text

    def counting(*args, **kwargs):
        calls.append(1)
        return encode_text(*args, **kwargs)

    clip.encode_text = counting
    model = create_method("vp_pad", clip, tokenizer, CLASSES, prompt_size=4)
    assert len(calls) == 1  # one batch of class prompts at construction
    opt = torch.optim.SGD(model.prompter.parameters(), lr=1.0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        model(x)
    assert len(calls) == 1
    model.set_classnames(["cat", "dog"])
    assert len(calls) == 2 and model(x).shape == (4, 2)


def test_prompter_must_match_clip_size(tokenizer):
    with pytest.raises(ConfigError, match="image size"):
        VisualPromptCLIP(_clip(), tokenizer, CLASSES, PadPrompter(64, 4))


# --- full fine-tuning baseline ----------------------------------------------------------------


def test_clip_finetune_starts_at_zero_shot_and_trains_image_tower_only(tokenizer):
    clip = _clip()
    original = {k: v.clone() for k, v in clip.state_dict().items()}
    model = create_method("clip_finetune", clip, tokenizer, CLASSES)
    zs = create_method("zeroshot", _clip(), tokenizer, CLASSES, templates="This is a photo of a {}")
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), zs(x), atol=1e-4)
    assert not hasattr(model, "encode_frozen")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("clip.visual.") or n.startswith("head.") for n in trainable)
    assert _n(model) == _n(model.clip.visual) + 128 * 3 + 3
    model.train()
    assert model.clip.visual.training and not model.clip.transformer.training
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    assert model.clip.token_embedding.weight.grad is None
    # the caller's CLIP is untouched (the method fine-tunes a copy)
    assert all(torch.equal(original[k], v) for k, v in clip.state_dict().items())
    assert "head.bias" in model.no_weight_decay()
    model.set_classnames(["a", "b"])
    assert model(x).shape == (4, 2)


# --- logistic probe ---------------------------------------------------------------------------


def _toy(n, seed, dim=8, classes=3, noise=0.3):
    g = np.random.default_rng(seed)
    centres = np.eye(classes, dim) * 3
    y = g.integers(0, classes, n)
    return centres[y] + noise * g.standard_normal((n, dim)), y


def test_logistic_probe_picks_C_on_val_and_separates_toy_data():
    tx, ty = _toy(200, 0)
    vx, vy = _toy(100, 1)
    sx, sy = _toy(300, 2)
    weight, bias, info = fit_probe_features(tx, ty, vx, vy, C_grid=(1e-3, 1e-2, 1e-1, 1, 10), seed=0)
    assert info["C"] in info["C_grid"] and len(info["val_top1"]) == 5
    assert info["val_top1"][info["C_grid"].index(info["C"])] == max(info["val_top1"])
    logits = torch.as_tensor(sx, dtype=torch.float32) @ weight.t() + bias
    assert (logits.argmax(-1).numpy() == sy).mean() > 0.95


def test_logistic_probe_choice_follows_val_only():
    # val accuracies decide: a val split that prefers strong regularisation pulls C down
    from sklearn.linear_model import LogisticRegression

    tx, ty = _toy(60, 0, noise=1.5)
    vx, vy = _toy(60, 1, noise=1.5)
    grid = (1e-2, 1e-1, 1.0, 10.0, 100.0)
    _, _, info = fit_probe_features(tx, ty, vx, vy, C_grid=grid)
    expected = [float((LogisticRegression(C=c, max_iter=1000).fit(tx, ty).predict(vx) == vy).mean() * 100) for c in grid]
    assert info["val_top1"] == expected
    assert info["C"] == grid[int(np.argmax(expected))]
    # no test split can reach the choice: it is not an argument
    params = inspect.signature(fit_logistic_probe).parameters
    assert not any("test" in p for p in params)


def test_logistic_probe_binary_and_refit():
    tx, ty = _toy(100, 0, classes=2)
    vx, vy = _toy(50, 1, classes=2)
    w, b, info = fit_probe_features(tx, ty, vx, vy, refit="train+val")
    assert w.shape == (2, 8) and info["refit"] == "train+val" and info["n_train"] == 150
    assert ((torch.as_tensor(vx, dtype=torch.float32) @ w.t() + b).argmax(-1).numpy() == vy).mean() > 0.95
    with pytest.raises(ConfigError):
        fit_probe_features(tx, ty, vx, vy, refit="test")
    with pytest.raises(ConfigError):
        fit_probe_features(tx, ty, vx, vy, C_grid=())


def test_logistic_probe_on_clip_features(tokenizer):
    clip = _clip()
    g = torch.Generator().manual_seed(0)
    # three classes = three mean colours; the random CLIP still separates them
    def images(n):
        y = torch.arange(n) % 3
        x = torch.randn(n, 3, 32, 32, generator=g) * 0.2
        x[torch.arange(n), y] += 1.5
        return x, y

    (tx, ty), (vx, vy), (sx, sy) = images(60), images(30), images(30)
    probe, info = fit_logistic_probe(clip, tx, ty, vx, vy, C_grid=(0.1, 1.0, 10.0, 100.0), seed=0)
    assert info["C"] in (0.1, 1.0, 10.0, 100.0)
    logits = probe(sx)
    assert logits.shape == (30, 3) and (logits.argmax(-1) == sy).float().mean() > 0.9
    assert _n(probe) == 0

    model = create_method("logistic_probe", clip, tokenizer, CLASSES, C_grid=[1.0, 10.0])
    assert isinstance(model, LogisticProbeCLIP)
    with pytest.raises(RuntimeError, match="fit_probe"):
        model(sx)

    class Split:  # the mini dataset interface
        def __init__(self, x, y):
            self._t = (x, y)

        def tensors(self):
            return self._t

    info = model.fit_probe(Split(tx, ty), torch.utils.data.TensorDataset(vx, vy))
    assert info["C"] in (1.0, 10.0)
    assert torch.allclose(model(sx), model.forward_head(model.encode_frozen(sx)))
    restored = create_method("logistic_probe", _clip(), tokenizer, CLASSES)
    restored.load_state_dict(model.state_dict())
    assert restored.fitted


@pytest.mark.parametrize("make", [lambda s: PadPrompter(32, 4, init_std=s), lambda s: FixedPatchPrompter(32, 8, init_std=s), lambda s: RandomPatchPrompter(32, 8, init_std=s)])
def test_init_std_scales_the_official_normal_init(make):
    torch.manual_seed(0)
    official = torch.cat([p.flatten() for p in make(1.0).parameters()])
    assert 0.8 < float(official.std()) < 1.2
    zero = make(0.0)
    assert all(torch.equal(p, torch.zeros_like(p)) for p in zero.parameters())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(zero(x), x)  # a zero-init prompter starts from the frozen model's own input
    with pytest.raises(ConfigError, match="init_std"):
        make(-1.0)
