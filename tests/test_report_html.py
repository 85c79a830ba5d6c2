"""The reports' and the index's HTML, rendered in-process from the committed metrics and report
files under reports/ (no training, no notebook execution): paper-shaped tables, nothing of
Markdown left raw, no row index, no machine path, published columns marked, results first."""

import re
import shutil
from pathlib import Path

import pytest

from visprompt import index
from visprompt.config import load_params
from visprompt.reports import present as P
from visprompt.reports import rpo as rpo_report
from visprompt.reports import visual_prompting as vp_report
from visprompt.reports import vpt as vpt_report

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
MODULES = {"vpt": vpt_report, "vp": vp_report, "rpo": rpo_report}
MARKDOWN = ("`", "**", "*published*", "| ---", "|---", "|:--")
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|usr|opt|var|mnt)/")


def _tables(html: str) -> list:
    return re.findall(r"<table\b.*?</table>", html, flags=re.S)


def _check_clean(html: str, what: str) -> None:
    for marker in MARKDOWN:
        assert marker not in html, f"{what}: raw Markdown {marker!r}"
    assert not ABSOLUTE.search(html), f"{what}: a machine path: {ABSOLUTE.search(html).group(0)}"
    assert "row_heading" not in html and 'class="blank' not in html, f"{what}: a pandas row index"
    for t in _tables(html):
        text = re.sub(r"<[^>]+>", " ", t)
        assert not re.search(r"\d \u00b1 \d", text), f"{what}: 'mean ± std' that can wrap (plain spaces)"
        assert not re.search(r"\d\.\d{4,}", text), f"{what}: a raw float"


def _published_columns_marked(table: str) -> int:
    """Every published sub-header and every cell below it carry the class 'pub'; returns how many."""
    heads = re.findall(r'<th class="col_heading level1 col(\d+)([^"]*)"\s*>([^<]*)</th>', table)
    n = 0
    for col, classes, text in heads:
        if not text.startswith("published"):
            continue
        n += 1
        assert "pub" in classes.split(), f"published header col{col} without class pub"
        cells = re.findall(rf'<td class="data row\d+ col{col} ([^"]*)"', table)
        assert cells and all("pub" in c.split() for c in cells), f"published cells of col{col} without class pub"
    return n


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    params = load_params(str(ROOT / "params.yaml"))
    out = tmp_path_factory.mktemp("reports")
    result = {}
    for paper, mod in MODULES.items():
        if not (REPORTS / "records" / paper).is_dir():
            continue
        r = mod.build(params, str(out / paper / "report"), metrics_root=str(REPORTS / "records"))
        result[paper] = (r, mod.html_tables(r))
    if not result:
        pytest.skip("no committed run records under reports/records")
    return result


def test_each_report_html_is_paper_shaped(built):
    for paper, (r, tables) in built.items():
        for name, html in tables.items():
            _check_clean(str(html), f"{paper}/{name}")
            assert hasattr(html, "_repr_html_")  # the notebooks display it as HTML
        assert "<table" in str(tables["claims"]) and 'class="col_heading level0 col1 pub' in str(tables["claims"])
    headline = {"vpt": "table1", "vp": "main", "rpo": "base2new"}
    for paper, name in headline.items():
        if paper in built:
            html = str(built[paper][1][name])
            assert sum(_published_columns_marked(t) for t in _tables(html)) >= 3, f"{paper}/{name}: published columns"


def test_vpt_table1_groups_wins_and_no_published_beside_an_ablation(built):
    if "vpt" not in built:
        pytest.skip("no VPT metrics")
    r, tables = built["vpt"]
    html = str(tables["table1"])
    for group in ("FGVC", "Natural", "Specialized", "Structured"):
        assert f">{group}</th>" in html
    if r["wins"] is not None and len(r["wins"]):
        assert re.search(r"\[\d+\]", html)
    seen = 0
    for row in re.findall(r"<tr>.*?</tr>", html, flags=re.S):
        if re.search(r'col0 txt[^"]*" >[^<]* \[[a-z_][a-z0-9_]*\]</td>', row):  # an ablation run: 'VPT-deep [vpt_deep_p2]'
            seen += 1
            pub = re.findall(r'<td class="[^"]*\bpub\b[^"]*" >(.*?)</td>', row)
            assert pub and set(pub) == {P.DASH}, row
            assert "abl" in row
    ablation = [m for m in r["table1"]["method"] if P.is_ablation_label(m)]
    assert seen == len(ablation)
    pub_cols = [c for c in r["table1"].columns if "published" in c]
    for m in ablation:  # the .md/.csv table too
        assert set(r["table1"].set_index("method").loc[m, pub_cols]) == {P.DASH}


def test_rpo_base2new_is_one_block_per_dataset(built):
    if "rpo" not in built:
        pytest.skip("no RPO metrics")
    r, tables = built["rpo"]
    html = str(tables["base2new"])
    datasets = list(dict.fromkeys(r["base2new"]["dataset"]))
    assert html.count("<table") == len(datasets)
    assert html.index("(a) Average") < html.index(f"(b) {datasets[0] if datasets[0] != 'Average' else datasets[1]}")
    for metric in ("Base", "New", "HM"):
        assert f">{metric}</th>" in html


def test_index_html_opens_with_the_results(tmp_path):
    if not (REPORTS / "vpt" / "report").is_dir():
        pytest.skip("no committed report folders")
    params = load_params(str(ROOT / "params.yaml"))
    parts = index.sections(params, REPORTS)
    html = index.build_index_html(params, REPORTS, parts=parts)
    md = "\n".join(m for m, _ in parts)
    _check_clean(html, "index.html")
    assert html.index("<table") < html.index("<ul"), "the first verdict table comes before the first list of links"
    assert html.index("Verdict per claim") < html.index("Reports and notebooks") < html.index("Environment")
    assert sum(_published_columns_marked(t) for t in _tables(html)) >= 3  # the headline tables
    assert 'class="col_heading level0 col1 pub' in html  # the verdict tables' published column
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert not [h for h in hrefs if h.endswith(".ipynb") or h.endswith(".md")], "links open rendered pages, not raw files"
    assert any(h.startswith("runs_html/") and h.endswith(".html") for h in hrefs)
    assert "| claim | published (paper) |" in md and "## Verdict per claim" in md


def test_a_training_notebook_renders_without_code_noise_or_paths(tmp_path):
    runs = sorted((REPORTS / "vpt" / "runs").glob("*.ipynb"))
    if not runs:
        pytest.skip("no executed training notebook committed")
    root = tmp_path / "reports"
    (root / "vpt" / "runs").mkdir(parents=True)
    src = root / "vpt" / "runs" / runs[0].name
    shutil.copy(runs[0], src)
    out = index.render_run(src, "vpt", root)
    assert out == root / "runs_html" / "vpt" / f"{runs[0].stem}.html"
    html = out.read_text()
    assert "IProgress" not in html and not ABSOLUTE.search(html)
    assert "run_method(params" not in html  # code hidden
    assert f"run <strong>{runs[0].stem}</strong>" in html


def test_published_cells_and_measured_cells():
    assert P.parse_published("≈75.30 (CIFAR100, unconfirmed)") == {"number": "≈75.3", "unconfirmed": True, "where": "CIFAR100", "approximate": True}
    assert P.parse_published("77.78 (average; mean of per-dataset HMs)")["where"] == "average; mean of per-dataset HMs"
    assert P.parse_published("≈77.30 (average (12 datasets), unconfirmed)")["where"] == "average (12 datasets)"
    assert P.parse_published("24.02× (unconfirmed)")["number"] == "24.02×"
    assert P.parse_published("30,720 (K=24); 5,120 (K=4)") is None  # free text: shown as it is
    assert P.published("88.54") == "88.5" and P.published(None) == P.DASH
    assert P.measured("23.0 ± 0.0") == "23.0\u00a0±\u00a00.0"
    assert P.measured(58.020001) == "58.0"
    assert P.measured("40.7 ± 1.7 (1/2 tasks)", extra=" [1]") == '40.7\u00a0±\u00a01.7 [1] <span class="note">(1/2 tasks)</span>'
    assert P.is_ablation_label("VPT-deep [vpt_deep_p2]") and not P.is_ablation_label("VPT-deep")


def test_records_of_runs_no_longer_in_params_are_skipped(tmp_path, capsys):
    """Removing a run from params (its record still on disk) must not break or feed the report."""
    import copy

    from visprompt.reports import vpt as vpt_report

    if not (REPORTS / "records" / "vpt" / "full.json").is_file():
        pytest.skip("no committed run records under reports/records")
    params = copy.deepcopy(load_params(str(ROOT / "params.yaml")))
    del params["vpt"]["methods"]["full"]
    r = vpt_report.build(params, str(tmp_path / "vpt"), metrics_root=str(REPORTS / "records"))
    assert "skipped the records of runs no longer in vpt.methods: full" in capsys.readouterr().out
    deep_vs_full = next(c for c in r["claims_list"] if c["claim"].startswith("VPT-deep ≥ Full"))
    assert deep_vs_full["holds"] is None  # not measured now, rather than read from a stale file


def test_the_same_records_give_the_same_figures_byte_for_byte(built, tmp_path):
    """Stripplot jitter is seeded (reports._common.fixed_jitter): a rebuilt report that did not
    change shows no changed figure in `git status`."""
    params = load_params(str(ROOT / "params.yaml"))
    for paper, (r, _) in built.items():
        again = MODULES[paper].build(params, str(tmp_path / paper), metrics_root=str(REPORTS / "records"))
        first = {Path(p).name: Path(p).read_bytes() for p in r["files"].values() if str(p).endswith(".png")}
        second = {Path(p).name: Path(p).read_bytes() for p in again["files"].values() if str(p).endswith(".png")}
        assert first and first.keys() == second.keys()
        assert [n for n in first if first[n] != second[n]] == [], f"{paper}: figures differ between two builds"
