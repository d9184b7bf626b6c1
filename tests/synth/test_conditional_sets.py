"""A conditional generator (both classes in one network) through generate, export, the
memorisation check, evaluate and the report's sample grid: the class is always asked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import torch

from helpers import quiet, run_config, tiny_model_files
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import CARD_FILE, CONFIG_FILE, SPLIT_FILE, SYNTHETIC_SETTINGS, TRAINED_GENERATOR
from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.table import read_table
from rxwgan.models import load_model
from rxwgan.report.figures import generator_samples
from rxwgan.synth.generate import generate
from rxwgan.synth.memorisation import check_memorisation
from rxwgan.train.run_info import read_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny conditional run, two epochs on 40 phantoms of both classes at 32 px."""
    from rxwgan.train.loop import train

    root = tmp_path_factory.mktemp("conditional")
    table = write_demo_data(root / "data", n_images=40, size=32, seed=3)
    folder = root / "run"
    train(run_config(table, folder, conditional=True, epochs=2), log=quiet)
    return folder


@pytest.fixture(scope="module")
def generator_file(run) -> Path:
    return run / TRAINED_GENERATOR


def table_of(run: Path) -> Path:
    return Path(read_run(run).config.input)


def images_of(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(path)) for path in read_table(folder / "synthetic.csv").paths])


# --- generate ------------------------------------------------------------------------------

def test_generate_samples_the_class_named_and_says_so(generator_file, tmp_path, capsys):
    sets = {target: tmp_path / f"target_{target}" for target in (0, 1)}
    for target, folder in sets.items():
        assert main(["generate", "-g", str(generator_file), "-n", "4", "-o", str(folder), "--target",
                     str(target), "--no-progress"]) == 0
        frame = pd.read_csv(folder / "synthetic.csv")
        assert set(frame["target"]) == {target}
        assert frame["raw_image_path"].str.startswith(f"images/synthetic_{target}_").all()
        settings = json.loads((folder / SYNTHETIC_SETTINGS).read_text())
        assert settings["conditional"] is True and settings["sampled_class"] == target
        card = (folder / CARD_FILE).read_text()
        assert f"this set samples class {target}" in card and "targets 0 and 1 (conditional)" in card
    # The same latents under the other class: other images.
    latents = [pd.read_csv(folder / "synthetic.csv")["latent_index"].tolist() for folder in sets.values()]
    assert latents[0] == latents[1]
    assert not np.array_equal(images_of(sets[0]), images_of(sets[1]))


def test_a_conditional_file_without_target_is_refused_and_nothing_written(generator_file, tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["generate", "-g", str(generator_file), "-n", "4", "-o", str(out), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "--target" in error and "conditional" in error and error.count("\n") == 1
    assert not out.exists()


def test_mixing_a_conditional_set_checks_the_ratio_of_the_class_named(generator_file, run, tmp_path, capsys):
    flags = ["generate", "-g", str(generator_file), "-n", "4", "--mix", str(table_of(run)), "--no-progress"]
    assert main([*flags, "-o", str(tmp_path / "none")]) == 2
    assert "--target" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert main([*flags, "-o", str(tmp_path / "mixed"), "--target", "0", "--ratio", "0.2"]) == 0
    mixed = pd.read_csv(tmp_path / "mixed" / "mixed.csv")
    assert set(mixed.loc[mixed["synthetic"] == 1, "target"]) == {0}


def test_another_class_never_reuses_the_images_of_the_first(generator_file, tmp_path):
    generate(generator_file, 4, tmp_path, target=0, progress=False)
    with pytest.raises(RxwganError, match=r"target 0 \(now 1\)"):
        generate(generator_file, 4, tmp_path, target=1, progress=False)
    result = generate(generator_file, 4, tmp_path, target=1, progress=False, overwrite=True)
    assert (result.written, result.kept) == (4, 0)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
        f"synthetic_1_{i:06d}.png" for i in range(4)]


# --- export --------------------------------------------------------------------------------

def test_onnx_export_takes_the_class_and_matches_pytorch_for_both(generator_file, tmp_path, capsys):
    out = tmp_path / "conditional.onnx"
    assert main(["export", "-g", str(generator_file), "--onnx", str(out)]) == 0
    assert "inputs 'z' and 'target'" in capsys.readouterr().out
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)
    z_input, class_input = graph.graph.input
    assert (z_input.name, class_input.name) == ("z", "target")
    assert class_input.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert all(put.type.tensor_type.shape.dim[0].dim_param for put in graph.graph.input)

    generator = load_model(generator_file)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    z = torch.randn(5, generator.latent_dim, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for labels in ([0] * 5, [1] * 5, [0, 1, 1, 0, 1]):
        classes = torch.tensor(labels)
        with torch.inference_mode():
            expected = generator(z, classes).numpy()
        (actual,) = session.run(["images"], {"z": z.numpy(), "target": classes.numpy()})
        assert np.abs(actual - expected).max() < 1e-4
        outputs[tuple(labels)] = actual
    assert np.abs(outputs[(0,) * 5] - outputs[(1,) * 5]).max() > 1e-3  # the class input counts


def test_a_per_class_export_keeps_one_input(tmp_path):
    from rxwgan.synth.export import export_onnx

    result = export_onnx(tiny_model_files(tmp_path, seed=0)["generator"], tmp_path / "g.onnx")
    assert result.inputs == ("z",) and result.classes == 0
    assert [put.name for put in onnx.load(str(tmp_path / "g.onnx")).graph.input] == ["z"]


# --- the memorisation check ----------------------------------------------------------------

def training_images(run: Path, target: int) -> torch.Tensor:
    return read_run(run, target).images("train").images


def test_memorisation_compares_with_the_sampled_class_rows_only(run):
    split = pd.read_csv(run / SPLIT_FILE)
    for target in (0, 1):
        copies = training_images(run, target)
        own = check_memorisation(run, copies, target=target)
        assert own["target"] == target and own["conditional"] is True
        assert own["n_train"] == int(((split["partition"] == "train") & (split["target"] == target)).sum())
        assert own["twins"]["n_copies"] == len(copies) and own["flagged"]
        other = check_memorisation(run, copies, target=1 - target)
        assert other["twins"]["n_copies"] == 0  # the other class's rows are not what it compares with
    with pytest.raises(RxwganError, match="conditional run .*--target"):
        check_memorisation(run, training_images(run, 0))


def test_generate_check_memorisation_of_a_conditional_set(generator_file, run, tmp_path):
    result = generate(generator_file, 6, tmp_path / "set", target=0, progress=False, check_memorisation=True)
    record = result.memorisation
    assert record["target"] == 0 and record["sets"]["train"]["target"] == 0
    assert record["n_train"] == len(training_images(run, 0))
    assert "of a conditional run" in (tmp_path / "set" / CARD_FILE).read_text()


def test_evaluate_memorisation_of_a_conditional_run_needs_the_class(run, tmp_path, capsys):
    assert main(["evaluate", "--memorisation", str(run), "-n", "8"]) == 2
    error = capsys.readouterr().err
    assert "--target" in error and error.count("\n") == 1
    out = tmp_path / "memo.json"
    assert main(["evaluate", "--memorisation", str(run), "-n", "8", "--target", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["target"] == 1 and record["sets"]["fake"]["target"] == 1
    assert record["n_train"] == len(training_images(run, 1))


# --- evaluate --------------------------------------------------------------------------------

def test_evaluate_scores_each_class_against_its_own_rows(generator_file, run, tmp_path, capsys):
    table = table_of(run)
    flags = ["evaluate", "--real", str(table), "--fake", str(generator_file), "-n", "12", "--metrics", "kid",
             "--features", "random"]
    both = tmp_path / "both.json"
    assert main([*flags, "--json", str(both)]) == 0
    printed = capsys.readouterr().out
    assert "class 0:" in printed and "class 1:" in printed
    per_class = json.loads(both.read_text())["per_class"]
    targets = pd.read_csv(table)["target"]
    for target in (0, 1):
        report = per_class[str(target)]
        assert report["sets"]["real"]["target"] == target and report["sets"]["fake"]["target"] == target
        assert report["n_real"] == int((targets == target).sum()) and report["n_fake"] == 12
    one = tmp_path / "one.json"
    assert main([*flags, "--target", "1", "--json", str(one)]) == 0
    assert json.loads(one.read_text()) == per_class["1"]


def test_evaluate_a_conditional_generator_against_a_folder_needs_the_class(generator_file, run, capsys):
    images = table_of(run).parent / "images"
    assert main(["evaluate", "--real", str(images), "--fake", str(generator_file), "-n", "8"]) == 2
    error = capsys.readouterr().err
    assert "--target" in error and error.count("\n") == 1


# --- the report's sample grid ----------------------------------------------------------------

def test_the_sample_grid_shows_each_class_on_the_same_latents(run, tmp_path):
    bare = tmp_path / "bare"  # no checkpoint: the trained generator on the run's seeded latents
    bare.mkdir()
    for name in (CONFIG_FILE, TRAINED_GENERATOR):
        shutil.copy(run / name, bare / name)
    for folder in (run, bare):
        images = generator_samples(folder)
        assert images.shape == (20, 1, 32, 32) and torch.isfinite(images).all()
        rows = images.unflatten(0, (-1, 5))
        assert not torch.allclose(rows[0], rows[1]) and not torch.allclose(rows[0], rows[2])


def test_a_conditional_run_keeps_a_memorisation_check_per_class(generator_file, run, tmp_path):
    """Checking class 1 must not replace class 0's record: the report shows both."""
    import shutil

    from rxwgan.base.layout import memorisation_files
    from rxwgan.report.collect import load_runs

    study = tmp_path / "study"
    copy = study / read_run(run).split.name / "conditional"
    shutil.copytree(run, copy)
    shutil.copytree(run.parent / "data", copy.parent / "data")  # its split.csv names ../data/...
    for target in (0, 1):
        generate(copy / TRAINED_GENERATOR, 6, tmp_path / f"set_{target}", target=target, progress=False,
                 check_memorisation=True)
    records = [json.loads((copy / memorisation_files(t)[0]).read_text()) for t in (0, 1)]
    assert [record["target"] for record in records] == [0, 1]
    [loaded] = load_runs(study)
    assert "target 0:" in loaded.row["memorisation"] and "target 1:" in loaded.row["memorisation"]
