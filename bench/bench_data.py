"""Image cache throughput: fill (decode + resize + store) and serve from a warm cache.

500 phantoms of 1024 px (writing 2000 takes minutes) are decoded to 128 px; then the same
rows are loaded again from the warm cache, as every later run of a study does.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rxwgan.data.cache import ImageCache
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.table import read_table


def run(n_images: int = 500, source_size: int = 1024, size: int = 128) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        table = read_table(write_demo_data(Path(tmp) / "d", n_images=n_images, size=source_size))
        made = time.perf_counter() - start
        cache = ImageCache(Path(tmp) / "cache")

        start = time.perf_counter()
        cache.load_rows(table, size, progress=False)
        fill = time.perf_counter() - start

        start = time.perf_counter()
        cache.load_rows(table, size, progress=False)
        warm = time.perf_counter() - start
    return {
        "images": n_images, "source_px": source_size, "cache_px": size, "workers": cache.workers,
        "phantoms_written_s": round(made, 1),
        "cache_fill_images_per_s": round(n_images / fill, 1),
        "warm_cache_load_images_per_s": round(n_images / warm, 1),
    }


if __name__ == "__main__":
    print(run())
