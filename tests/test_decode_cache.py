"""Decode once (paper profile): deterministic transforms read uint8 pixels from a cache under the data
root, bit-identical to the per-item decode; augmenting rules keep decoding every item.

The fake datasets of test_paper_data are prepared by the real data stage, with their images
replaced by noise of odd sizes so that resizing, cropping and normalising have something to get wrong.
"""

import copy
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from test_paper_data import fake_cub, fake_dtd
from test_paper_world import data_params, fake_coop_caltech, train_params
from visprompt.data import real
from visprompt.data import decode_cache
from visprompt.train import _Batches
from visprompt.utils import write_json
from visprompt.worlds import paper as paper_world
from visprompt.worlds import world_for

pytestmark = pytest.mark.filterwarnings("ignore:backbones")
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
# (task, split): every deterministic rule of the paper params, at both backbones' sizes and interpolations
DETERMINISTIC = [("vtab/dtd", "test"), ("vp/dtd", "train"), ("fgvc/cub", "test"), ("coop/caltech101", "test")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("decode")
    root = base / "data"
    fake_dtd(root)
    fake_cub(root)
    fake_coop_caltech(root)
    rng = np.random.default_rng(0)
    for i, path in enumerate(sorted(root.rglob("*.jpg"))):
        Image.fromarray(rng.integers(0, 256, (23 + i % 17, 31 + i % 13, 3), dtype=np.uint8)).save(path, "JPEG")
    for name in ("vtab/dtd", "vp/dtd", "fgvc/cub", "coop/caltech101"):  # what the data stage does for each
        write_json(paper_world.manifest_path(root, name), real.prepare(name, root, strict=False))
    return base, data_params(root, base / "fewshot")


@pytest.fixture
def params(prepared, tmp_path):
    p = copy.deepcopy(train_params(prepared, {"vit": "unused.safetensors", "clip": "unused.bin"}, tmp_path / "runs"))
    shutil.rmtree(paper_world.data_root(p) / decode_cache.CACHE_DIR, ignore_errors=True)  # each test starts without caches
    paper_world._LOADED.clear()
    return p


def per_item(ds, indices) -> torch.Tensor:
    return torch.stack([ds[int(i)][0] for i in indices])


def cache_files(params) -> list:
    """The cache's files, without the builders' lock files (empty; one per cache file)."""
    return sorted(p for p in (paper_world.data_root(params) / decode_cache.CACHE_DIR).rglob("*") if p.suffix != ".lock")


def test_two_processes_needing_one_cache_decode_it_once(params, monkeypatch):
    """Concurrent builds of one file each decoded everything; now the second waits for the first's
    file (two threads, each with its own lock file handle, conflict as two processes do)."""
    import threading
    import time

    ds = world_for(params).load_data("vtab/dtd", "test", MEAN, STD)
    want = per_item(ds, range(len(ds)))
    builds, build = [], decode_cache._build

    def slow_build(*args, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other thread to arrive while this one builds
        return build(*args, **kwargs)

    monkeypatch.setattr(decode_cache, "_build", slow_build)
    start, got = threading.Barrier(2), []

    def load():
        start.wait()
        got.append(ds.tensors()[0])

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(got) == 2
    assert all(torch.equal(x[torch.arange(len(ds))], want) for x in got)


def test_cached_batches_are_bit_identical_to_the_per_item_transform(params):
    params["data"]["workers"] = 2  # the cache is built by DataLoader workers
    for key, split in DETERMINISTIC:
        ds = world_for(params).load_data(key, split, MEAN, STD)
        assert isinstance(ds, paper_world.DecodedSplit) and not ds.augmented
        x, y = ds.tensors()
        n = len(ds)
        assert len(x) == n and x.shape[0] == n and y.dtype == torch.int64 and y.tolist() == ds.labels.tolist()
        idx = torch.tensor([n - 1, 0, 2, 1])
        got = x[idx]
        assert got.dtype == torch.float32 and got.shape == (4, *ds[0][0].shape), key
        assert torch.equal(got, per_item(ds, idx)), (key, split)
        assert torch.equal(x[1:3], per_item(ds, [1, 2])) and torch.equal(x[0], ds[0][0])
        assert got.std((2, 3)).min() > 0.1  # noise, not uniform colours: the test has teeth
    names = [p.name for p in cache_files(params) if p.is_file()]
    assert len(names) == 4 and all(n.endswith(".npy") for n in names)
    assert any(n.startswith("test-resize_centercrop-32-bilinear-") for n in names) and any(n.startswith("train-clip-64-bicubic-") for n in names)
    # the training loop's own batching reads it (every item once per epoch, in its shuffled order)
    ds = world_for(params).load_data("vtab/dtd", "test", MEAN, STD)
    batches = list(_Batches(ds, 4, shuffle=True).epoch(3))
    assert sum(len(b[1]) for b in batches) == len(ds) and all(b[0].dtype == torch.float32 for b in batches)


def test_a_second_load_reads_the_file_without_decoding(params, monkeypatch):
    ds = world_for(params).load_data("vp/dtd", "train", MEAN, STD)
    want = per_item(ds, range(len(ds)))
    x, _ = ds.tensors()
    path, mtime = x.path, x.path.stat().st_mtime_ns

    def no_decoding(self, i):
        raise AssertionError("decoded an image although its cache exists")

    monkeypatch.setattr(real.RealDataset, "__getitem__", no_decoding)
    paper_world._LOADED.clear()
    x2, _ = world_for(params).load_data("vp/dtd", "train", MEAN, STD).tensors()
    assert x2.path == path and path.stat().st_mtime_ns == mtime
    assert torch.equal(x2[torch.arange(len(x2))], want)


def test_a_truncated_or_wrong_shaped_cache_is_rebuilt_with_a_warning(params):
    ds = world_for(params).load_data("vtab/dtd", "test", MEAN, STD)
    want = per_item(ds, range(len(ds)))
    path = ds.tensors()[0].path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(UserWarning, match="decode cache .* is unreadable.*rebuilding"):
        x, _ = ds.tensors()
    assert torch.equal(x[torch.arange(len(ds))], want)
    np.save(path, np.zeros((len(ds), 3, 8, 8), np.uint8))
    with pytest.warns(UserWarning, match=r"decode cache .* holds uint8 \(6, 3, 8, 8\), expected uint8 \(6, 3, 32, 32\); rebuilding"):
        x, _ = ds.tensors()
    assert torch.equal(x[torch.arange(len(ds))], want)
    assert [p.name for p in cache_files(params) if p.is_file()] == [path.name]  # no temporary file left over


def test_an_interrupted_build_leaves_nothing_behind(params, monkeypatch):
    ds = world_for(params).load_data("vtab/dtd", "test", MEAN, STD)
    calls = []

    def dies(self, i):
        calls.append(i)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return decode_pixels(self, i)

    decode_pixels = decode_cache._Pixels.__getitem__
    monkeypatch.setattr(decode_cache._Pixels, "__getitem__", dies)
    with pytest.raises(KeyboardInterrupt):
        ds.tensors()
    assert not [p for p in cache_files(params) if p.is_file()]


def test_subsets_have_their_own_items_labels_and_file(params):
    ds = world_for(params).load_data("coop/caltech101", "test", MEAN, STD)
    sub = ds.subset([7, 2, 30, 11], labels=[1, 0, 1, 0], classnames=["a", "b"])
    assert isinstance(sub, paper_world.DecodedSplit)
    x, y = sub.tensors()
    assert len(x) == 4 and y.tolist() == [1, 0, 1, 0]
    assert torch.equal(x[torch.arange(4)], per_item(ds, [7, 2, 30, 11]))
    assert x.path != ds.tensors()[0].path
    # relabelling does not change the pixels: the same items share a file
    same = ds.subset([7, 2, 30, 11]).tensors()[0]
    assert same.path == x.path


def test_augmenting_rules_and_the_switch_keep_the_per_item_decode(params):
    for key in ("fgvc/cub", "coop/caltech101"):  # random crops need the full image every epoch
        ds = world_for(params).load_data(key, "train", MEAN, STD)
        assert ds.augmented and not hasattr(ds, "tensors") and not hasattr(ds.subset([0, 1]), "tensors")
    params["data"]["decode_cache"] = False
    ds = world_for(params).load_data("vtab/dtd", "test", MEAN, STD)
    assert not hasattr(ds, "tensors") and not ds.augmented
    assert not cache_files(params)
