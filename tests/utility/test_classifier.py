from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from rxwgan.base.errors import RxwganError
from rxwgan.utility.classifier import predict_scores, train_classifier
from rxwgan.utility.scores import score_predictions
from rxwgan.utility.settings import ClassifierSettings

TINY = ClassifierSettings(size=32, max_epochs=6, patience=2, batch_size=16, width=4, blocks=3, lr=1e-3)


def blobs(n: int, seed: int, side: int = 32) -> tuple[torch.Tensor, np.ndarray]:
    """Noisy images in [-1, 1]; class 1 has a faint bright disc somewhere in the middle."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.normal(-0.3, 0.25, size=(n, 1, side, side))
    rows, cols = np.mgrid[:side, :side]
    for image, label in zip(images, labels, strict=True):
        if label:
            cy, cx = rng.uniform(0.3 * side, 0.7 * side, size=2)
            image[0][(rows - cy) ** 2 + (cols - cx) ** 2 < (side / 8) ** 2] += 0.5
    return torch.from_numpy(np.clip(images, -1, 1).astype(np.float32)), labels


def test_learns_to_tell_the_classes_apart_on_held_out_images():
    train_x, train_y = blobs(64, 0)
    stop_x, stop_y = blobs(16, 1)
    test_x, test_y = blobs(40, 2)
    model = train_classifier(train_x, train_y, stop_x, stop_y, TINY, seed=0)
    scores = predict_scores(model, test_x)
    assert scores.shape == (40,) and scores.dtype == np.float64 and ((scores > 0) & (scores < 1)).all()
    assert score_predictions(test_y, scores)["auc"] > 0.9


def test_same_seed_same_weights_and_the_global_generator_is_left_alone():
    train_x, train_y = blobs(24, 0)
    stop_x, stop_y = blobs(8, 1)
    settings = ClassifierSettings(size=32, max_epochs=2, batch_size=8, width=4, blocks=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = train_classifier(train_x, train_y, stop_x, stop_y, settings, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(5)  # whatever else the process draws must not matter
    second = train_classifier(train_x, train_y, stop_x, stop_y, settings, seed=7)
    other = train_classifier(train_x, train_y, stop_x, stop_y, settings, seed=8)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    scores = predict_scores(first, stop_x)
    assert np.array_equal(scores, predict_scores(second, stop_x))
    assert not np.array_equal(scores, predict_scores(other, stop_x))


@pytest.mark.parametrize("monitor", ["loss", "auc"])
def test_restores_the_best_stop_epoch_stops_after_patience_and_resizes_any_input(monitor):
    train_x, train_y = blobs(40, 3, side=48)  # resized to the settings' 32 px inside
    stop_x, stop_y = blobs(13, 4, side=48)
    stop_y = 1 - stop_y  # stop rows that contradict training: learning more makes them worse
    lines: list[str] = []
    settings = ClassifierSettings(size=32, max_epochs=30, patience=3, batch_size=8, width=4, blocks=3,
                                  lr=1e-3, monitor=monitor)
    model = train_classifier(train_x, train_y, stop_x, stop_y, settings, seed=0, log=lines.append)
    logged = [(float(auc), -float(loss)) for loss, auc in
              re.findall(r"stop loss (\d+\.\d+), stop AUC (\d+\.\d+)", "\n".join(lines))]
    ranks = logged if monitor == "auc" else [(loss,) for _, loss in logged]
    kept = ranks.index(max(ranks)) + 1
    assert lines[-1] == f"kept epoch {kept}"
    assert len(logged) == kept + settings.patience < settings.max_epochs
    p = torch.from_numpy(predict_scores(model, stop_x))
    y = torch.from_numpy(stop_y.astype(np.float64))
    weights = len(y) / (2.0 * torch.where(y == 1, y.sum(), len(y) - y.sum()))  # balanced classes
    loss = (weights * torch.nn.functional.binary_cross_entropy(p, y, reduction="none")).mean().item()
    assert loss == pytest.approx(-logged[kept - 1][1], abs=1e-4)
    assert abs(loss + logged[-1][1]) > 0.01  # the last epoch's weights were not the ones kept


def refusal_cases():
    x, y = blobs(8, 0)
    yield "empty", (x[:0], y[:0], x, y), "training set is empty"
    yield "one class", (x, np.ones(8, dtype=int), x, y), "training rows hold only class 1"
    yield "one stop class", (x, y, x, np.zeros(8, dtype=int)), "stop rows hold only class 0"
    yield "lengths", (x, y[:5], x, y), "8 training images but labels of shape"
    yield "labels", (x, y + 1, x, y), "0 or 1"
    nan = x.clone()
    nan[3, 0, 2, 2] = float("nan")
    yield "non-finite", (x, y, nan, y), "stop images hold non-finite"
    yield "shape", (x[:, 0], y, x, y), r"tensor \(N, 1, H, H\)"


@pytest.mark.parametrize("args, words", [case[1:] for case in refusal_cases()],
                         ids=[case[0] for case in refusal_cases()])
def test_refuses_sets_it_cannot_train_on(args, words):
    with pytest.raises(RxwganError, match=words):
        train_classifier(*args, settings=TINY, seed=0)


@pytest.mark.parametrize("change, words", [({"size": 4}, "too small for 3 blocks"),
                                           ({"patience": 0}, "patience must be at least 1"),
                                           ({"max_shift": 0.5}, "max_shift"),
                                           ({"monitor": "accuracy"}, "monitor must be auc or loss")])
def test_refuses_settings_it_cannot_build(change, words):
    x, y = blobs(8, 0)
    settings = ClassifierSettings(**{**TINY.__dict__, **change})
    with pytest.raises(RxwganError, match=words):
        train_classifier(x, y, x, y, settings, seed=0)
