"""Real datasets of the three papers (the paper profile): registry, preparation, loading.

Two tables:

* :data:`SOURCES` — the raw data on disk, one entry per downloaded dataset: how to get it, where it
  lives under the data root, licence, disk space (:mod:`.sources`).
* :data:`REAL_DATASETS` — one :class:`RealSpec` per *task* of a paper (``vtab/dtd``,
  ``fgvc/cub``, ``vp/dtd``, ``coop/dtd``...): which source, which labels, which splits
  (:mod:`.registry`, assembled from the benchmark tables).

:func:`prepare` gets one task's data in place (checking for missing manual files **before**
writing anything), writes its split file and returns a manifest; :func:`load` returns a torch
``Dataset`` of ``(image, label)`` with ``.classnames`` and ``.labels``, reading through the
torchvision dataset classes where they exist (``CIFAR100``, ``DTD``, ``Flowers102``, ``SVHN``,
``OxfordIIITPet``, ``Food101``, ``EuroSAT``, ``SUN397``, ``FGVCAircraft``, ``StanfordCars``,
``CLEVRClassification``, ``Kitti``, ``PCAM``, ``ImageFolder``) and through small readers of the
original files otherwise (CUB, NABirds, Stanford Dogs, dSprites, smallNORB, Retinopathy, CoOp's
split files, ImageNet folders).

Where things live (each layer imports only the ones above it):

* :mod:`.sources` — constants, :class:`Source`, :data:`SOURCES`;
* :mod:`.common` — :class:`RealSpec`, pool definitions, :class:`Pool` and its getters, readers'
  helpers, :class:`RealDataset`;
* :mod:`.vtab`, :mod:`.fgvc`, :mod:`.vp`, :mod:`.coop` — each benchmark's task table, split rule
  and the pool readers of its sources (a source shared by several benchmarks is read in the first
  of them; VTAB-1k holds the label derivations);
* :mod:`.registry` — :data:`REAL_DATASETS`, ``_POOLS``, :func:`get_spec`, :func:`describe`;
* :mod:`.loading` — :func:`open_pool`, the split rule (:func:`compute_splits`, :func:`split_rule`,
  :func:`split_path`), :func:`load_splits`, :func:`load`;
* :mod:`.preparation` — :func:`source_ready`, :func:`missing_manual_files`, :func:`ensure_source`,
  :func:`prepare` (and its manifest).

Everything is re-exported here: use ``from visprompt.data import real`` and ``real.<name>``.
"""

from __future__ import annotations

from ..download import ChecksumError, DownloadError, ManualDownloadRequired, RemoteFile
from .common import Pool, RealDataset, RealSpec
from .coop import COOP_TASKS, COOP_TEST_TASKS
from .fgvc import FGVC_TASKS
from .loading import compute_splits, load, load_splits, open_pool, split_path, split_rule
from .preparation import ensure_source, missing_manual_files, prepare, source_ready
from .registry import _POOLS, REAL_DATASETS, describe, get_spec
from .sources import (
    _DSPRITES,
    _NORB_TEST,
    _NORB_TRAIN,
    COOP_DATASETS_MD,
    DEFAULT_SPLIT_SEED,
    RERUN,
    SOURCE_FORMAT,
    SOURCES,
    SPLIT_FORMAT,
    VP_VAL_FRACTION,
    VTAB_TRAIN,
    VTAB_VAL,
    Source,
)
from .vp import VP_TASKS
from .vtab import KITTI_VEHICLES, NORB_MAGIC, PCAM_NAMES, VTAB_TASKS, kitti_closest_vehicle_depth, read_norb
