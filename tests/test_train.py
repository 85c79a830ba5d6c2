"""The one training loop: schedule, determinism, checkpoint + exact resume, feature caching."""

import numpy as np
import pytest
import torch

from visprompt.data.base import TensorImageDataset
from visprompt.errors import ConfigError
from visprompt.train import Recipe, evaluate, fit, lr_at


class TinyNet(torch.nn.Module):
    """A frozen 'backbone' conv + trainable linear head, with dropout (exercises RNG state)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = torch.nn.Conv2d(3, 4, 4, stride=4)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.drop = torch.nn.Dropout(0.2)
        self.head = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.drop(self.backbone(x).flatten(1)))


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return TensorImageDataset(rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8), np.arange(n) % 3, ["a", "b", "c"])


RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "batch_size": 8, "epochs": 4, "warmup_epochs": 1, "augment": "crop_flip"}


def test_warmup_never_zero_and_cosine_ends_low():
    r = Recipe.from_dict({"lr": 1.0, "epochs": 10, "warmup_epochs": 2, "step_per": "epoch"})
    lrs = [lr_at(r, e * 5, 5) for e in range(10)]
    assert lrs[0] > 0 and lrs[0] == pytest.approx(0.1)  # step 1 of a 10-step ramp
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] < 0.1


def test_one_warmup_epoch_ramps_within_the_epoch():
    # per-epoch cosine with warmup_epochs: 1 (VPT mini): the ramp must not start at full lr
    r = Recipe.from_dict({"lr": 1.0, "epochs": 5, "warmup_epochs": 1, "step_per": "epoch"})
    ramp = [lr_at(r, i, 4) for i in range(4)]
    assert ramp == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(r, 4, 4) == pytest.approx(1.0)  # epoch 1: cosine from the base lr
    r = Recipe.from_dict({"lr": 1.0, "epochs": 2, "warmup_steps": 3, "warmup_lr": 1e-5})
    assert lr_at(r, 0, 10) == 1e-5


def test_lr_scaling_batch256():
    assert Recipe.from_dict({"lr": 1.0, "batch_size": 128, "lr_scaling": "batch256"}).actual_lr == 0.5


def test_bad_recipe_fails_fast():
    with pytest.raises(ConfigError, match="unknown recipe keys"):
        Recipe.from_dict({"learning_rate": 1})
    with pytest.raises(ConfigError, match="optimizer"):
        Recipe.from_dict({"optimizer": "lion"})


def test_same_seed_same_metrics_and_frozen_unchanged():
    a, b = TinyNet(), TinyNet()
    frozen = {k: v.clone() for k, v in a.backbone.state_dict().items()}
    ra = fit(a, _data(), RECIPE, seed=3, progress=False, device="cpu")
    rb = fit(b, _data(), RECIPE, seed=3, progress=False, device="cpu")
    assert ra["history"] == rb["history"]
    assert torch.equal(a.head.weight, b.head.weight)
    assert all(torch.equal(frozen[k], v) for k, v in a.backbone.state_dict().items())
    assert ra["params"] == {"trainable": 4 * 4 * 4 * 3 + 3, "total": 4 * 4 * 4 * 3 + 3 + 3 * 4 * 4 * 4 + 4}
    c = TinyNet()
    rc = fit(c, _data(), RECIPE, seed=4, progress=False, device="cpu")
    assert rc["history"] != ra["history"]


def test_resume_after_interruption_is_bitwise_identical(tmp_path):
    ref = TinyNet()
    r_ref = fit(ref, _data(), RECIPE, seed=1, progress=False, device="cpu")
    ckpt = tmp_path / "run.pt"
    first = TinyNet()
    fit(first, _data(), RECIPE, seed=1, checkpoint=ckpt, progress=False, device="cpu", stop_after_epoch=1)
    assert ckpt.is_file()
    resumed = TinyNet()  # a fresh process would rebuild the model from scratch
    r_res = fit(resumed, _data(), RECIPE, seed=1, checkpoint=ckpt, progress=False, device="cpu")
    assert r_res["history"] == r_ref["history"]
    assert torch.equal(resumed.head.weight, ref.head.weight)
    assert evaluate(resumed, _data(seed=1))["top1"] == evaluate(ref, _data(seed=1))["top1"]


def test_checkpoint_from_other_recipe_is_refused(tmp_path):
    ckpt = tmp_path / "run.pt"
    fit(TinyNet(), _data(), RECIPE, seed=1, checkpoint=ckpt, progress=False, device="cpu", stop_after_epoch=0)
    with pytest.raises(ConfigError, match="another recipe"):
        fit(TinyNet(), _data(), {**RECIPE, "lr": 0.1}, seed=1, checkpoint=ckpt, progress=False, device="cpu")


def test_truncated_checkpoint_warns_and_trains_from_the_start(tmp_path):
    ref = TinyNet()
    r_ref = fit(ref, _data(), RECIPE, seed=1, progress=False, device="cpu")
    ckpt = tmp_path / "run.pt"
    fit(TinyNet(), _data(), RECIPE, seed=1, checkpoint=ckpt, progress=False, device="cpu", stop_after_epoch=1)
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # a killed copy, a full disk
    again = TinyNet()
    with pytest.warns(UserWarning, match="unreadable"):
        r = fit(again, _data(), RECIPE, seed=1, checkpoint=ckpt, progress=False, device="cpu")
    assert r["history"] == r_ref["history"] and torch.equal(again.head.weight, ref.head.weight)
    assert not list(tmp_path.glob("*.tmp"))  # no temporary checkpoint left behind


def test_adamw_and_sgd_steps_match_the_plain_loop():
    """build_optimizer's fused/foreach updates are the same rule as the per-parameter loop."""
    from visprompt.train import build_optimizer

    for recipe in ({"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.05}, {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}):
        a, b = TinyNet().eval(), TinyNet().eval()
        opt_a = build_optimizer(a, Recipe.from_dict(recipe))
        kw = {"lr": opt_a.defaults["lr"], "foreach": False}
        groups = [{"params": [b.head.weight, b.head.bias], "weight_decay": recipe["weight_decay"]}]
        opt_b = torch.optim.AdamW(groups, **kw) if recipe["optimizer"] == "adamw" else torch.optim.SGD(groups, momentum=0.9, **kw)
        x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 3
        for _ in range(3):
            for model, opt in ((a, opt_a), (b, opt_b)):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        torch.testing.assert_close(a.head.weight, b.head.weight, rtol=1e-5, atol=1e-6)


class CachedHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Conv2d(3, 2, 8, stride=8).requires_grad_(False)
        self.head = torch.nn.Linear(8, 3)
        self.calls = 0

    def encode_frozen(self, x):
        self.calls += 1
        return self.enc(x).flatten(1)

    def forward_head(self, f):
        return self.head(f)

    def forward(self, x):
        return self.forward_head(self.encode_frozen(x))


def test_feature_caching_encodes_once_and_matches_uncached():
    cached, plain = CachedHead(), CachedHead()
    recipe = {**RECIPE, "augment": "none", "epochs": 3}
    rc = fit(cached, _data(), recipe, seed=2, progress=False, device="cpu")
    assert rc["features_cached"] and cached.calls == len(range(0, 48, 256))  # one pass over the split
    # the uncached path: a wrapper without encode_frozen
    class NoCache(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)

    rp = fit(NoCache(plain), _data(), recipe, seed=2, progress=False, device="cpu")
    assert not rp["features_cached"]
    assert torch.allclose(cached.head.weight, plain.head.weight, atol=1e-6)


def test_cell_checkpoint_of_other_settings_is_dropped_not_resumed(tmp_path):
    """A run killed under old settings leaves a checkpoint; new settings start afresh (regression:
    the next `dvc repro` stopped with 'written with another recipe')."""
    from visprompt.experiments import CellStore

    store = CellStore(tmp_path, "vp", "clip_finetune")
    old = store.checkpoint("vp/vp-counts/select/lr=0.0001", "oldfp")
    fit(TinyNet(), _data(), RECIPE, seed=1, checkpoint=old, progress=False, device="cpu", stop_after_epoch=0)
    assert old.is_file()
    new = store.checkpoint("vp/vp-counts/select/lr=0.0001", "newfp")
    assert not old.is_file() and new != old
    fit(TinyNet(), _data(), {**RECIPE, "lr": 0.1}, seed=1, checkpoint=new, progress=False, device="cpu", stop_after_epoch=0)
    store.checkpoint("vp/vp-counts/select/lr=0", "x")  # a cell whose name prefixes another's leaves it alone
    assert new.is_file() and store.checkpoint("vp/vp-counts/select/lr=0.0001", "newfp") == new and new.is_file()


def test_cell_store_counts_the_measured_time_of_reused_cells(tmp_path):
    from visprompt.experiments import CellStore

    first = CellStore(tmp_path, "vpt", "linear")
    first.put("a", "fp", {"wall_time_s": 2.5})
    first.put("b", "fp", {"wall_time_s": 1.0})
    again = CellStore(tmp_path, "vpt", "linear")
    assert again.get("a", "fp") and again.get("b", "other") is None
    assert first.compute_time_s() == 3.5 and again.compute_time_s() == 2.5


def test_fractional_warmup_and_rpo_constant_warmup_epoch():
    r = Recipe.from_dict({"lr": 1.0, "epochs": 3, "warmup_epochs": 0.5, "step_per": "epoch"})
    assert [lr_at(r, i, 4) for i in range(2)] == pytest.approx([0.5, 1.0])  # 2-step ramp
    assert lr_at(r, 2, 4) == pytest.approx(lr_at(r, 4, 4))  # cosine per epoch from epoch 1
    r = Recipe.from_dict({"lr": 0.01, "epochs": 5, "warmup_epochs": 1, "warmup_lr": 1e-5, "step_per": "epoch"})
    assert [lr_at(r, i, 3) for i in range(3)] == [1e-5] * 3 and lr_at(r, 3, 3) == pytest.approx(0.01)


def test_micro_batches_give_the_whole_batch_step():
    """Gradient accumulation (``micro_batch``) is the same optimisation to fp32 rounding."""
    recipe = {**RECIPE, "augment": "none", "epochs": 2}
    whole, micro = TinyNet(), TinyNet()
    micro.drop.p = whole.drop.p = 0.0  # dropout masks would be drawn per micro-batch
    rw = fit(whole, _data(), recipe, seed=2, progress=False, device="cpu")
    rm = fit(micro, _data(), {**recipe, "micro_batch": 3}, seed=2, progress=False, device="cpu")
    assert torch.allclose(whole.head.weight, micro.head.weight, rtol=1e-5, atol=1e-6)
    assert [h["train_top1"] for h in rw["history"]] == [h["train_top1"] for h in rm["history"]]
    assert rm["history"][-1]["loss"] == pytest.approx(rw["history"][-1]["loss"], rel=1e-5)
    with pytest.raises(ConfigError, match="micro_batch must be >= 0"):
        Recipe.from_dict({"micro_batch": -1})


def test_checkpoints_are_written_at_most_every_interval_and_after_the_last_epoch(tmp_path, monkeypatch):
    import visprompt.train as train

    saved = []
    real_save = train.save_torch
    monkeypatch.setattr(train, "save_torch", lambda obj, path: (saved.append(obj["epoch"]), real_save(obj, path)))
    fit(TinyNet(), _data(), RECIPE, seed=1, checkpoint=tmp_path / "a.pt", progress=False, device="cpu", checkpoint_every_s=1e9)
    assert saved == [RECIPE["epochs"] - 1]  # a Full fine-tuning cell no longer writes ~1 GB every epoch
    saved.clear()
    fit(TinyNet(), _data(), RECIPE, seed=1, checkpoint=tmp_path / "b.pt", progress=False, device="cpu", checkpoint_every_s=0)
    assert saved == list(range(RECIPE["epochs"]))


class _RandomItems(torch.utils.data.Dataset):
    """An on-disk-like dataset (no ``tensors()``) whose items draw from torch's RNG, as random crops do."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.rand(3) + i, i % 2


def test_on_disk_augmentations_depend_on_the_epoch_seed_only():
    """Per-item seeds: the same batches with 0 or 2 persistent workers, in every repetition of an
    epoch, different across epochs; the caller's RNG is left as it was."""
    from visprompt.train import _Batches

    def batches(workers, seed):
        b = _Batches(_RandomItems(), 4, shuffle=True, num_workers=workers)
        return [x for x, _ in b.epoch(seed)], b

    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    plain, b0 = batches(0, 7)
    assert torch.equal(torch.random.get_rng_state(), before)  # dropout draws are not disturbed
    again = [x for x, _ in b0.epoch(7)]
    other = [x for x, _ in b0.epoch(8)]
    with_workers, _ = batches(2, 7)
    assert all(torch.equal(a, b) for a, b in zip(plain, again)) and all(torch.equal(a, b) for a, b in zip(plain, with_workers))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(plain, other))


def test_records_say_where_and_in_what_precision_a_run_computed():
    r = fit(TinyNet(), _data(), {**RECIPE, "epochs": 1}, seed=1, progress=False, device="cpu")
    assert r["device"] == "cpu" and r["device_count"] == 1 and r["precision"] == "fp32" and r["device_name"]


def test_a_cell_record_states_the_evaluation_precision_that_predict_used(monkeypatch):
    """Regression: a zero-shot or probe cell on CUDA said fp32 while ``predict`` evaluated it under
    bf16 autocast (the record copied fit's rule, not predict's). Here predict's rule is switched
    on for the CPU: the record must follow it, and the logits must be computed under autocast."""
    from visprompt import experiments, train

    seen = []

    class Frozen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2), requires_grad=False)

        def forward(self, x):
            seen.append(torch.is_autocast_enabled("cpu"))
            return x.flatten(1)[:, :3]

    monkeypatch.setattr(train, "eval_uses_amp", lambda device: True)
    r = experiments.train_and_eval(Frozen(), None, {"test": (_data(), None)}, Recipe(), seed=1, trainable=False, device="cpu")
    assert seen and all(seen) and r["precision"] == r["eval_precision"] == "bf16 autocast"
    monkeypatch.undo()
    r = experiments.train_and_eval(TinyNet(), _data(), {"test": (_data(), None)}, Recipe.from_dict({**RECIPE, "epochs": 1}), seed=1, trainable=True, device="cpu")
    assert r["precision"] == r["eval_precision"] == "fp32" and r["history"]


def test_the_mini_world_computes_on_the_cpu_even_where_a_gpu_is_visible(monkeypatch):
    from visprompt.config import load_params
    from visprompt.worlds import world_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert world_for(load_params("params.yaml")).device == torch.device("cpu")


def test_the_paper_world_computes_where_its_params_say(monkeypatch):
    from visprompt.config import load_params
    from visprompt.worlds.paper import ALLOW_CPU, PaperWorld

    params = load_params("profiles/paper/params.yaml")
    monkeypatch.delenv(ALLOW_CPU, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        PaperWorld(params).device  # noqa: B018 (no silent CPU fallback)
    assert PaperWorld({**params, "device": "cpu"}).device == torch.device("cpu")
    monkeypatch.setenv(ALLOW_CPU, "1")
    assert PaperWorld(params).device == torch.device("cpu")  # the smoke-test escape hatch, without a GPU
    monkeypatch.delenv(ALLOW_CPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert PaperWorld({**params, "device": "cpu"}).device == torch.device("cpu")  # said explicitly: even beside a GPU
    assert PaperWorld(params).device == torch.device("cuda")


def test_result_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from visprompt.utils import new_file_mode, write_json

    write_json(tmp_path / "r.json", {"a": 1})
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == new_file_mode() != 0o600
