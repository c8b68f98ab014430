"""The one rule for carving validation rows out of a model's training rows.

RFM, the MLP, the GBDTs and the xRFM reference all hold out rows to choose an iteration, an epoch or a
number of rounds. They share this rule so that "the validation split" means one thing in the results:
``round(fraction * n)`` rows, at least 1 and at most ``n - 1``; stratified on the class labels when that
is possible (every class has at least 2 rows and both parts can hold one row of each class), else a
plain shuffled split, so a rare class never makes the split raise.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def validation_split(
    n: int,
    fraction: float,
    labels: np.ndarray | None = None,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Seeded ``(train, validation)`` row indices of ``n`` rows, or None when none can be held out.

    ``labels``: integer class labels (0..k-1) of classification rows, to stratify on when possible.
    None is returned for ``fraction == 0`` or fewer than 2 rows: the caller trains on every row.
    """
    if fraction <= 0 or n < 2:
        return None
    n_val = min(n - 1, max(1, round(fraction * n)))
    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        counts = counts[counts > 0]
        if counts.min() >= 2 and len(counts) <= min(n_val, n - n_val):
            stratify = labels
    train, val = train_test_split(
        np.arange(n), test_size=n_val, random_state=random_state, shuffle=True, stratify=stratify
    )
    return train, val
