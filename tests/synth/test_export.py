"""ONNX export: dynamic batch, parity with PyTorch (and Keras), refusals, nothing kept on failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import rxwgan.synth.export as export_module
from helpers import SHARED_FIXTURES, tiny_model_files
from rxwgan.base.errors import RxwganError
from rxwgan.cli import main
from rxwgan.models import load_model
from rxwgan.synth.export import export_onnx

FIXTURES = SHARED_FIXTURES / "keras_v1"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny_model_files(tmp_path_factory.mktemp("models"), seed=1)


def run_onnx(path: Path, z: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["images"], {"z": z})[0]


def test_export_has_a_dynamic_batch_and_matches_pytorch(models, tmp_path, capsys):
    out = tmp_path / "generator.onnx"
    assert main(["export", "-g", str(models["generator"]), "--onnx", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "within 0.0001" in printed

    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version >= 17
    (z_input,) = graph.graph.input
    assert z_input.name == "z" and z_input.type.tensor_type.shape.dim[0].dim_param
    generator = load_model(models["generator"])
    for batch in (1, 5, 33):
        z = torch.randn(batch, generator.latent_dim)
        with torch.inference_mode():
            expected = generator(z).numpy()
        actual = run_onnx(out, z.numpy())
        assert actual.shape == (batch, 1, 32, 32)
        assert np.abs(actual - expected).max() < 1e-4


def test_existing_file_refused_unless_overwrite(models, tmp_path, capsys):
    out = tmp_path / "generator.onnx"
    out.write_bytes(b"keep me")
    assert main(["export", "-g", str(models["generator"]), "--onnx", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(["export", "-g", str(models["generator"]), "--onnx", str(out), "--overwrite"]) == 0
    onnx.checker.check_model(onnx.load(str(out)))


def test_critic_refused(models, tmp_path, capsys):
    out = tmp_path / "critic.onnx"
    assert main(["export", "-g", str(models["critic"]), "--onnx", str(out)]) == 2
    assert "holds a critic, expected a generator" in capsys.readouterr().err
    assert not out.exists()


def test_failed_check_writes_nothing(models, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "_max_difference", lambda *args: 0.5)
    with pytest.raises(RxwganError, match="differs from PyTorch"):
        export_onnx(models["generator"], tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_keras_h5_reproduces_keras(tmp_path):
    if not (FIXTURES / "generator.h5").is_file():
        pytest.skip(f"Keras fixture not found: {FIXTURES / 'generator.h5'} "
                    "(../shared/fixtures beside the checkout)")
    out = tmp_path / "v1.onnx"
    result = export_onnx(FIXTURES / "generator.h5", out)
    assert result.arch == "v1" and result.max_abs_diff < 1e-4
    golden = np.load(FIXTURES / "golden.npz")
    images = run_onnx(out, golden["z"].astype(np.float32))
    keras_nchw = np.transpose(golden["generator_output_nhwc"], (0, 3, 1, 2))
    assert np.abs(images - keras_nchw).max() < 1e-4
