"""Reading params.yaml (grouped by stage) and checking it before any work starts."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .errors import ConfigError

REQUIRED_SECTIONS = ("data", "splits", "backbones")


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"params file {path} is a directory; pass the file itself, e.g. --params {path / 'params.yaml'}")
    if not path.is_file():
        raise ConfigError(f"params file {path} not found; run from the repository root or pass --params")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not a text (UTF-8) file ({e.reason} at byte {e.start}); pass a params.yaml, e.g. a copy of the repository's") from e
    try:
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        params = yaml.safe_load(text)
    except yaml.YAMLError as e:
        hint = "indent with spaces, never tabs" if "'\\t'" in str(e) else "fix the line it points at"
        raise ConfigError(f"{path} is not valid YAML ({hint}): {e}") from e
    if duplicate:
        key, first, again = duplicate
        raise ConfigError(f"{path}: {key} is set twice (lines {first} and {again}); YAML would silently keep the second: delete one of them")
    if params is None:
        raise ConfigError(f"{path} is empty; start from the repository's params.yaml (sections data, splits, backbones, vpt, vp, rpo)")
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must be a mapping of sections (data, splits, backbones, vpt, vp, rpo), got {type(params).__name__}")
    missing = [s for s in REQUIRED_SECTIONS if s not in params]
    if missing:
        raise ConfigError(f"{path} has no {', '.join(missing)} section(s); see params.yaml in the repository for the layout")
    from .schema import validate

    return validate(params, str(path))


def _duplicate_key(node, path: str = "", seen_nodes=None):
    """``(key path, first line, second line)`` of the first key repeated within one mapping of the
    composed YAML ``node``, else None (PyYAML keeps the last of two equal keys without a word)."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if node is None or id(node) in seen_nodes:  # an alias repeats a node already walked
        return None
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            sub = f"{path}.{name}" if path and name is not None else (name or path)
            if name is not None and name != "<<":
                if name in lines:
                    return sub, lines[name], key.start_mark.line + 1
                lines[name] = key.start_mark.line + 1
            found = _duplicate_key(value, sub, seen_nodes)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, f"{path}[{i}]", seen_nodes)
            if found:
                return found
    return None


def section(params: dict, name: str) -> dict:
    if name not in params:
        raise ConfigError(f"params has no {name!r} section")
    return params[name]


def require_keys(d: dict, keys, where: str) -> None:
    missing = [k for k in keys if k not in d]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
