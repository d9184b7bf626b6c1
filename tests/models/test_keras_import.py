"""The old tool's Keras .h5 files: recognised, imported, and reproducing Keras' own outputs."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from helpers import SHARED_FIXTURES
from rxwgan.base.errors import RxwganError
from rxwgan.models import is_keras_h5, load_keras_model, load_model, save_model

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures not found beside the checkout")
    return SHARED_FIXTURES


def _nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def _max_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual - expected).abs().max().item()


@pytest.mark.parametrize("arch", ["v1", "v2", "v3"])
def test_import_reproduces_keras(fixtures: Path, arch: str) -> None:
    folder = fixtures / f"keras_{arch}"
    golden = np.load(folder / "golden.npz")
    generator = load_keras_model(folder / "generator.h5")
    critic = load_keras_model(folder / "critic.h5")
    assert (generator.arch, generator.role, critic.arch, critic.role) == (
        arch, "generator", arch, "critic")
    assert not generator.training and not critic.training
    expected_images = _nchw(golden["generator_output_nhwc"])
    with torch.no_grad():
        images = generator(torch.from_numpy(golden["z"]))
        scores = critic(_nchw(golden["critic_input_nhwc"]))
        scores_generated = critic(expected_images)
    assert _max_diff(images, expected_images) < TOLERANCE
    assert _max_diff(scores, torch.from_numpy(golden["critic_output"])) < TOLERANCE
    assert _max_diff(scores_generated, torch.from_numpy(golden["critic_on_generated"])) < TOLERANCE


@pytest.mark.parametrize("arch", ["v1", "v2", "v3"])
def test_sizes_match_keras_counts(fixtures: Path, arch: str) -> None:
    """Keras counts BatchNorm moving stats as (non-trainable) parameters; so do we here."""
    info = json.loads((fixtures / f"keras_{arch}" / "info.json").read_text())
    for role in ("generator", "critic"):
        module = load_keras_model(fixtures / f"keras_{arch}" / f"{role}.h5")
        stats = sum(b.numel() for name, b in module.named_buffers() if "running_" in name)
        assert sum(p.numel() for p in module.parameters()) + stats == info[f"{role}_params"]


def test_load_model_dispatches_keras_files(fixtures: Path) -> None:
    path = fixtures / "keras_v3" / "critic.h5"
    assert is_keras_h5(path)
    assert load_model(path.with_suffix(""), role="critic").arch == "v3"  # suffix found by itself


def test_keras_file_of_other_role_refused(fixtures: Path) -> None:
    with pytest.raises(RxwganError, match="generator.h5 holds a generator, expected a critic"):
        load_model(fixtures / "keras_v1" / "generator.h5", role="critic")


def test_import_save_load_identical(fixtures: Path, tmp_path: Path) -> None:
    golden = np.load(fixtures / "keras_v1" / "golden.npz")
    imported = load_keras_model(fixtures / "keras_v1" / "generator.h5")
    save_model(imported, tmp_path / "generator.safetensors")
    reloaded = load_model(tmp_path / "generator")
    z = torch.from_numpy(golden["z"][:2])
    with torch.no_grad():
        assert torch.equal(imported(z), reloaded(z))
    assert reloaded.hparams == imported.hparams
    assert imported.hparams["init"] == "keras"  # the file records who initialised it


def test_non_model_hdf5_refused(tmp_path: Path) -> None:
    path = tmp_path / "table.h5"
    with h5py.File(path, "w") as handle:
        handle["values"] = np.arange(4)
    assert is_keras_h5(path)
    with pytest.raises(RxwganError, match="table.h5.*no Keras model weights"):
        load_model(path)


def test_non_hdf5_with_h5_suffix_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.h5"
    path.write_text("plain text")
    assert not is_keras_h5(path)
    with pytest.raises(RxwganError, match="fake.h5.*not a readable HDF5"):
        load_model(path)


def test_other_keras_architecture_refused(tmp_path: Path) -> None:
    """A Keras file laid out like no port is refused, saying what it holds."""
    path = tmp_path / "classifier.h5"
    with h5py.File(path, "w") as handle:
        weights = handle.create_group("model_weights")
        weights.attrs["layer_names"] = [b"dense"]
        layer = weights.create_group("dense")
        layer.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        layer["dense/kernel:0"] = np.zeros((10, 5), np.float32)
        layer["dense/bias:0"] = np.zeros(5, np.float32)
    with pytest.raises(RxwganError, match=r"classifier.h5.*1 weighted layers \(\? 10x5\)"):
        load_keras_model(path)


def test_batchnorm_weights_land_in_place(fixtures: Path, tmp_path: Path) -> None:
    """The fixtures' BatchNorm values are all defaults, so give each a distinct one to check."""
    path = tmp_path / "generator.h5"
    path.write_bytes((fixtures / "keras_v1" / "generator.h5").read_bytes())
    names = ("gamma", "beta", "moving_mean", "moving_variance")
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights/batch_normalization_1/batch_normalization_1"]
        for offset, name in enumerate(names):
            group[f"{name}:0"][...] = np.arange(128, dtype=np.float32) + 1000 * (offset + 1)
    norm = load_keras_model(path).blocks[1][1]
    for offset, tensor in enumerate((norm.weight, norm.bias, norm.running_mean, norm.running_var)):
        assert torch.equal(tensor, torch.arange(128, dtype=torch.float32) + 1000 * (offset + 1))
