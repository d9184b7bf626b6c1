"""End-to-end CLI behaviour: each data verb, create-models, the legacy entry points, refusals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import SHARED_FIXTURES
from rxwgan.cli import create_models_main, main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.models import load_model


def one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_table_check_summarises(make_table, capsys):
    assert main(["table", "check", str(make_table(n=6, size=20))]) == 0
    out = capsys.readouterr().out
    assert "6 rows" in out and "target 0: 3, target 1: 3" in out
    assert "6 x 20x20 8-bit PNG" in out and "no problems found" in out


def test_table_check_reports_problems(make_table, capsys):
    csv = make_table(n=4)
    frame = pd.read_csv(csv, index_col=0)
    frame.loc[1, "raw_image_path"] = "images/gone.png"
    frame.to_csv(csv)
    (csv.parent / "images" / "img_002_1.png").write_bytes(b"not a png")
    assert main(["table", "check", str(csv)]) == 2
    err = capsys.readouterr().err
    assert "1 image file(s) not found: row 2 (line 3)" in err
    assert "1 unreadable image(s): row 3 (line 4)" in err


def test_table_split_writes_partitions(make_table, tmp_path, capsys):
    out = tmp_path / "split.csv"
    assert main(["table", "split", str(make_table(n=25)), "--fold", "1", "--n_splits", "5",
                 "-o", str(out)]) == 0
    frame = pd.read_csv(out, index_col=0)
    assert frame["partition"].value_counts().to_dict() == {"train": 20, "val": 5}
    assert main(["table", "split", str(make_table(n=25)), "--fold", "1", "--n_splits", "5",
                 "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--fold", "5", "--n_splits", "5"], "--fold must be in 0..4"),
    (["--test", "10", "--sort", "0"], "--test must be in 0..9"),
    (["--fold", "x"], "argument --fold: invalid int value"),
])
def test_table_split_refusals(make_table, tmp_path, capsys, args, message):
    code = main(["table", "split", str(make_table(n=25)), "-o", str(tmp_path / "s.csv"), *args])
    assert message in one_line_error(capsys, code)


def test_missing_table_is_one_line(tmp_path, capsys):
    code = main(["table", "split", str(tmp_path / "none.csv"), "--fold", "0", "--n_splits", "5",
                 "-o", str(tmp_path / "s.csv")])
    assert "none.csv: table not found" in one_line_error(capsys, code)


def test_demo_data_cache_and_build(tmp_path, capsys):
    assert main(["demo-data", "-o", str(tmp_path / "d"), "-n", "12", "--size", "32"]) == 0
    assert main(["demo-data", "-o", str(tmp_path / "d"), "-n", "12"]) == 2
    assert main(["demo-data", "-o", str(tmp_path / "s"), "-n", "4", "--size", "16",
                 "--findings", "subtle"]) == 0
    assert "subtle findings" in capsys.readouterr().out
    assert main(["cache", str(tmp_path / "d" / "table.csv"), "--size", "16"]) == 0
    assert "12 images at 16px ready" in capsys.readouterr().out
    assert main(["table", "build", str(tmp_path / "d"), "-o", str(tmp_path / "built.csv")]) == 0
    built = pd.read_csv(tmp_path / "built.csv")
    assert len(built) == 12 and set(built["target"]) == {0, 1}


def test_create_models_and_legacy_entry_point(tmp_path, monkeypatch, capsys):
    assert main(["create-models", "--model", "tiny", "-o", str(tmp_path)]) == 0
    assert load_model(tmp_path / "generator", role="generator").arch == "tiny"
    assert main(["create-models", "--model", "tiny", "-o", str(tmp_path)]) == 2
    monkeypatch.chdir(tmp_path / "..")
    legacy = tmp_path.parent / "legacy"
    legacy.mkdir()
    monkeypatch.chdir(legacy)
    assert create_models_main([]) == 0  # the old habit: v1 files in the current folder
    assert load_model(legacy / "critic.safetensors", role="critic").arch == "v1"


def test_console_scripts_installed():
    bin_dir = Path(sys.executable).parent
    for script in ("rxwgan", "create_models.py", "run_wgangp.py"):
        assert (bin_dir / script).is_file(), script
    done = subprocess.run([str(bin_dir / "run_wgangp.py"), "--help"], capture_output=True, text=True)
    for flag in ("--n_discr", "--save_for_each", "--disp_for_each", "--start_from_epoch", "--history"):
        assert flag in done.stdout


def test_train_bad_input_is_one_line(tmp_path, capsys):
    code = main(["train", "-i", str(tmp_path / "no.csv"), "-o", str(tmp_path / "o")])
    assert "no.csv: table not found" in one_line_error(capsys, code)


@pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason="../shared/fixtures not found beside the checkout")
def test_train_starts_from_the_old_tools_keras_files(tmp_path, capsys):
    table = write_demo_data(tmp_path / "d", n_images=24, size=128, seed=1)
    code = main(["train", "-i", str(table), "-o", str(tmp_path / "run"), "--fold", "0", "--n_splits", "4",
                 "-g", str(SHARED_FIXTURES / "keras_v1" / "generator.h5"),
                 "-c", str(SHARED_FIXTURES / "keras_v1" / "critic.h5"),
                 "--epochs", "1", "--batch_size", "4", "--n_critic", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert load_model(tmp_path / "run" / "generator_trained", role="generator").arch == "v1"


def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    flags = ["demo", "-o", str(out), "--model", "tiny", "--kimg", "0.1", "--synthetic", "30",
             "--utility-repeats", "1", "--utility-epochs", "1", "--no-conditional"]  # per-class runs
    assert main(flags) == 0
    printed = capsys.readouterr().out
    assert "[3/7] 5-fold split" in printed and "demo finished" in printed
    assert re.search(r"\| swapped \| 1 \| [01]\.\d{3}", printed)  # the utility table of the fold
    assert re.search(r"target 1: samples .*samples.png; two-sample test accuracy [01]\.\d{3} on 30 real",
                     printed)
    for target in (0, 1):
        run = out / "fold_0" / f"target_{target}"
        assert (run / "generator_trained.safetensors").is_file()
        assert len(list((out / f"synthetic_target_{target}" / "images").glob("*.png"))) == 30
        evaluation = json.loads((out / f"synthetic_target_{target}" / "evaluation.json").read_text())
        assert evaluation["n_fake"] == 30
        assert "## Memorisation" in (out / f"synthetic_target_{target}" / "CARD.md").read_text()
    assert re.search(r"target 1: memorisation (not flagged|FLAGGED).*\(30 synthetic", printed)
    assert (out / "report" / "report.html").is_file()
    assert main(flags) == 0  # re-run: nothing to redo
    assert "phantom data already in" in capsys.readouterr().out


def test_demo_with_one_conditional_generator(tmp_path, capsys):
    out = tmp_path / "demo"
    flags = ["demo", "-o", str(out), "--model", "tiny", "--kimg", "0.1", "--synthetic", "30",
             "--utility-repeats", "1", "--utility-epochs", "1", "--conditional"]
    assert main(flags) == 0
    printed = capsys.readouterr().out
    assert "training one conditional generator for both classes" in printed
    assert (out / "fold_0" / "conditional" / "generator_trained.safetensors").is_file()
    assert not (out / "fold_0" / "target_0").exists()
    for target in (0, 1):
        card = (out / f"synthetic_target_{target}" / "CARD.md").read_text()
        assert f"samples class {target}" in card
    assert re.search(r"target 0: samples .*two-sample test accuracy [01]\.\d{3} on 30 real", printed)
    assert "conditional runs" in (out / "utility" / "summary.md").read_text()
