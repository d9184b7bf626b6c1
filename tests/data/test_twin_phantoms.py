"""The twin-rich phantom table: patients, exact twins and blanks, as real collections have."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from PIL import Image

from rxwgan.data.twin_phantoms import PATIENT_COLUMN, write_twin_table


def _pixel_hashes(table_path) -> pd.Series:
    frame = pd.read_csv(table_path)
    return frame["raw_image_path"].map(
        lambda path: hashlib.sha256(np.asarray(Image.open(table_path.parent / path)).tobytes()).hexdigest())


def test_about_a_sixth_of_the_rows_have_an_exact_twin_and_patients_have_several_images(tmp_path):
    table = write_twin_table(tmp_path / "a", n_patients=60, size=32, seed=1)
    frame = pd.read_csv(table)
    hashes = _pixel_hashes(table)
    twinned = hashes.map(hashes.value_counts()) > 1
    assert 0.1 < twinned.mean() < 0.25
    per_patient = frame.groupby(PATIENT_COLUMN).size()
    assert per_patient.min() == 1 and per_patient.max() >= 4
    assert frame.groupby(PATIENT_COLUMN)["target"].nunique().max() == 1  # one class per patient
    assert frame["raw_image_md5"].nunique() > hashes.nunique()  # re-exports: same pixels, other bytes


def test_same_arguments_same_bytes_and_another_seed_new_patients_but_the_same_blanks(tmp_path):
    first = write_twin_table(tmp_path / "a", n_patients=20, size=32, seed=1)
    again = write_twin_table(tmp_path / "b", n_patients=20, size=32, seed=1)
    other = write_twin_table(tmp_path / "c", n_patients=20, size=32, seed=2)
    assert first.read_bytes() == again.read_bytes()
    a, c = pd.read_csv(first), pd.read_csv(other)
    assert not set(a[PATIENT_COLUMN]) & set(c[PATIENT_COLUMN])
    blanks_a = set(_pixel_hashes(first)[a["comment"] == "blank film"])
    blanks_c = set(_pixel_hashes(other)[c["comment"] == "blank film"])
    assert len(blanks_a) == 1 and blanks_a == blanks_c
    assert not (set(_pixel_hashes(first)) - blanks_a) & set(_pixel_hashes(other))
