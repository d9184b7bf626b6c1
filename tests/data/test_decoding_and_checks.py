"""The data layer under odd input: wide-depth PNGs, rebased written tables, refused files,
a table check that decodes, and progress bars that suit a log file."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin

from helpers import write_dicom, write_png
from rxwgan.base.errors import RxwganError
from rxwgan.base.progress import progress_bar
from rxwgan.cli import main
from rxwgan.data.cache import ImageCache
from rxwgan.data.images import Depth, decode_unit, read_header
from rxwgan.data.table import read_table


def ramp12(seed: int, size: int = 16) -> np.ndarray:
    """A 12-bit radiograph as detectors store it: values 0..4095 in a 16-bit PNG."""
    values = np.random.default_rng(seed).integers(0, 4096, (size, size), dtype=np.uint16)
    values[0, 0], values[0, 1] = 0, 4095
    return values


def write_png16(path: Path, array: np.ndarray, sbit: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    Image.fromarray(array).save(path, pnginfo=info)
    return path


def write_table(folder: Path, names: list[str], targets: list[int] | None = None) -> Path:
    targets = targets or [i % 2 for i in range(len(names))]
    frame = pd.DataFrame({"target": targets, "raw_image_path": [f"images/{n}" for n in names]})
    csv = folder / "table.csv"
    frame.to_csv(csv, index=False)
    return csv


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims a huge size, with no real pixels behind it."""
    def chunk(cid: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + cid + data + struct.pack(">I", zlib.crc32(cid + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


def one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err and "Warning" not in captured.err, captured.err
    return lines[0]


# --- 3: 12-bit X-rays in 16-bit PNGs ------------------------------------------------------

def test_12bit_pngs_decode_to_the_full_range(tmp_path):
    root = tmp_path / "d"
    for i in range(3):
        write_png16(root / "images" / f"x{i}.png", ramp12(i))
    table = read_table(write_table(root, [f"x{i}.png" for i in range(3)]))
    cache = ImageCache(tmp_path / "c")
    images = cache.load(table.paths, 16, progress=False)
    assert images.min() == -1.0 and images.max() == pytest.approx(1.0)
    np.testing.assert_allclose(images[0, 0], ramp12(0) / 4095 * 2 - 1, atol=1e-6)
    assert cache.bit_depths(table.paths) == [cache.bit_depths(table.paths)[0]] * 3
    assert cache.bit_depths(table.paths)[0].bits == 12
    # The depth is part of the key: forcing 16 bits makes new entries, never reuses the 12-bit ones.
    forced = cache.load(table.paths, 16, progress=False, bit_depth=16)
    assert forced.max() == pytest.approx(4095 / 65535 * 2 - 1)
    assert len(list((tmp_path / "c").rglob("*-12bit.npz"))) == 3
    assert len(list((tmp_path / "c").rglob("*-16bit.npz"))) == 3


def test_one_depth_for_the_whole_table(tmp_path):
    """A dark image is not stretched: it shares the table's depth, in train and val alike."""
    root = tmp_path / "d"
    write_png16(root / "images" / "bright.png", ramp12(0))
    write_png16(root / "images" / "dark.png", np.full((16, 16), 1000, np.uint16))
    table = read_table(write_table(root, ["bright.png", "dark.png"], [1, 1]))
    dark = ImageCache(tmp_path / "c").load_rows(table, 16, positions=[1], progress=False)
    assert float(dark.max()) == pytest.approx(1000 / 4095 * 2 - 1, abs=1e-6)


def test_sbit_chunk_and_forced_depth(tmp_path):
    marked = write_png16(tmp_path / "m.png", np.full((16, 16), 2000, np.uint16), sbit=12)
    header = read_header(marked)
    assert header.significant_bits == 12 and header.bit_depth == 16 and header.wide
    np.testing.assert_allclose(decode_unit(marked), 2000 / 4095, atol=1e-6)  # sBIT, not the peak
    np.testing.assert_allclose(decode_unit(marked, bit_depth=14), 2000 / 16383, atol=1e-6)
    with pytest.raises(RxwganError, match=r"m.png: pixel value 2000 does not fit 10 bits.*--bit-depth"):
        decode_unit(marked, bit_depth=10)
    eight = write_png(tmp_path / "e.png", np.full((4, 4), 255, np.uint8))
    assert not read_header(eight).wide
    assert ImageCache(tmp_path / "c").bit_depths([eight, marked]) == [None, Depth(12, "sBIT")]


def test_table_check_reports_depth_and_flag_forces_it(tmp_path, capsys):
    root = tmp_path / "d"
    for i in range(2):
        write_png16(root / "images" / f"x{i}.png", ramp12(i))
    csv = write_table(root, ["x0.png", "x1.png"])
    assert main(["table", "check", str(csv), "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "2 x 16x16 16-bit PNG, decoded as 12-bit (table maximum 4095)" in out
    assert main(["table", "check", str(csv), "--size", "16", "--bit-depth", "16"]) == 0
    assert "decoded as 16-bit (--bit-depth)" in capsys.readouterr().out
    code = main(["cache", str(csv), "--size", "16", "--bit-depth", "10"])
    assert "x0.png: pixel value 4095 does not fit 10 bits" in one_line_error(capsys, code)
    code = main(["table", "check", str(csv), "--bit-depth", "20"])
    assert "--bit-depth must be between 8 and 16, not 20" in one_line_error(capsys, code)


def test_train_takes_the_depth_and_refuses_a_bad_one():
    from rxwgan.cli import build_parser
    from rxwgan.cli.train import train_config
    from rxwgan.train.config import TrainConfig

    args = build_parser().parse_args(["train", "-i", "t.csv", "-o", "o", "--bit-depth", "12"])
    assert train_config(args).bit_depth == 12
    with pytest.raises(RxwganError, match="--bit-depth"):
        TrainConfig(input="t.csv", output="o", bit_depth=4).check()


# --- 8: a written table keeps finding its images -------------------------------------------

def test_written_table_rebases_relative_paths(make_table, tmp_path):
    table = read_table(make_table(n=4))
    absolute = str(table.paths[0])
    table.frame.loc[table.frame.index[0], "raw_image_path"] = absolute
    out = tmp_path / "elsewhere" / "deeper" / "split.csv"
    table.write(out, {"partition": ["train"] * 4})
    again = read_table(out)
    assert all(path.is_file() for path in again.paths)
    assert [path.resolve() for path in again.paths] == table.paths
    assert again.frame["raw_image_path"].iloc[0] == absolute  # absolute stays absolute
    assert not Path(again.frame["raw_image_path"].iloc[1]).is_absolute()


def test_table_split_to_another_folder(make_table, tmp_path, capsys):
    out = tmp_path / "runs" / "split.csv"
    out.parent.mkdir()
    assert main(["table", "split", str(make_table(n=10)), "--fold", "0", "--n_splits", "5",
                 "-o", str(out)]) == 0
    assert all(path.is_file() for path in read_table(out).paths)


# --- 11: one-line refusals ------------------------------------------------------------------

def test_symlink_loop_is_one_line(tmp_path, capsys):
    root = tmp_path / "d"
    write_png(root / "images" / "ok.png", np.zeros((8, 8), np.uint8))
    os.symlink("loop.png", root / "images" / "loop.png")
    csv = write_table(root, ["ok.png", "loop.png"])
    line = one_line_error(capsys, main(["cache", str(csv), "--size", "8"]))
    assert "row 2 (line 3)" in line and "loop.png" in line and "symbolic links" in line
    assert main(["table", "check", str(csv)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "row 2 (line 3)" in err and "symbolic links" in err


@pytest.mark.parametrize("side", [10_000, 100_000])  # 1e8 pixels: PIL warns; 1e10: PIL raises
def test_decompression_bomb_header_is_refused_in_one_line(tmp_path, capsys, side):
    root = tmp_path / "d"
    write_png(root / "images" / "ok.png", np.zeros((8, 8), np.uint8))
    png_header_only(root / "images" / "bomb.png", side, side)
    csv = write_table(root, ["ok.png", "bomb.png"])
    line = one_line_error(capsys, main(["cache", str(csv), "--size", "8"]))
    assert "row 2 (line 3)" in line and "bomb.png: too large to decode" in line
    assert main(["table", "check", str(csv), "--size", "8"]) == 2
    captured = capsys.readouterr()
    assert "bomb.png: too large to decode" in captured.err and "Warning" not in captured.err


# --- 12: table check decodes every image ----------------------------------------------------

def test_table_check_decodes_every_image_and_fills_the_cache(tmp_path, capsys, monkeypatch):
    root = tmp_path / "d"
    for i in range(3):
        write_png(root / "images" / f"ok{i}.png", np.full((16, 16), 40 * i, np.uint8))
    whole = write_png(root / "images" / "cut.png", np.random.default_rng(0).integers(0, 255, (64, 64),
                                                                                   dtype=np.uint8))
    whole.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    dicom = write_dicom(root / "images" / "empty.dcm", np.zeros((8, 8), np.uint16))
    import pydicom

    ds = pydicom.dcmread(dicom)
    del ds.PixelData
    ds.save_as(dicom)
    csv = write_table(root, ["ok0.png", "cut.png", "ok1.png", "empty.dcm", "ok2.png"])
    assert main(["table", "check", str(csv)]) == 2
    captured = capsys.readouterr()
    assert "2 unreadable image(s): row 2 (line 3)" in captured.err and "cut.png" in captured.err
    assert "row 4 (line 5)" in captured.err and "empty.dcm" in captured.err
    assert "3 x 16x16 8-bit PNG" in captured.out and "no problems found" not in captured.out

    calls = []
    monkeypatch.setattr("rxwgan.data.cache.decode_unit", lambda *a: calls.append(a))
    ok = [read_table(csv, check_files=False).paths[i] for i in (0, 2, 4)]
    ImageCache().load(ok, 128, progress=False)  # train's default size, check's too
    assert calls == []  # the check already decoded them into the cache


# --- 14: progress bars off a terminal -------------------------------------------------------

def test_progress_off_a_terminal_writes_a_few_plain_lines():
    stream = io.StringIO()
    for _ in progress_bar(range(1000), file=stream, desc="images", mininterval=0):
        pass
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 12 and "1000/1000" in lines[-1]

    stream = io.StringIO()
    bar = progress_bar(total=10, file=stream, leave=False)  # tqdm would clear it with '\r'
    bar.update(10)
    bar.close()
    assert "\r" not in stream.getvalue() and "10/10" in stream.getvalue().splitlines()[-1]


def test_cache_progress_in_a_log_has_no_carriage_returns(make_table, tmp_path, capsys):
    table = read_table(make_table(n=64, size=8))
    ImageCache(tmp_path / "c").load(table.paths, 8, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "64/64" in err
