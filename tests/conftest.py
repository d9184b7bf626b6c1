"""Shared fixtures: small tables of generated images, an isolated cache folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import write_png
from tiny_study import build_tiny_study


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's real cache folder from a test."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RXWGAN_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """The shared tiny study (tests/tiny_study.py), built once per session: never change it,
    work on ``copy_of`` it."""
    with pytest.MonkeyPatch.context() as patch:  # built before any test's own cache folder
        patch.setenv("RXWGAN_CACHE_DIR", str(tmp_path_factory.mktemp("tiny_cache")))
        return build_tiny_study(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def make_table(tmp_path):
    """Write ``n`` random 8-bit PNGs and a table in the users' format; return the CSV path."""

    def make(n: int = 20, size: int = 24, tb_every: int = 2, index_column: bool = True,
             folder: Path | None = None) -> Path:
        root = folder or tmp_path / "data"
        rng = np.random.default_rng(n)
        rows = []
        for i in range(n):
            target = int(i % tb_every == 0)
            image = rng.integers(0, 256, (size, size), dtype=np.uint8)
            path = write_png(root / "images" / f"img_{i:03d}_{target}.png", image)
            rows.append({"target": target, "image_ID": path.stem,
                         "raw_image_path": f"images/{path.name}", "raw_image_md5": "x",
                         "age": 40, "sex": "M", "comment": ""})
        frame = pd.DataFrame(rows)
        csv = root / "table.csv"
        frame.to_csv(csv, index=index_column)
        return csv

    return make
