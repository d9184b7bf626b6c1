"""A compact TB classifier CNN that trains on CPU in minutes: the judge of synthetic data.

The question it answers is relative (does adding synthetic images to the training set
change the score on held-out real rows?), so it must be cheap enough to train many times
(folds x conditions x seeds) and exactly repeatable, not state of the art: four
convolution blocks (conv, BatchNorm, ReLU, 2x max-pool), global average pooling and one
linear unit whose logit is the TB score.

Training: AdamW on a class-balanced binary cross-entropy (each class weighs as much as
the other, whatever their counts), small random translations of the training images, and
early stopping on the caller's stop rows: the weights of the epoch with the best stop-row
ROC AUC (ties: the lower stop loss) come back. AUC rather than loss by default: on faint
findings the first epochs' near-constant scores have a chance-level loss that later,
better-ranking but less calibrated epochs took many epochs to beat, and stopping on loss
kept a chance-level model in some folds. Every random number (initial weights, batch
order, translations) comes from one ``torch.Generator`` seeded by ``seed``; the process's
global generator is never read or moved, so several trainings can share a process.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn
from torch.nn import functional as F

from rxwgan.base.errors import RxwganError
from rxwgan.utility.settings import ClassifierSettings

PREDICT_BATCH = 256


class TBClassifier(nn.Module):
    """Conv blocks, global average pooling, one logit; remembers the input size it expects."""

    def __init__(self, size: int, width: int, blocks: int):
        super().__init__()
        self.size = size
        layers: list[nn.Module] = []
        channels = 1
        for block in range(blocks):
            out = width * 2 ** block
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, 1)

    def forward(self, images: Tensor) -> Tensor:
        """Logits (N,) of TB for images (N, 1, size, size) in [-1, 1]."""
        return self.head(self.features(images).mean(dim=(2, 3))).squeeze(1)


def build_classifier(settings: ClassifierSettings, generator: torch.Generator,
                     device: str = "cpu") -> TBClassifier:
    """A freshly initialised network whose initial weights come from ``generator`` alone.

    Built on the meta device and then filled, because ``nn.Conv2d`` would otherwise draw
    its initial weights from the global generator.
    """
    with torch.device("meta"):
        model = TBClassifier(settings.size, settings.width, settings.blocks)
    model.to_empty(device=device)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    return model


def train_classifier(train_images: Tensor, train_labels: np.ndarray, stop_images: Tensor,
                     stop_labels: np.ndarray, settings: ClassifierSettings, seed: int,
                     device: str = "cpu", log: Callable[[str], None] | None = None) -> nn.Module:
    """Train on the training rows, stop early on the stop rows; return the best epoch's model.

    Images are float (N, 1, H, W) in [-1, 1] at any square size (resized here to
    ``settings.size``); labels are 0/1 (1: TB). The stop rows only choose the epoch:
    the caller keeps them apart from any test row.
    """
    settings.check()
    train_x, train_y = _checked_set("training", train_images, train_labels, settings.size)
    stop_x, stop_y = _checked_set("stop", stop_images, stop_labels, settings.size)
    generator = torch.Generator().manual_seed(seed)
    model = build_classifier(settings, generator, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    train_weights, stop_weights = _class_weights(train_y), _class_weights(stop_y)
    best, best_epoch, best_state = (-math.inf, -math.inf), 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, settings.max_epochs + 1):
        model.train()
        train_loss = 0.0
        for batch in _batches(len(train_y), settings.batch_size, generator):
            images = _translate(train_x[batch], settings.max_shift, generator).to(device)
            labels = train_y[batch].to(device)
            loss = _balanced_loss(model(images), labels, train_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(batch)
        _settle_batchnorm(model, train_x, settings.batch_size, device)
        stop_logits = _logits(model, stop_x, device)
        stop_loss = _balanced_loss(stop_logits, stop_y.to(device), stop_weights).item()
        stop_auc = roc_auc_score(stop_y.numpy(), stop_logits.cpu().numpy())
        score = (stop_auc, -stop_loss) if settings.monitor == "auc" else (-stop_loss,)
        if score > best:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
        if log:
            log(f"epoch {epoch}: train loss {train_loss / len(train_y):.4f}, stop loss {stop_loss:.4f}, "
                f"stop AUC {stop_auc:.4f}")
        if epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    if log:
        log(f"kept epoch {best_epoch}")
    return model.eval()


def predict_scores(model: nn.Module, images: Tensor, device: str = "cpu") -> np.ndarray:
    """P(TB) for each image (float64, N), images as for training at any square size."""
    x = _checked_images("prediction", images, model.size)
    return torch.sigmoid(_logits(model, x, device)).double().cpu().numpy()


def _logits(model: nn.Module, images: Tensor, device: str) -> Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images[i:i + PREDICT_BATCH].to(device))
                          for i in range(0, len(images), PREDICT_BATCH)])


def _settle_batchnorm(model: nn.Module, images: Tensor, batch_size: int, device: str) -> None:
    """Set BatchNorm's running statistics to the training images' under the current weights.

    With a few optimizer steps per epoch, the default running averages still mix in the
    first steps' statistics (or their initial values), and the evaluation-mode network
    that scores the stop rows differs from the one trained, most in the first epochs.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size].to(device))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum


def _checked_set(what: str, images: Tensor, labels: np.ndarray, size: int) -> tuple[Tensor, Tensor]:
    x = _checked_images(what, images, size)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(x):
        raise RxwganError(f"classifier: {len(x)} {what} images but labels of shape {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise RxwganError(f"classifier: {what} labels must be 0 or 1")
    present = np.unique(labels)
    if len(present) < 2:
        raise RxwganError(f"classifier: the {what} rows hold only class {int(present[0])}; "
                          "both classes are needed")
    return x, torch.from_numpy(labels.astype(np.float32))


def _checked_images(what: str, images: Tensor, size: int) -> Tensor:
    """The images as contiguous float32 at ``size`` px, after checking shape and values."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1 \
            or images.shape[2] != images.shape[3]:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise RxwganError(f"classifier: {what} images must be a tensor (N, 1, H, H), not {shape}")
    if len(images) == 0:
        raise RxwganError(f"classifier: the {what} set is empty")
    x = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise RxwganError(f"classifier: {what} images hold non-finite values (NaN or inf)")
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


def _class_weights(labels: Tensor) -> Tensor:
    """Per-class weights n / (2 n_c): each class contributes half of the loss."""
    counts = torch.bincount(labels.long(), minlength=2).float()
    return len(labels) / (2.0 * counts)


def _balanced_loss(logits: Tensor, labels: Tensor, class_weights: Tensor) -> Tensor:
    weights = class_weights.to(logits.device)[labels.long()]
    return F.binary_cross_entropy_with_logits(logits, labels, weight=weights)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """A shuffled epoch in batches; a last batch of one joins the previous (BatchNorm needs two)."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _translate(images: Tensor, max_shift: float, generator: torch.Generator) -> Tensor:
    """Shift each image by whole pixels (up to ``max_shift`` of the side), edges replicated."""
    side = images.shape[-1]
    pad = int(max_shift * side)
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (len(images), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, top:top + side, left:left + side]
                        for i, (top, left) in enumerate(offsets)])
