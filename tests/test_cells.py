"""What a cell is and when it is reused: seeds reach every random initialisation, fingerprints
cover the code a cell runs, methods keep their own templates, the convergence flag."""

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from visprompt import codehash, experiments
from visprompt.backbones.clip import create_clip, format_classname, get_tokenizer
from visprompt.train import plateau
from visprompt.worlds import world_for

CLASSES = ["red circle", "blue square", "green star"]


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    clip = create_clip({})
    return clip, get_tokenizer({}, clip), None


def _initial(method, bundle, seed, cfg=None):
    return experiments._build("rpo" if method != "vp_random_patch" else "vp", method, bundle, len(CLASSES), CLASSES, cfg or {}, seed)


INITIAL_STATE = {
    "rpo": lambda m: torch.cat([m.text_prompts.detach().flatten(), m.visual_prompts.detach().flatten()]),
    "cocoop": lambda m: torch.cat([p.detach().flatten() for p in m.meta_net.parameters()]),
    "coop": lambda m: m.prompt.ctx.detach().flatten(),
    "vp_random_patch": lambda m: torch.tensor([m.prompter.draw_position() for _ in range(8)], dtype=torch.float32).flatten(),
}
CFG = {"rpo": {"K": 2}, "coop": {"ctx_init": "", "n_ctx": 4}, "vp_random_patch": {"prompt_size": 4}}


@pytest.mark.parametrize("method", sorted(INITIAL_STATE))
def test_run_seed_reaches_the_initialisation(bundle, method):
    state = INITIAL_STATE[method]
    a = state(_initial(method, bundle, 1, CFG.get(method)))
    a_again = state(_initial(method, bundle, 1, CFG.get(method)))
    b = state(_initial(method, bundle, 2, CFG.get(method)))
    assert torch.equal(a, a_again)
    assert not torch.equal(a, b)


def test_rpo_and_its_linear_probe_keep_their_template(bundle):
    rpo = experiments._build("rpo", "rpo", bundle, 3, CLASSES, {"K": 2}, 1, template="a noisy photo of a {}.")
    lp = experiments._build("rpo", "clip_linear_probe", bundle, 3, CLASSES, {}, 1, template="a noisy photo of a {}.")
    zs = experiments._build("rpo", "zeroshot", bundle, 3, CLASSES, {}, 1, template="a noisy photo of a {}.")
    assert rpo.template == lp.template == "a photo of a {}."
    assert "noisy" in str(getattr(zs, "templates", getattr(zs, "template", "")))


def test_classnames_as_coop_formats_them():
    assert format_classname("Boeing_707-320") == "boeing 707-320"
    assert format_classname("Mercedes-Benz") == "mercedes-benz"


def test_plateau_flags_a_loss_still_falling():
    flat = [{"loss": v} for v in (2.0, 1.0, 0.8, 0.79, 0.785)]
    falling = [{"loss": v} for v in (2.0, 1.6, 1.3, 1.1, 0.9)]
    near_zero = [{"loss": v} for v in (0.5, 0.02, 0.012, 0.008, 0.005)]
    assert plateau(flat)["converged"] is True
    assert plateau(falling)["converged"] is False
    assert plateau(near_zero)["converged"] is True  # 0.003 nats is no progress worth training for
    assert plateau(falling[:1])["converged"] is None


# --- fingerprints cover the code a cell runs ----------------------------------------------------


@pytest.fixture()
def package_copy(tmp_path):
    root = tmp_path / "visprompt"
    shutil.copytree(codehash.PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_editing_a_method_changes_its_cells_only(package_copy):
    def hashes():
        return {m: codehash.code_hash(m, "visprompt.train", root=package_copy) for m in ("visprompt.methods.rpo", "visprompt.methods.coop", "visprompt.methods.vpt")}

    before = hashes()
    _edit(package_copy / "methods" / "rpo.py", "INIT_NOISE_NORM = 0.1", "INIT_NOISE_NORM = 0.2")
    after = hashes()
    assert after["visprompt.methods.rpo"] != before["visprompt.methods.rpo"]
    assert after["visprompt.methods.coop"] == before["visprompt.methods.coop"]
    assert after["visprompt.methods.vpt"] == before["visprompt.methods.vpt"]
    # RPO builds on CoOp's text helpers: editing them reruns RPO too, and never VPT
    _edit(package_copy / "methods" / "coop.py", 'DEFAULT_CTX_INIT = "a photo of a"', 'DEFAULT_CTX_INIT = "a photo of the"')
    again = hashes()
    assert again["visprompt.methods.rpo"] != after["visprompt.methods.rpo"]
    assert again["visprompt.methods.vpt"] == before["visprompt.methods.vpt"]
    # the training loop is shared by every cell
    _edit(package_copy / "train.py", "PLATEAU_WINDOW, PLATEAU_REL, PLATEAU_ABS = 0.2, 0.02, 0.01", "PLATEAU_WINDOW, PLATEAU_REL, PLATEAU_ABS = 0.3, 0.02, 0.01")
    assert all(a != b for a, b in zip(hashes().values(), again.values()))


def test_comments_and_docstrings_keep_the_cells(package_copy):
    before = codehash.code_hash("visprompt.methods.rpo", root=package_copy)
    path = package_copy / "methods" / "rpo.py"
    _edit(path, '"""RPO: Read-only Prompt Optimization', '"""RPO (edited docstring): Read-only Prompt Optimization')
    path.write_text(path.read_text() + "\n# a trailing comment\n")
    assert codehash.code_hash("visprompt.methods.rpo", root=package_copy) == before


def test_cell_fingerprints_include_the_code_hash():
    world = world_for({"profile": "mini"})
    rpo, vpt = experiments.cell_code_hash(world, "rpo"), experiments.cell_code_hash(world, "vpt_deep")
    assert rpo != vpt
    closure = codehash.code_closure("visprompt.methods.rpo")
    assert "visprompt.methods.coop" in closure and "visprompt.methods.vpt" not in closure


@pytest.mark.parametrize("dvc_file,profile", [("dvc.yaml", "mini"), ("profiles/paper/dvc.yaml", "paper")])
def test_train_stages_depend_on_every_file_the_cells_hash(dvc_file, profile):
    """Else an edit that changes every cell's fingerprint leaves `dvc status` clean and the
    committed metrics stale (the stage never reruns to notice)."""
    import yaml

    from visprompt.methods.registry import list_methods

    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / dvc_file).read_text())["stages"]
    world = world_for({"profile": profile})
    for paper, family in experiments.PAPERS.items():
        deps = [(root / dvc_file).parent / d for d in stages[f"train_{paper}"]["do"]["deps"]]
        deps = [d.resolve() for d in deps]
        for method in list_methods(family):
            closure, alone = experiments.cell_code_modules(world, method)
            for name in codehash.code_closure(*closure) + alone:
                path = codehash.module_file(name).resolve()
                assert any(path == d or d in path.parents for d in deps), f"{dvc_file} train_{paper}: add {path.relative_to(root)} to its deps"


# --- RPO's ablation switches (params-only runs) ----------------------------------------------------


def _original_image_tokens(model, images, prompts):
    """Outputs of the image transformer at the original positions for given visual prompts."""
    out = {}
    handle = model.clip.visual.transformer.register_forward_hook(lambda mod, args, res: out.setdefault("x", res))
    with torch.no_grad():
        model.visual_prompts.copy_(prompts)
        model._image_plain(images)
    handle.remove()
    n = out["x"].shape[1] - model.K
    return out["x"][:, :n]


@pytest.mark.parametrize("read_only", [True, False])
def test_prompts_write_only_without_the_read_only_masks(bundle, read_only):
    from visprompt.methods.rpo import RPO

    clip, tok, _ = bundle
    model = RPO(clip, tok, CLASSES, K=2, read_only=read_only)
    assert model.fast is read_only  # the cached path exists only for read-only prompts
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    p = model.visual_prompts.detach().clone()
    a = _original_image_tokens(model, images, p)
    b = _original_image_tokens(model, images, p + 1.0)
    assert torch.equal(a, b) is read_only


def test_random_init_ignores_the_special_tokens(bundle):
    from visprompt.methods.rpo import INIT_NOISE_NORM, RANDOM_INIT_STD, RPO

    clip, tok, _ = bundle
    st, rnd = RPO(clip, tok, CLASSES, K=4, seed=1), RPO(clip, tok, CLASSES, K=4, seed=1, init="random")
    base = clip.visual.class_embedding.detach()
    assert torch.allclose((st.visual_prompts.detach() - base).norm(dim=-1), torch.full((4,), INIT_NOISE_NORM), atol=1e-5)
    assert rnd.visual_prompts.detach().std().item() == pytest.approx(RANDOM_INIT_STD, rel=0.3)
    with pytest.raises(Exception, match="init must be one of"):
        RPO(clip, tok, CLASSES, K=4, init="zeros")


# --- subsample: the first N of train and val (VTAB-1k's rule, at the mini CPU budget) ----------------


def _split(n, start=0):
    import numpy as np

    from visprompt.data.base import TensorImageDataset

    images = np.arange(start, start + n, dtype=np.uint8)[:, None, None, None].repeat(4, 1).repeat(4, 2).repeat(3, 3)
    return TensorImageDataset(images, np.arange(n) % 3, CLASSES)


def test_subsample_takes_the_first_images_and_the_final_run_their_union():
    train, val = _split(10), _split(6, start=100)
    a, b = experiments.first_n(train, 4), experiments.first_n(val, 2)
    assert a.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3] and b.images[:, 0, 0, 0].tolist() == [100, 101]
    assert experiments.first_n(train, None) is train and experiments.first_n(train, 50) is train
    both = experiments.concat(a, b)
    assert both.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 100, 101] and both.labels.tolist() == [0, 1, 2, 0, 0, 1]


@pytest.mark.parametrize("sizes", [{"train": 0}, {"train": 2.5}, {"tran": 400}, [400, 100]])
def test_bad_subsample_fails_before_any_work(sizes):
    import yaml

    params = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "params.yaml")))
    params["vpt"]["subsample"] = sizes
    with pytest.raises(experiments.ConfigError, match="vpt.subsample"):
        experiments.check_method(params, "vpt", "linear")


def test_two_runs_on_one_cell_compute_it_once(tmp_path):
    """A second run reaching a cell that another process is computing waits for it, then reuses it."""
    import subprocess
    import sys
    import time

    holder = subprocess.Popen([sys.executable, "-c", f"""
import time, pathlib
from visprompt.experiments import CellStore
store = CellStore({str(tmp_path)!r}, "vpt", "linear")
def make():
    pathlib.Path({str(tmp_path / 'holding')!r}).touch()
    time.sleep(2)
    return {{"test_top1": 42.0, "wall_time_s": 2.0}}
store.compute("vtab/count/seed1", "fp1", make)
"""])
    try:
        deadline = time.time() + 60
        while not (tmp_path / "holding").exists():
            assert holder.poll() is None and time.time() < deadline, "the holder never started its cell"
            time.sleep(0.05)
        store = experiments.CellStore(tmp_path, "vpt", "linear")
        calls = []
        rec, reused = store.compute("vtab/count/seed1", "fp1", lambda: calls.append(1) or {"test_top1": 0.0})
        assert reused and not calls and rec["test_top1"] == 42.0
        assert store.trained == 0 and store.reused == 1
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    import subprocess
    import sys

    code = f"""
import os, signal
from visprompt.experiments import CellStore
store = CellStore({str(tmp_path)!r}, "vpt", "linear")
with store.lock("vtab/count/seed1"):
    os.kill(os.getpid(), signal.SIGKILL)
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    store = experiments.CellStore(tmp_path, "vpt", "linear")
    rec, reused = store.compute("vtab/count/seed1", "fp1", lambda: {"test_top1": 1.0})
    assert not reused and rec["test_top1"] == 1.0 and not list(tmp_path.rglob("*.tmp"))


def test_near_ties_go_to_the_first_grid_point():
    from visprompt.utils import first_within

    assert first_within([40.0, 40.5]) == 0  # one of 200 validation images: not a real difference
    assert first_within([40.0, 41.5]) == 1
    assert first_within([38.0, 40.0, 39.5]) == 1


def test_importing_visprompt_pins_the_cpu_code_paths():
    import subprocess
    import sys

    from visprompt.cpu_numerics import cpu_has_avx2

    show = "import os, visprompt; print([os.environ.get(k) for k in ('ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'ONEDNN_MAX_CPU_ISA')])"
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "VISPROMPT_NATIVE_CPU")}
    pinned = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, check=True).stdout.strip()
    native = subprocess.run([sys.executable, "-c", show], env={**env, "VISPROMPT_NATIVE_CPU": "1"}, capture_output=True, text=True, check=True).stdout.strip()
    mine = subprocess.run([sys.executable, "-c", show], env={**env, "MKL_CBWR": "COMPATIBLE"}, capture_output=True, text=True, check=True).stdout.strip()
    assert native == "[None, None, None]"
    if cpu_has_avx2():
        assert pinned == "['avx2', 'AVX2', 'AVX2']"
        assert mine == "['avx2', 'COMPATIBLE', 'AVX2']"  # a variable the user set is kept
