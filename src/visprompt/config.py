"""Reading params.yaml (grouped by stage) and checking it before any work starts."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .errors import ConfigError

REQUIRED_SECTIONS = ("data", "splits", "backbones")


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found; run from the repository root or pass --params")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must be a mapping of sections (data, splits, backbones, vpt, vp, rpo), got {type(params).__name__}")
    missing = [s for s in REQUIRED_SECTIONS if s not in params]
    if missing:
        raise ConfigError(f"{path} has no {', '.join(missing)} section(s); see params.yaml in the repository for the layout")
    from .schema import validate

    return validate(params, str(path))


def section(params: dict, name: str) -> dict:
    if name not in params:
        raise ConfigError(f"params has no {name!r} section")
    return params[name]


def require_keys(d: dict, keys, where: str) -> None:
    missing = [k for k in keys if k not in d]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
