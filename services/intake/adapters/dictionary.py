"""Reads intake's classification dictionary (services/intake/classification.yml) for the domain's Classifier."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "classification.yml"


def load_dictionary(path: str | Path = DEFAULT_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the classification dictionary must be a mapping")
    return data
