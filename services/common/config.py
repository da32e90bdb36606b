"""Configuration files with `${VAR:default}` placeholders, read once at start (never at import).

nameko expands the same syntax in the files it is given with `--config`; tools that are not nameko
processes (bootstrap, runner, key admin) use `load_config` so that both read identical values.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import yaml

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def expand(value: str, env: Mapping[str, str] | None = None) -> str:
    source: Mapping[str, str] = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in source:
            return source[name]
        if default is None:
            raise KeyError(f"configuration needs environment variable {name}")
        return default

    return _PLACEHOLDER.sub(sub, value)


def _walk(node: Any, env: Mapping[str, str] | None) -> Any:
    if isinstance(node, dict):
        return {k: _walk(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, env) for v in node]
    if isinstance(node, str):
        expanded = expand(node, env)
        # Same rule as nameko: a whole-value placeholder is re-parsed as YAML so numbers stay numbers.
        return yaml.safe_load(expanded) if _PLACEHOLDER.fullmatch(node) and expanded != "" else expanded
    return node


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    return _walk(raw, env)


REPO_ROOT = Path(__file__).resolve().parents[2]
