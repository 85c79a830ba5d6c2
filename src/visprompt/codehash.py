"""Fingerprints of the code a cell runs, so that a finished cell is reused only while its code is.

A cell's settings and backbone are not enough: fixing a method's forward or the training loop
must rerun the cells that ran the old code, and only those. :func:`code_hash` hashes a set of
``visprompt`` modules together with every ``visprompt`` module they import (transitively, found
by reading their ``import`` statements, including imports inside functions). Each module is
hashed as its syntax tree with docstrings removed, so editing a comment or a docstring keeps the
cells, while any change to what the code does reruns them.

Hashes are of module names and syntax trees only (no paths, no timestamps): the same commit gives
the same hash on every machine with the same Python minor version.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "visprompt"
PACKAGE_ROOT = Path(__file__).resolve().parent


def module_file(name: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The source file of module ``visprompt.a.b`` under ``root`` (the package folder), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = Path(root, *parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
def _parse(path: str, mtime_ns: int, size: int) -> tuple[str, tuple]:
    """(hash of the docstring-free syntax tree, absolute names of everything imported)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    imports = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [(0, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(a.name for a in node.names)))
    digest = hashlib.sha256(ast.dump(_strip_docstrings(tree), include_attributes=False).encode()).hexdigest()
    return digest, tuple(imports)


def _parsed(path: Path) -> tuple[str, tuple]:
    st = path.stat()
    return _parse(str(path), st.st_mtime_ns, st.st_size)


def _imported_modules(name: str, path: Path, root: Path) -> set:
    """``visprompt`` modules imported by module ``name`` (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for level, module, names in _parsed(path)[1]:
        if level:
            base = package.split(".")
            base = base[: len(base) - (level - 1)] if level > 1 else base
            target = ".".join(base + ([module] if module else []))
        else:
            target = module
        for candidate in [target] + [f"{target}.{n}" for n in names]:  # `from . import report` names a module
            if candidate and module_file(candidate, root) is not None:
                out.add(candidate)
    return out


def code_closure(*modules: str, root: Path = PACKAGE_ROOT) -> list:
    """The modules given and every ``visprompt`` module they import, transitively (sorted)."""
    seen, todo = set(), [m for m in modules if module_file(m, root) is not None]
    missing = [m for m in modules if module_file(m, root) is None]
    if missing:
        raise ValueError(f"no source file for {missing} under {root}")
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(_imported_modules(name, module_file(name, root), root) - seen)
    return sorted(seen)


def code_hash(*modules: str, root: Path = PACKAGE_ROOT, closure: bool = True) -> str:
    """One hash of the modules' code (and, with ``closure``, of everything they import)."""
    names = code_closure(*modules, root=root) if closure else sorted(modules)
    h = hashlib.sha256()
    for name in names:
        h.update(f"{name}:{_parsed(module_file(name, root))[0]};".encode())
    return h.hexdigest()[:16]
