from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from helpers import write_png
from rxwgan.base.errors import RxwganError
from rxwgan.data.table import build_table, parse_clinical_text, read_table


def test_reads_users_table_with_leading_index(make_table):
    table = read_table(make_table(n=6))
    assert list(table.frame.columns)[:3] == ["target", "image_ID", "raw_image_path"]
    assert all(path.is_file() for path in table.paths)
    assert table.targets.tolist() == [1, 0, 1, 0, 1, 0]


def test_relative_paths_resolve_against_csv_folder(make_table, tmp_path, monkeypatch):
    csv = make_table(n=4)
    monkeypatch.chdir(tmp_path.parent)  # somewhere unrelated
    assert all(p.is_file() for p in read_table(csv).paths)


def test_write_keeps_users_format(make_table, tmp_path):
    table = read_table(make_table(n=4))
    out = tmp_path / "out.csv"
    table.write(out, {"partition": ["train", "val", "train", "val"]})
    header = out.read_text().splitlines()[0]
    assert header.startswith(",target,image_ID")
    assert header.endswith(",partition")


def test_reports_every_problem_at_once(make_table):
    csv = make_table(n=30)
    frame = pd.read_csv(csv, index_col=0)
    frame.loc[3, "target"] = 2
    frame.loc[5, "raw_image_path"] = frame.loc[4, "raw_image_path"]
    for i in range(12, 25):
        frame.loc[i, "raw_image_path"] = f"images/missing_{i}.png"
    frame.to_csv(csv)
    with pytest.raises(RxwganError) as info:
        read_table(csv)
    message = str(info.value)
    assert "\n" not in message
    assert "1 target(s) not 0/1: row 4 (line 5): 2" in message
    assert "1 duplicate image path(s): row 6 (line 7) repeats row 5 (line 6)" in message
    assert "13 image file(s) not found" in message and "and 3 more" in message
    assert "missing_12.png" in message and "missing_24.png" not in message


def test_missing_columns_named(make_table):
    csv = make_table(n=4)
    with pytest.raises(RxwganError, match="missing column.*path"):
        read_table(csv, path_column="path")


def test_renamed_columns(make_table):
    csv = make_table(n=4)
    frame = pd.read_csv(csv, index_col=0).rename(columns={"raw_image_path": "file", "target": "tb"})
    frame.to_csv(csv)
    assert len(read_table(csv, path_column="file", target_column="tb")) == 4


def test_empty_table_and_empty_class(make_table, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("target,raw_image_path\n")
    with pytest.raises(RxwganError, match="no rows"):
        read_table(empty)
    csv = make_table(n=4, tb_every=1)  # all target 1
    with pytest.raises(RxwganError, match="no rows with target 0"):
        read_table(csv, target=0)


def test_absent_table_named(tmp_path):
    with pytest.raises(RxwganError, match="nope.csv: table not found"):
        read_table(tmp_path / "nope.csv")


def test_clinical_text_parsing():
    assert parse_clinical_text("male 35yrs\nnormal\n") == (35, "M", "normal")
    assert parse_clinical_text("Female 8 yrs\nPTB in the left upper field") == (
        8, "F", "PTB in the left upper field")
    assert parse_clinical_text("Patient's Sex: F\nPatient's Age: 040Y\nright PTB") == (40, "F", "right PTB")


def test_build_shenzhen_layout(tmp_path):
    root = tmp_path / "ChinaSet"
    for name, text in (("CHNCXR_0001_0", "male 45yrs\nnormal"), ("CHNCXR_0002_1", "female 30yrs\nSTB,ATB")):
        write_png(root / "images" / f"{name}.png", np.full((8, 8), 7, np.uint8))
        (root / "clinical").mkdir(exist_ok=True)
        (root / "clinical" / f"{name}.txt").write_text(text)
    out = tmp_path / "table.csv"
    frame = build_table(root, out)
    assert frame["target"].tolist() == [0, 1]
    assert frame["sex"].tolist() == ["M", "F"] and frame["age"].tolist() == [45, 30]
    assert frame["comment"].tolist() == ["normal", "STB,ATB"]
    table = read_table(out)
    assert list(table.frame.columns) == ["target", "image_ID", "raw_image_path", "raw_image_md5",
                                         "age", "sex", "comment"]
    assert table.frame["raw_image_md5"][0] == hashlib.md5(table.paths[0].read_bytes()).hexdigest()


def test_build_class_folder_layout(tmp_path):
    for name, count in (("normal", 2), ("tb", 3)):
        for i in range(count):
            write_png(tmp_path / "set" / name / f"{i}.png", np.zeros((8, 8), np.uint8))
    frame = build_table(tmp_path / "set", tmp_path / "t.csv", classes={"normal": 0, "tb": 1})
    assert sorted(frame["target"].tolist()) == [0, 0, 1, 1, 1]
    with pytest.raises(RxwganError, match="class folders must be named 0 and 1"):
        build_table(tmp_path / "set", tmp_path / "u.csv")
