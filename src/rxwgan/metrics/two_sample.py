"""A classifier two-sample test: can a linear model tell real images from synthetic ones?

Both sets are reduced to 16 x 16 pixels (area average), standardised, and a logistic
regression is scored by stratified 5-fold cross-validation on equal numbers of each. The
accuracy is about 0.5 when the sets are indistinguishable at that scale and near 1 when a
glance at coarse intensity structure separates them (blotchy or saturated fakes). It needs
no feature network, so it means the same on every machine; it sees only coarse structure,
so it complements KID rather than replacing it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SIDE = 16
FOLDS = 5


def c2st_accuracy(real: Tensor, fake: Tensor, seed: int = 0, side: int = SIDE) -> tuple[float, int]:
    """(mean cross-validated accuracy, images per class used) for (N, 1, H, W) images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = min(len(real), len(fake))
    if n < FOLDS:
        raise ValueError(f"the two-sample test needs at least {FOLDS} images per set, got {n}")
    rng = np.random.default_rng(seed)
    pick_real, pick_fake = rng.permutation(len(real))[:n], rng.permutation(len(fake))[:n]
    pixels = torch.cat([_coarse(real[torch.from_numpy(pick_real)], side),
                        _coarse(fake[torch.from_numpy(pick_fake)], side)]).numpy()
    labels = np.repeat([0, 1], n)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    return float(cross_val_score(model, pixels, labels, cv=folds).mean()), n


def _coarse(images: Tensor, side: int) -> Tensor:
    return F.adaptive_avg_pool2d(images.float(), side).flatten(1).double()
