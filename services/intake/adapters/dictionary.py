"""Reads intake's classification dictionary (services/intake/classification.yml) for the domain's Classifier."""
from __future__ import annotations

import os
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


def bounded_segmentation_dictionary(max_words: int, cache_dir: str | Path | None = None) -> str | None:
    """jieba's own dictionary cut to its `max_words` most frequent words, written once to a cache file.

    jieba keeps every word and every prefix of it in memory: its full 349,046-word dictionary alone puts
    intake past its 120 MB budget (measured: a classifier process peaks at 99 MB with it, 47 MB with 60,000
    words). The classification table (tests/unit/intake/test_intake_classification.py) is exact with both.
    0 or less means jieba's full dictionary.
    """
    if max_words <= 0:
        return None
    import tempfile

    import jieba

    target = Path(cache_dir or tempfile.gettempdir()) / f"propsvc-jieba-{max_words}.txt"
    if not target.exists():
        with jieba.get_dict_file() as fh:
            entries = [line.decode("utf-8").split() for line in fh if line.strip()]
        entries.sort(key=lambda e: -int(e[1]))
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text("".join(" ".join(e) + "\n" for e in entries[:max_words]), encoding="utf-8")
        partial.replace(target)  # atomic: replicas starting together never read a half-written file
    return str(target)
