"""Feature spaces registered by name: one decorated builder adds a space everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rxwgan.metrics import space_builder, space_registry
from rxwgan.metrics.space_registry import SPACES, feature_choices, features_help, fitted_space


def test_the_cli_reads_the_registry_without_importing_torch():
    code = ("import sys; from rxwgan.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_space_is_in_the_choices_and_the_help():
    assert feature_choices() == ("auto", "xrv", "inception", "trained", "random")
    text = features_help()
    for name, info in SPACES.items():
        assert f"{name}: {info.description}" in text
    assert "auto: xrv if usable, else trained" in text


@pytest.fixture
def extra_space(monkeypatch):
    """A space added by one decorated function, removed again after the test."""
    monkeypatch.setattr(space_registry, "SPACES", dict(SPACES))
    monkeypatch.setattr(space_builder, "SPACES", space_registry.SPACES)
    space_builder._MEMO.clear()

    @fitted_space("mean", "per-image mean intensity, for this test")
    def _mean(images, labels, seed, cache_dir, key):
        return _MeanSpace(key)

    yield
    space_builder._MEMO.clear()


class _MeanSpace(space_builder.FeatureSpace):
    name = "mean"

    def __init__(self, key):
        super().__init__(key, 1, "mean: per-image mean intensity", {}, torch.device("cpu"))

    def _extract(self, batch):
        return batch.mean(dim=(1, 2, 3)).unsqueeze(1)


def test_a_registered_space_is_offered_and_built_by_name(extra_space):
    assert "mean" in feature_choices() and "mean: per-image mean intensity" in features_help()
    assert space_registry.is_fitted("mean")
    images = torch.linspace(-1, 1, 4 * 8 * 8).view(4, 1, 8, 8)
    space, note = space_builder.resolve_space("mean", images, None, seed=3)
    assert note == "features: mean" and space.key.startswith("mean-") and space.key.endswith("seed3")
    assert torch.allclose(space(images), images.mean(dim=(1, 2, 3)).unsqueeze(1).double())


def test_a_name_is_registered_once_and_auto_is_not_a_space(extra_space):
    for name in ("trained", "auto"):
        with pytest.raises(ValueError):
            fitted_space(name, "again")(lambda *args: None)
