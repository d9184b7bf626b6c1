"""Hardening of the writers: file modes, full disks, bad output paths, one generate per folder,
and a synthetic folder that holds exactly what its table lists."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from helpers import tiny_model_files
from rxwgan import atomic
from rxwgan.cli import main
from rxwgan.errors import RxwganError
from rxwgan.plots import save_curves, save_grid
from rxwgan.report import plot_bands


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny_model_files(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture
def umask():
    """Set a umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the atomic writer --------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    atomic.write_text(tmp_path / "a.json", "{}")
    with atomic.atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    assert mode(tmp_path / "a.json") == 0o666 & ~mask
    assert mode(tmp_path / "b.bin") == 0o666 & ~mask


def test_temporary_files_carry_no_image_extension(tmp_path):
    seen = []
    with atomic.atomic_path(tmp_path / "picture.png") as tmp:
        seen.append(tmp)
        tmp.write_bytes(b"x")
    assert seen[0].name.startswith(".picture.png.") and seen[0].suffix == ".tmp"


def test_plots_and_grids_are_written_in_their_format(tmp_path):
    import numpy as np

    save_grid(np.zeros((4, 1, 8, 8), np.float32), tmp_path / "grid.png")
    save_curves({"train_critic_loss": [1.0, 0.5]}, tmp_path / "curves.png")
    save_curves({"train_critic_loss": [1.0, 0.5]}, tmp_path / "curves.pdf")
    plot_bands([{"train_critic_loss": [1.0, 0.5]}] * 2, [("losses", ["train_critic_loss"])],
               tmp_path / "bands.png", "study")
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "curves.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / "bands.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bands.png", "curves.pdf", "curves.png",
                                                          "grid.png"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, code):
    target = tmp_path / "history.json"
    target.write_text("old")

    def full(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RxwganError, match=f"cannot write {target}: {os.strerror(code)}"):
        atomic.write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_failed_write_of_the_data_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RxwganError, match=f"cannot write {target}: No space left"):
        with atomic.atomic_path(target) as tmp:
            with open(tmp, "wb"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_path_under_a_file_or_in_proc_is_one_error(tmp_path):
    (tmp_path / "plain").write_text("mine")
    with pytest.raises(RxwganError, match=r"cannot write .*plain/sub/x\.json: .*plain is a file"):
        atomic.write_text(tmp_path / "plain" / "sub" / "x.json", "{}")
    with pytest.raises(RxwganError, match=r"cannot write /proc/rxwgan-test/x\.json"):
        atomic.write_text("/proc/rxwgan-test/x.json", "{}")
    assert (tmp_path / "plain").read_text() == "mine"


# --- bad output paths on the command line -------------------------------------------------

def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err
    return err


def test_create_models_onto_a_file_or_under_one(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.write_text("mine")
    assert main(["create-models", "--model", "tiny", "-o", str(plain)]) == 2
    assert f"-o {plain}: is a file" in one_line_error(capsys)
    assert main(["create-models", "--model", "tiny", "-o", str(plain / "models")]) == 2
    assert f"is under the file {plain}" in one_line_error(capsys)
    assert plain.read_text() == "mine" and sorted(tmp_path.iterdir()) == [plain]


def test_create_models_checks_both_files_before_writing_either(tmp_path, capsys):
    (tmp_path / "critic.safetensors").write_text("mine")
    assert main(["create-models", "--model", "tiny", "-o", str(tmp_path)]) == 2
    assert "critic.safetensors already exists" in one_line_error(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["critic.safetensors"]


def test_export_onto_a_folder_or_an_unwritable_path(models, tmp_path, capsys):
    folder = tmp_path / "out.onnx"
    folder.mkdir()
    (folder / "keep").write_text("mine")
    plain = tmp_path / "plain"
    plain.write_text("mine")
    for out, overwrite, message in [
            (folder, [], "is a folder"), (folder, ["--overwrite"], "is a folder"),
            (plain / "g.onnx", [], f"{plain} is a file, not a folder"),
            (Path("/proc/rxwgan-test/g.onnx"), [], "cannot write /proc/rxwgan-test/g.onnx")]:
        assert main(["export", "-g", str(models["generator"]), "--onnx", str(out), *overwrite]) == 2
        assert message in one_line_error(capsys)
    assert (folder / "keep").read_text() == "mine" and plain.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "plain"]
