"""Raw data on disk: :data:`SOURCES`, one :class:`Source` per downloaded dataset, and the package's constants.

CIFAR-100 is one source even though VTAB-1k, visual prompting and CoOp all use it. Each entry says
how to get it (``kind``: ``torchvision`` = the URL and checksum torchvision declares, fetched by
:mod:`..download`; ``url`` = a public URL torchvision does not know; ``manual`` = a licence
click-through or no public URL; ``tfds-export`` = only obtainable through tensorflow-datasets),
where it lives under the data root (the folder names torchvision uses, so torchvision's classes
read it), licence, disk space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torchvision.datasets as tvd

from ..download import RemoteFile


SPLIT_FORMAT = 1
SOURCE_FORMAT = 1
DEFAULT_SPLIT_SEED = 0
VTAB_TRAIN, VTAB_VAL = 800, 200
VP_VAL_FRACTION = 0.1
RERUN = "cd profiles/paper && python -m visprompt data --params params.yaml"
COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"


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
