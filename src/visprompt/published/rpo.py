"""RPO's published numbers (Lee et al., ICCV 2023; CLIP ViT-B/16, 16 shots unless stated).

Plain data transcribed from ``shared/reference/rpo.md``. ``confirmed`` follows the reference's
tags: ``[2×]`` (the same number in two independent copies of the paper's table) and ``[logs]``
(the authors' own run logs in the official repository) -> ``True``; ``[unconfirmed]`` -> ``False``;
values the reference says were *derived* rather than read (ImageNet base/new, solved from the
11-dataset averages) -> ``False``.

HM convention (the reference's caution): HM = 2BN/(B+N). For the 11-dataset average the baselines
(CLIP, CoOp, CoCoOp) publish the HM of the averaged base and new accuracies, while RPO's 77.78 is
the mean of its per-dataset HMs (the HM of its averages would be 77.95). :data:`AVERAGE_HM_CONVENTION`
records which is which; our own reports use the HM of the averages for every method and say so.
Per dataset, RPO's logged HM is the mean over seeds 1-3; the reference does not say whether per
seed HMs were averaged or the HM was taken of the averaged base/new, and the numbers are
consistent with the former (e.g. Caltech101: HM of the averages 96.14, logged 96.03).

These are the paper's numbers, never ours. Method keys are the registry names
(:mod:`visprompt.methods`); ``label`` is the paper's name.
"""

from __future__ import annotations

REFERENCE = "shared/reference/rpo.md"
BACKBONE = "CLIP ViT-B/16 (OpenAI weights), frozen"

#: registry name -> the paper's label
METHODS = {"zeroshot": "CLIP", "coop": "CoOp", "cocoop": "CoCoOp", "rpo": "RPO", "clip_linear_probe": "Linear probe"}

DATASETS = [
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101",
    "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101",
]  # fmt: skip
AVERAGE = "average"  # the 11-dataset average row
DG_TARGETS = ["ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R"]

#: how each method's published 11-dataset average HM was formed
AVERAGE_HM_CONVENTION = {"zeroshot": "hm_of_means", "coop": "hm_of_means", "cocoop": "hm_of_means", "rpo": "mean_of_hms"}

_SRC_B2N_AVG = "RPO paper, base-to-new generalisation, average over 11 datasets [2×]"
_SRC_B2N_LOGS = "official RPO repo (mlvlab/RPO) run logs, base-to-new, mean of seeds 1-3 [logs]"
_SRC_B2N_SOLVED = "derived: solved from the 11-dataset averages and the other datasets' logs (reference/rpo.md)"
_SRC_DG = "RPO paper, domain generalisation (train 16-shot ImageNet) [unconfirmed]"
_SRC_VAR = "official RPO repo run logs behind Figure 1 (variance over seeds 1-10), new classes [logs]"
_SRC_FEW = "official RPO repo run logs, extreme few-shot (K=4), 1 shot, average over 10 datasets [logs]"

# method -> (base, new, hm), 11-dataset average
_B2N_AVERAGE = {
    "zeroshot": (69.34, 74.22, 71.70),
    "coop": (82.69, 63.22, 71.66),
    "cocoop": (80.47, 71.69, 75.83),
    "rpo": (81.13, 75.00, 77.78),
}

# RPO per dataset (base, new, hm), mean of seeds 1-3
_RPO_PER_DATASET = {
    "ImageNet": (76.60, 71.57, 74.00),
    "Caltech101": (97.97, 94.37, 96.03),
    "OxfordPets": (94.63, 97.50, 96.05),
    "StanfordCars": (73.87, 75.53, 74.69),
    "Flowers102": (94.13, 76.67, 84.50),
    "Food101": (90.33, 90.83, 90.58),
    "FGVCAircraft": (37.33, 34.20, 35.70),
    "SUN397": (80.60, 77.80, 79.18),
    "DTD": (76.70, 62.13, 68.61),
    "EuroSAT": (86.63, 68.97, 76.79),
    "UCF101": (83.67, 75.43, 79.34),
}
_SOLVED = {("ImageNet", "base"), ("ImageNet", "new")}  # only ImageNet's HM is read directly

# method -> (ImageNet, -V2, -Sketch, -A, -R)
_DG = {
    "zeroshot": (66.73, 60.83, 46.15, 47.77, 73.96),
    "coop": (71.51, 64.20, 47.99, 49.71, 75.21),
    "cocoop": (71.02, 64.07, 48.75, 50.63, 76.18),
    "rpo": (71.67, 65.13, 49.27, 50.13, 76.57),
}

# RPO new-class accuracy over seeds 1-10, base-to-new at 16 shots: dataset -> (mean, sample std)
_RPO_VARIANCE = {
    "FGVCAircraft": (34.33, 0.75),
    "DTD": (62.08, 1.54),
    "EuroSAT": (69.35, 1.91),
    "Flowers102": (76.71, 0.58),
    "StanfordCars": (75.24, 0.53),
    "UCF101": (76.12, 0.73),
}


_SRC_PARAMS = "official RPO code (mlvlab/RPO, built on CoOp) [code]: trainable parameters on ViT-B/16"

# method -> [(configuration, trainable parameters)] on CLIP ViT-B/16
_TRAINABLE_PARAMS = {
    "rpo": [("K=24", 30_720), ("K=4", 5_120)],
    "coop": [("n_ctx=4", 2_048), ("n_ctx=16", 8_192)],
    "cocoop": [("n_ctx=4", 35_360)],
    "clip_linear_probe": [("Linear(512, 512)", 262_656)],
}


def _row(setting: str, method: str, dataset: str, metric: str, value: float, source: str, confirmed: bool, **extra) -> dict:
    return {
        "setting": setting,
        "method": method,
        "label": METHODS[method],
        "dataset": dataset,
        "metric": metric,
        "value": value,
        "source": source,
        "confirmed": confirmed,
        **extra,
    }


def published_table() -> list[dict]:
    """Every published number as a flat row.

    Keys: ``setting`` ('base2new', 'domain_generalization', 'variance', 'fewshot'), ``method``
    (registry name), ``label``, ``dataset`` (the reference's name, or ``'average'``), ``metric``
    ('base', 'new', 'hm' -- accuracies in %; 'top1'; 'new_mean' / 'new_std' over seeds;
    'new_1shot'), ``value``, ``source``, ``confirmed``, ``unit`` ('%'); base-to-new average HM
    rows also carry ``hm_convention``, variance rows ``seeds``. Setting 'params' rows give the
    trainable-parameter counts on ViT-B/16 (``metric='trainable_params'``, ``unit='parameters'``,
    ``dataset`` = the configuration, e.g. 'K=24').
    """
    rows = []
    for method, values in _B2N_AVERAGE.items():
        for metric, v in zip(("base", "new", "hm"), values):
            extra = {"hm_convention": AVERAGE_HM_CONVENTION[method]} if metric == "hm" else {}
            rows.append(_row("base2new", method, AVERAGE, metric, v, _SRC_B2N_AVG, True, **extra))
    for dataset, values in _RPO_PER_DATASET.items():
        for metric, v in zip(("base", "new", "hm"), values):
            solved = (dataset, metric) in _SOLVED
            rows.append(_row("base2new", "rpo", dataset, metric, v, _SRC_B2N_SOLVED if solved else _SRC_B2N_LOGS, not solved))
    for method, values in _DG.items():
        for dataset, v in zip(["ImageNet", *DG_TARGETS], values):
            rows.append(_row("domain_generalization", method, dataset, "top1", v, _SRC_DG, False))
    for dataset, (mean, std) in _RPO_VARIANCE.items():
        rows.append(_row("variance", "rpo", dataset, "new_mean", mean, _SRC_VAR, True, seeds=list(range(1, 11))))
        rows.append(_row("variance", "rpo", dataset, "new_std", std, _SRC_VAR, True, seeds=list(range(1, 11))))
    rows.append(_row("fewshot", "rpo", "average (10 datasets)", "new_1shot", 73.96, _SRC_FEW, True, K=4, shots=1, seeds=list(range(1, 11))))
    for r in rows:
        r["unit"] = "%"
    for method, counts in _TRAINABLE_PARAMS.items():
        for config, n in counts:
            rows.append(_row("params", method, config, "trainable_params", n, _SRC_PARAMS, True, unit="parameters"))
    return rows


def published_value(method: str, dataset: str, metric: str, setting: str = "base2new") -> dict | None:
    """The row for ``(setting, method, dataset, metric)``, or None when the reference has none."""
    for row in published_table():
        if (row["setting"], row["method"], row["dataset"], row["metric"]) == (setting, method, dataset, metric):
            return row
    return None


def harmonic_mean(base: float, new: float) -> float:
    """HM = 2BN/(B+N), the base-to-new summary used by CoCoOp and RPO."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0
