"""The package's import graph has no cycle and no source file grows past MAX_LINES.

The graph is the one ``visprompt.codehash`` hashes: every ``visprompt`` module a file imports,
imports inside functions included (``from . import x`` also names the package itself, so a package
``__init__`` that imports its submodules is a cycle as soon as one of them imports the package back).
"""

from __future__ import annotations

from visprompt import codehash

MAX_LINES = 620


def _modules() -> list:
    names = []
    for path in sorted(codehash.PACKAGE_ROOT.rglob("*.py")):
        parts = list(path.relative_to(codehash.PACKAGE_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join([codehash.PACKAGE, *parts]))
    return names


def import_graph() -> dict:
    """module -> the ``visprompt`` modules it imports (itself left out)."""
    return {n: codehash._imported_modules(n, codehash.module_file(n), codehash.PACKAGE_ROOT) - {n} for n in _modules()}


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            w = next(edges, None)
            if w is not None:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert "visprompt.reports.claims" in graph and graph["visprompt.reports.vpt"]  # the graph is read at all
    assert "visprompt.backbones.vit" in graph["visprompt.reports.vpt"]  # imported inside backbone_parameters: seen too
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_claims_imports_no_paper_report():
    imported = import_graph()["visprompt.reports.claims"]
    assert not imported & {f"visprompt.reports.{m}" for m in ("vpt", "visual_prompting", "rpo", "vpt_claims", "vp_claims", "rpo_claims")}


def test_no_source_file_over_max_lines():
    long = {str(p.relative_to(codehash.PACKAGE_ROOT)): n for p in sorted(codehash.PACKAGE_ROOT.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"
