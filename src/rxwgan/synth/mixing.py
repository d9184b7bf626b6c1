"""Real rows plus synthetic ones in one table: what ``rxwgan generate --mix`` writes and the
utility study trains on."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from rxwgan.base.errors import RxwganError
from rxwgan.data.table import Table, read_table, write_frame


def synthetic_needed(real: Table, target: int, ratio: float) -> int:
    """How many synthetic images of ``target`` give ``ratio`` per real row of that target."""
    if ratio < 0:
        raise RxwganError(f"--ratio must be 0 or more, got {ratio}")
    return math.floor(ratio * int((real.targets == target).sum()) + 0.5)  # half up, not to even


def mix_tables(real: Table | str | os.PathLike, synthetic_csv: str | os.PathLike,
               out_csv: str | os.PathLike, ratio: float = 1.0) -> pd.DataFrame:
    """Write real rows (``synthetic=0``) plus ``ratio`` synthetic rows per real row of each
    target the synthetic set holds (lowest latent indices first); paths resolve from
    ``out_csv``'s folder. Refuses when the synthetic set is too small.
    """
    if not isinstance(real, Table):
        real = read_table(real)
    synthetic = read_table(synthetic_csv)
    out_dir = Path(out_csv).resolve().parent
    if "synthetic" in real.frame.columns and (
            pd.to_numeric(real.frame["synthetic"], errors="coerce") == 1).any():
        raise RxwganError(f"{real.source}: already holds synthetic rows (synthetic=1); "
                          f"mix a table of real images")
    real_rows = real.frame.reset_index(drop=True)
    real_rows[real.path_column] = real.paths_from(out_dir)
    real_rows["synthetic"] = 0
    fake_rows = synthetic.frame.assign(raw_image_path=synthetic.paths_from(out_dir))
    chosen = []
    for target in sorted(set(synthetic.targets.tolist())):
        need = synthetic_needed(real, target, ratio)
        rows = fake_rows[synthetic.targets == target]
        if need > len(rows):
            count = int((real.targets == target).sum())
            raise RxwganError(f"--ratio {ratio:g} needs {need} synthetic target-{target} images for "
                              f"{count} real rows, {synthetic.source} lists {len(rows)}; "
                              f"generate with -n {need}")
        chosen.append(rows.sort_values("latent_index").head(need))
    fake = pd.concat(chosen).rename(columns={"raw_image_path": real.path_column,
                                             "target": real.target_column})
    columns = list(real_rows.columns) + [c for c in fake.columns if c not in real_rows.columns]
    mixed = pd.concat([real_rows, fake], ignore_index=True)[columns]
    for column in ("synthetic", "seed", "latent_index"):  # empty for real rows, never "3.0"
        mixed[column] = mixed[column].astype("Int64")
    write_frame(mixed, out_csv, index=real.has_index_column)
    return mixed
