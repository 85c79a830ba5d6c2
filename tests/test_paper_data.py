"""Paper-profile datasets: tiny fake copies in each dataset's real on-disk layout, loaded through
the same code the paper profile uses (torchvision's dataset classes where they exist, our readers
otherwise); downloads (resume, checksums, truncated archives), manual-download errors, splits and
the data stage itself. No network is used: downloads go to a local HTTP server, and the data stage
test points the proxy at a closed port so it behaves as on an offline machine anywhere.
"""

import hashlib
import http.server
import io
import json
import os
import pickle
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from visprompt.config import load_params
from visprompt.data import coop_splits, real
from visprompt.data.download import (
    ArchiveError,
    ChecksumError,
    DownloadError,
    ManualDownloadRequired,
    RemoteFile,
    extract,
    fetch,
)
from visprompt.errors import ConfigError
from visprompt import paper

PAPER_PARAMS = "profiles/paper/params.yaml"


# ------------------------------------------------------------------------------------------------
# fake copies in the real layouts (a few 8x8 images per class)
# ------------------------------------------------------------------------------------------------


def img(path, value=0, size=(8, 8), mode="RGB"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new(mode, size, (value * 37 % 256, value * 91 % 256, value * 53 % 256) if mode == "RGB" else value).save(path, fmt)


def write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_cifar(root, n100=True):
    base = Path(root) / ("cifar-100-python" if n100 else "cifar-10-batches-py")
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    key = "fine_labels" if n100 else "labels"
    names = ["apple", "bear", "camel"] if n100 else ["airplane", "automobile", "bird"]

    def batch(n):
        return {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), key: [i % 3 for i in range(n)]}

    if n100:
        for f, n in (("train", 30), ("test", 9)):
            pickle.dump(batch(n), open(base / f, "wb"))
        pickle.dump({"fine_label_names": names, "coarse_label_names": ["x"]}, open(base / "meta", "wb"))
    else:
        for i in range(1, 6):
            pickle.dump(batch(6), open(base / f"data_batch_{i}", "wb"))
        pickle.dump(batch(9), open(base / "test_batch", "wb"))
        pickle.dump({"label_names": names}, open(base / "batches.meta", "wb"))


def fake_svhn(root):
    base = Path(root) / "svhn"
    base.mkdir(parents=True)
    for f, n in (("train_32x32.mat", 20), ("test_32x32.mat", 6)):
        y = np.array([[10 if i % 3 == 0 else i % 3] for i in range(n)], dtype=np.uint8)  # digit 0 is stored as 10
        sio.savemat(base / f, {"X": np.zeros((32, 32, 3, n), np.uint8), "y": y})


def fake_flowers(root):
    base = Path(root) / "flowers-102"
    n = 12
    for i in range(1, n + 1):
        img(base / "jpg" / f"image_{i:05d}.jpg", i)
    sio.savemat(base / "imagelabels.mat", {"labels": np.array([[1 + (i % 3) for i in range(n)]], dtype=np.uint8)})
    sio.savemat(base / "setid.mat", {"trnid": np.array([[1, 2, 3, 4]]), "valid": np.array([[5, 6, 7]]), "tstid": np.array([[8, 9, 10, 11, 12]])})


def fake_dtd(root):
    base = Path(root) / "dtd" / "dtd"
    classes = ["banded", "blotchy", "braided"]
    lines = {"train": [], "val": [], "test": []}
    for c in classes:
        for i in range(1, 7):
            rel = f"{c}/{c}_{i:04d}.jpg"
            img(base / "images" / rel, i)
            lines[["train", "val", "test"][(i - 1) % 3]].append(rel)
    for s, ls in lines.items():
        write(base / "labels" / f"{s}1.txt", "\n".join(ls) + "\n")
    return classes, lines


def fake_pets(root):
    base = Path(root) / "oxford-iiit-pet"
    breeds = ["Abyssinian", "american_bulldog", "basset_hound"]
    tv, te = [], []
    for label, b in enumerate(breeds, 1):
        for i in range(1, 7):
            img(base / "images" / f"{b}_{i}.jpg", i)
            (tv if i <= 4 else te).append(f"{b}_{i} {label} {1 if label == 1 else 2} 1")
    write(base / "annotations" / "trainval.txt", "\n".join(tv) + "\n")
    write(base / "annotations" / "test.txt", "\n".join(te) + "\n")


def fake_food(root):
    base = Path(root) / "food-101"
    meta = {"train": {}, "test": {}}
    for c in ("apple_pie", "baby_back_ribs", "baklava"):
        for i in range(6):
            img(base / "images" / c / f"{100 + i}.jpg", i)
            meta["train" if i < 4 else "test"].setdefault(c, []).append(f"{c}/{100 + i}")
    for s, m in meta.items():
        write(base / "meta" / f"{s}.json", json.dumps(m))


def fake_eurosat(root):
    for c in ("AnnualCrop", "Forest", "SeaLake"):
        for i in range(1, 9):
            img(Path(root) / "eurosat" / "2750" / c / f"{c}_{i}.jpg", i)


def fake_sun397(root):
    base = Path(root) / "SUN397"
    cats = ["/a/abbey", "/b/bakery/shop", "/c/campus"]
    write(base / "ClassName.txt", "\n".join(cats) + "\n")
    for k, c in enumerate(cats):
        for i in range(8):
            img(base / c.lstrip("/") / f"sun_{k}{i:03d}xyz.jpg", i)


def fake_caltech(root):
    for c in ("BACKGROUND_Google", "Faces_easy", "accordion"):
        for i in range(1, 41):
            img(Path(root) / "caltech101" / "101_ObjectCategories" / c / f"image_{i:04d}.jpg", i, size=(4, 4))


def fake_aircraft(root):
    base = Path(root) / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "727-200", "A300B4"]
    write(base / "variants.txt", "\n".join(variants) + "\n")
    rows = {"train": [], "val": [], "test": []}
    for k, v in enumerate(variants):
        for i in range(6):
            iid = f"{1000000 + 10 * k + i}"
            img(base / "images" / f"{iid}.jpg", i)
            rows[["train", "val", "test"][i % 3]].append(f"{iid} {v}")
    for s, r in rows.items():
        write(base / f"images_variant_{s}.txt", "\n".join(r) + "\n")
    write(base / "images_variant_trainval.txt", "\n".join(rows["train"] + rows["val"]) + "\n")


def _cars_annos(n, offset=0):
    dt = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    a = np.zeros((1, n), dtype=dt)
    for i in range(n):
        a[0, i] = (np.uint8(1), np.uint8(1), np.uint8(6), np.uint8(6), np.uint8(i % 3 + 1), f"{i + 1:05d}.jpg")
    return a


def fake_cars(root):
    base = Path(root) / "stanford_cars"
    names = np.empty((1, 3), dtype=object)
    names[0, :] = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8 Coupe 2012"]
    (base / "devkit").mkdir(parents=True)
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    sio.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": _cars_annos(12)})
    sio.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": _cars_annos(6)})
    for i in range(12):
        img(base / "cars_train" / f"{i + 1:05d}.jpg", i)
    for i in range(6):
        img(base / "cars_test" / f"{i + 1:05d}.jpg", i)


def fake_clevr(root):
    base = Path(root) / "clevr" / "CLEVR_v1.0"
    for split, n in (("train", 20), ("val", 8), ("test", 2)):
        scenes = []
        for i in range(n):
            name = f"CLEVR_{split}_{i:06d}.png"
            img(base / "images" / split / name, i)
            k = 3 + i % 8  # 3..10 objects
            scenes.append({"image_filename": name, "objects": [{"pixel_coords": [10, 20, 7.0 + 0.5 * (i % 7) + 0.25 + j]} for j in range(k)]})
        if split != "test":
            write(base / "scenes" / f"CLEVR_{split}_scenes.json", json.dumps({"scenes": scenes}))


KITTI_DEPTHS = [5.0, 12.0, 30.0, None, 7.9, 19.0, 25.0, None, 3.0, 50.0]


def fake_kitti(root):
    base = Path(root) / "Kitti" / "raw" / "training"
    for i, z in enumerate(KITTI_DEPTHS):
        img(base / "image_2" / f"{i:06d}.png", i)
        lines = ["Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 2.10 0.01"]
        if z is not None:
            lines.append(f"Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 {z:.2f} -1.59")
            lines.append(f"Van 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 {z + 40:.2f} -1.59")
        write(base / "label_2" / f"{i:06d}.txt", "\n".join(lines) + "\n")


def fake_pcam(root):
    h5py = pytest.importorskip("h5py")
    base = Path(root) / "pcam"
    base.mkdir(parents=True)
    for split, n in (("train", 12), ("valid", 6), ("test", 6)):
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f["x"] = np.zeros((n, 96, 96, 3), np.uint8)
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f["y"] = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1)


def fake_cub(root):
    base = Path(root) / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    write(base / "classes.txt", "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    imgs, labs, split = [], [], []
    k = 0
    for ci, c in enumerate(classes):
        for j in range(8):
            k += 1
            rel = f"{c}/{c.split('.')[1]}_{j:04d}_{k}.jpg"
            img(base / "images" / rel, k)
            imgs.append(f"{k} {rel}")
            labs.append(f"{k} {ci + 1}")
            split.append(f"{k} {1 if j < 5 else 0}")
    write(base / "images.txt", "\n".join(imgs) + "\n")
    write(base / "image_class_labels.txt", "\n".join(labs) + "\n")
    write(base / "train_test_split.txt", "\n".join(split) + "\n")


def fake_nabirds(root, base=None):
    base = Path(base or Path(root) / "nabirds")
    write(base / "classes.txt", "0 Birds\n1 Perching Birds\n295 Wood Duck (Breeding male)\n313 Mallard (Female/Juvenile)\n700 Anna's Hummingbird\n")
    rows_i, rows_c, rows_s = [], [], []
    for ci, cid in enumerate((295, 313, 700)):
        for j in range(6):
            uid = f"{ci:04d}{j:04d}-aaaa-bbbb-cccc-{ci}{j:011d}"
            rel = f"{cid:04d}/{uid.replace('-', '')}.jpg"
            img(base / "images" / rel, j)
            rows_i.append(f"{uid} {rel}")
            rows_c.append(f"{uid} {cid}")
            rows_s.append(f"{uid} {1 if j < 4 else 0}")
    write(base / "images.txt", "\n".join(rows_i) + "\n")
    write(base / "image_class_labels.txt", "\n".join(rows_c) + "\n")
    write(base / "train_test_split.txt", "\n".join(rows_s) + "\n")


def fake_dogs(root):
    base = Path(root) / "stanford_dogs"
    folders = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02088094-Afghan_hound"]
    lists = {"train": ([], []), "test": ([], [])}
    for ci, f in enumerate(folders):
        for j in range(6):
            rel = f"{f}/{f.split('-')[0]}_{j}.jpg"
            img(base / "Images" / rel, j)
            part = "train" if j < 4 else "test"
            lists[part][0].append(rel)
            lists[part][1].append(ci + 1)
    for part, (files, labels) in lists.items():
        fl = np.empty((len(files), 1), dtype=object)
        fl[:, 0] = files
        sio.savemat(base / f"{part}_list.mat", {"file_list": fl, "annotation_list": fl, "labels": np.array(labels, dtype=np.uint8).reshape(-1, 1)})


def fake_resisc(root):
    for c in ("airplane", "baseball_diamond", "beach"):
        for i in range(1, 11):
            img(Path(root) / "resisc45" / "NWPU-RESISC45" / c / f"{c}_{i:03d}.jpg", i)


def fake_retinopathy(root):
    base = Path(root) / "diabetic_retinopathy"
    tr = ["image,level"] + [f"{i}_left,{i % 5}" for i in range(10)]
    te = ["image,level,Usage"] + [f"{100 + i}_right,{i % 5},{'Public' if i < 5 else 'Private'}" for i in range(10)]
    for i in range(10):
        img(base / "train" / f"{i}_left.jpeg", i)
        img(base / "test" / f"{100 + i}_right.jpeg", i)
    write(base / "trainLabels.csv", "\n".join(tr) + "\n")
    write(base / "retinopathy_solution.csv", "\n".join(te) + "\n")


def fake_dmlab(root):
    for part, n in (("train", 12), ("validation", 6), ("test", 6)):
        for i in range(n):
            img(Path(root) / "dmlab" / part / str(i % 6) / f"{i}.png", i)


def fake_dsprites(root):
    n = 80
    latents = np.zeros((n, 6), np.int64)
    latents[:, 3] = np.arange(n) % 40  # orientation 0..39
    latents[:, 4] = np.arange(n) % 32  # posX 0..31
    imgs = np.zeros((n, 64, 64), np.uint8)
    imgs[:, 10:20, 10:20] = 1
    (Path(root) / "dsprites").mkdir(parents=True)
    np.savez_compressed(Path(root) / "dsprites" / real._DSPRITES, imgs=imgs, latents_classes=latents, latents_values=latents.astype(float))


def _norb(path, arr, magic):
    arr = np.ascontiguousarray(arr)
    dims = list(arr.shape) + [1] * max(0, 3 - arr.ndim)
    with open(path, "wb") as f:
        f.write(np.array([magic, arr.ndim] + dims, dtype="<i4").tobytes())
        f.write(arr.astype(arr.dtype.newbyteorder("<")).tobytes())


def fake_smallnorb(root):
    base = Path(root) / "smallnorb"
    base.mkdir(parents=True)
    for prefix, n in ((real._NORB_TRAIN, 18), (real._NORB_TEST, 12)):
        dat = np.zeros((n, 2, 96, 96), np.uint8)
        dat[:, 0, :10] = 200
        info = np.stack([np.arange(n) % 10, np.arange(n) % 9, 2 * (np.arange(n) % 18), np.arange(n) % 6], 1).astype(np.int32)
        _norb(base / f"{prefix}-dat.mat", dat, 0x1E3D4C55)
        _norb(base / f"{prefix}-cat.mat", (np.arange(n) % 5).astype(np.int32), 0x1E3D4C54)
        _norb(base / f"{prefix}-info.mat", info, 0x1E3D4C54)


WNIDS = ["n01440764", "n01443537", "n01484850"]
WNAMES = ["tench", "goldfish", "great white shark"]


def _imagenet_names(root):
    write(Path(root) / "imagenet" / "classnames.txt", "".join(f"{w} {n}\n" for w, n in zip(WNIDS, WNAMES)))


def fake_imagenet(root):
    _imagenet_names(root)
    for split, n in (("train", 4), ("val", 2)):
        for w in WNIDS:
            for i in range(n):
                img(Path(root) / "imagenet" / "images" / split / w / f"{w}_{i}.JPEG", i)


def fake_imagenet_v2(root):
    _imagenet_names(root)
    for k in range(3):
        for i in range(2):
            img(Path(root) / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / str(k) / f"{k}{i}abc.jpeg", i)


def fake_imagenet_sketch(root):
    _imagenet_names(root)
    for w in WNIDS:
        for i in range(2):
            img(Path(root) / "imagenet-sketch" / "sketch" / w / f"sketch_{i}.JPEG", i)


def fake_imagenet_a(root, folder="imagenet-adversarial/imagenet-a"):
    _imagenet_names(root)
    for w in WNIDS[1:]:  # a 2-class subset
        for i in range(2):
            img(Path(root) / folder / w / f"{i}.jpg", i)
    write(Path(root) / folder / "README.txt", "readme")


def fake_imagenet_r(root):
    fake_imagenet_a(root, "imagenet-rendition/imagenet-r")


def fake_ucf101(root):
    items = []
    for label, c in enumerate(("Apply_Eye_Makeup", "Archery", "Basketball")):
        for g in range(6):
            rel = f"{c}/v_{c}_g{g:02d}_c01.jpg"
            img(Path(root) / "ucf101" / "UCF-101-midframes" / rel, g)
            items.append((rel, label, c))
    coop_splits.write_split(Path(root) / "ucf101" / "split_zhou_UCF101.json", coop_splits.make_split(items, seed=1))


FAKES = {
    "cifar10": lambda r: fake_cifar(r, n100=False), "cifar100": fake_cifar, "svhn": fake_svhn, "flowers102": fake_flowers, "dtd": fake_dtd,
    "pets": fake_pets, "food101": fake_food, "eurosat": fake_eurosat, "sun397": fake_sun397, "caltech101": fake_caltech,
    "fgvc_aircraft": fake_aircraft, "stanford_cars": fake_cars, "clevr": fake_clevr, "kitti": fake_kitti, "pcam": fake_pcam,
    "cub": fake_cub, "nabirds": fake_nabirds, "stanford_dogs": fake_dogs, "resisc45": fake_resisc, "retinopathy": fake_retinopathy,
    "dmlab": fake_dmlab, "dsprites": fake_dsprites, "smallnorb": fake_smallnorb, "imagenet": fake_imagenet, "imagenet_v2": fake_imagenet_v2,
    "imagenet_sketch": fake_imagenet_sketch, "imagenet_a": fake_imagenet_a, "imagenet_r": fake_imagenet_r, "ucf101": fake_ucf101,
}

# CoOp split files over the fake copies: (relpath under the image dir, label, classname)
COOP_ITEMS = {
    "caltech101": lambda: [(f"{c}/image_{i:04d}.jpg", l, c.lower()) for l, c in enumerate(("Faces_easy", "accordion")) for i in range(1, 7)],
    "pets": lambda: [(f"{b}_{i}.jpg", l, b.lower()) for l, b in enumerate(("Abyssinian", "american_bulldog", "basset_hound")) for i in range(1, 7)],
    "stanford_cars": lambda: [(f"cars_train/{i + 1:05d}.jpg", i % 3, f"car {i % 3}") for i in range(12)],
    "flowers102": lambda: [(f"image_{i:05d}.jpg", (i - 1) % 3, f"flower {(i - 1) % 3}") for i in range(1, 13)],
    "food101": lambda: [(f"{c}/{100 + i}.jpg", l, c) for l, c in enumerate(("apple_pie", "baby_back_ribs", "baklava")) for i in range(6)],
    "sun397": lambda: [(f"{c}/sun_{k}{i:03d}xyz.jpg", k, n) for k, (c, n) in enumerate((("a/abbey", "abbey"), ("b/bakery/shop", "bakery shop"), ("c/campus", "campus"))) for i in range(8)],
    "dtd": lambda: [(f"{c}/{c}_{i:04d}.jpg", l, c) for l, c in enumerate(("banded", "blotchy", "braided")) for i in range(1, 7)],
    "eurosat": lambda: [(f"{c}/{c}_{i}.jpg", l, n) for l, (c, n) in enumerate((("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"), ("SeaLake", "Sea or Lake"))) for i in range(1, 9)],
}


def build(raw, root):
    FAKES[raw](root)
    spec_files = {s.coop_file: s for s in real.REAL_DATASETS.values() if s.raw == raw and s.coop_file}
    for fname in spec_files:
        if raw in COOP_ITEMS:
            coop_splits.write_split(Path(root) / real.SOURCES[raw].dir / fname, coop_splits.make_split(COOP_ITEMS[raw](), seed=1))


def check_dataset(ds, spec):
    assert len(ds) > 0
    assert ds.labels.min() >= 0 and ds.labels.max() < len(ds.classnames)
    x, y = ds[0]
    assert isinstance(x, Image.Image) and x.mode == "RGB"
    assert isinstance(y, int) and y == ds.labels[0]
    assert ds.targets == ds.labels.tolist()


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------


def test_registry_covers_every_dataset_of_the_three_papers():
    assert len(real.VTAB_TASKS) == 19 and len(real.FGVC_TASKS) == 5
    assert len(real.VP_TASKS) == 12 and len(real.COOP_TASKS) == 11 and len(real.COOP_TEST_TASKS) == 4
    groups = {g: sum(1 for n in real.VTAB_TASKS if real.REAL_DATASETS[n].group == g) for g in ("natural", "specialized", "structured")}
    assert groups == {"natural": 7, "specialized": 4, "structured": 8}
    for name, spec in real.REAL_DATASETS.items():
        assert spec.source in ("torchvision", "url", "manual", "tfds-export"), name
        assert spec.license and spec.disk and spec.raw in real._POOLS, name
        src = real.SOURCES[spec.raw]
        assert src.files and src.homepage, name
        if spec.protocol in ("vtab1k", "fgvc", "vp"):
            assert set(spec.pools) == {"train", "val", "test"}, name
    # torchvision's declared checksums are used for what torchvision downloads
    assert real.SOURCES["dtd"].files[0].md5 == "fff73e5086ae6bdbea199a49dfb8a4c1"
    assert real.REAL_DATASETS["vtab/smallnorb_azimuth"].num_classes == 18
    assert real.REAL_DATASETS["fgvc/nabirds"].expected == {"train": 21536, "val": 2393, "test": 24633}


# ------------------------------------------------------------------------------------------------
# every loader on its fake copy
# ------------------------------------------------------------------------------------------------

ALL_TASKS = sorted(real.REAL_DATASETS)


@pytest.mark.parametrize("raw", sorted(real._POOLS))
def test_every_source_loads_from_its_real_layout(raw, tmp_path):
    build(raw, tmp_path)
    tasks = [n for n, s in real.REAL_DATASETS.items() if s.raw == raw]
    assert tasks
    for name in tasks:
        spec = real.REAL_DATASETS[name]
        splits = ("test",) if spec.protocol == "coop-test" else ("train", "val", "test")
        sizes = {}
        for split in splits:
            ds = real.load(name, split, tmp_path)
            check_dataset(ds, spec)
            sizes[split] = len(ds)
        if spec.protocol in ("vtab1k", "fgvc", "vp"):
            rec = real.load_splits(name, tmp_path)
            tr, va = (set(map(tuple, ((p, i) for p, ix in rec["splits"][s].items() for i in ix))) for s in ("train", "val"))
            assert not tr & va, f"{name}: train and val overlap"
            te = {(p, i) for p, ix in rec["splits"]["test"].items() for i in ix}
            assert not (tr | va) & te, f"{name}: test overlaps train/val"
            assert len(real.load(name, "trainval", tmp_path)) == sizes["train"] + sizes["val"]


def test_labels_and_names_read_from_the_files(tmp_path):
    for raw in ("svhn", "dtd", "cub", "nabirds", "stanford_dogs", "imagenet", "imagenet_a", "imagenet_v2", "eurosat", "pcam"):
        build(raw, tmp_path)
    svhn = real.open_pool("svhn", tmp_path, "train")
    assert svhn.labels[:3].tolist() == [0, 1, 2]  # "10" in the .mat is digit 0
    assert real.open_pool("cub", tmp_path, "train").classnames == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    nab = real.open_pool("nabirds", tmp_path, "train")
    assert nab.classnames == ["Wood Duck (Breeding male)", "Mallard (Female/Juvenile)", "Anna's Hummingbird"]
    assert len(nab) == 12 and len(real.open_pool("nabirds", tmp_path, "test")) == 6
    dogs = real.open_pool("stanford_dogs", tmp_path, "train")
    assert dogs.classnames == ["Chihuahua", "Japanese spaniel", "Afghan hound"] and sorted(set(dogs.labels.tolist())) == [0, 1, 2]
    inet = real.load("coop/imagenet", "test", tmp_path)
    assert inet.classnames == WNAMES and len(inet) == 6
    a = real.load("coop/imagenet_a", "test", tmp_path)
    assert a.classnames == WNAMES[1:] and sorted(set(a.labels.tolist())) == [0, 1]
    v2 = real.load("coop/imagenet_v2", "test", tmp_path)
    assert v2.classnames == WNAMES and sorted(set(v2.labels.tolist())) == [0, 1, 2]
    assert real.load("vtab/eurosat", "test", tmp_path).classnames == ["AnnualCrop", "Forest", "SeaLake"]


def test_label_derivations(tmp_path):
    for raw in ("kitti", "clevr", "dsprites", "smallnorb"):
        build(raw, tmp_path)
    # KITTI: nearest Car/Van/Truck depth z binned at -100/8/20/999; no vehicle -> 1000 -> class 3
    kitti = real.open_pool("kitti", tmp_path, "all", "distance")
    want = [0 if z is not None and z < 8 else 1 if z is not None and z < 20 else 2 if z is not None else 3 for z in KITTI_DEPTHS]
    assert kitti.labels.tolist() == want
    assert real.kitti_closest_vehicle_depth(tmp_path / "Kitti/raw/training/label_2/000003.txt") == 1000.0
    # CLEVR: count - 3, distance = bins of the minimum pixel_coords depth
    count = real.open_pool("clevr", tmp_path, "train", "count")
    assert count.labels.tolist() == [i % 8 for i in range(20)]
    dist = real.open_pool("clevr", tmp_path, "train", "distance")
    depth = [7.0 + 0.5 * (i % 7) + 0.25 for i in range(20)]
    thr = [0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0]
    assert dist.labels.tolist() == [max(j for j, t in enumerate(thr) if t < d) for d in depth]
    # dSprites: x // 2 and floor(orientation / 2.5), 16 classes each
    loc = real.open_pool("dsprites", tmp_path, "all", "location")
    ori = real.open_pool("dsprites", tmp_path, "all", "orientation")
    assert loc.labels.tolist() == [(i % 32) // 2 for i in range(80)]
    assert ori.labels.tolist() == [int((i % 40) / 2.5) for i in range(80)]
    assert max(loc.labels) == 15 and max(ori.labels) == 15
    assert np.asarray(loc.image(0))[15, 15].tolist() == [255, 255, 255]  # binary sprite -> RGB 0/255
    # smallNORB: azimuth field (0, 2, .., 34) / 2 -> 0..17, elevation 0..8, first camera image
    az = real.open_pool("smallnorb", tmp_path, "train", "azimuth")
    el = real.open_pool("smallnorb", tmp_path, "train", "elevation")
    assert az.labels.tolist() == [i % 18 for i in range(18)] and el.labels.tolist() == [i % 9 for i in range(18)]
    assert np.asarray(az.image(0)).shape == (96, 96, 3) and np.asarray(az.image(0))[0, 0, 0] == 200


def test_vtab_splits_deterministic_documented_and_800_200(tmp_path):
    fake_caltech(tmp_path)  # 3 classes x 40 images: 30/class train part (tfds definition), 10/class test
    rec = real.compute_splits("vtab/caltech101", tmp_path, seed=0)
    assert rec == real.compute_splits("vtab/caltech101", tmp_path, seed=0)
    assert rec["splits"] != real.compute_splits("vtab/caltech101", tmp_path, seed=1)["splits"]
    assert rec["sizes"] == {"train": 81, "val": 9, "test": 30, "trainval": 90}
    assert "ours, not tfds membership" in rec["rule"] and "per_class" not in rec["rule"]
    test_labels = real.load("vtab/caltech101", "test", tmp_path).labels
    assert np.bincount(test_labels).tolist() == [10, 10, 10]
    # a large pool is cut at exactly 800 / 200
    fake_dsprites(tmp_path)
    with np.load(tmp_path / "dsprites" / real._DSPRITES) as f:
        arrays = dict(f)
    big = 2000
    arrays = {k: np.concatenate([v] * (big // len(v))) for k, v in arrays.items()}
    np.savez_compressed(tmp_path / "dsprites" / real._DSPRITES, **arrays)
    sizes = real.compute_splits("vtab/dsprites_location", tmp_path)["sizes"]
    assert sizes == {"train": 800, "val": 200, "test": 200, "trainval": 1000}
    # Clevr count and distance share the source, so they see the same images (as tfds order is shared)
    fake_clevr(tmp_path)
    a = real.compute_splits("vtab/clevr_count", tmp_path)["splits"]
    b = real.compute_splits("vtab/clevr_distance", tmp_path)["splits"]
    assert a == b


def test_fgvc_val_counts_and_official_val(tmp_path):
    fake_cub(tmp_path)
    rec = real.compute_splits("fgvc/cub", tmp_path)
    train_part = 15  # 5 train images per class in the fake copy
    assert rec["sizes"]["train"] + rec["sizes"]["val"] == train_part and rec["sizes"]["test"] == 9
    assert real.REAL_DATASETS["fgvc/cub"].pools["val"]["count"] == [0, 600]
    fake_flowers(tmp_path)
    assert real.compute_splits("fgvc/flowers", tmp_path)["sizes"] == {"train": 4, "val": 3, "test": 5, "trainval": 7}


def test_prepare_writes_split_marker_and_manifest_then_detects_a_changed_copy(tmp_path):
    fake_dtd(tmp_path)
    m = real.prepare("vtab/dtd", tmp_path, strict=False)
    assert m["num_classes"] == 3 and m["sizes"]["test"] == 6 and "ours" in m["split_rule"]
    assert any("VTAB-1k expects 800/200" in w for w in m["warnings"])
    assert (tmp_path / ".sources" / "dtd.json").is_file()
    path = real.split_path(tmp_path, "vtab/dtd")
    assert json.loads(path.read_text())["splits"] == real.compute_splits("vtab/dtd", tmp_path)["splits"]
    with pytest.raises(ConfigError, match="classes found"):
        real.prepare("vtab/dtd", tmp_path, strict=True)
    # a copy that changed after the split file was written is refused, not silently re-split
    lines = (tmp_path / "dtd/dtd/labels/test1.txt").read_text().splitlines()
    (tmp_path / "dtd/dtd/labels/test1.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ConfigError, match="Delete the split file"):
        real.load("vtab/dtd", "test", tmp_path)


# ------------------------------------------------------------------------------------------------
# CoOp split files and base/new
# ------------------------------------------------------------------------------------------------


def test_coop_split_files_read_write_and_base_new(tmp_path):
    items = [(f"c{l}/img{i}.jpg", l, f"class {l}") for l in range(5) for i in range(10)]
    split = coop_splits.make_split(items, seed=1)
    path = coop_splits.write_split(tmp_path / "split_zhou_Test.json", split)
    raw = json.loads(path.read_text())
    assert set(raw) == {"train", "val", "test"} and raw["train"][0] == list(split["train"][0])
    back = coop_splits.read_split(path)
    assert back == {s: [tuple(x) for x in split[s]] for s in ("train", "val", "test")}
    assert coop_splits.classnames_of(back) == [f"class {l}" for l in range(5)]
    assert [len([x for x in back["train"] if x[1] == l]) for l in range(5)] == [5] * 5
    assert coop_splits.base_new_classes(range(5)) == ([0, 1, 2], [3, 4])
    new_items, new_names = coop_splits.subsample_classes(back["test"], coop_splits.classnames_of(back), "new")
    assert new_names == ["class 3", "class 4"] and sorted({x[1] for x in new_items}) == [0, 1]
    (tmp_path / "bad.json").write_text(json.dumps({"train": [["a.jpg", "0", "x"]], "val": [], "test": []}))
    with pytest.raises(ConfigError, match="relpath"):
        coop_splits.read_split(tmp_path / "bad.json")


def test_coop_dataset_reads_published_split_file(tmp_path):
    fake_dtd(tmp_path)
    items = COOP_ITEMS["dtd"]()
    coop_splits.write_split(tmp_path / "dtd" / "split_zhou_DescribableTextures.json", coop_splits.make_split(items, seed=1))
    m = real.prepare("coop/dtd", tmp_path, strict=False)
    assert m["classnames"] == ["banded", "blotchy", "braided"] and sum(m["sizes"].values()) == len(items)
    train = real.load("coop/dtd", "train", tmp_path)
    assert len(train) == 9 and train.classnames == ["banded", "blotchy", "braided"]
    assert len(real.load("coop/dtd", "trainval", tmp_path)) == len(train) + len(real.load("coop/dtd", "val", tmp_path))


# ------------------------------------------------------------------------------------------------
# downloads and archives
# ------------------------------------------------------------------------------------------------


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (for resume) from the server's directory."""

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(served), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _md5(b):
    return hashlib.md5(b).hexdigest()


def test_fetch_resumes_verifies_and_never_keeps_a_bad_file(server, tmp_path):
    served, url = server
    payload = os.urandom(300_000)
    (served / "blob.bin").write_bytes(payload)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    Path(str(dest) + ".part").write_bytes(payload[:123_456])  # an interrupted earlier download
    info = fetch(f"{url}/blob.bin", dest, md5=_md5(payload), size=len(payload))
    assert dest.read_bytes() == payload and info["md5"] == _md5(payload) and not Path(str(dest) + ".part").exists()
    assert fetch(f"{url}/blob.bin", dest, md5=_md5(payload))["size"] == len(payload)  # already there: verified, not refetched
    dest.write_bytes(payload[:1000])  # a corrupt file in place is deleted and fetched again
    assert fetch(f"{url}/blob.bin", dest, md5=_md5(payload))["md5"] == _md5(payload)
    bad = tmp_path / "dl" / "bad.bin"
    with pytest.raises(ChecksumError, match="md5"):
        fetch(f"{url}/blob.bin", bad, md5="0" * 32)
    assert not bad.exists() and not Path(str(bad) + ".part").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{url}/missing.bin", tmp_path / "dl" / "missing.bin")


def _targz(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_truncated_and_corrupt_archives_are_caught_and_leave_nothing(tmp_path):
    data = _targz({f"top/f{i}.bin": os.urandom(20_000) for i in range(5)})
    arch = tmp_path / "a.tar.gz"
    arch.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract(arch, tmp_path / "out", remove_on_error=True)
    assert not (tmp_path / "out").exists() and not arch.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("top/x.bin", b"A" * 5000)
    raw = bytearray(zbuf.getvalue())
    raw[raw.index(b"A" * 100) + 50] = ord("B")  # flip one byte: CRC mismatch
    (tmp_path / "c.zip").write_bytes(bytes(raw))
    with pytest.raises(ArchiveError):
        extract(tmp_path / "c.zip", tmp_path / "out2")
    assert not (tmp_path / "out2" / "top").exists()
    arch.write_bytes(_targz({"../evil.txt": b"x"}))
    with pytest.raises(ArchiveError):
        extract(arch, tmp_path / "out3")
    assert not (tmp_path / "evil.txt").exists()


def _dtd_archive(tmp_path) -> bytes:
    src = tmp_path / "dtd_src"
    fake_dtd(src)  # src/dtd/dtd/...
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src / "dtd" / "dtd", arcname="dtd")
    return buf.getvalue()


def test_download_verify_extract_then_load_through_torchvision(server, tmp_path):
    served, url = server
    data = _dtd_archive(tmp_path)
    (served / "dtd-r1.0.1.tar.gz").write_bytes(data)
    root = tmp_path / "root"
    ok = real.Source("dtd", "DTD (test server)", "url", ("dtd/dtd/images", "dtd/dtd/labels"),
                     (RemoteFile(f"{url}/dtd-r1.0.1.tar.gz", "dtd-r1.0.1.tar.gz", md5=_md5(data), extract_to="dtd"),))
    wrong = real.Source("dtd", "DTD", "url", ok.ready, (RemoteFile(ok.files[0].url, ok.files[0].filename, md5="f" * 32, extract_to="dtd"),))
    with pytest.raises(ChecksumError):
        real.ensure_source(wrong, root)
    assert not (root / "dtd").exists() and not list((root / "downloads").iterdir())
    (served / "trunc.tar.gz").write_bytes(data[: len(data) // 3])
    trunc = real.Source("dtd", "DTD", "url", ok.ready, (RemoteFile(f"{url}/trunc.tar.gz", "trunc.tar.gz", extract_to="dtd"),))
    with pytest.raises(ArchiveError):
        real.ensure_source(trunc, root)
    assert not (root / "dtd").exists() and not (root / "downloads" / "trunc.tar.gz").exists()
    rec = real.ensure_source(ok, root)
    assert rec["files"][0]["md5"] == _md5(data) and not (root / "downloads" / "dtd-r1.0.1.tar.gz").exists()
    ds = real.load("vtab/dtd", "test", root)
    assert len(ds) == 6 and ds.classnames == ["banded", "blotchy", "braided"]


def test_missing_manual_download_stops_with_instructions_and_writes_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ManualDownloadRequired) as e:
        real.prepare("fgvc/cars", root)
    err = e.value
    assert err.filename == "car_devkit.tgz" and "ai.stanford.edu" in err.url
    assert err.destination == str(root / "stanford_cars" / "car_devkit.tgz")
    for text in ("cars_train.tgz", "cars_test_annos_withlabels.mat", str(root / "stanford_cars"), "https://", "size"):
        assert text in str(err)
    assert list(root.iterdir()) == []
    # a torchvision dataset already in place but its CoOp split file missing: also nothing written
    fake_dtd(root)
    before = sorted(p for p in root.rglob("*"))
    with pytest.raises(ManualDownloadRequired, match="split_zhou_DescribableTextures.json") as e:
        real.prepare("coop/dtd", root)
    assert e.value.destination == str(root / "dtd" / "split_zhou_DescribableTextures.json")
    assert sorted(p for p in root.rglob("*")) == before
    # a placed .rar cannot be used: the message says how to extract it
    (root / "resisc45").mkdir()
    (root / "resisc45" / "NWPU-RESISC45.rar").write_bytes(b"Rar!")
    with pytest.raises(ManualDownloadRequired, match="unrar"):
        real.prepare("vtab/resisc45", root)


def test_placed_manual_archive_is_verified_and_extracted(tmp_path):
    src = tmp_path / "src"
    fake_nabirds(None, base=src / "nabirds")
    root = tmp_path / "root"
    (root / "nabirds").mkdir(parents=True)
    with tarfile.open(root / "nabirds" / "nabirds.tar.gz", "w:gz") as tf:
        tf.add(src / "nabirds", arcname="nabirds")
    m = real.prepare("fgvc/nabirds", root, strict=False)
    assert m["num_classes"] == 3 and m["files"][0]["how"].startswith("placed by hand")
    assert (root / "nabirds" / "nabirds.tar.gz").exists()  # the user's file is kept
    assert len(real.load("fgvc/nabirds", "test", root)) == 6


# ------------------------------------------------------------------------------------------------
# the data stage
# ------------------------------------------------------------------------------------------------


def test_paper_params_validate_and_unknown_names_are_listed():
    params = load_params(PAPER_PARAMS)
    names = paper.validate(params)
    assert set(real.VTAB_TASKS) | set(real.FGVC_TASKS) | set(real.VP_TASKS) | set(real.COOP_TASKS) | set(real.COOP_TEST_TASKS) == set(names)
    assert sorted(params["vpt"]["grid"]["lr"]) == [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50]
    assert params["vp"]["recipe"]["lr"] == 40 and params["rpo"]["methods"]["rpo"]["cfg"]["K"] == 24
    bad = {**params, "data": {**params["data"], "datasets": params["data"]["datasets"] + ["vtab/imagenet21k"]}}
    with pytest.raises(ConfigError, match=r"unknown name\(s\) \['vtab/imagenet21k'\].*vtab/cifar100"):
        paper.validate(bad)
    bad = {**params, "rpo": {**params["rpo"], "methods": {"rpo": {"cfg": {"K": 200}}}}}
    with pytest.raises(ConfigError, match="K=200"):
        paper.validate(bad)
    # another architecture (a small one for a CPU smoke run) is a warning, as in the train stages, not an error
    small = {**params, "backbones": {**params["backbones"], "vit": {**params["backbones"]["vit"], "arch": "vit_tiny_patch16_224"}}}
    with pytest.warns(UserWarning, match="vpt.backbone arch 'vit_tiny_patch16_224' is not the paper's.*not a replication"):
        assert paper.validate(small) == names
    with pytest.raises(ConfigError, match="mini"):
        paper.run_data(params, root="data/mini")


def test_data_stage_offline_stops_at_first_download_within_seconds(tmp_path, monkeypatch):
    # a proxy on a closed port makes every download fail at once, like this offline machine
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    params = load_params(PAPER_PARAMS)
    root = tmp_path / "paper-data"
    t = time.perf_counter()
    with pytest.raises(DownloadError) as e:
        paper.run_data(params, root=root)
    assert time.perf_counter() - t < 15
    msg = str(e.value)
    assert "dataset 1/51 (vtab/cifar100)" in msg and "cifar-100-python.tar.gz" in msg and "md5 eb9058c3a382ffc7106e4002c42a8d85" in msg
    assert str(root / "downloads" / "cifar-100-python.tar.gz") in msg
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_data_stage_prepares_in_order_and_writes_manifests(tmp_path):
    params = load_params(PAPER_PARAMS)
    root = tmp_path / "paper-data"
    fake_dtd(root)
    coop_splits.write_split(root / "dtd" / "split_zhou_DescribableTextures.json", coop_splits.make_split(COOP_ITEMS["dtd"](), seed=1))
    params = {**params, "data": {**params["data"], "datasets": ["fgvc/cars", "vtab/dtd", "coop/dtd"], "strict": False},
              "vpt": {**params["vpt"], "tasks": ["vtab/dtd", "fgvc/cars"]}, "vp": None, "rpo": None}
    # a manual download (the first dataset) does not block the ones after it
    with pytest.raises(ManualDownloadRequired, match=r"1 of 3 datasets need a manual download \(fgvc/cars\); the other 2 are ready"):
        paper.run_data(params, root=root)
    params["vpt"]["tasks"] = ["vtab/dtd"]
    with pytest.raises(ManualDownloadRequired, match=r"trainable now .*: vpt\."):
        paper.run_data(params, root=root)
    for name in ("vtab/dtd", "coop/dtd"):
        m = json.loads(paper.manifest_path(root, name).read_text())
        assert m["name"] == name and m["source"]["kind"] == "torchvision"
    assert not paper.manifest_path(root, "fgvc/cars").exists() and not (root / "stanford_cars").exists()
    rows = {r["name"]: r["state"] for r in paper.status(params, root)}
    assert rows == {"vtab/dtd": "ready", "coop/dtd": "ready", "fgvc/cars": "manual download needed"}


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "gz"])
def test_decompression_bomb_is_refused_before_filling_the_disk(tmp_path, kind):
    """A small archive of a large, highly compressible file stops at the expansion cap; nothing is
    left in the destination. The cap scales with the archive (50x its size, 4 GB floor; here 0)."""
    import gzip as gz

    from visprompt.data.download import ArchiveError, extract

    payload = b"\0" * (8 << 20)  # 8 MB of zeros: a few KB compressed
    archive = tmp_path / f"bomb.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros.bin", payload)
    elif kind == "gz":
        archive.write_bytes(gz.compress(payload))
    else:
        with tarfile.open(archive, "w:gz") as tf:
            info = tarfile.TarInfo("zeros.bin")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    with pytest.raises(ArchiveError, match="decompression bomb"):
        extract(archive, tmp_path / "out", min_cap_bytes=0)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert extract(archive, tmp_path / "ok", min_cap_bytes=0, max_expansion=10_000).is_dir()  # a real archive of that ratio: allowed when said so


def test_data_only_prepares_the_datasets_of_the_papers_named(tmp_path, monkeypatch):
    """`visprompt data --only rpo`: RPO's CoOp datasets first, without waiting for VTAB's downloads."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # offline: the first download fails at once and names its dataset
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    params = load_params(PAPER_PARAMS)
    rpo = paper.paper_datasets(params)["rpo"]
    with pytest.raises(DownloadError) as e:
        paper.run_data(params, root=tmp_path / "d", only=["rpo"])
    n = len(set(rpo) & set(params["data"]["datasets"]))  # the manual ones (ImageNet, ...) are skipped, listed at the end
    assert f"/{n} (coop/" in str(e.value) and "vtab/" not in str(e.value) and n < len(params["data"]["datasets"])
    with pytest.raises(ConfigError, match=r"unknown paper\(s\) \['vtp'\]; choose from vpt, vp, rpo"):
        paper.run_data(params, root=tmp_path / "d", only=["vtp"])
