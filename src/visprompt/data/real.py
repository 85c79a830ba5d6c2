"""Real datasets of the three papers (the paper profile): registry, preparation, loading.

Two tables:

* :data:`SOURCES` — the raw data on disk, one entry per downloaded dataset (CIFAR-100 is one
  source even though VTAB-1k, visual prompting and CoOp all use it): how to get it (``kind``:
  ``torchvision`` = the URL and checksum torchvision declares, fetched by :mod:`.download`;
  ``url`` = a public URL torchvision does not know; ``manual`` = a licence click-through or no
  public URL; ``tfds-export`` = only obtainable through tensorflow-datasets), where it lives
  under the data root (the folder names torchvision uses, so torchvision's classes read it),
  licence, disk space.
* :data:`REAL_DATASETS` — one :class:`RealSpec` per *task* of a paper (``vtab/dtd``,
  ``fgvc/cub``, ``vp/dtd``, ``coop/dtd``...): which source, which labels, which splits.

:func:`prepare` gets one task's data in place (checking for missing manual files **before**
writing anything), writes its split file and returns a manifest; :func:`load` returns a torch
``Dataset`` of ``(image, label)`` with ``.classnames`` and ``.labels``, reading through the
torchvision dataset classes where they exist (``CIFAR100``, ``DTD``, ``Flowers102``, ``SVHN``,
``OxfordIIITPet``, ``Food101``, ``EuroSAT``, ``SUN397``, ``FGVCAircraft``, ``StanfordCars``,
``CLEVRClassification``, ``Kitti``, ``PCAM``, ``ImageFolder``) and through small readers of the
original files otherwise (CUB, NABirds, Stanford Dogs, dSprites, smallNORB, Retinopathy, CoOp's
split files, ImageNet folders).

Splits (written by :func:`prepare` to ``<root>/paper_splits/<suite>/<task>.json``; :func:`load`
recomputes identical ones when the file is absent and refuses a file made from a different copy):

* **Canonical order**: every native partition ("part") of a source is ordered by the reader
  (sorted file paths, or the order of the official annotation file / array).
* **Permutation**: ``numpy.random.default_rng([seed, crc32(source), crc32(part)])`` permutes a
  part (seed = ``data.split_seed``, default 0). Salted by *source*, not task, so tasks reading the
  same source (Clevr/count and Clevr/distance; VTAB and VP CIFAR-100) see the same order, as the
  tfds order is shared in VTAB.
* **VTAB-1k** (ours, not tfds membership): each task defines train/val/test *pools* as fraction
  ranges of its permuted parts, mirroring VTAB's split definitions in task_adaptation's
  ``data/*.py`` (e.g. CIFAR-100 train = train[:90%], val = train[90%:], test = test); train800 = the first 800 of the train pool, val200
  = the first 200 of the val pool, trainval = both (1,000), test = the whole test pool.
  Sources without an official partition use VTAB's fractions (EuroSAT/Resisc45 60/20/20, SUN397
  70/10/20, dSprites 80/10/10, KITTI 6,347/423/711 of 7,481) and Caltech101 takes 30 images per
  class as its train part (the tfds definition), the rest as test.
* **FGVC** (VPT): val = the first ``n_val`` of the permuted official train set (counts from
  vpt.md), train = the rest, test = the official test set; Flowers uses its official val.
* **Visual prompting**: official val where one exists (Flowers, DTD); CoOp's split files for
  EuroSAT, SUN397, UCF101; otherwise val = the first 10% of the permuted official train set
  (the official code selects on test; we select on val). Resisc45: 60/20/20.
* **CoOp**: the published ``split_zhou_*.json`` files; ImageNet: train folder / val folder as
  test (and val, as CoOp does); FGVC-Aircraft: its official train/val/test files.

Label derivations (VTAB's preprocessing, checked against google-research/task_adaptation
``data/{clevr,kitti,dsprites,smallnorb}.py``): Clevr/count = number of objects − 3 (3..10 → 8 classes);
Clevr/distance = bins of the smallest object depth ``pixel_coords[2]`` at thresholds
0, 8, 8.5, 9, 9.5, 10, 100 (6 classes); KITTI/distance = bins of the smallest depth ``z``
(location[2]) of a Car/Van/Truck at −100, 8, 20, 999 m, 1,000 when there is none (4 classes);
dSprites/location = x position (0..31) // 2, dSprites/orientation = floor(orientation (0..39) / 2.5)
(16 classes each); smallNORB/azimuth = azimuth field (0, 2, .., 34) / 2 (18), smallNORB/elevation
= elevation field (0..8) (9), both from the first camera image. Label = ``max{i: thr[i] < d}``.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, make_dataset

from ..errors import ConfigError, unknown_name
from ..utils import read_json, write_json
from . import classnames as cn
from . import coop_splits
from .download import (
    ChecksumError,
    DownloadError,
    FetchLog,
    ManualDownloadRequired,
    RemoteFile,
    archive_kind,
    extract,
    fetch,
    verify,
)

SPLIT_FORMAT = 1
SOURCE_FORMAT = 1
DEFAULT_SPLIT_SEED = 0
VTAB_TRAIN, VTAB_VAL = 800, 200
VP_VAL_FRACTION = 0.1
RERUN = "cd profiles/paper && python -m visprompt data --params params.yaml"
COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"


# ================================================================================================
# Sources: raw data on disk
# ================================================================================================


@dataclass(frozen=True)
class Source:
    """One downloaded dataset. ``ready``: paths (relative to the data root) that exist once it is in place."""

    key: str
    title: str
    kind: str  # 'torchvision' | 'url' | 'manual' | 'tfds-export'
    ready: tuple
    files: tuple = ()  # RemoteFile(s): fetched (torchvision/url) or to be placed by hand (manual)
    homepage: str = ""
    license: str = ""
    disk: str = ""
    reader: str = ""  # what reads it
    reason: str = ""  # why it is manual
    note: str = ""  # extra instructions
    file_md5: tuple = ()  # ((relpath, md5), ...) of extracted files, checked on copies we did not download

    @property
    def dir(self) -> str:
        return self.ready[0].split("/")[0]

    def checksum_text(self) -> str:
        known = [f"{f.filename}: {f.checksum_text()}" for f in self.files if f.md5 or f.sha256]
        return "; ".join(known) if known else "not published (sha256 recorded at first use)"


def _tv_cifar(cls, approx):
    return RemoteFile(cls.url, cls.filename, md5=cls.tgz_md5, approx_size=approx, extract_to=".")


def _cifar_md5(cls) -> tuple:
    return tuple((f"{cls.base_folder}/{f}", m) for f, m in cls.train_list + cls.test_list) + ((f"{cls.base_folder}/{cls.meta['filename']}", cls.meta["md5"]),)


_FL = tvd.Flowers102
_KITTI = tuple(RemoteFile(tvd.Kitti.data_url + f, f, approx_size=s, extract_to="Kitti/raw") for f, s in zip(tvd.Kitti.resources, ("~12 GB", "~5 MB")))
_NORB = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_NORB_TRAIN = "smallnorb-5x46789x9x18x6x2x96x96-training"
_NORB_TEST = "smallnorb-5x01235x9x18x6x2x96x96-testing"
_DSPRITES = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def _coop_file(filename: str, dest: str, anchor: str) -> RemoteFile:
    return RemoteFile(f"{COOP_DATASETS_MD}#{anchor}", filename, approx_size="~1-10 MB (JSON)", dest=dest)


SOURCES: dict[str, Source] = {
    s.key: s
    for s in [
        Source("cifar10", "CIFAR-10", "torchvision", ("cifar-10-batches-py/batches.meta", "cifar-10-batches-py/test_batch"),
               (_tv_cifar(tvd.CIFAR10, "~163 MB"),), "https://www.cs.toronto.edu/~kriz/cifar.html", "no licence stated; cite Krizhevsky 2009", "~180 MB",
               "torchvision CIFAR10", file_md5=_cifar_md5(tvd.CIFAR10)),
        Source("cifar100", "CIFAR-100", "torchvision", ("cifar-100-python/meta", "cifar-100-python/train", "cifar-100-python/test"),
               (_tv_cifar(tvd.CIFAR100, "~161 MB"),), "https://www.cs.toronto.edu/~kriz/cifar.html", "no licence stated; cite Krizhevsky 2009", "~180 MB",
               "torchvision CIFAR100", file_md5=_cifar_md5(tvd.CIFAR100)),
        Source("svhn", "SVHN (cropped digits)", "torchvision", ("svhn/train_32x32.mat", "svhn/test_32x32.mat"),
               tuple(RemoteFile(u, f, md5=m, approx_size=s, dest="svhn") for (u, f, m), s in zip((tvd.SVHN.split_list["train"], tvd.SVHN.split_list["test"]), ("~182 MB", "~64 MB"))),
               "http://ufldl.stanford.edu/housenumbers/", "non-commercial use only", "~250 MB", "torchvision SVHN"),
        Source("flowers102", "Oxford Flowers-102", "torchvision", ("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
               (RemoteFile(_FL._download_url_prefix + _FL._file_dict["image"][0], _FL._file_dict["image"][0], md5=_FL._file_dict["image"][1], approx_size="~330 MB", extract_to="flowers-102"),
                RemoteFile(_FL._download_url_prefix + _FL._file_dict["label"][0], _FL._file_dict["label"][0], md5=_FL._file_dict["label"][1], approx_size="~1 KB", dest="flowers-102"),
                RemoteFile(_FL._download_url_prefix + _FL._file_dict["setid"][0], _FL._file_dict["setid"][0], md5=_FL._file_dict["setid"][1], approx_size="~15 KB", dest="flowers-102")),
               "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/", "research use; see homepage", "~350 MB", "torchvision Flowers102"),
        Source("dtd", "Describable Textures (DTD)", "torchvision", ("dtd/dtd/images", "dtd/dtd/labels"),
               (RemoteFile(tvd.DTD._URL, tvd.DTD._URL.rsplit("/", 1)[1], md5=tvd.DTD._MD5, approx_size="~625 MB", extract_to="dtd"),),
               "https://www.robots.ox.ac.uk/~vgg/data/dtd/", "research use; see homepage", "~650 MB", "torchvision DTD (partition 1)"),
        Source("pets", "Oxford-IIIT Pet", "torchvision", ("oxford-iiit-pet/images", "oxford-iiit-pet/annotations"),
               tuple(RemoteFile(u, u.rsplit("/", 1)[1], md5=m, approx_size=s, extract_to="oxford-iiit-pet") for (u, m), s in zip(tvd.OxfordIIITPet._RESOURCES, ("~755 MB", "~19 MB"))),
               "https://www.robots.ox.ac.uk/~vgg/data/pets/", "CC BY-SA 4.0", "~800 MB", "torchvision OxfordIIITPet"),
        Source("food101", "Food-101", "torchvision", ("food-101/images", "food-101/meta"),
               (RemoteFile(tvd.Food101._URL, "food-101.tar.gz", md5=tvd.Food101._MD5, approx_size="~5.0 GB", extract_to="."),),
               "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/", "research use; see license_agreement.txt in the archive", "~5.0 GB", "torchvision Food101"),
        Source("eurosat", "EuroSAT (RGB)", "torchvision", ("eurosat/2750",),
               # URL and md5 from torchvision 0.29 EuroSAT.download()
               (RemoteFile("https://huggingface.co/datasets/torchgeo/eurosat/resolve/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip", "EuroSAT.zip",
                           md5="c8fa014336c82ac7804f0398fcb19387", approx_size="~94 MB", extract_to="eurosat"),),
               "https://github.com/phelber/eurosat", "MIT", "~100 MB", "torchvision EuroSAT"),
        Source("sun397", "SUN397", "torchvision", ("SUN397/ClassName.txt",),
               (RemoteFile(tvd.SUN397._DATASET_URL, "SUN397.tar.gz", md5=tvd.SUN397._DATASET_MD5, approx_size="~37 GB", extract_to="."),),
               "https://vision.princeton.edu/projects/2010/SUN/", "research use; see homepage", "~38 GB", "torchvision SUN397"),
        Source("caltech101", "Caltech-101", "torchvision", ("caltech101/101_ObjectCategories",),
               # URL and md5 from torchvision 0.29 Caltech101.download(); the zip holds a tar.gz of the images
               (RemoteFile("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip", "caltech-101.zip", md5="3138e1922a9193bfa496528edbbc45d0",
                           approx_size="~137 MB", extract_to=".caltech101-outer", inner=(("caltech-101/101_ObjectCategories.tar.gz", "caltech101"),)),),
               "https://data.caltech.edu/records/mzrjq-6wc02", "CC BY 4.0", "~140 MB", "torchvision ImageFolder (all 102 folders, incl. BACKGROUND_Google)"),
        Source("fgvc_aircraft", "FGVC-Aircraft 2013b", "torchvision", ("fgvc-aircraft-2013b/data/variants.txt", "fgvc-aircraft-2013b/data/images"),
               (RemoteFile(tvd.FGVCAircraft._URL, "fgvc-aircraft-2013b.tar.gz", approx_size="~2.6 GB", extract_to="."),),
               "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/", "non-commercial research use; see homepage", "~2.8 GB", "torchvision FGVCAircraft (variant)"),
        Source("stanford_cars", "Stanford Cars", "manual",
               ("stanford_cars/devkit/cars_meta.mat", "stanford_cars/devkit/cars_train_annos.mat", "stanford_cars/cars_train", "stanford_cars/cars_test", "stanford_cars/cars_test_annos_withlabels.mat"),
               (RemoteFile("https://ai.stanford.edu/~jkrause/cars/car_dataset.html", "car_devkit.tgz", approx_size="~330 KB", dest="stanford_cars", extract_to="stanford_cars"),
                RemoteFile("https://ai.stanford.edu/~jkrause/cars/car_dataset.html", "cars_train.tgz", approx_size="~979 MB", dest="stanford_cars", extract_to="stanford_cars"),
                RemoteFile("https://ai.stanford.edu/~jkrause/cars/car_dataset.html", "cars_test.tgz", approx_size="~977 MB", dest="stanford_cars", extract_to="stanford_cars"),
                RemoteFile("https://ai.stanford.edu/~jkrause/cars/car_dataset.html", "cars_test_annos_withlabels.mat", approx_size="~185 KB", dest="stanford_cars")),
               "https://ai.stanford.edu/~jkrause/cars/car_dataset.html", "research use (ImageNet-style terms); see homepage", "~1.9 GB", "torchvision StanfordCars",
               reason="the original URL is gone (torchvision cannot download it either)",
               note="the original files are mirrored on Kaggle and Academic Torrents; any copy with these four files works"),
        Source("clevr", "CLEVR v1.0", "torchvision", ("clevr/CLEVR_v1.0/images", "clevr/CLEVR_v1.0/scenes"),
               (RemoteFile(tvd.CLEVRClassification._URL, "CLEVR_v1.0.zip", md5=tvd.CLEVRClassification._MD5, approx_size="~18 GB", extract_to="clevr"),),
               "https://cs.stanford.edu/people/jcjohns/clevr/", "CC BY 4.0", "~18 GB", "torchvision CLEVRClassification + scene JSON"),
        Source("kitti", "KITTI object (left colour images + labels)", "torchvision", ("Kitti/raw/training/image_2", "Kitti/raw/training/label_2"), _KITTI,
               "https://www.cvlibs.net/datasets/kitti/eval_object.php?obj_benchmark=3d", "CC BY-NC-SA 3.0", "~12 GB", "torchvision Kitti"),
        Source("pcam", "PatchCamelyon", "torchvision",
               tuple(f"pcam/camelyonpatch_level_2_split_{s}_{xy}.h5" for s in ("train", "valid", "test") for xy in ("x", "y")),
               tuple(RemoteFile(f"https://drive.google.com/uc?id={gid}", f + ".gz", md5=m, approx_size="see homepage", dest="pcam")
                     for split in ("train", "val", "test") for f, gid, m in tvd.PCAM._FILES[split].values()),
               "https://github.com/basveeling/pcam", "CC0", "~8 GB", "torchvision PCAM (needs h5py; download needs gdown)",
               note="torchvision downloads it from Google Drive with gdown (pip install gdown h5py); the same files are on Zenodo (record 2546921): "
                    "gunzip the six camelyonpatch_level_2_split_*.h5.gz files into <root>/pcam/"),
        Source("cub", "CUB-200-2011", "url", ("CUB_200_2011/images.txt", "CUB_200_2011/image_class_labels.txt", "CUB_200_2011/train_test_split.txt", "CUB_200_2011/classes.txt", "CUB_200_2011/images"),
               (RemoteFile("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1", "CUB_200_2011.tgz", approx_size="~1.1 GB", extract_to="."),),
               "https://www.vision.caltech.edu/datasets/cub_200_2011/", "research use; images from Flickr; see homepage", "~1.2 GB", "our reader of the CUB text files"),
        Source("nabirds", "NABirds", "manual", ("nabirds/images.txt", "nabirds/image_class_labels.txt", "nabirds/train_test_split.txt", "nabirds/classes.txt", "nabirds/images"),
               (RemoteFile("https://dl.allaboutbirds.org/nabirds", "nabirds.tar.gz", approx_size="~9 GB", dest="nabirds", extract_to="."),),
               "https://dl.allaboutbirds.org/nabirds", "non-commercial research use (Cornell Lab terms, click-through)", "~9 GB", "our reader of the NABirds text files",
               reason="the download page asks you to accept the terms of use"),
        Source("stanford_dogs", "Stanford Dogs", "url", ("stanford_dogs/Images", "stanford_dogs/train_list.mat", "stanford_dogs/test_list.mat"),
               (RemoteFile("http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar", "images.tar", approx_size="~757 MB", extract_to="stanford_dogs"),
                RemoteFile("http://vision.stanford.edu/aditya86/ImageNetDogs/lists.tar", "lists.tar", approx_size="~480 KB", extract_to="stanford_dogs")),
               "http://vision.stanford.edu/aditya86/ImageNetDogs/", "research use (ImageNet terms)", "~800 MB", "our reader of train_list.mat / test_list.mat"),
        Source("resisc45", "NWPU-RESISC45", "manual", ("resisc45/NWPU-RESISC45",),
               (RemoteFile("https://gcheng-nwpu.github.io/#Datasets", "NWPU-RESISC45.rar", approx_size="~400 MB", dest="resisc45"),),
               "https://gcheng-nwpu.github.io/#Datasets", "research use; see homepage", "~450 MB", "torchvision ImageFolder",
               reason="hosted on OneDrive/Baidu behind a web page, as a .rar archive",
               note="Python cannot read .rar: extract it (unrar x NWPU-RESISC45.rar, or 7z x) so that <root>/resisc45/NWPU-RESISC45/<class>/<class>_NNN.jpg exist"),
        Source("retinopathy", "Diabetic Retinopathy Detection (Kaggle)", "manual",
               ("diabetic_retinopathy/train", "diabetic_retinopathy/test", "diabetic_retinopathy/trainLabels.csv", "diabetic_retinopathy/retinopathy_solution.csv"),
               (RemoteFile("https://www.kaggle.com/competitions/diabetic-retinopathy-detection/data", "train.zip.001-005, test.zip.001-007, trainLabels.csv.zip", approx_size="~82 GB", dest="diabetic_retinopathy"),
                RemoteFile("https://www.kaggle.com/competitions/diabetic-retinopathy-detection/data", "retinopathy_solution.csv", approx_size="~1 MB", dest="diabetic_retinopathy")),
               "https://www.kaggle.com/competitions/diabetic-retinopathy-detection", "Kaggle competition rules (click-through)", "~88 GB", "our reader of the Kaggle CSVs",
               reason="Kaggle requires an account and accepting the competition rules",
               note="join the multi-part zips (cat train.zip.* > train.zip), unzip so that train/<id>_left.jpeg and test/<id>_left.jpeg exist beside "
                    "trainLabels.csv and retinopathy_solution.csv (columns image,level,Usage; Usage Public = val, Private = test, as tfds does). "
                    "VTAB used tfds' btgraham-300 preprocessing; we read the raw images (a stated deviation)"),
        Source("dmlab", "DMLab frames (VTAB)", "tfds-export", ("dmlab/train", "dmlab/validation", "dmlab/test"),
               (RemoteFile("https://www.tensorflow.org/datasets/catalog/dmlab", "dmlab (tensorflow-datasets)", approx_size="~3 GB", dest="dmlab"),),
               "https://www.tensorflow.org/datasets/catalog/dmlab", "see the tfds catalog entry", "~3 GB", "our reader of class folders",
               reason="only distributed through tensorflow-datasets",
               note="export with tensorflow-datasets on any machine (see docs/paper_profile.md, 'DMLab export'): "
                    "<root>/dmlab/{train,validation,test}/<label 0-5>/<index>.png"),
        Source("dsprites", "dSprites", "url", (f"dsprites/{_DSPRITES}",),
               (RemoteFile(f"https://github.com/google-deepmind/dsprites-dataset/raw/master/{_DSPRITES}", _DSPRITES, approx_size="~26 MB", dest="dsprites"),),
               "https://github.com/google-deepmind/dsprites-dataset", "Apache 2.0", "~26 MB (+3 GB uncompressed cache)", "our reader of the .npz"),
        Source("smallnorb", "smallNORB", "url", tuple(f"smallnorb/{p}-{k}.mat" for p in (_NORB_TRAIN, _NORB_TEST) for k in ("dat", "cat", "info")),
               tuple(RemoteFile(f"{_NORB}{p}-{k}.mat.gz", f"{p}-{k}.mat.gz", approx_size="~200 MB" if k == "dat" else "~1 KB", extract_to="smallnorb")
                     for p in (_NORB_TRAIN, _NORB_TEST) for k in ("dat", "cat", "info")),
               "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/", "research use; see homepage", "~900 MB", "our reader of the NORB binary matrices"),
        Source("imagenet", "ImageNet-1k (ILSVRC2012), CoOp layout", "manual", ("imagenet/images/train", "imagenet/images/val"),
               (RemoteFile("https://image-net.org/download-images.php", "ILSVRC2012_img_train.tar", md5=tvd.imagenet.ARCHIVE_META["train"][1], approx_size="~138 GB", dest="imagenet"),
                RemoteFile("https://image-net.org/download-images.php", "ILSVRC2012_img_val.tar", md5=tvd.imagenet.ARCHIVE_META["val"][1], approx_size="~6.3 GB", dest="imagenet"),
                RemoteFile("https://image-net.org/download-images.php", "ILSVRC2012_devkit_t12.tar.gz", md5=tvd.imagenet.ARCHIVE_META["devkit"][1], approx_size="~2.5 MB", dest="imagenet")),
               "https://image-net.org/", "ImageNet terms of access (non-commercial research, click-through)", "~145 GB", "torchvision ImageFolder layout + CoOp classnames.txt",
               reason="ImageNet requires an account and accepting its terms",
               note="alternatively put an extracted copy at <root>/imagenet/images/{train,val}/<wnid>/ (CoOp's layout; the archives are then not needed)"),
        Source("imagenet_v2", "ImageNet-V2 (matched frequency)", "url", ("imagenetv2/imagenetv2-matched-frequency-format-val",),
               (RemoteFile("https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz", "imagenetv2-matched-frequency.tar.gz", approx_size="~1.2 GB", extract_to="imagenetv2"),),
               "https://github.com/modestyachts/ImageNetV2", "MIT (code); images from Flickr", "~1.2 GB", "folders 0..999 = ImageNet label"),
        Source("imagenet_sketch", "ImageNet-Sketch", "manual", ("imagenet-sketch/sketch",),
               (RemoteFile("https://github.com/HaohanWang/ImageNet-Sketch", "ImageNet-Sketch.zip", approx_size="~8.4 GB", dest="imagenet-sketch", extract_to="imagenet-sketch"),),
               "https://github.com/HaohanWang/ImageNet-Sketch", "MIT", "~8.7 GB", "wnid folders",
               reason="hosted on Google Drive / Kaggle behind a web page",
               note="the zip holds a folder 'sketch/<wnid>/'; an extracted copy at <root>/imagenet-sketch/sketch/ (or CoOp's imagenet-sketch/images/) works too"),
        Source("imagenet_a", "ImageNet-A", "url", ("imagenet-adversarial/imagenet-a",),
               (RemoteFile("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar", "imagenet-a.tar", approx_size="~690 MB", extract_to="imagenet-adversarial"),),
               "https://github.com/hendrycks/natural-adv-examples", "MIT", "~700 MB", "wnid folders (200 classes)"),
        Source("imagenet_r", "ImageNet-R", "url", ("imagenet-rendition/imagenet-r",),
               (RemoteFile("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar", "imagenet-r.tar", approx_size="~2.1 GB", extract_to="imagenet-rendition"),),
               "https://github.com/hendrycks/imagenet-r", "MIT", "~2.1 GB", "wnid folders (200 classes)"),
        Source("ucf101", "UCF101 middle frames (CoOp)", "manual", ("ucf101/UCF-101-midframes",),
               (RemoteFile(f"{COOP_DATASETS_MD}#ucf101", "UCF-101-midframes.zip", approx_size="~350 MB", dest="ucf101", extract_to="ucf101"),),
               "https://www.crcv.ucf.edu/data/UCF101.php", "research use; see homepage", "~400 MB", "CoOp split file over the middle frames",
               reason="CoOp distributes the middle frames on Google Drive (link in its DATASETS.md)"),
    ]
}


# ================================================================================================
# Tasks: what each paper trains and tests on
# ================================================================================================


@dataclass(frozen=True)
class RealSpec:
    """One task of a paper.

    ``source`` is the kind of download (``torchvision``/``url``/``manual``/``tfds-export``) and
    ``raw`` the :data:`SOURCES` key; ``classes`` says where class names come from, ``label_rule``
    how labels are derived; ``pools`` define the splits (see the module docstring).
    """

    name: str
    papers: tuple
    raw: str
    protocol: str  # 'vtab1k' | 'fgvc' | 'vp' | 'coop' | 'coop-test'
    num_classes: int
    group: str = ""
    variant: str = "class"
    classes: str = "torchvision"
    label_rule: str = "the dataset's own label"
    pools: dict = field(default_factory=dict)
    coop_file: str | None = None  # split_zhou_*.json (in the source folder)
    coop_image_dir: str | None = None  # relative to the data root
    coop_parts: dict = field(default_factory=dict)  # CoOp split -> native part, when no json is used
    expected: dict = field(default_factory=dict)  # split sizes in the reference (checked, warned on mismatch)

    @property
    def suite(self) -> str:
        return self.name.split("/")[0]

    @property
    def source(self) -> str:
        return SOURCES[self.raw].kind

    @property
    def license(self) -> str:
        return SOURCES[self.raw].license

    @property
    def disk(self) -> str:
        return SOURCES[self.raw].disk

    @property
    def checksum(self) -> str:
        return SOURCES[self.raw].checksum_text()

    @property
    def extra_files(self) -> tuple:
        files = []
        if self.coop_file:
            files.append(_coop_file(self.coop_file, SOURCES[self.raw].dir, _COOP_ANCHOR.get(self.raw, "")))
        if self.raw.startswith("imagenet"):
            files.append(_coop_file("classnames.txt", "imagenet", "imagenet"))
        return tuple(files)


_COOP_ANCHOR = {"caltech101": "caltech101", "pets": "oxfordpets", "stanford_cars": "stanfordcars", "flowers102": "flowers102", "food101": "food101",
                "sun397": "sun397", "dtd": "dtd", "eurosat": "eurosat", "ucf101": "ucf101"}


def _p(part, lo=0.0, hi=1.0, **kw) -> dict:
    return {"part": part, "frac": [lo, hi], **kw}


def _std(train_part="train", val=None, test="test", frac=0.9) -> dict:
    """train/val pools as train[:frac]/train[frac:] (or an official val part), test part."""
    if val:
        return {"train": _p(train_part), "val": _p(val), "test": _p(test)}
    return {"train": _p(train_part, 0, frac), "val": _p(train_part, frac, 1), "test": _p(test)}


_ALL622 = {"train": _p("all", 0, 0.6), "val": _p("all", 0.6, 0.8), "test": _p("all", 0.8, 1)}
_KITTI_FR = (6347 / 7481, 6770 / 7481)  # tfds kitti split sizes 6,347 / 423 / 711

_VTAB = [
    # name, raw, classes, group, pools, variant, label rule
    ("cifar100", "cifar100", 100, "natural", _std(frac=0.9), "class", "CIFAR-100 fine label"),
    ("caltech101", "caltech101", 102, "natural",
     {"train": _p("all", 0, 0.9, per_class=30, take="head"), "val": _p("all", 0.9, 1, per_class=30, take="head"), "test": _p("all", per_class=30, take="tail")},
     "class", "folder name (102 incl. BACKGROUND_Google, as tfds)"),
    ("dtd", "dtd", 47, "natural", _std(val="val"), "class", "texture folder (partition 1)"),
    ("flowers102", "flowers102", 102, "natural", _std(val="val"), "class", "imagelabels.mat - 1"),
    ("pets", "pets", 37, "natural", _std(train_part="trainval", frac=0.8), "class", "breed"),
    ("svhn", "svhn", 10, "natural", _std(frac=0.9), "class", "digit (10 → 0)"),
    ("sun397", "sun397", 397, "natural", {"train": _p("all", 0, 0.7), "val": _p("all", 0.7, 0.8), "test": _p("all", 0.8, 1)}, "class", "scene category"),
    ("patch_camelyon", "pcam", 2, "specialized", _std(val="val"), "class", "metastatic tissue in the centre 32x32 (PCam y)"),
    ("eurosat", "eurosat", 10, "specialized", _ALL622, "class", "land-use folder"),
    ("resisc45", "resisc45", 45, "specialized", _ALL622, "class", "scene folder"),
    ("retinopathy", "retinopathy", 5, "specialized", _std(val="val"), "class", "Kaggle DR grade 0-4"),
    ("clevr_count", "clevr", 8, "structured", _std(frac=0.9, test="val"), "count", "number of objects - 3"),
    ("clevr_distance", "clevr", 6, "structured", _std(frac=0.9, test="val"), "distance", "bins of min object depth at 0/8/8.5/9/9.5/10/100"),
    ("dmlab", "dmlab", 6, "structured", _std(val="validation"), "class", "tfds dmlab label"),
    ("kitti_distance", "kitti", 4, "structured",
     {"train": _p("all", 0, _KITTI_FR[0]), "val": _p("all", _KITTI_FR[0], _KITTI_FR[1]), "test": _p("all", _KITTI_FR[1], 1)},
     "distance", "bins of min Car/Van/Truck depth z at -100/8/20/999 m (1000 if none)"),
    ("dsprites_location", "dsprites", 16, "structured", {"train": _p("all", 0, 0.8), "val": _p("all", 0.8, 0.9), "test": _p("all", 0.9, 1)}, "location", "x position (0..31) // 2"),
    ("dsprites_orientation", "dsprites", 16, "structured", {"train": _p("all", 0, 0.8), "val": _p("all", 0.8, 0.9), "test": _p("all", 0.9, 1)}, "orientation", "floor(orientation (0..39) / 2.5)"),
    ("smallnorb_azimuth", "smallnorb", 18, "structured", {"train": _p("train"), "val": _p("test", 0, 0.5), "test": _p("test", 0.5, 1)}, "azimuth", "azimuth field / 2 (0..17)"),
    ("smallnorb_elevation", "smallnorb", 9, "structured", {"train": _p("train"), "val": _p("test", 0, 0.5), "test": _p("test", 0.5, 1)}, "elevation", "elevation field (0..8)"),
]
VTAB_TASKS = tuple(f"vtab/{t[0]}" for t in _VTAB)

_FGVC = [
    # name, raw, classes, val count (None: official val), expected train/val/test (vpt.md, unconfirmed)
    ("cub", "cub", 200, 600, (5394, 600, 5794)),
    ("nabirds", "nabirds", 555, 2393, (21536, 2393, 24633)),
    ("flowers", "flowers102", 102, None, (1020, 1020, 6149)),
    ("dogs", "stanford_dogs", 120, 1200, (10800, 1200, 8580)),
    ("cars", "stanford_cars", 196, 815, (7329, 815, 8041)),
]
FGVC_TASKS = tuple(f"fgvc/{t[0]}" for t in _FGVC)


def _fgvc_pools(val_count):
    if val_count is None:
        return _std(val="val")
    return {"train": {"part": "train", "count": [val_count, None]}, "val": {"part": "train", "count": [0, val_count]}, "test": _p("test")}


_VP_HOLD = VP_VAL_FRACTION
_VP = [
    # name, raw, classes, pools or CoOp file, image dir
    ("cifar100", "cifar100", 100, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("test")}, None),
    ("cifar10", "cifar10", 10, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("test")}, None),
    ("flowers102", "flowers102", 102, _std(val="val"), None),
    ("food101", "food101", 101, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("test")}, None),
    ("eurosat", "eurosat", 10, "split_zhou_EuroSAT.json", "eurosat/2750"),
    ("sun397", "sun397", 397, "split_zhou_SUN397.json", "SUN397"),
    ("dtd", "dtd", 47, _std(val="val"), None),
    ("ucf101", "ucf101", 101, "split_zhou_UCF101.json", "ucf101/UCF-101-midframes"),
    ("svhn", "svhn", 10, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("test")}, None),
    ("pets", "pets", 37, {"train": _p("trainval", _VP_HOLD, 1), "val": _p("trainval", 0, _VP_HOLD), "test": _p("test")}, None),
    ("resisc45", "resisc45", 45, _ALL622, None),
    ("clevr_count", "clevr", 8, {"train": _p("train", _VP_HOLD, 1), "val": _p("train", 0, _VP_HOLD), "test": _p("val")}, None),
]
VP_TASKS = tuple(f"vp/{t[0]}" for t in _VP)

_COOP = [
    # name, raw, classes, split file, image dir (relative to root), parts when no file
    ("imagenet", "imagenet", 1000, None, None, {"train": "train", "val": "val", "test": "val"}),
    ("caltech101", "caltech101", 100, "split_zhou_Caltech101.json", "caltech101/101_ObjectCategories", {}),
    ("oxford_pets", "pets", 37, "split_zhou_OxfordPets.json", "oxford-iiit-pet/images", {}),
    ("stanford_cars", "stanford_cars", 196, "split_zhou_StanfordCars.json", "stanford_cars", {}),
    ("oxford_flowers", "flowers102", 102, "split_zhou_OxfordFlowers.json", "flowers-102/jpg", {}),
    ("food101", "food101", 101, "split_zhou_Food101.json", "food-101/images", {}),
    ("fgvc_aircraft", "fgvc_aircraft", 100, None, None, {"train": "train", "val": "val", "test": "test"}),
    ("sun397", "sun397", 397, "split_zhou_SUN397.json", "SUN397", {}),
    ("dtd", "dtd", 47, "split_zhou_DescribableTextures.json", "dtd/dtd/images", {}),
    ("eurosat", "eurosat", 10, "split_zhou_EuroSAT.json", "eurosat/2750", {}),
    ("ucf101", "ucf101", 101, "split_zhou_UCF101.json", "ucf101/UCF-101-midframes", {}),
]
_COOP_TEST = [("imagenet_v2", "imagenet_v2", 1000), ("imagenet_sketch", "imagenet_sketch", 1000), ("imagenet_a", "imagenet_a", 200), ("imagenet_r", "imagenet_r", 200)]
COOP_TASKS = tuple(f"coop/{t[0]}" for t in _COOP)
COOP_TEST_TASKS = tuple(f"coop/{t[0]}" for t in _COOP_TEST)


def _build_registry() -> dict[str, RealSpec]:
    reg = {}
    for name, raw, n, group, pools, variant, rule in _VTAB:
        reg[f"vtab/{name}"] = RealSpec(f"vtab/{name}", ("vpt",), raw, "vtab1k", n, group, variant, _classes_text(raw, variant), rule, pools)
    for name, raw, n, val_count, (tr, va, te) in _FGVC:
        reg[f"fgvc/{name}"] = RealSpec(f"fgvc/{name}", ("vpt",), raw, "fgvc", n, "fgvc", "class", _classes_text(raw, "class"), "the dataset's own label",
                                       _fgvc_pools(val_count), expected={"train": tr, "val": va, "test": te})
    for name, raw, n, pools, image_dir in _VP:
        variant = "count" if raw == "clevr" else "class"
        if isinstance(pools, str):
            reg[f"vp/{name}"] = RealSpec(f"vp/{name}", ("visual_prompting",), raw, "coop", n, "vp", variant, "CoOp split file", "CoOp split file", coop_file=pools, coop_image_dir=image_dir)
        else:
            reg[f"vp/{name}"] = RealSpec(f"vp/{name}", ("visual_prompting",), raw, "vp", n, "vp", variant, _classes_text(raw, variant),
                                         "number of objects - 3" if variant == "count" else "the dataset's own label", pools)
    for name, raw, n, split_file, image_dir, parts in _COOP:
        reg[f"coop/{name}"] = RealSpec(f"coop/{name}", ("rpo",), raw, "coop", n, "base-to-new", "class",
                                       "CoOp split file" if split_file else _classes_text(raw, "class"), "CoOp split file" if split_file else "the dataset's own label",
                                       coop_file=split_file, coop_image_dir=image_dir, coop_parts=parts)
    for name, raw, n in _COOP_TEST:
        reg[f"coop/{name}"] = RealSpec(f"coop/{name}", ("rpo",), raw, "coop-test", n, "domain-generalisation", "class", "ImageNet classnames.txt (CoOp)",
                                       "ImageNet label of the wnid folder", coop_parts={"test": "test"})
    return reg


def _classes_text(raw: str, variant: str) -> str:
    return {
        ("cub", "class"): "classes.txt in the archive",
        ("nabirds", "class"): "classes.txt in the archive (555 leaf classes used by images)",
        ("stanford_dogs", "class"): "Images/ folder names",
        ("svhn", "class"): "digits '0'-'9' (classnames.SVHN_NAMES)",
        ("retinopathy", "class"): "Kaggle grades (classnames.RETINOPATHY_NAMES)",
        ("dmlab", "class"): "neutral names (classnames.DMLAB_NAMES)",
        ("pcam", "class"): "classnames.PCAM_NAMES",
        ("resisc45", "class"): "folder names",
        ("caltech101", "class"): "folder names",
        ("clevr", "count"): "classnames.CLEVR_COUNT_NAMES",
        ("clevr", "distance"): "classnames.CLEVR_DISTANCE_NAMES",
        ("kitti", "distance"): "classnames.KITTI_DISTANCE_NAMES",
        ("dsprites", "location"): "classnames.DSPRITES_LOCATION_NAMES",
        ("dsprites", "orientation"): "classnames.DSPRITES_ORIENTATION_NAMES",
        ("smallnorb", "azimuth"): "classnames.SMALLNORB_AZIMUTH_NAMES",
        ("smallnorb", "elevation"): "classnames.SMALLNORB_ELEVATION_NAMES",
        ("imagenet", "class"): "CoOp classnames.txt",
    }.get((raw, variant), "torchvision")


REAL_DATASETS: dict[str, RealSpec] = _build_registry()
PCAM_NAMES = ["no metastatic tissue", "metastatic tissue"]


def get_spec(name: str) -> RealSpec:
    if name not in REAL_DATASETS:
        raise unknown_name("paper dataset", name, REAL_DATASETS)
    return REAL_DATASETS[name]


# ================================================================================================
# Pools: one native partition of a source, labels known without decoding images
# ================================================================================================


class _TvGetter:
    """Image ``i`` of a torchvision dataset (optionally through an index order)."""

    def __init__(self, ds, order=None):
        self.ds, self.order = ds, order

    def __call__(self, i):
        return self.ds[int(self.order[i]) if self.order is not None else int(i)][0]


class _FileGetter:
    def __init__(self, paths):
        self.paths = [str(p) for p in paths]

    def __call__(self, i):
        return default_loader(self.paths[i])


class _ArrayGetter:
    """Image ``i`` of a (lazily opened) uint8 array source: grayscale/binary → RGB."""

    def __init__(self, opener, index, scale=1):
        self.opener, self.index, self.scale = opener, np.asarray(index), scale
        self._arr = None

    def __call__(self, i):
        if self._arr is None:
            self._arr = self.opener()
        a = np.asarray(self._arr[int(self.index[i])])
        if self.scale != 1:
            a = (a * self.scale).astype(np.uint8)
        return Image.fromarray(a).convert("RGB")

    def __getstate__(self):
        return {**self.__dict__, "_arr": None}


class Pool:
    """All examples of one native part: ``labels`` (int64), ``classnames``, ``image(i)``, ``ids``."""

    def __init__(self, labels, classnames, getter, ids=None):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classnames = list(classnames)
        self.getter = getter
        self.ids = ids
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classnames)):
            raise ConfigError(f"labels outside 0..{len(self.classnames) - 1} (found {self.labels.min()}..{self.labels.max()})")

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i):
        return self.getter(i)


# --- torchvision subclasses that skip torchvision's per-load md5 re-hash -----------------------
# torchvision re-hashes every batch/annotation file on each construction; we verify the same files
# (the archive md5 torchvision declares, or the per-file md5 for copies we did not download) once in
# prepare(). Defined at module level so DataLoader workers can pickle them.


class _CIFAR10(tvd.CIFAR10):
    train_list = [[f, None] for f, _ in tvd.CIFAR10.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100(tvd.CIFAR100):
    train_list = [[f, None] for f, _ in tvd.CIFAR100.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _SVHN(tvd.SVHN):
    split_list = {k: [u, f, None] for k, (u, f, _) in tvd.SVHN.split_list.items()}


class _Flowers102(tvd.Flowers102):
    _file_dict = {k: (f, None) for k, (f, _) in tvd.Flowers102._file_dict.items()}


def _sorted_order(paths) -> np.ndarray:
    return np.asarray(sorted(range(len(paths)), key=lambda i: str(paths[i])), dtype=np.int64)


def _folder_items(directory: Path, class_names=None, int_classes: bool = False):
    """``(paths, labels, classes)`` of a class-folder tree (sorted), via torchvision's ``make_dataset``."""
    if not directory.is_dir():
        raise ConfigError(f"{directory} not found")
    folders = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    if int_classes:
        folders = sorted((f for f in folders if f.isdigit()), key=int)
        class_to_idx = {f: int(f) for f in folders}
    else:
        class_to_idx = {f: i for i, f in enumerate(class_names if class_names is not None else folders)}
        class_to_idx = {f: i for f, i in class_to_idx.items() if f in set(folders)}
    samples = make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    return [p for p, _ in samples], [l for _, l in samples], folders


def _bins(values, thresholds) -> np.ndarray:
    """VTAB binning: label = max{i : thr[i] < v}."""
    return np.clip(np.searchsorted(np.asarray(thresholds), np.asarray(values, dtype=np.float64), side="left") - 1, 0, len(thresholds) - 1)


def _pool_cifar(cls):
    def build(root, part, variant):
        ds = cls(str(root), train=(part == "train"))
        return Pool(ds.targets, ds.classes, _TvGetter(ds))

    return build


def _pool_svhn(root, part, variant):
    ds = _SVHN(str(root / "svhn"), split=part)
    return Pool(ds.labels, cn.SVHN_NAMES, _TvGetter(ds))


def _pool_flowers(root, part, variant):
    ds = _Flowers102(str(root), split=part)
    return Pool(ds._labels, list(tvd.Flowers102.classes), _TvGetter(ds))


def _pool_dtd(root, part, variant):
    ds = tvd.DTD(str(root), split=part, partition=1)
    return Pool(ds._labels, ds.classes, _TvGetter(ds))


def _pool_pets(root, part, variant):
    ds = tvd.OxfordIIITPet(str(root), split=part)
    return Pool(ds._labels, ds.classes, _TvGetter(ds))


def _pool_food(root, part, variant):
    ds = tvd.Food101(str(root), split=part)
    return Pool(ds._labels, ds.classes, _TvGetter(ds))


def _pool_eurosat(root, part, variant):
    ds = tvd.EuroSAT(str(root))
    return Pool(ds.targets, ds.classes, _TvGetter(ds))


def _pool_sun397(root, part, variant):
    ds = tvd.SUN397(str(root))
    order = _sorted_order(ds._image_files)  # rglob order depends on the file system
    return Pool([ds._labels[i] for i in order], ds.classes, _TvGetter(ds, order))


def _pool_caltech(root, part, variant):
    ds = tvd.ImageFolder(str(root / "caltech101" / "101_ObjectCategories"))
    return Pool(ds.targets, ds.classes, _TvGetter(ds))


def _pool_aircraft(root, part, variant):
    ds = tvd.FGVCAircraft(str(root), split=part, annotation_level="variant")
    return Pool(ds._labels, ds.classes, _TvGetter(ds))


def _pool_cars(root, part, variant):
    ds = tvd.StanfordCars(str(root), split=part)
    return Pool([t for _, t in ds._samples], ds.classes, _TvGetter(ds))


def _pool_resisc(root, part, variant):
    ds = tvd.ImageFolder(str(root / "resisc45" / "NWPU-RESISC45"))
    return Pool(ds.targets, [cn.readable(c) for c in ds.classes], _TvGetter(ds))


def _pool_pcam(root, part, variant):
    try:
        import h5py
    except ImportError as e:
        raise ConfigError("Patch Camelyon is stored as HDF5: pip install h5py (torchvision's PCAM reader needs it)") from e
    ds = tvd.PCAM(str(root), split=part)
    yfile = tvd.PCAM._FILES[part]["targets"][0]
    with h5py.File(root / "pcam" / yfile, "r") as f:
        labels = np.asarray(f["y"][:]).reshape(-1).astype(np.int64)
    return Pool(labels, PCAM_NAMES, _TvGetter(ds))


def _pool_clevr(root, part, variant):
    ds = tvd.CLEVRClassification(str(root), split=part)
    if variant == "count":
        counts = np.asarray(ds._labels, dtype=np.int64)
        if len(counts) and (counts.min() < 3 or counts.max() > 10):
            raise ConfigError(f"CLEVR {part}: object counts {counts.min()}..{counts.max()} outside 3..10")
        return Pool(counts - 3, cn.CLEVR_COUNT_NAMES, _TvGetter(ds))
    scenes = read_json(root / "clevr" / "CLEVR_v1.0" / "scenes" / f"CLEVR_{part}_scenes.json")["scenes"]
    depth = {s["image_filename"]: min(o["pixel_coords"][2] for o in s["objects"]) for s in scenes}
    labels = _bins([depth[p.name] for p in ds._image_files], cn.CLEVR_DISTANCE_THRESHOLDS)
    return Pool(labels, cn.CLEVR_DISTANCE_NAMES, _TvGetter(ds))


KITTI_VEHICLES = ("Car", "Van", "Truck")


def kitti_closest_vehicle_depth(label_file) -> float:
    """Smallest depth ``z`` (field 14 of a KITTI label line) over Car/Van/Truck objects; 1000 if none."""
    z = [1000.0]
    with open(label_file) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 15 and parts[0] in KITTI_VEHICLES:
                z.append(float(parts[13]))
    return min(z)


def _pool_kitti(root, part, variant):
    ds = tvd.Kitti(str(root), train=True)
    order = _sorted_order(ds.images)  # os.listdir order
    labels = _bins([kitti_closest_vehicle_depth(ds.targets[i]) for i in order], cn.KITTI_DISTANCE_THRESHOLDS)
    return Pool(labels, cn.KITTI_DISTANCE_NAMES, _TvGetter(ds, order))


def _pool_cub(root, part, variant):
    base = root / "CUB_200_2011"
    images = dict(_rows(base / "images.txt"))
    labels = dict(_rows(base / "image_class_labels.txt"))
    is_train = dict(_rows(base / "train_test_split.txt"))
    want = "1" if part == "train" else "0"
    ids = sorted((i for i in images if is_train[i] == want), key=int)
    return Pool([int(labels[i]) - 1 for i in ids], cn.cub_classes(base / "classes.txt"), _FileGetter([base / "images" / images[i] for i in ids]), ids=[images[i] for i in ids])


def _pool_nabirds(root, part, variant):
    base = root / "nabirds"
    images = dict(_rows(base / "images.txt"))
    cls = dict(_rows(base / "image_class_labels.txt"))
    is_train = dict(_rows(base / "train_test_split.txt"))
    names = cn.nabirds_classes(base / "classes.txt")
    used = sorted({int(c) for c in cls.values()})  # the leaf classes images use (555 in the full set)
    index = {c: i for i, c in enumerate(used)}
    want = "1" if part == "train" else "0"
    ids = sorted((i for i in images if is_train[i] == want), key=lambda i: images[i])
    return Pool([index[int(cls[i])] for i in ids], [names.get(c, str(c)) for c in used], _FileGetter([base / "images" / images[i] for i in ids]), ids=[images[i] for i in ids])


def _pool_dogs(root, part, variant):
    from scipy.io import loadmat

    base = root / "stanford_dogs"
    mat = loadmat(str(base / f"{part}_list.mat"), squeeze_me=True)
    files = [str(f) for f in np.atleast_1d(mat["file_list"])]
    labels = np.atleast_1d(mat["labels"]).astype(np.int64) - 1
    folders = sorted(e.name for e in os.scandir(base / "Images") if e.is_dir())
    names = [cn.stanford_dogs_name(f) for f in folders]
    for f, l in zip(files, labels):  # the .mat labels follow the sorted folder order
        if f.split("/")[0] != folders[l]:
            raise ConfigError(f"Stanford Dogs: {f} has label {l + 1} but folder {folders[l]!r} has that index; is Images/ complete?")
    return Pool(labels, names, _FileGetter([base / "Images" / f for f in files]), ids=files)


def _pool_retinopathy(root, part, variant):
    base = root / "diabetic_retinopathy"
    if part == "train":
        rows = _csv(base / "trainLabels.csv")
        folder = "train"
    else:
        usage = {"val": "Public", "test": "Private"}[part]
        rows = [r for r in _csv(base / "retinopathy_solution.csv") if r.get("Usage") == usage]
        folder = "test"
    rows.sort(key=lambda r: r["image"])
    paths = [_find_image(base / folder, r["image"]) for r in rows]
    return Pool([int(r["level"]) for r in rows], cn.RETINOPATHY_NAMES, _FileGetter(paths), ids=[r["image"] for r in rows])


def _pool_dmlab(root, part, variant):
    paths, labels, _ = _folder_items(root / "dmlab" / part, int_classes=True)
    return Pool(labels, cn.DMLAB_NAMES, _FileGetter(paths))


_DSPRITES_CACHE: dict = {}


def _dsprites_images(path: Path):
    cache = path.with_name("imgs.npy")
    if cache.is_file():
        return np.load(cache, mmap_mode="r")
    key = str(path)
    if key not in _DSPRITES_CACHE:
        with np.load(path) as f:
            _DSPRITES_CACHE[key] = f["imgs"]
    return _DSPRITES_CACHE[key]


class _DspritesOpener:
    def __init__(self, path):
        self.path = Path(path)

    def __call__(self):
        return _dsprites_images(self.path)


def _pool_dsprites(root, part, variant):
    path = root / "dsprites" / _DSPRITES
    with np.load(path) as f:
        latents = np.asarray(f["latents_classes"])  # (N, 6): colour, shape, scale, orientation(40), posX(32), posY(32)
    if variant == "location":
        labels, names = latents[:, 4] // 2, cn.DSPRITES_LOCATION_NAMES
    elif variant == "orientation":
        labels, names = np.floor(latents[:, 3] / 2.5).astype(np.int64), cn.DSPRITES_ORIENTATION_NAMES
    else:
        raise ConfigError(f"dSprites label {variant!r}: use 'location' or 'orientation'")
    return Pool(labels, names, _ArrayGetter(_DspritesOpener(path), np.arange(len(labels)), scale=255))


NORB_MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C56: np.int16, 0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64}


def read_norb(path, mmap: bool = True) -> np.ndarray:
    """Read a NORB binary matrix (``*.mat`` of the smallNORB distribution; little-endian int32 header:
    magic, ndim, then max(3, ndim) dims)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = np.frombuffer(f.read(8), dtype="<i4")
        if len(head) < 2:
            raise ConfigError(f"{path}: truncated NORB header")
        magic, ndim = int(head[0]) & 0xFFFFFFFF, int(head[1])
        if magic not in NORB_MAGIC or not 1 <= ndim <= 8:
            raise ConfigError(f"{path}: not a NORB matrix file (magic {magic:#x}, ndim {ndim})")
        dims = np.frombuffer(f.read(4 * max(3, ndim)), dtype="<i4")[:ndim]
    offset = 8 + 4 * max(3, ndim)
    dtype = np.dtype(NORB_MAGIC[magic]).newbyteorder("<")
    shape = tuple(int(d) for d in dims)
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise ConfigError(f"{path}: truncated ({path.stat().st_size:,} bytes, expected {expected:,})")
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return np.fromfile(path, dtype=dtype, offset=offset, count=int(np.prod(shape))).reshape(shape)


class _NorbOpener:
    def __init__(self, path):
        self.path = str(path)

    def __call__(self):
        return read_norb(self.path)[:, 0]  # first camera of each stereo pair


def _pool_smallnorb(root, part, variant):
    prefix = root / "smallnorb" / (_NORB_TRAIN if part == "train" else _NORB_TEST)
    info = np.asarray(read_norb(f"{prefix}-info.mat", mmap=False))  # instance, elevation (0..8), azimuth (0,2,..,34), lighting
    if variant == "azimuth":
        labels, names = info[:, 2] // 2, cn.SMALLNORB_AZIMUTH_NAMES
    elif variant == "elevation":
        labels, names = info[:, 1], cn.SMALLNORB_ELEVATION_NAMES
    else:
        raise ConfigError(f"smallNORB label {variant!r}: use 'azimuth' or 'elevation'")
    return Pool(labels, names, _ArrayGetter(_NorbOpener(f"{prefix}-dat.mat"), np.arange(len(labels))))


def _imagenet_names(root) -> dict:
    return cn.imagenet_classnames(root / "imagenet" / "classnames.txt")


def _pool_imagenet(root, part, variant):
    names = _imagenet_names(root)
    wnids = sorted(names)
    paths, labels, _ = _folder_items(root / "imagenet" / "images" / part, class_names=wnids)
    return Pool(labels, [names[w] for w in wnids], _FileGetter(paths))


def _pool_imagenet_v2(root, part, variant):
    names = _imagenet_names(root)
    wnids = sorted(names)
    paths, labels, _ = _folder_items(root / "imagenetv2" / "imagenetv2-matched-frequency-format-val", int_classes=True)
    return Pool(labels, [names[w] for w in wnids], _FileGetter(paths))


def _wnid_subset_pool(directory: Path, names: dict, subset: bool):
    folders = sorted(e.name for e in os.scandir(directory) if e.is_dir() and e.name in names)
    wnids = folders if subset else sorted(names)
    paths, labels, _ = _folder_items(directory, class_names=wnids)
    return Pool(labels, [names[w] for w in wnids], _FileGetter(paths))


def _pool_imagenet_sketch(root, part, variant):
    base = root / "imagenet-sketch"
    directory = base / "sketch" if (base / "sketch").is_dir() else base / "images"
    return _wnid_subset_pool(directory, _imagenet_names(root), subset=False)


def _pool_imagenet_a(root, part, variant):
    return _wnid_subset_pool(root / "imagenet-adversarial" / "imagenet-a", _imagenet_names(root), subset=True)


def _pool_imagenet_r(root, part, variant):
    return _wnid_subset_pool(root / "imagenet-rendition" / "imagenet-r", _imagenet_names(root), subset=True)


def _pool_ucf101(root, part, variant):
    paths, labels, folders = _folder_items(root / "ucf101" / "UCF-101-midframes")
    return Pool(labels, [cn.readable(f) for f in folders], _FileGetter(paths))


_POOLS = {
    "cifar10": (_pool_cifar(_CIFAR10), ("train", "test")),
    "cifar100": (_pool_cifar(_CIFAR100), ("train", "test")),
    "svhn": (_pool_svhn, ("train", "test")),
    "flowers102": (_pool_flowers, ("train", "val", "test")),
    "dtd": (_pool_dtd, ("train", "val", "test")),
    "pets": (_pool_pets, ("trainval", "test")),
    "food101": (_pool_food, ("train", "test")),
    "eurosat": (_pool_eurosat, ("all",)),
    "sun397": (_pool_sun397, ("all",)),
    "caltech101": (_pool_caltech, ("all",)),
    "fgvc_aircraft": (_pool_aircraft, ("train", "val", "test")),
    "stanford_cars": (_pool_cars, ("train", "test")),
    "resisc45": (_pool_resisc, ("all",)),
    "pcam": (_pool_pcam, ("train", "val", "test")),
    "clevr": (_pool_clevr, ("train", "val")),
    "kitti": (_pool_kitti, ("all",)),
    "cub": (_pool_cub, ("train", "test")),
    "nabirds": (_pool_nabirds, ("train", "test")),
    "stanford_dogs": (_pool_dogs, ("train", "test")),
    "retinopathy": (_pool_retinopathy, ("train", "val", "test")),
    "dmlab": (_pool_dmlab, ("train", "validation", "test")),
    "dsprites": (_pool_dsprites, ("all",)),
    "smallnorb": (_pool_smallnorb, ("train", "test")),
    "imagenet": (_pool_imagenet, ("train", "val")),
    "imagenet_v2": (_pool_imagenet_v2, ("test",)),
    "imagenet_sketch": (_pool_imagenet_sketch, ("test",)),
    "imagenet_a": (_pool_imagenet_a, ("test",)),
    "imagenet_r": (_pool_imagenet_r, ("test",)),
    "ucf101": (_pool_ucf101, ("all",)),
}


def open_pool(raw: str, root, part: str, variant: str = "class") -> Pool:
    """One native part of a source, read through its torchvision class or our reader."""
    root = Path(root)
    src = SOURCES[raw]
    build, parts = _POOLS[raw]
    if part not in parts:
        raise ConfigError(f"{src.title} has parts {list(parts)}, not {part!r}")
    missing = [p for p in src.ready if not (root / p).exists()]
    if missing:
        raise ConfigError(f"{src.title} is not under {root} (missing {', '.join(missing)}); run the data stage first: {RERUN}")
    try:
        return build(root, part, variant)
    except ConfigError:
        raise
    except (RuntimeError, OSError, KeyError, ValueError, IndexError) as e:
        raise ConfigError(f"{src.title} under {root} could not be read ({type(e).__name__}: {e}); is the copy complete? Delete {root / src.dir} and run the data stage again") from e


def _rows(path) -> list[tuple[str, str]]:
    if not Path(path).is_file():
        raise ConfigError(f"{path} not found")
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            a, _, b = line.partition(" ")
            out.append((a, b.strip()))
    return out


def _csv(path) -> list[dict]:
    if not Path(path).is_file():
        raise ConfigError(f"{path} not found")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _find_image(folder: Path, stem: str) -> Path:
    for ext in (".jpeg", ".jpg", ".png"):
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return folder / f"{stem}.jpeg"


# ================================================================================================
# Datasets handed to training
# ================================================================================================


class RealDataset(Dataset):
    """``(image, label)`` items drawn from one or more pools; ``.classnames``, ``.labels``, ``.targets``.

    Images are PIL RGB unless ``transform`` is given (then whatever it returns, e.g. a tensor).
    """

    def __init__(self, segments, classnames, transform=None, name: str = "", split: str = "", labels=None):
        self._pools = [p for p, _ in segments]
        idx = [np.asarray(i, dtype=np.int64) for _, i in segments]
        self._seg = np.concatenate([np.full(len(i), k, dtype=np.int64) for k, i in enumerate(idx)]) if idx else np.zeros(0, np.int64)
        self._idx = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        base = np.concatenate([p.labels[i] for p, i in zip(self._pools, idx)]) if idx else np.zeros(0, np.int64)
        self.labels = np.asarray(base if labels is None else labels, dtype=np.int64)
        self.classnames = list(classnames)
        self.transform = transform
        self.name, self.split = name, split

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self._idx)

    def __getitem__(self, i):
        img = self._pools[self._seg[i]].image(self._idx[i])
        if isinstance(img, Image.Image) and img.mode != "RGB":
            img = img.convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])

    def subset(self, indices, labels=None, classnames=None) -> "RealDataset":
        """A view on ``indices`` (optionally relabelled, e.g. for few-shot samples or base/new halves)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = RealDataset([], classnames if classnames is not None else self.classnames, self.transform, self.name, self.split)
        out._pools, out._seg, out._idx = self._pools, self._seg[indices], self._idx[indices]
        out.labels = self.labels[indices] if labels is None else np.asarray(labels, dtype=np.int64)
        return out


# ================================================================================================
# Splits
# ================================================================================================


def _perm(n: int, seed: int, raw: str, salt: str) -> np.ndarray:
    return np.random.default_rng([int(seed), zlib.crc32(raw.encode()), zlib.crc32(salt.encode())]).permutation(n)


def _select(sel: dict, pool: Pool, seed: int, raw: str) -> np.ndarray:
    """Indices of one pool selection, in selection order (see the module docstring)."""
    part, n = sel["part"], len(pool)
    if "per_class" in sel:
        k, take = int(sel["per_class"]), sel.get("take", "head")
        chosen = []
        for c in range(len(pool.classnames)):
            items = np.flatnonzero(pool.labels == c)
            items = items[_perm(len(items), seed, raw, f"{part}/class{c}")]
            chosen.append(items[:k] if take == "head" else items[k:])
        base = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
        order = base[_perm(len(base), seed, raw, f"{part}/per_class{k}/{take}")]
    else:
        order = _perm(n, seed, raw, part)
    m = len(order)
    if "count" in sel:
        a, b = sel["count"]
        cap = m // 2  # a small (test) copy keeps both sides non-empty; prepare() warns about sizes
        a = min(a, cap)
        b = m if b is None else min(b, cap)
        return order[a:b]
    lo, hi = sel.get("frac", [0, 1])
    return order[int(round(lo * m)) : int(round(hi * m))]


def compute_splits(name: str, root, seed: int = DEFAULT_SPLIT_SEED) -> dict:
    """The split record of a VTAB/FGVC/VP task (what :func:`prepare` writes)."""
    spec = get_spec(name)
    if spec.protocol not in ("vtab1k", "fgvc", "vp"):
        raise ConfigError(f"{name} uses {'CoOp split files' if spec.protocol == 'coop' else 'a test-only set'}; no split record to compute")
    parts = sorted({sel["part"] for sel in spec.pools.values()})
    pools = {p: open_pool(spec.raw, root, p, spec.variant) for p in parts}
    sel = {k: _select(v, pools[v["part"]], seed, spec.raw) for k, v in spec.pools.items()}
    if spec.protocol == "vtab1k":
        sel["train"], sel["val"] = sel["train"][:VTAB_TRAIN], sel["val"][:VTAB_VAL]
    splits = {k: {spec.pools[k]["part"]: sorted(int(i) for i in v)} for k, v in sel.items()}
    trainval: dict = {}
    for k in ("train", "val"):
        for part, idx in splits[k].items():
            trainval.setdefault(part, []).extend(idx)
    splits["trainval"] = {p: sorted(v) for p, v in trainval.items()}
    return {
        "format": SPLIT_FORMAT,
        "task": name,
        "seed": int(seed),
        "classnames": pools[parts[0]].classnames,
        "rule": split_rule(name),
        "parts": {p: len(pools[p]) for p in parts},
        "sizes": {k: sum(len(v) for v in s.values()) for k, s in splits.items()},
        "splits": splits,
    }


def split_rule(name: str) -> str:
    """One sentence: how this task's splits are made."""
    spec = get_spec(name)
    if spec.protocol == "coop":
        return f"CoOp's published split file {spec.coop_file}" if spec.coop_file else f"official parts {spec.coop_parts} (as CoOp reads them)"
    if spec.protocol == "coop-test":
        return "the whole set is the test split"
    desc = []
    for k, v in spec.pools.items():
        s = v["part"]
        if "per_class" in v:
            s += f"[{v.get('take', 'head')} {v['per_class']}/class]"
        if "count" in v:
            a, b = v["count"]
            s += f"[{a}:{'' if b is None else b}]"
        elif v.get("frac", [0, 1]) != [0, 1]:
            s += f"[{v['frac'][0]:.3g}:{v['frac'][1]:.3g}]"
        desc.append(f"{k} = {s}")
    extra = f"; train800 = first {VTAB_TRAIN} of train, val200 = first {VTAB_VAL} of val, trainval = both" if spec.protocol == "vtab1k" else ""
    return "seeded permutation per (source, part), numpy default_rng([seed, crc32(source), crc32(part)]); " + ", ".join(desc) + extra + " (ours, not tfds membership)" * (spec.protocol == "vtab1k")


def split_path(root, name: str) -> Path:
    """``<root>/paper_splits/<suite>/<task>.json`` (not ``splits/``: the mini pipeline's DVC output is ``data/splits``)."""
    return Path(root) / "paper_splits" / f"{name}.json"


# ================================================================================================
# Loading
# ================================================================================================


def _coop_dataset(spec: RealSpec, root: Path, split: str, transform) -> RealDataset:
    if spec.coop_file:
        path = root / SOURCES[spec.raw].dir / spec.coop_file
        if not path.is_file():
            f = spec.extra_files[0]
            raise ManualDownloadRequired(spec.name, [f], root, reason="CoOp's split file is needed", rerun=RERUN)
        data = coop_splits.read_split(path)
        names = coop_splits.classnames_of(data)
        image_dir = root / spec.coop_image_dir
        wanted = ("train", "val") if split == "trainval" else (split,)
        segments = []
        for s in wanted:
            items = data[s]
            pool = Pool([l for _, l, _ in items], names, _FileGetter([image_dir / r for r, _, _ in items]), ids=[r for r, _, _ in items])
            segments.append((pool, np.arange(len(items))))
        return RealDataset(segments, names, transform, spec.name, split)
    parts = dict(spec.coop_parts)
    if split == "trainval" and "train" in parts:
        wanted = [parts["train"], parts["val"]] if parts["val"] != parts["test"] else [parts["train"]]
    elif split in parts:
        wanted = [parts[split]]
    else:
        raise ConfigError(f"{spec.name} has splits {sorted(parts) + (['trainval'] if 'train' in parts else [])}, not {split!r}")
    pools = [open_pool(spec.raw, root, p, spec.variant) for p in wanted]
    return RealDataset([(p, np.arange(len(p))) for p in pools], pools[0].classnames, transform, spec.name, split)


def load_splits(name: str, root, seed: int = DEFAULT_SPLIT_SEED) -> dict:
    """The task's split record: the file written by :func:`prepare` (same seed and format), else the
    identical one recomputed from the same deterministic rule."""
    path = split_path(root, name)
    if path.is_file():
        rec = read_json(path)
        if rec.get("format") == SPLIT_FORMAT and rec.get("seed") == int(seed):
            return rec
    return compute_splits(name, root, seed)


def load(name: str, split: str, root, transform=None, seed: int = DEFAULT_SPLIT_SEED) -> RealDataset:
    """A torch ``Dataset`` of ``(image, label)`` for one split of a paper task.

    ``split``: ``train``, ``val``, ``trainval`` or ``test`` (VTAB: train = 800, val = 200,
    trainval = 1,000; CoOp test-only sets: ``test``). ``transform`` is applied to the PIL image.
    """
    spec = get_spec(name)
    root = Path(root)
    if spec.protocol in ("coop", "coop-test"):
        return _coop_dataset(spec, root, split, transform)
    if split not in ("train", "val", "trainval", "test"):
        raise ConfigError(f"{name}: split must be one of train, val, trainval, test; got {split!r}")
    rec = load_splits(name, root, seed)
    segments, classnames = [], None
    for part, idx in rec["splits"][split].items():
        pool = open_pool(spec.raw, root, part, spec.variant)
        if len(pool) != rec["parts"][part]:
            raise ConfigError(
                f"{split_path(root, name)} was made from a copy whose {part!r} part had {rec['parts'][part]} items; this copy has {len(pool)}. "
                "Delete the split file to regenerate it (the rule is deterministic) or restore the original copy"
            )
        segments.append((pool, np.asarray(idx, dtype=np.int64)))
        classnames = pool.classnames
    if classnames is None:
        classnames = open_pool(spec.raw, root, next(iter(rec["parts"])), spec.variant).classnames
    return RealDataset(segments, classnames, transform, name, split)


# ================================================================================================
# Preparation
# ================================================================================================


def source_ready(raw: str, root) -> bool:
    root = Path(root)
    return all((root / p).exists() for p in SOURCES[raw].ready)


def _marker(root: Path, raw: str) -> Path:
    return root / ".sources" / f"{raw}.json"


def missing_manual_files(name: str, root) -> list[RemoteFile]:
    """Files a person must place for this task (empty when nothing manual is missing).

    A manual source that is not in place needs all its files present *and* each one usable by us
    (an archive we can extract, or a plain file); anything else (a .rar, multi-part Kaggle zips,
    a tfds export) is listed with the source's note on how to unpack it by hand.
    """
    spec, root = get_spec(name), Path(root)
    src = SOURCES[spec.raw]
    missing = []
    if src.kind in ("manual", "tfds-export") and not source_ready(spec.raw, root):
        missing += [f for f in src.files if not (_usable(f) and (root / f.dest / f.filename).is_file())]
    for f in spec.extra_files:
        if not (root / f.dest / f.filename).is_file():
            missing.append(f)
    return missing


def _usable(f: RemoteFile) -> bool:
    """Can :func:`ensure_source` process this file once it is placed?"""
    if f.extract_to is not None:
        return archive_kind(f.filename) is not None
    return not any(c in f.filename for c in ",( ") and not f.filename.endswith(".rar")


def ensure_source(raw: "str | Source", root, progress=None, keep_archives: bool = False) -> dict:
    """Get a source in place (download/verify/extract as its kind says); returns its record.

    A completed source has a marker ``<root>/.sources/<raw>.json``; extracted copies found in place
    without one are checked against the per-file checksums torchvision publishes, then marked.
    """
    root = Path(root)
    src = raw if isinstance(raw, Source) else SOURCES[raw]
    raw = src.key
    marker = _marker(root, raw)
    if all((root / p).exists() for p in src.ready):
        if marker.is_file():
            return read_json(marker)
        log = FetchLog()
        for f in src.files:
            p = root / f.dest / f.filename
            if f.extract_to is None and p.is_file() and (f.md5 or f.sha256):
                log.add(f, verify(p, f.md5, f.sha256, f.size), "found in place, verified")
        for rel, md5 in src.file_md5:
            p = root / rel
            if p.is_file():
                verify(p, md5=md5)
        rec = {"source": raw, "format": SOURCE_FORMAT, "how": "found in place", "files": log.files, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(marker, rec)
        return rec
    log = FetchLog()
    if raw == "imagenet":
        _prepare_imagenet(root, src, log)
    elif raw == "pcam":
        _prepare_pcam(root, src, log)
    else:
        for f in src.files:
            _get_file(root, src, f, log, progress, keep_archives)
    if raw == "dsprites":
        _dsprites_cache(root)
    still = [p for p in src.ready if not (root / p).exists()]
    if still:
        raise ConfigError(f"{src.title}: after extraction {', '.join(still)} still missing under {root}; the archive layout differs from the one expected ({src.homepage})")
    rec = {"source": raw, "format": SOURCE_FORMAT, "how": src.kind, "files": log.files, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(marker, rec)
    return rec


def _get_file(root: Path, src: Source, f: RemoteFile, log: FetchLog, progress, keep_archives: bool) -> None:
    manual = src.kind in ("manual", "tfds-export")
    if f.extract_to is None:
        target = root / f.dest / f.filename
        if manual:
            log.add(f, verify(target, f.md5, f.sha256, f.size), "placed by hand, verified")
        else:
            log.add(f, fetch(f.url, target, f.md5, f.sha256, f.size, progress=progress), "downloaded")
        return
    if manual:
        archive = root / f.dest / f.filename
        info = verify(archive, f.md5, f.sha256, f.size)
        how = "placed by hand, verified, extracted"
    else:
        archive = root / "downloads" / f.filename
        info = fetch(f.url, archive, f.md5, f.sha256, f.size, progress=progress)
        how = "downloaded, verified, extracted"
    target = root / f.extract_to
    extract(archive, target, remove_on_error=not manual)
    for inner, dest in f.inner:
        extract(target / inner, root / dest)
    if f.inner:
        shutil.rmtree(target, ignore_errors=True)
    log.add(f, info, how)
    if not manual and not keep_archives:
        archive.unlink(missing_ok=True)


def _prepare_imagenet(root: Path, src: Source, log: FetchLog) -> None:
    """ILSVRC2012 archives (placed by hand) → CoOp's layout ``imagenet/images/{train,val}/<wnid>/``.

    Uses torchvision's own parsers (which check the archives' md5) in a temporary folder, then
    renames the result into place.
    """
    from torchvision.datasets import imagenet as tvi

    base = root / "imagenet"
    tmp = base / f".parse-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        devkit, train, val = (base / f.filename for f in (src.files[2], src.files[0], src.files[1]))
        tvi.parse_devkit_archive(str(tmp), file=str(devkit))
        tvi.parse_train_archive(str(tmp), file=str(train))
        tvi.parse_val_archive(str(tmp), file=str(val))
        (base / "images").mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            os.replace(tmp / split, base / "images" / split)
    except RuntimeError as e:
        raise ChecksumError(f"ImageNet archives in {base} failed torchvision's checks ({e}); download them again") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in src.files:
        log.add(f, {"md5": f.md5}, "placed by hand, md5 checked by torchvision, extracted")


def _prepare_pcam(root: Path, src: Source, log: FetchLog) -> None:
    """Patch Camelyon through torchvision's own downloader (Google Drive, gdown), into a temporary root."""
    try:
        import gdown  # noqa: F401
        import h5py  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"Patch Camelyon: torchvision downloads it with gdown and reads it with h5py; pip install gdown h5py. Or: {src.note}") from e
    tmp = root / f".pcam-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in ("train", "val", "test"):
            tvd.PCAM(str(tmp), split=split, download=True)
        (root / "pcam").mkdir(parents=True, exist_ok=True)
        for p in (tmp / "pcam").glob("*.h5"):
            os.replace(p, root / "pcam" / p.name)
    except Exception as e:  # gdown/network/md5 errors come as various types
        raise DownloadError(f"Patch Camelyon download failed ({type(e).__name__}: {e}). {src.note}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in src.files:
        log.add(f, {"md5": f.md5}, "downloaded by torchvision (md5 checked)")


def _dsprites_cache(root: Path) -> None:
    """An uncompressed copy of the dSprites images so loading can memory-map it (written atomically)."""
    path = root / "dsprites" / _DSPRITES
    cache = path.with_name("imgs.npy")
    if cache.is_file():
        return
    with np.load(path) as f:
        imgs = f["imgs"]
    tmp = cache.with_name("imgs.tmp.npy")
    np.save(tmp, imgs)
    os.replace(tmp, cache)


def prepare(name: str, root, seed: int = DEFAULT_SPLIT_SEED, strict: bool = True, progress=None, keep_archives: bool = False) -> dict:
    """Get one task's data in place and write its split file; return its manifest.

    Order: (1) every manual file this task needs is checked *before anything is written* —
    missing ones raise :class:`ManualDownloadRequired` with URL, file name, size, checksum and
    destination; (2) the source is downloaded/verified/extracted (:func:`ensure_source`); (3) the
    split record is written to ``<root>/paper_splits/<task>.json`` (VTAB/FGVC/VP) or the CoOp split file
    is validated. ``strict``: the class count must equal the paper's.
    """
    spec = get_spec(name)
    root = Path(root)
    src = SOURCES[spec.raw]
    missing = missing_manual_files(name, root)
    if missing:
        raise ManualDownloadRequired(name, missing, root, reason=src.reason or "a file must be placed by hand", homepage=src.homepage, note=src.note, rerun=RERUN)
    record = ensure_source(spec.raw, root, progress=progress, keep_archives=keep_archives)
    warnings = []
    if spec.protocol in ("vtab1k", "fgvc", "vp"):
        rec = compute_splits(name, root, seed)
        path = split_path(root, name)
        if path.is_file():
            old = read_json(path)
            if old.get("splits") != rec["splits"] and old.get("seed") == rec["seed"]:
                warnings.append(f"{path} differed from the recomputed split (another copy of the data?) and was rewritten")
        write_json(path, rec)
        sizes = rec["sizes"]
        classnames = rec["classnames"]
        if spec.protocol == "vtab1k" and (sizes["train"], sizes["val"]) != (VTAB_TRAIN, VTAB_VAL):
            warnings.append(f"VTAB-1k expects {VTAB_TRAIN}/{VTAB_VAL} train/val images, this copy gives {sizes['train']}/{sizes['val']}")
    else:
        sizes = {}
        for s in ("train", "val", "test") if spec.protocol == "coop" else ("test",):
            ds = load(name, s, root)
            sizes[s] = len(ds)
            classnames = ds.classnames
        if spec.coop_file:
            image_dir = root / spec.coop_image_dir
            data = coop_splits.read_split(root / src.dir / spec.coop_file)
            absent = [r for s in ("train", "val", "test") for r, _, _ in data[s][:50] if not (image_dir / r).is_file()]
            if absent:
                raise ConfigError(f"{spec.coop_file} lists images missing under {image_dir} (e.g. {absent[0]}); is the dataset folder the one CoOp describes?")
    for k, v in spec.expected.items():
        if sizes.get(k) != v:
            warnings.append(f"{k}: {sizes.get(k)} images, the reference says {v}")
    if len(classnames) != spec.num_classes:
        msg = f"{name}: {len(classnames)} classes found, the paper's task has {spec.num_classes}; incomplete or different copy under {root / src.dir}"
        if strict:
            raise ConfigError(msg)
        warnings.append(msg)
    return {
        "name": name,
        "papers": list(spec.papers),
        "protocol": spec.protocol,
        "group": spec.group,
        "source": {"key": spec.raw, "title": src.title, "kind": src.kind, "dir": src.dir, "homepage": src.homepage, "license": src.license, "disk": src.disk, "reader": src.reader},
        "files": record.get("files", []),
        "num_classes": len(classnames),
        "classnames": classnames,
        "classes_from": spec.classes,
        "label_rule": spec.label_rule,
        "split_rule": split_rule(name),
        "split_seed": int(seed),
        "split_file": str(split_path(root, name)) if spec.protocol in ("vtab1k", "fgvc", "vp") else (str(root / src.dir / spec.coop_file) if spec.coop_file else None),
        "sizes": sizes,
        "warnings": warnings,
    }


def describe() -> list[dict]:
    """One row per task (for docs and ``plan``): name, papers, source kind, disk, licence, checksum."""
    return [
        {"name": s.name, "papers": ",".join(s.papers), "source": s.source, "raw": s.raw, "classes": s.num_classes, "disk": s.disk, "license": s.license, "checksum": s.checksum}
        for s in REAL_DATASETS.values()
    ]
