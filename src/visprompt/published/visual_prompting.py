"""Visual prompting's published numbers (Bahng et al., arXiv 2203.17274; CLIP ViT-B/32).

Plain data transcribed from ``shared/reference/visual_prompting.md``. The reference could not
confirm Table 1 (TP / VP / LP / FT per dataset) from a readable copy of the paper: every value
here is a lead, given as approximate ("≈"), and so ``confirmed=False`` throughout. The 12-dataset
averages are not read from the paper at all but implied by a follow-up paper's abstract (EVP,
arXiv 2212.10556, same benchmark).

Not available from the reference, so absent here: any full fine-tuning (FT) number, most TP
values, and accuracies for the prompt designs (padding vs fixed/random patch, prompt sizes); the
reference gives only the prompters' parameter counts, which are exact and tested in
``tests/test_visual_prompt.py``. The qualitative claims are in :data:`QUALITATIVE`.

These are the paper's numbers, never ours. Method keys are the registry names
(:mod:`visprompt.methods`); ``label`` is the paper's name.
"""

from __future__ import annotations

REFERENCE = "shared/reference/visual_prompting.md"
BACKBONE = "CLIP ViT-B/32 (OpenAI weights), frozen"

#: registry name -> the paper's label ('TP' = zero-shot with the template "This is a photo of a {}")
METHODS = {"zeroshot": "Text Prompt (TP)", "vp_pad": "Visual Prompt (VP, padding prompter, p=30)", "logistic_probe": "Linear Probe (LP)", "clip_finetune": "Full fine-tuning (FT)"}

DATASETS = ["CIFAR100", "CIFAR10", "Flowers102", "Food101", "EuroSAT", "SUN397", "DTD", "UCF101", "SVHN", "OxfordPets", "RESISC45", "CLEVR"]
AVERAGE = "average (12 datasets)"

_SRC_T1 = "VP paper Table 1 (CLIP ViT-B/32), lead only: approximate value not checked against the PDF [unconfirmed]"
_SRC_EVP = "implied by the EVP abstract (arXiv 2212.10556), same 12-dataset benchmark, approximate [unconfirmed]"

# method -> dataset -> approximate top-1 (%)
_TABLE1_LEADS = {
    "vp_pad": {"CIFAR100": 75.3, "CIFAR10": 94.2, "Flowers102": 70.3, "Food101": 78.9, "EuroSAT": 96.4, "SVHN": 88.4},
    "logistic_probe": {"CIFAR100": 80.0, "Flowers102": 96.9, "SVHN": 65.4},
    "zeroshot": {"CIFAR100": 63.1},
}
_AVERAGES = {"vp_pad": 77.3, "logistic_probe": 80.3}

#: the paper's qualitative findings as the reference states them (no numbers attached)
QUALITATIVE = [
    "VP beats LP on EuroSAT, SVHN and CLEVR and trails it on Flowers102, DTD and SUN397.",
    "Visual prompting is particularly effective for CLIP, robust to distribution shift, and competitive with linear probes (abstract).",
]


def _row(method: str, dataset: str, value: float, source: str, approximate: bool = True) -> dict:
    return {
        "setting": "table1",
        "method": method,
        "label": METHODS[method],
        "dataset": dataset,
        "metric": "top1",
        "value": value,
        "source": source,
        "confirmed": False,
        "approximate": approximate,
        "unit": "%",
    }


def published_table() -> list[dict]:
    """Every published (or implied) number as a flat row: setting, method (registry name), label,
    dataset, metric ('top1', %), value, source, confirmed (all False), approximate."""
    rows = [_row(m, d, v, _SRC_T1) for m, per in _TABLE1_LEADS.items() for d, v in per.items()]
    rows += [_row(m, AVERAGE, v, _SRC_EVP) for m, v in _AVERAGES.items()]
    return rows


def published_value(method: str, dataset: str) -> dict | None:
    """The row for ``method`` (registry name) on ``dataset``, or None when the reference has none."""
    for row in published_table():
        if row["method"] == method and row["dataset"] == dataset:
            return row
    return None
