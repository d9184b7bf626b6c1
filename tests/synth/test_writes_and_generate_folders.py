"""The writers under faults: file modes, full disks, bad output paths, one generate per folder,
and a synthetic folder that holds exactly what its table lists."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from helpers import tiny_model_files
from rxwgan.base import atomic, folder_lock
from rxwgan.base.errors import RxwganError
from rxwgan.base.plots import save_curves, save_grid
from rxwgan.cli import main
from rxwgan.report.figures import plot_bands
from rxwgan.synth.generate import generate


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


# --- generate: one process per folder, and exactly the listed images ----------------------

def listed_and_present(folder: Path) -> tuple[list[str], list[str]]:
    """(paths synthetic.csv lists, files under images/), both sorted."""
    listed = sorted(pd.read_csv(folder / "synthetic.csv")["raw_image_path"])
    present = sorted(p.relative_to(folder).as_posix() for p in (folder / "images").iterdir())
    return listed, present


def test_a_second_generate_into_a_held_folder_is_refused(models, tmp_path, capsys):
    with folder_lock.hold(tmp_path, "-o"):  # another open: flock refuses it, as another process
        assert main(["generate", "-g", str(models["generator"]), "-n", "2", "-o", str(tmp_path),
                     "--no-progress"]) == 2
    assert f"-o {tmp_path} is in use by another rxwgan process (pid {os.getpid()}" in \
        one_line_error(capsys)
    assert [p.name for p in tmp_path.iterdir()] == [folder_lock.LOCK_FILE]


def test_generate_onto_a_file_is_one_line(models, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.write_text("mine")
    for out in (plain, plain / "set"):
        assert main(["generate", "-g", str(models["generator"]), "-n", "2", "-o", str(out),
                     "--no-progress"]) == 2
        assert f"-o {out}: is" in one_line_error(capsys)
    assert plain.read_text() == "mine"


def test_overwrite_removes_the_previous_set_and_only_it(models, tmp_path):
    generate(models["generator"], 20, tmp_path, batch_size=8, progress=False)
    (tmp_path / "images" / "mine.png").write_bytes(b"user file")
    (tmp_path / "notes.txt").write_text("mine")
    generate(models["generator"], 10, tmp_path, seed=9, batch_size=8, overwrite=True,
             progress=False)
    listed, present = listed_and_present(tmp_path)
    assert len(listed) == 10 and present == sorted([*listed, "images/mine.png"])
    assert set(pd.read_csv(tmp_path / "synthetic.csv")["seed"]) == {9}
    assert (tmp_path / "notes.txt").read_text() == "mine"

    generate(models["generator"], 3, tmp_path, fmt="npy", overwrite=True, progress=False)
    listed, present = listed_and_present(tmp_path)
    assert all(p.endswith(".npy") for p in listed) and present == sorted([*listed, "images/mine.png"])


def test_a_smaller_resume_drops_the_images_past_n(models, tmp_path):
    generate(models["generator"], 12, tmp_path, batch_size=4, progress=False)
    result = generate(models["generator"], 5, tmp_path, batch_size=4, progress=False)
    assert (result.kept, result.written) == (5, 0)
    listed, present = listed_and_present(tmp_path)
    assert listed == present == [f"images/synthetic_1_{i:06d}.png" for i in range(5)]


def test_a_killed_run_leaves_nothing_that_is_not_listed(models, tmp_path):
    generate(models["generator"], 12, tmp_path, batch_size=4, progress=False)
    images = tmp_path / "images"
    frame = pd.read_csv(tmp_path / "synthetic.csv")
    frame.head(4).to_csv(tmp_path / "synthetic.csv", index=False)  # killed before the table caught up
    (images / ".synthetic_1_000009.png.1a2b3c4d.tmp").write_bytes(b"")  # killed mid-write
    (images / ".synthetic_1_000010.png.k3x_9q2z.tmp.png").write_bytes(b"")  # an older version's
    (tmp_path / ".synthetic.csv.0f0f0f0f.tmp").write_bytes(b"")
    result = generate(models["generator"], 8, tmp_path, batch_size=4, progress=False)
    assert (result.kept, result.written) == (4, 4)
    listed, present = listed_and_present(tmp_path)
    assert listed == present == [f"images/synthetic_1_{i:06d}.png" for i in range(8)]
    assert not list(tmp_path.glob(".synthetic*"))


def test_a_stale_mixed_table_goes_with_the_images_it_lists(models, make_table, tmp_path, capsys):
    table = make_table(n=6)
    out = tmp_path / "out"
    args = ["generate", "-g", str(models["generator"]), "-o", str(out), "--no-progress"]
    assert main([*args, "-n", "3", "--mix", str(table)]) == 0
    assert (out / "mixed.csv").is_file()
    assert main([*args, "-n", "3"]) == 0  # same set: mixed.csv still right, kept
    assert (out / "mixed.csv").is_file()
    assert main([*args, "-n", "3", "--seed", "4", "--overwrite"]) == 0
    assert not (out / "mixed.csv").exists()


def test_generated_images_follow_the_umask(models, tmp_path, umask):
    umask(0o027)
    generate(models["generator"], 2, tmp_path, progress=False)
    for path in [tmp_path / "synthetic.csv", tmp_path / "synthetic.json",
                 *(tmp_path / "images").iterdir()]:
        assert mode(path) == 0o640, path
