"""Multilayer perceptron baseline in torch: MLPClassifier, MLPRegressor and the model's SPEC.

A ReLU network trained with AdamW, optionally under a cosine learning-rate schedule, with early
stopping on a validation split carved (seeded, stratified for classification) from the training
data; the best weights are kept. The search space is that of Grinsztajn et al. (2022), "Why do
tree-based models still outperform deep learning on tabular data?": depth 1-8, width 16-1024,
learning rate 1e-5..1e-2 (log), schedule on / off, batch size 256 / 512 / 1024.

Built for small tabular data: the whole training set lives on the device as one tensor; when it
fits in one batch (most folds of small data sets) an epoch is one full-batch step with no
permutation or indexing at all, else batches are rows indexed by a permutation; validation runs
every epoch as one batch.

Randomness never touches torch's global generators: weights are drawn from a local CPU generator,
batch order and dropout masks from a local generator on the device, the split from numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the torch idiom)
from scipy.stats import loguniform, randint
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rfmbench.devices import resolve_device
from rfmbench.metrics import beats
from rfmbench.models.spec import ModelSpec

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# Rows per forward pass at prediction time; bounds activation memory at
# about _PREDICT_CHUNK * width * (bytes per float) per hidden layer (64 MiB at width 512, float64).
_PREDICT_CHUNK = 16384


class _BaseMLP(BaseEstimator):
    """Shared fit loop; subclasses define the output size, the loss and the target encoding."""

    _parameter_constraints: dict = {
        "width": [Interval(Integral, 1, None, closed="left")],
        "depth": [Interval(Integral, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions({"constant", "cosine"})],
        "schedule_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "val_fraction": [Interval(Real, 0, 1, closed="left")],
        "dtype": [StrOptions(set(_DTYPES))],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        width: int = 256,
        depth: int = 2,
        dropout: float = 0.1,
        weight_decay: float = 1e-4,
        lr: float = 1e-3,
        lr_schedule: str = "cosine",
        schedule_epochs: int = 200,
        batch_size: int = 256,
        max_epochs: int = 200,
        patience: int = 16,
        val_fraction: float = 0.15,
        dtype: str = "float32",
        device: str | torch.device = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.width = width
        self.depth = depth
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.schedule_epochs = schedule_epochs
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    # Subclass hooks -------------------------------------------------------------------------------
    _stratify = False

    def _encode_y(self, y: np.ndarray, *, fitting: bool) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _y_tensor(self, y: np.ndarray) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    # Fit ------------------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None):
        """Train the network; stop early on the validation loss and keep the best weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs, already preprocessed (numeric, scaled).
        y : array-like of shape (n_samples,)
            Class labels (classifier) or numeric target (regressor).
        X_val, y_val : array-like, optional
            Validation data for early stopping. When omitted, ``val_fraction`` of the training rows
            are held out (seeded; stratified for classification when every class has two rows).
            With ``val_fraction=0`` or too few rows to hold any out, the network trains for
            ``max_epochs`` epochs and keeps the last weights.

        Returns
        -------
        self
        """
        self._validate_params()
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], y_numeric=not self._stratify
        )
        if (X_val is None) != (y_val is None):
            raise ValueError(f"{type(self).__name__}: pass both X_val and y_val, or neither")
        y = self._encode_y(y, fitting=True)
        rng = check_random_state(self.random_state)
        if X_val is not None:
            X_val, y_val = validate_data(
                self, X_val, y_val, dtype=[np.float64, np.float32], reset=False
            )
            y_val = self._encode_y(y_val, fitting=False)
            X_tr, y_tr = X, y
        else:
            X_tr, X_val, y_tr, y_val = self._split(X, y, rng)

        self.device_ = resolve_device(self.device)
        dtype = _DTYPES[self.dtype]
        device = self.device_
        seed = int(rng.randint(np.iinfo(np.int32).max))
        init_gen = torch.Generator(device="cpu").manual_seed(seed)
        run_gen = torch.Generator(device=device).manual_seed(seed + 1)

        Xt = torch.tensor(X_tr, dtype=dtype, device=device)
        yt = self._y_tensor(y_tr).to(device)
        has_val = X_val is not None and len(X_val) > 0
        if has_val:
            Xv = torch.tensor(X_val, dtype=dtype, device=device)
            yv = self._y_tensor(y_val).to(device)

        sizes = [X.shape[1]] + [self.width] * self.depth + [self._n_outputs]
        weights, biases = _init_params(sizes, init_gen, dtype, device)
        optimizer = _adamw(
            [
                {"params": weights, "weight_decay": self.weight_decay},
                {"params": biases, "weight_decay": 0.0},  # decaying biases only shifts the fit
            ],
            lr=self.lr,
        )

        n = Xt.shape[0]
        batch = min(self.batch_size, n)
        self.loss_curve_, self.val_loss_curve_ = [], []
        best_loss, best_epoch, best_state = math.inf, 0, None
        epoch = 0
        for epoch in range(1, self.max_epochs + 1):
            lr = self._epoch_lr(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if batch == n:  # one full-batch step: no permutation, no row gather
                out = _forward(Xt, weights, biases, self.dropout, run_gen)
                loss = self._loss(out, yt)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.loss_curve_.append(float(loss.detach()))
            else:
                perm = torch.randperm(n, generator=run_gen, device=device)
                total = torch.zeros((), dtype=dtype, device=device)
                for start in range(0, n, batch):
                    idx = perm[start : start + batch]
                    out = _forward(Xt[idx], weights, biases, self.dropout, run_gen)
                    loss = self._loss(out, yt[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.detach() * idx.shape[0]
                self.loss_curve_.append(float(total) / n)
            if not has_val:
                continue
            with torch.no_grad():
                val_loss = float(self._loss(_forward(Xv, weights, biases), yv))
            self.val_loss_curve_.append(val_loss * self._loss_scale)
            # A near-equal loss (metrics.TIE_RTOL) is no improvement: the earlier epoch stays.
            if beats(-val_loss, -best_loss):
                best_loss, best_epoch = val_loss, epoch
                best_state = [p.detach().clone() for p in weights + biases]
            elif epoch - best_epoch >= self.patience:
                break

        if best_state is not None:
            with torch.no_grad():
                for p, best in zip(weights + biases, best_state, strict=True):
                    p.copy_(best)
        self.n_epochs_ = epoch
        self.best_epoch_ = best_epoch if has_val else epoch
        self.best_val_loss_ = best_loss * self._loss_scale if has_val else math.nan
        self.weights_ = [w.detach().requires_grad_(False) for w in weights]
        self.biases_ = [b.detach().requires_grad_(False) for b in biases]
        return self

    def _epoch_lr(self, epoch: int) -> float:
        """Learning rate of a 1-based epoch: constant, or a half cosine from ``lr`` to 0.

        The cosine runs over ``schedule_epochs`` (then stays at 0), not over ``max_epochs``: the
        refit on the whole training fold trains ``best_epoch_`` epochs and must see the same rates
        in those epochs as the model whose validation loss chose them.
        """
        if self.lr_schedule == "constant":
            return self.lr
        progress = min(epoch - 1, self.schedule_epochs) / self.schedule_epochs
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _split(self, X, y, rng):
        """Carve the validation rows; return (X_tr, X_val, y_tr, y_val), X_val None if none fit."""
        n = X.shape[0]
        n_val = math.ceil(self.val_fraction * n)
        if n_val < 1 or n - n_val < 1:
            return X, None, y, None
        stratify = None
        if self._stratify:
            counts = np.bincount(y)
            k = np.count_nonzero(counts)
            if counts[counts > 0].min() >= 2 and n_val >= k and n - n_val >= k:
                stratify = y
        return train_test_split(
            X,
            y,
            test_size=n_val,
            stratify=stratify,
            random_state=rng.randint(np.iinfo(np.int32).max),
        )

    def _raw_predict(self, X) -> np.ndarray:
        """Network outputs for ``X`` as float64 numpy, computed in chunks on the device."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        dtype = _DTYPES[self.dtype]
        outs = []
        with torch.no_grad():
            for start in range(0, X.shape[0], _PREDICT_CHUNK):
                chunk = torch.tensor(
                    X[start : start + _PREDICT_CHUNK], dtype=dtype, device=self.device_
                )
                outs.append(_forward(chunk, self.weights_, self.biases_).cpu().double().numpy())
        return np.concatenate(outs)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """ReLU MLP classifier in torch: cross-entropy, AdamW, early stopping, best weights kept.

    Parameters
    ----------
    width : int, default=256
        Units per hidden layer.
    depth : int, default=2
        Number of hidden layers (0 gives multinomial logistic regression).
    dropout : float, default=0.1
        Dropout probability after each hidden ReLU, during training.
    weight_decay : float, default=1e-4
        AdamW decoupled weight decay on the weight matrices (biases are not decayed).
    lr : float, default=1e-3
        AdamW learning rate (the peak of the schedule).
    lr_schedule : {"cosine", "constant"}, default="cosine"
        ``cosine``: the rate of epoch ``e`` is ``lr * (1 + cos(pi * min(e - 1, T) / T)) / 2``
        with ``T = schedule_epochs``; ``constant``: ``lr`` throughout.
    schedule_epochs : int, default=200
        Length ``T`` of the cosine, independent of ``max_epochs`` so that a refit for fewer epochs
        replays the same rates.
    batch_size : int, default=256
        Rows per mini-batch (capped at the number of training rows: with fewer rows, every epoch
        is one full-batch step).
    max_epochs : int, default=200
        Upper bound on passes over the training rows.
    patience : int, default=16
        Stop after this many epochs without a lower validation loss.
    val_fraction : float, default=0.15
        Share of the training rows held out for early stopping when ``fit`` gets no ``X_val``.
    dtype : {"float32", "float64"}, default="float32"
        Precision of weights and computation.
    device : str or torch.device, default="auto"
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; resolved in ``fit``.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the initial weights, the batch order and the dropout masks.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    device_ : torch.device
    weights_, biases_ : list of torch.Tensor
        Layer parameters on ``device_``; ``weights_[i]`` has shape (out, in).
    loss_curve_ : list of float
        Mean training loss per epoch (with dropout).
    val_loss_curve_ : list of float
        Validation cross-entropy per epoch (empty when no validation rows were used).
    best_val_loss_ : float
        Lowest validation loss, that of the returned weights (nan without validation).
    best_epoch_ : int
        Epoch (1-based) whose weights were kept.
    n_epochs_ : int
        Epochs actually run.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(max_epochs=50, device="cpu", random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _stratify = True
    _loss_scale = 1.0

    def _encode_y(self, y, *, fitting):
        if fitting:
            check_classification_targets(y)
            self.classes_, encoded = np.unique(y, return_inverse=True)
            return encoded.astype(np.int64)
        encoded = np.searchsorted(self.classes_, y)
        encoded = np.clip(encoded, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[encoded], y):
            raise ValueError(f"{type(self).__name__}: y_val has labels not seen in y")
        return encoded.astype(np.int64)

    @property
    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _y_tensor(self, y):
        return torch.as_tensor(y, dtype=torch.int64)

    def _loss(self, out, y):
        return F.cross_entropy(out, y)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the outputs), shape (n_samples, n_classes)."""
        logits = self._raw_predict(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X) -> np.ndarray:
        """Most probable class label per row."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self._raw_predict(X), axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """ReLU MLP regressor in torch: mean squared error, AdamW, early stopping, best weights kept.

    The target is standardized inside ``fit`` (and the predictions mapped back), so the learning
    rate means the same for any target scale. Parameters as :class:`MLPClassifier`.

    Attributes
    ----------
    n_features_in_ : int
    device_ : torch.device
    weights_, biases_ : list of torch.Tensor
    y_mean_, y_scale_ : float
        Target standardization.
    loss_curve_ : list of float
        Mean training loss per epoch, on the standardized target.
    val_loss_curve_ : list of float
        Validation mean squared error per epoch, in the target's own units.
    best_val_loss_, best_epoch_, n_epochs_
        As in :class:`MLPClassifier`; ``best_val_loss_`` in the target's units.
    """

    _n_outputs = 1

    def _encode_y(self, y, *, fitting):
        y = np.asarray(y, dtype=np.float64)
        if fitting:
            self.y_mean_ = float(y.mean())
            scale = float(y.std())
            self.y_scale_ = scale if scale > 0 else 1.0
        return (y - self.y_mean_) / self.y_scale_

    @property
    def _loss_scale(self) -> float:
        return self.y_scale_**2

    def _y_tensor(self, y):
        return torch.tensor(y, dtype=_DTYPES[self.dtype])

    def _loss(self, out, y):
        return F.mse_loss(out[:, 0], y)

    def predict(self, X) -> np.ndarray:
        """Predicted target per row."""
        return self._raw_predict(X)[:, 0] * self.y_scale_ + self.y_mean_


def _adamw(groups, lr):
    """AdamW, fused into one kernel per step where this torch supports it (CPU since 2.4)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def _init_params(sizes, gen, dtype, device):
    """Weights and biases drawn like torch.nn.Linear's default, from ``gen`` (not the global RNG).

    (He initialisation, tried for the deep end of the space, made the small data sets overfit
    within a few epochs: iris fell from 0.95 to 0.89 with the default configuration.)
    """
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=False):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_out, fan_in, generator=gen, dtype=dtype) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound
        weights.append(w.to(device).requires_grad_())
        biases.append(b.to(device).requires_grad_())
    return weights, biases


def _forward(x, weights, biases, dropout=0.0, gen=None):
    """ReLU network; inverted dropout after each hidden layer when ``gen`` is given (training)."""
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = F.linear(x, w, b)
        if i < last:
            x = torch.relu(x)
            if gen is not None and dropout > 0:
                keep = torch.empty_like(x).bernoulli_(1 - dropout, generator=gen)
                x = x * keep / (1 - dropout)
    return x


# Search space and registry entry -------------------------------------------------------------------

# Grinsztajn et al. (2022), the MLP of their benchmark: depth 1-8, width 16-1024, lr loguniform(1e-5,
# 1e-2), schedule on / off, batch size {256, 512, 1024}. Width is drawn from its powers of two (a
# log-uniform grid) rather than uniformly: on one CPU thread a width-1024 depth-8 network costs
# about 1 s per epoch on 800 rows, and a uniform width makes four draws in five wider than 200,
# which would make the MLP most of a default run's time for no accuracy on data this small. Our
# dropout and weight decay axes beside them (their MLP has neither; 0 is in both).
SPACE: dict[str, Any] = {
    "depth": randint(1, 9),
    "width": [16, 32, 64, 128, 256, 512, 1024],
    "lr": loguniform(1e-5, 1e-2),
    "lr_schedule": ["cosine", "constant"],
    "batch_size": [256, 512, 1024],
    "dropout": [0.0, 0.1, 0.2, 0.3],
    "weight_decay": [0.0, 1e-5, 1e-4, 1e-3],
}

DEFAULTS: dict[str, Any] = {
    "depth": 2,
    "width": 256,
    "lr": 1e-3,
    "lr_schedule": "cosine",
    "batch_size": 256,
    "dropout": 0.1,
    "weight_decay": 1e-4,
}


def build(
    kind: str, params: Mapping[str, Any], *, device: Any = "auto", seed: int, n_jobs: int = 1
) -> BaseEstimator:
    """Return an unfitted MLPClassifier or MLPRegressor with ``params`` over :data:`DEFAULTS`.

    ``n_jobs`` is ignored: torch's own thread count is left as it is.
    """
    config = {**DEFAULTS, **params}
    if kind == "classification":
        return MLPClassifier(**config, device=device, random_state=seed)
    if kind == "regression":
        return MLPRegressor(**config, device=device, random_state=seed)
    raise ValueError(f"mlp: 'kind' must be classification or regression, got {kind!r}")


# The grid searched whole under --protocol paper (tuned on the fixed selection split).
PAPER_SPACE: dict[str, Any] = {"width": [128, 512], "depth": [1, 2], "dropout": [0.0, 0.2]}


def refit_params(model: BaseEstimator) -> dict[str, Any]:
    """The epoch count early stopping chose, so the refit trains on all rows for that long."""
    return {"max_epochs": max(int(model.best_epoch_), 1), "val_fraction": 0.0}


SPEC = ModelSpec(
    name="mlp",
    summary="ReLU MLP in torch (AdamW, dropout, early stopping on a validation split)",
    build=build,
    space=SPACE,
    defaults=DEFAULTS,
    uses_device=True,
    precision_param="dtype",
    refit_params=refit_params,
    paper_space=PAPER_SPACE,
)
