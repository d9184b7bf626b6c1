"""Synthetic data sets: same bytes from the same inputs, resume, formats, mixed tables, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import rxwgan.synth.generate as generate_module
from helpers import SHARED_FIXTURES, tiny_model_files
from rxwgan.base.errors import RxwganError
from rxwgan.base.folder_lock import LOCK_FILE
from rxwgan.cli import main
from rxwgan.data.table import md5_of_file, read_table
from rxwgan.models import file_sha256
from rxwgan.synth.generate import generate
from rxwgan.synth.mixing import mix_tables
from rxwgan.synth.sampling import latent_vectors, synthetic_images

KERAS_V1 = SHARED_FIXTURES / "keras_v1" / "generator.h5"
N, BATCH = 20, 8


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny_model_files(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="module")
def reference(models, tmp_path_factory) -> Path:
    """One finished run (n=20, batch 8) that other tests compare against."""
    out = tmp_path_factory.mktemp("reference")
    generate(models["generator"], N, out, batch_size=BATCH, progress=False)
    return out


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file's bytes but the folder lock's (it names the holder's pid and start time) and
    the card's (it records the date)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (LOCK_FILE, "CARD.md")}


def test_same_inputs_give_same_bytes(models, reference, tmp_path):
    generate(models["generator"], N, tmp_path, batch_size=BATCH, progress=False)
    again = files_of(tmp_path)
    assert again == files_of(reference)
    assert len([name for name in again if name.startswith("images/")]) == N

    table = read_table(tmp_path / "synthetic.csv")  # validates, and resolves paths from FOLDER
    frame = table.frame
    assert list(frame.columns) == ["target", "image_ID", "raw_image_path", "raw_image_md5", "age",
                                   "sex", "comment", "synthetic", "generator_sha256", "seed",
                                   "latent_index"]
    assert frame["latent_index"].tolist() == list(range(N))
    assert set(frame["synthetic"]) == {1} and set(frame["target"]) == {1} and set(frame["seed"]) == {0}
    assert set(frame["generator_sha256"]) == {file_sha256(models["generator"])}
    assert [md5_of_file(p) for p in table.paths] == frame["raw_image_md5"].tolist()
    assert frame["raw_image_path"].iloc[3] == "images/synthetic_1_000003.png"


def test_latent_i_depends_only_on_seed_and_i():
    everything = latent_vectors(5, range(2100), 16)
    picked = latent_vectors(5, [2099, 3, 1024, 1023], 16)
    assert torch.equal(picked, everything[[2099, 3, 1024, 1023]])
    assert not torch.equal(latent_vectors(6, [3], 16), everything[[3]])
    assert len(torch.unique(everything, dim=0)) == 2100


def test_a_smaller_n_gives_the_same_first_images(models, reference, tmp_path):
    generate(models["generator"], 6, tmp_path, batch_size=BATCH, progress=False)
    for i in range(6):
        name = f"images/synthetic_1_{i:06d}.png"
        assert (tmp_path / name).read_bytes() == (reference / name).read_bytes()


def test_resume_keeps_intact_files_and_rewrites_the_rest(models, reference, tmp_path):
    generate(models["generator"], N, tmp_path, batch_size=BATCH, progress=False)
    images = tmp_path / "images"
    (images / "synthetic_1_000003.png").unlink()
    (images / "synthetic_1_000010.png").write_bytes(b"damaged")
    table = pd.read_csv(tmp_path / "synthetic.csv")
    table.head(12).to_csv(tmp_path / "synthetic.csv", index=False)  # rows 12.. never recorded
    untouched = (images / "synthetic_1_000000.png").stat().st_ino

    result = generate(models["generator"], N, tmp_path, batch_size=BATCH, progress=False)

    assert (result.kept, result.written) == (10, 10)
    assert files_of(tmp_path) == files_of(reference)
    assert (images / "synthetic_1_000000.png").stat().st_ino == untouched


def test_interrupted_run_records_its_finished_files(models, reference, tmp_path, monkeypatch):
    real_generate_images = generate_module.generate_images
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_generate_images(*args, **kwargs)

    monkeypatch.setattr(generate_module, "generate_images", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(models["generator"], N, tmp_path, batch_size=4, progress=False)
    monkeypatch.undo()

    table = read_table(tmp_path / "synthetic.csv")
    assert table.frame["latent_index"].tolist() == list(range(8))  # two whole batches of 4
    assert [md5_of_file(p) for p in table.paths] == table.frame["raw_image_md5"].tolist()

    result = generate(models["generator"], N, tmp_path, batch_size=4, progress=False)
    assert (result.kept, result.written) == (8, 12)
    generate(models["generator"], N, tmp_path / "whole", batch_size=4, progress=False)
    resumed = {k: v for k, v in files_of(tmp_path).items() if not k.startswith("whole/")}
    assert resumed == files_of(tmp_path / "whole")


def test_other_settings_refused_unless_overwrite(models, tmp_path):
    generate(models["generator"], 4, tmp_path, progress=False)
    with pytest.raises(RxwganError, match=r"seed 0 \(now 1\).*--overwrite"):
        generate(models["generator"], 4, tmp_path, seed=1, progress=False)
    result = generate(models["generator"], 4, tmp_path, seed=1, overwrite=True, progress=False)
    assert result.written == 4
    assert set(pd.read_csv(result.table)["seed"]) == {1}


def test_formats_and_size_agree(models, tmp_path):
    kwargs = dict(batch_size=BATCH, size=20, progress=False)
    generate(models["generator"], 5, tmp_path / "png", **kwargs)
    generate(models["generator"], 5, tmp_path / "png16", fmt="png16", **kwargs)
    generate(models["generator"], 5, tmp_path / "npy", fmt="npy", **kwargs)
    expected = synthetic_images(models["generator"], range(5), size=20, batch_size=BATCH)
    unit = ((expected[:, 0] + 1) / 2).clamp(0, 1).numpy()
    for i in range(5):
        with Image.open(tmp_path / "png" / "images" / f"synthetic_1_{i:06d}.png") as img:
            assert img.mode == "L" and img.size == (20, 20)
            u8 = np.asarray(img)
        with Image.open(tmp_path / "png16" / "images" / f"synthetic_1_{i:06d}.png") as img:
            u16 = np.asarray(img).astype(np.int64)
        stored = np.load(tmp_path / "npy" / "images" / f"synthetic_1_{i:06d}.npy")
        assert stored.dtype == np.float32 and stored.shape == (20, 20)
        assert 0.0 <= stored.min() and stored.max() <= 1.0
        np.testing.assert_array_equal(stored, unit[i])
        np.testing.assert_array_equal(u8, np.round(unit[i] * 255).astype(np.uint8))
        np.testing.assert_array_equal(u16, np.round(unit[i] * 65535).astype(np.int64))
        assert u16.max() > 255  # really 16-bit


def test_mixed_table_class_counts(models, make_table, tmp_path, capsys):
    real_csv = make_table(n=20)  # 10 rows of each class
    out = tmp_path / "synthetic"
    code = main(["generate", "-g", str(models["generator"]), "-n", "25", "-o", str(out),
                 "--mix", str(real_csv), "--ratio", "2", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    mixed = read_table(out / "mixed.csv")  # every path, real and synthetic, resolves from FOLDER
    counts = mixed.frame.groupby(["target", "synthetic"]).size().to_dict()
    assert counts == {(0, 0): 10, (1, 0): 10, (1, 1): 20}
    fake = mixed.frame[mixed.frame["synthetic"] == 1]
    assert fake["latent_index"].astype(int).tolist() == list(range(20))
    real_rows = mixed.frame[mixed.frame["synthetic"] == 0]
    assert (real_rows["latent_index"] == "").all() and (real_rows["age"] == "40").all()


def test_mix_refuses_too_few_synthetic_images(models, make_table, tmp_path, capsys):
    out = tmp_path / "synthetic"
    code = main(["generate", "-g", str(models["generator"]), "-n", "25", "-o", str(out),
                 "--mix", str(make_table(n=20)), "--ratio", "3", "--no-progress"])
    assert code == 2
    assert "needs 30 synthetic target-1 images" in capsys.readouterr().err
    assert not out.exists()  # refused before generating


def test_mix_tables_refuses_a_small_synthetic_set(models, make_table, tmp_path):
    generate(models["generator"], 5, tmp_path, progress=False)
    with pytest.raises(RxwganError, match="needs 10 synthetic target-1 images .* lists 5"):
        mix_tables(make_table(n=20), tmp_path / "synthetic.csv", tmp_path / "mixed.csv", ratio=1)
    assert not (tmp_path / "mixed.csv").exists()


@pytest.mark.parametrize("kind", ["critic", "text"])
def test_non_generator_file_refused(models, tmp_path, capsys, kind):
    path = models["critic"] if kind == "critic" else tmp_path / "notes.safetensors"
    if kind == "text":
        path.write_text("not a model")
    out = tmp_path / "out"
    assert main(["generate", "-g", str(path), "-n", "2", "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert ("holds a critic, expected a generator" if kind == "critic" else "not a readable") in err
    assert not out.exists()


def test_generate_from_keras_h5(tmp_path, capsys):
    if not KERAS_V1.is_file():
        pytest.skip(f"Keras fixture not found: {KERAS_V1} (../shared/fixtures beside the checkout)")
    out = tmp_path / "keras"
    code = main(["generate", "-g", str(KERAS_V1), "-n", "3", "-o", str(out), "--batch_size", "4",
                 "--format", "npy", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    table = read_table(out / "synthetic.csv")
    assert set(table.frame["generator_sha256"]) == {file_sha256(KERAS_V1)}
    stored = np.stack([np.load(p) for p in table.paths])
    assert stored.shape == (3, 128, 128)
    expected = synthetic_images(KERAS_V1, range(3), batch_size=4)
    np.testing.assert_array_equal(stored, ((expected[:, 0] + 1) / 2).clamp(0, 1).numpy())
