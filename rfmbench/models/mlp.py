"""Multilayer perceptron baseline in torch: MLPClassifier, MLPRegressor and the model's SPEC.

The network and its search space are those of Grinsztajn et al. (NeurIPS 2022, "Why do tree-based
models still outperform deep learning on typical tabular data?"), their "MLP": ``depth`` ReLU layers
of ``width`` units, AdamW, a batch size in {256, 512, 1024}, a learning rate log-uniform in
[1e-5, 1e-2], a learning-rate schedule on or off, at most 300 epochs; early stopping on a validation
split carved (seeded, stratified for classification) from the training rows with their patience
(40 epochs without a 1e-4 relative improvement, skorch's rule), the best epoch's weights kept.
Where this differs, and why:

- dropout and weight decay are tuned, as in the MLP space of Gorishniy et al. (2021) that
  Grinsztajn et al. start from ({0, U[0, 0.5]} and {0, LogU[1e-6, 1e-3]}): Grinsztajn et al. fix
  dropout at 0, which leaves a small training set nothing to regularise with;
- the schedule is a cosine decay over ``schedule_epochs`` (Loshchilov and Hutter), not their
  ReduceLROnPlateau on the validation loss: a plateau schedule cannot be replayed by the refit on
  all training rows, which has no validation rows, while a schedule that is a function of the epoch
  alone gives the refit exactly the learning rates the chosen epoch was trained with;
- the width is drawn log-uniformly in [16, 1024], not uniformly: the same range, with as many
  draws below 128 as above, so a budget of a few draws spends its time where small data are;
- a fit's arithmetic is capped (``max_gflop``): the largest networks of the space (up to 7 million
  weights) get fewer epochs on the larger datasets, so that a tuning budget costs seconds;
- tuning scores a candidate by the validation log loss (`rfmbench.metrics.neg_log_loss_score`), not
  accuracy: on the few dozen validation rows of a small dataset accuracy moves in steps of one row,
  so candidates tie or one wins by a row of luck, where the log loss ranks them by every row;
- the refit on all training rows is an average of ``n_ensemble = 5`` networks that differ only in
  their seed (initial weights, batches, dropout masks), trained as one stacked network: a single
  network trained for a fixed epoch count without validation rows varies with its seed by a point
  or more of accuracy on small data, and averaging takes most of that variance away (deep
  ensembles, Lakshminarayanan et al. 2017; Gorishniy et al. 2021 report ensembles of their MLP).

Training is batched: with a batch size at least the number of rows, an epoch is one full-batch
step; and
:meth:`MLPClassifier.fit_subsets` (which tuning calls for the inner folds) trains one network per
subset of rows as one stacked network (``torch.baddbmm`` over a leading member axis, each member its
own weights, optimizer state, random streams, padded rows masked out of its loss), so K inner folds
cost about one fit. Members never interact: each one's result is that of ``fit`` on its rows.

Randomness never touches torch's global generators: weights are drawn from a local CPU generator,
batch order and dropout masks from a local generator on the device, the split from numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the torch idiom)
from scipy.stats import loguniform, randint, uniform
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rfmbench.devices import resolve_device
from rfmbench.metrics import beats, neg_log_loss_score
from rfmbench.models.spec import ModelSpec
from rfmbench.models.validation import validation_split

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# Rows per forward pass at prediction time; bounds activation memory at
# about _PREDICT_CHUNK * width * (bytes per float) per hidden layer (128 MiB at width 1024, float64).
_PREDICT_CHUNK = 16384
# Relative decrease of the validation loss that resets the patience (skorch's default threshold).
_STOP_RTOL = 1e-4


@dataclass
class _Member:
    """One network of a stack: its training rows, its validation rows (or None), its seed."""

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    seed: int
    # Filled by training:
    weights: list[torch.Tensor] = field(default_factory=list)
    biases: list[torch.Tensor] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    val_loss_curve: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.nan
    n_epochs: int = 0
    epoch_cap: int = 0
    horizon: int = 0


class _BaseMLP(BaseEstimator):
    """Shared fit loop; subclasses define the output size, the loss and the target encoding."""

    _parameter_constraints: dict = {
        "width": [Interval(Integral, 1, None, closed="left")],
        "depth": [Interval(Integral, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "lr_scheduler": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "schedule_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "max_gflop": [Interval(Real, 0, None, closed="neither"), None],
        "val_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_ensemble": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions(set(_DTYPES))],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        width: int = 128,
        depth: int = 2,
        dropout: float = 0.1,
        weight_decay: float = 1e-4,
        lr: float = 1e-3,
        lr_scheduler: bool = True,
        batch_size: int = 256,
        max_epochs: int = 300,
        schedule_epochs: int | None = None,
        patience: int = 40,
        max_gflop: float | None = 20.0,
        val_fraction: float = 0.15,
        n_ensemble: int = 1,
        dtype: str = "float32",
        device: str | torch.device = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.width = width
        self.depth = depth
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.lr = lr
        self.lr_scheduler = lr_scheduler
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.schedule_epochs = schedule_epochs
        self.patience = patience
        self.max_gflop = max_gflop
        self.val_fraction = val_fraction
        self.n_ensemble = n_ensemble
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    # Subclass hooks -------------------------------------------------------------------------------
    _stratify = False

    def _encode_y(self, y: np.ndarray, *, fitting: bool) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _y_tensor(self, y: np.ndarray, dtype: torch.dtype) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _row_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Per-row loss of outputs ``out`` (members, rows, outputs) against ``y`` (members, rows)."""
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
        if (X_val is None) != (y_val is None):
            raise ValueError(f"{type(self).__name__}: pass both X_val and y_val, or neither")
        members = self._ensemble(self._member(X, y, X_val, y_val))
        self._train(members)
        self._take(members)
        return self

    def fit_subsets(self, X, y, subsets: Sequence[np.ndarray]) -> list[_BaseMLP]:
        """One fitted clone per subset of rows, all trained at once as one stacked network.

        ``fit_subsets(X, y, [rows, ...])[i]`` is what ``clone(self).fit(X[rows], y[rows])`` returns
        (the same validation split, initial weights, batches and dropout masks; float sums may
        differ in their last bits); tuning calls it for its inner folds. Subsets whose fits cannot
        share one network (a class missing from one of them) are trained one by one.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        subsets : sequence of integer index arrays
            The training rows of each fit.

        Returns
        -------
        list of fitted estimators, one per subset
        """
        self._validate_params()
        X, y = np.asarray(X), np.asarray(y)
        models, members = [], []
        for rows in subsets:
            model = clone(self)
            members.append(model._ensemble(model._member(X[rows], y[rows], None, None)))
            models.append(model)
        groups: dict[int, list[int]] = {}  # members stack only with the same output size
        for i, model in enumerate(models):
            groups.setdefault(model._n_outputs, []).append(i)
        for indices in groups.values():
            models[indices[0]]._train([m for i in indices for m in members[i]])
        for model, ensemble in zip(models, members, strict=True):
            model._take(ensemble)
        return models

    def _member(self, X, y, X_val, y_val) -> _Member:
        """Validate and encode one fit's data, carve its validation rows, draw its seed."""
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], y_numeric=not self._stratify
        )
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
        if X_val is not None and len(X_val) == 0:
            X_val = y_val = None
        seed = int(rng.randint(np.iinfo(np.int32).max))
        return _Member(X_tr, y_tr, X_val, y_val, seed)

    def _ensemble(self, first: _Member) -> list[_Member]:
        """``first`` and ``n_ensemble - 1`` networks more on the same rows and validation split,
        each with its own seed (drawn from ``first``'s, so ``first`` is the fit of one network)."""
        seeds = np.random.RandomState(first.seed).randint(
            np.iinfo(np.int32).max, size=self.n_ensemble - 1
        )
        return [first] + [
            _Member(first.X, first.y, first.X_val, first.y_val, int(seed)) for seed in seeds
        ]

    def _take(self, members: list[_Member]) -> None:
        """Set the fitted attributes from trained members (the first one's curves and epochs)."""
        member = members[0]
        has_val = member.X_val is not None
        self.device_ = resolve_device(self.device)
        self.weights_ = member.weights
        self.biases_ = member.biases
        self.members_ = [(m.weights, m.biases) for m in members]
        self.loss_curve_ = member.loss_curve
        self.val_loss_curve_ = [v * self._loss_scale for v in member.val_loss_curve]
        self.n_epochs_ = member.n_epochs
        self.epoch_cap_ = member.epoch_cap
        self.schedule_epochs_ = member.horizon
        self.best_epoch_ = member.best_epoch if has_val else member.n_epochs
        self.best_val_loss_ = member.best_val_loss * self._loss_scale if has_val else math.nan

    def _train(self, members: list[_Member]) -> None:
        """Train ``members`` (same inputs, same outputs) as one stacked network, in place.

        Memory: the stacked rows, ``members * rows * n_features``, plus per step the activations,
        ``members * batch * width * depth``, and per member four copies of the weights (weights,
        gradient, two AdamW moments) and one of the best epoch's.
        """
        # One long loop on purpose: when a member stops early the stacked rows, parameters,
        # optimizer state, generators and stopping records all shrink together, in one place.
        device = resolve_device(self.device)
        dtype = _DTYPES[self.dtype]
        k = len(members)
        n_outputs = self._n_outputs
        n_rows = [len(m.y) for m in members]
        largest = max(n_rows)
        # Every member takes the same number of steps per epoch, in near-equal batches (sizes as
        # np.array_split's): one full-batch step whenever the batch size covers the rows.
        steps = math.ceil(largest / min(self.batch_size, largest))

        # Rows padded to the largest member; a padded row has weight 0 in its member's loss.
        Xt = torch.zeros(k, largest, members[0].X.shape[1], dtype=dtype, device=device)
        yt = torch.zeros(k, largest, dtype=self._y_dtype(dtype), device=device)
        for i, m in enumerate(members):
            Xt[i, : n_rows[i]] = torch.as_tensor(m.X, dtype=dtype)
            yt[i, : n_rows[i]] = self._y_tensor(m.y, dtype)
        has_val = [m.X_val is not None for m in members]
        n_val = [len(m.y_val) if m.X_val is not None else 0 for m in members]
        if any(has_val):
            Xv = torch.zeros(k, max(n_val), Xt.shape[2], dtype=dtype, device=device)
            yv = torch.zeros(k, max(n_val), dtype=yt.dtype, device=device)
            wv = torch.zeros(k, max(n_val), dtype=dtype, device=device)
            for i, m in enumerate(members):
                if m.X_val is not None:
                    Xv[i, : n_val[i]] = torch.as_tensor(m.X_val, dtype=dtype)
                    yv[i, : n_val[i]] = self._y_tensor(m.y_val, dtype)
                    wv[i, : n_val[i]] = 1.0 / n_val[i]

        sizes = [Xt.shape[2]] + [self.width] * self.depth + [n_outputs]
        weights, biases = _init_params(sizes, [m.seed for m in members], dtype, device)
        gens = [torch.Generator(device=device).manual_seed(m.seed + 1) for m in members]
        optimizer = self._optimizer(weights, biases)
        epochs = self._epoch_cap(sizes, largest, max(n_val))
        horizon = self.schedule_epochs or epochs
        members_axis = torch.arange(k, device=device)[:, None]
        full_batch = None
        if steps == 1:  # the same single step every epoch: rows in their stored order
            w_full = torch.zeros(k, largest, dtype=dtype, device=device)
            for i, n in enumerate(n_rows):
                w_full[i, :n] = 1.0 / n
            full_batch = [(None, w_full, n_rows)]

        best = [math.inf] * k
        patience_ref = [math.inf] * k  # the loss that resets the patience (skorch's threshold)
        since = [0] * k
        best_epoch = [0] * k
        best_state: list[list[torch.Tensor] | None] = [None] * k
        done = [False] * k
        stopped_at = [0] * k
        final: list[list[torch.Tensor] | None] = [None] * k  # weights of a member that left
        active = list(range(k))  # the members still in the stack, by position
        epoch = 0
        for epoch in range(1, epochs + 1):
            if self.lr_scheduler:
                rate = self.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / horizon))
                for group in optimizer.param_groups:
                    group["lr"] = rate
            batches = full_batch or _batches(n_rows, steps, gens, device, dtype)
            totals = torch.zeros(len(active), dtype=dtype, device=device)
            for idx, w, real in batches:
                if idx is None:  # one full-batch step: the rows in their stored order
                    xb, yb = Xt, yt
                else:
                    xb, yb = Xt[members_axis, idx], yt[members_axis, idx]
                out = _forward(xb, weights, biases, self.dropout, gens, real)
                losses = self._row_losses(out, yb)
                loss = (losses * w).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                totals += (losses.detach() * (w > 0)).sum(dim=1)
            for i, total in zip(
                active,
                (totals / torch.tensor(n_rows, dtype=dtype, device=device)).tolist(),
                strict=True,
            ):
                members[i].loss_curve.append(total)
            if not any(has_val):
                continue
            with torch.no_grad():
                val_losses = (self._row_losses(_forward(Xv, weights, biases), yv) * wv).sum(dim=1)
            for j, (i, val_loss) in enumerate(zip(active, val_losses.tolist(), strict=True)):
                if not has_val[i]:
                    continue
                members[i].val_loss_curve.append(val_loss)
                # A near-equal loss (metrics.TIE_RTOL) is no improvement: the earlier epoch stays.
                if beats(-val_loss, -best[i]):
                    best[i], best_epoch[i] = val_loss, epoch
                    best_state[i] = [p[j].detach().clone() for p in weights + biases]
                # Patience runs out after `patience` epochs without a relative improvement of
                # _STOP_RTOL (skorch's EarlyStopping, as Grinsztajn et al. trained), so a loss
                # creeping down by round-off amounts does not keep a fit going to max_epochs.
                if val_loss < patience_ref[i] * (1 - _STOP_RTOL) or math.isinf(patience_ref[i]):
                    patience_ref[i], since[i] = val_loss, 0
                else:
                    since[i] += 1
                    if since[i] >= self.patience:
                        done[i], stopped_at[i] = True, epoch
            keep = [j for j, i in enumerate(active) if not done[i]]
            if not keep:  # a member without validation never stops: it trains to the end
                break
            if len(keep) < len(active):
                # Members that stopped leave the stack, so the others stop paying for them.
                for j, i in enumerate(active):
                    if done[i]:
                        final[i] = [p[j].detach().clone() for p in weights + biases]
                sel = torch.tensor(keep, device=device)
                weights, biases, optimizer = self._compact(weights, biases, optimizer, sel)
                Xt, yt, Xv, yv, wv = Xt[sel], yt[sel], Xv[sel], yv[sel], wv[sel]
                n_rows = [n_rows[j] for j in keep]
                gens = [gens[j] for j in keep]
                active = [active[j] for j in keep]
                members_axis = torch.arange(len(active), device=device)[:, None]
                if full_batch is not None:
                    full_batch = [(None, full_batch[0][1][sel], n_rows)]

        for j, i in enumerate(active):
            final[i] = [p[j].detach().clone() for p in weights + biases]
        n_layers = len(weights)
        for i, m in enumerate(members):
            state = best_state[i] or final[i]
            m.weights = [t.requires_grad_(False) for t in state[:n_layers]]
            m.biases = [t.requires_grad_(False) for t in state[n_layers:]]
            m.n_epochs = stopped_at[i] or epoch
            m.best_epoch = best_epoch[i]
            m.best_val_loss = best[i] if has_val[i] else math.nan
            m.epoch_cap, m.horizon = epochs, horizon

    def _optimizer(self, weights, biases):
        return _adamw(
            [
                {"params": weights, "weight_decay": self.weight_decay},
                {"params": biases, "weight_decay": 0.0},  # decaying biases only shifts the fit
            ],
            lr=self.lr,
        )

    def _compact(self, weights, biases, optimizer, sel):
        """The stack's parameters and AdamW state restricted to the members at positions ``sel``."""
        old = weights + biases
        new = [p.detach()[sel].clone().requires_grad_() for p in old]
        weights, biases = new[: len(weights)], new[len(weights) :]
        compact = self._optimizer(weights, biases)
        for p_old, p_new in zip(old, new, strict=True):
            state = optimizer.state.get(p_old)
            if state:  # moments per member; the step count (a scalar) is shared
                compact.state[p_new] = {
                    key: v[sel].clone() if torch.is_tensor(v) and v.dim() > 0 else v
                    for key, v in state.items()
                }
        for group_old, group_new in zip(optimizer.param_groups, compact.param_groups, strict=True):
            group_new["lr"] = group_old["lr"]
        return weights, biases, compact

    def _epoch_cap(self, sizes: list[int], n_train: int, n_val: int) -> int:
        """``max_epochs``, or fewer when that many would pass ``max_gflop`` (training rows: forward
        and backward, 6 flops per weight and row; validation rows: forward, 2)."""
        if self.max_gflop is None:
            return self.max_epochs
        weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
        per_epoch = weights * (6 * n_train + 2 * n_val) / 1e9
        return max(1, min(self.max_epochs, int(self.max_gflop / per_epoch)))

    def _split(self, X, y, rng):
        """Carve the validation rows (`rfmbench.models.validation`); return (X_tr, X_val, y_tr,
        y_val), X_val None if none can be held out."""
        if self.val_fraction <= 0 or X.shape[0] < 2:
            return X, None, y, None
        labels = y if self._stratify else None
        seed = rng.randint(np.iinfo(np.int32).max)
        train, val = validation_split(X.shape[0], self.val_fraction, labels, seed)
        return X[train], X[val], y[train], y[val]

    def _raw_predict(self, X) -> np.ndarray:
        """Each network's outputs for ``X``, shape (members, n_samples, outputs), as float64
        numpy, computed in chunks on the device (the members as one stacked network)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        dtype = _DTYPES[self.dtype]
        members = getattr(self, "members_", None) or [(self.weights_, self.biases_)]
        weights = [torch.stack(layer) for layer in zip(*(w for w, _ in members), strict=True)]
        biases = [torch.stack(layer) for layer in zip(*(b for _, b in members), strict=True)]
        outs = []
        with torch.no_grad():
            for start in range(0, X.shape[0], _PREDICT_CHUNK):
                chunk = torch.tensor(
                    X[start : start + _PREDICT_CHUNK], dtype=dtype, device=self.device_
                )
                out = _forward(chunk.expand(len(members), *chunk.shape), weights, biases)
                outs.append(out.cpu().double().numpy())
        return np.concatenate(outs, axis=1)

    def _y_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return dtype


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """ReLU MLP classifier in torch: cross-entropy, AdamW, early stopping, best weights kept.

    Parameters
    ----------
    width : int, default=128
        Units per hidden layer.
    depth : int, default=2
        Number of hidden layers (0 gives multinomial logistic regression).
    dropout : float, default=0.1
        Dropout probability after each hidden ReLU, during training.
    weight_decay : float, default=1e-4
        AdamW decoupled weight decay on the weight matrices (biases are not decayed).
    lr : float, default=1e-3
        AdamW learning rate (the peak one with ``lr_scheduler``).
    lr_scheduler : bool, default=True
        Decay the learning rate along a cosine, from ``lr`` at the first epoch towards 0 at epoch
        ``schedule_epochs``; the rate depends on the epoch alone, so a refit replays it.
    batch_size : int, default=256
        Rows per step (capped at the number of training rows: one full-batch step per epoch); an
        epoch's rows are split into near-equal batches.
    max_epochs : int, default=300
        Upper bound on passes over the training rows (Grinsztajn et al.'s).
    schedule_epochs : int or None, default=None
        Length of the cosine schedule; None: ``max_epochs``. A refit for the epoch count that early
        stopping chose keeps the tuning fit's length here (see ``refit_params``).
    patience : int, default=40
        Stop after this many epochs without a validation loss 1e-4 (relative) below the last such
        improvement (skorch's EarlyStopping, Grinsztajn et al.'s patience); the weights kept are
        those of the lowest loss (``metrics.beats``: a near-equal later loss does not replace it).
    max_gflop : float or None, default=20.0
        Cap on a fit's arithmetic: the epochs are at most ``max_gflop`` divided by one epoch's
        GFLOP (6 per weight and training row, 2 per weight and validation row), computed before
        training, so a cap is deterministic. It binds only on the largest networks of the space on
        the larger datasets (20 GFLOP is about half a second of one core) and keeps tuning's cost
        bounded; the cosine schedule then spans the capped epochs (budgeted training, Li et al.
        2020). None: no cap (the refit, whose epoch count is already chosen).
    val_fraction : float, default=0.15
        Share of the training rows held out for early stopping when ``fit`` gets no ``X_val``.
    n_ensemble : int, default=1
        Networks trained on the same rows (and validation split) with different seeds, as one
        stacked network; predictions average their softmax probabilities (regressor: their
        outputs). The first network is the one ``n_ensemble=1`` trains; its curves and epochs are
        the fitted attributes below.
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
        Layer parameters on ``device_`` of the first network; ``weights_[i]`` has shape (out, in).
    members_ : list of (weights, biases)
        Every network's layer parameters (``n_ensemble`` of them; the first is ``weights_``).
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
    epoch_cap_ : int
        ``max_epochs`` or the fewer epochs ``max_gflop`` allowed.
    schedule_epochs_ : int
        Length of the cosine schedule used (``schedule_epochs`` or ``epoch_cap_``).

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

    def _y_dtype(self, dtype):
        return torch.int64

    def _y_tensor(self, y, dtype):
        return torch.as_tensor(y, dtype=torch.int64)

    def _row_losses(self, out, y):
        flat = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        return flat.reshape(y.shape)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the outputs; with ``n_ensemble > 1`` the mean of the
        networks' softmaxes), shape (n_samples, n_classes)."""
        logits = self._raw_predict(X)
        logits -= logits.max(axis=2, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=2, keepdims=True)
        return proba.mean(axis=0)

    def predict(self, X) -> np.ndarray:
        """Most probable class label per row."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """ReLU MLP regressor in torch: mean squared error, AdamW, early stopping, best weights kept.

    The target is standardized inside ``fit`` (and the predictions mapped back), so the learning
    rate means the same for any target scale. Parameters as :class:`MLPClassifier`.

    Attributes
    ----------
    n_features_in_ : int
    device_ : torch.device
    weights_, biases_ : list of torch.Tensor
    members_ : list of (weights, biases)
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

    def _y_tensor(self, y, dtype):
        return torch.as_tensor(y, dtype=dtype)

    def _row_losses(self, out, y):
        return (out[..., 0] - y) ** 2

    def predict(self, X) -> np.ndarray:
        """Predicted target per row."""
        return self._raw_predict(X)[:, :, 0].mean(axis=0) * self.y_scale_ + self.y_mean_


def _adamw(groups, lr):
    """AdamW, fused into one kernel per step where this torch supports it (CPU since 2.4)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def _init_params(sizes, seeds, dtype, device):
    """Stacked weights (members, out, in) and biases (members, out), drawn like torch.nn.Linear's
    default, each member from its own generator seeded with its seed (not the global RNG)."""
    gens = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
    per_member = []
    for gen in gens:
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=False):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(fan_out, fan_in, generator=gen, dtype=dtype) * 2 - 1) * bound
            b = (torch.rand(fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound
            layers.append((w, b))
        per_member.append(layers)
    weights, biases = [], []
    for layer in range(len(sizes) - 1):
        w = torch.stack([member[layer][0] for member in per_member])
        b = torch.stack([member[layer][1] for member in per_member])
        weights.append(w.to(device).requires_grad_())
        biases.append(b.to(device).requires_grad_())
    return weights, biases


def _batches(n_rows, steps, gens, device, dtype):
    """One epoch's steps: (row indices (members, batch), row weights, real rows per member).

    Each member's rows are shuffled by its own generator and split into ``steps`` near-equal
    batches; a member's row weight is 1 / its batch size, and 0 on padding (index 0).
    """
    k = len(n_rows)
    batch = math.ceil(max(n_rows) / steps)
    idx = torch.zeros(steps, k, batch, dtype=torch.int64, device=device)
    w = torch.zeros(steps, k, batch, dtype=dtype, device=device)
    real = [[0] * k for _ in range(steps)]
    for i, (n, gen) in enumerate(zip(n_rows, gens, strict=True)):
        perm = torch.randperm(n, generator=gen, device=device)
        q, r = divmod(n, steps)
        start = 0
        for s in range(steps):
            size = q + (s < r)
            idx[s, i, :size] = perm[start : start + size]
            w[s, i, :size] = 1.0 / size
            real[s][i] = size
            start += size
    return [(idx[s], w[s], real[s]) for s in range(steps)]


def _forward(x, weights, biases, dropout=0.0, gens=None, real=None):
    """Stacked ReLU networks on ``x`` (members, rows, in); inverted dropout after each hidden layer
    when ``gens`` is given (training), each member's mask over its ``real`` rows from its own
    generator, so a member's draws are those of a network trained alone."""
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
        if i < last:
            x = torch.relu(x)
            if gens is not None and dropout > 0:
                keep = torch.zeros_like(x)
                for member, (gen, rows) in enumerate(zip(gens, real, strict=True)):
                    keep[member, :rows].bernoulli_(1 - dropout, generator=gen)
                x = x * keep / (1 - dropout)
    return x


# Search space and registry entry -------------------------------------------------------------------


class _ZeroOr:
    """0 with probability 1/2, else a draw from ``inner`` (Gorishniy et al.'s "{0, inner}").

    Like the integer one below, it reads as a frozen scipy distribution where the space is shown
    (``dist.name``, ``support()``) and draws as one for ParameterSampler (``rvs``).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dist = SimpleNamespace(name=f"0 or {inner.dist.name}")

    def support(self) -> tuple[float, float]:
        return self.inner.support()

    def rvs(self, random_state=None) -> float:
        rng = check_random_state(random_state)
        return 0.0 if rng.uniform() < 0.5 else float(self.inner.rvs(random_state=rng))

    def __repr__(self) -> str:
        low, high = self.support()
        return f"{self.dist.name}[{low:g}, {high:g}]"


class _LogUniformInt:
    """An integer drawn log-uniformly in [low, high] (rounded)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.dist = SimpleNamespace(name="log-uniform integer")

    def support(self) -> tuple[int, int]:
        return self.low, self.high

    def rvs(self, random_state=None) -> int:
        value = loguniform(self.low, self.high + 1).rvs(random_state=random_state)
        return int(min(max(math.floor(value), self.low), self.high))

    def __repr__(self) -> str:
        return f"{self.dist.name}[{self.low}, {self.high}]"


SPACE: dict[str, Any] = {
    "depth": randint(1, 9),  # 1..8
    "width": _LogUniformInt(16, 1024),
    "dropout": _ZeroOr(uniform(0.0, 0.5)),
    "weight_decay": _ZeroOr(loguniform(1e-6, 1e-3)),
    "lr": loguniform(1e-5, 1e-2),
    "batch_size": [256, 512, 1024],
    "lr_scheduler": [True, False],
}

# Grinsztajn et al.'s default MLP is 4 layers of 256, lr 1e-3, schedule on, batch 512, no dropout;
# two layers of 128 with a little dropout and weight decay (scikit-learn's default is one layer of
# 100 with an L2 penalty of 1e-4) are as good on small data, at an eighth of the arithmetic.
DEFAULTS: dict[str, Any] = {
    "depth": 2,
    "width": 128,
    "dropout": 0.1,
    "weight_decay": 1e-4,
    "lr": 1e-3,
    "batch_size": 256,
    "lr_scheduler": True,
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


# Networks averaged in the refit on all training rows (see the module docstring).
REFIT_ENSEMBLE = 5


def refit_params(model: BaseEstimator) -> dict[str, Any]:
    """The epoch count early stopping chose, so the refit trains on all rows for that long, with
    the learning-rate schedule of the tuning fit (same length, so the same rates epoch by epoch);
    five networks averaged, since no validation rows remain to catch an unlucky seed."""
    return {
        "n_ensemble": REFIT_ENSEMBLE,
        "max_epochs": max(int(model.best_epoch_), 1),
        "schedule_epochs": int(model.schedule_epochs_),
        "max_gflop": None,  # the epoch count is chosen: more rows must not cut it
        "val_fraction": 0.0,
    }


SPEC = ModelSpec(
    name="mlp",
    summary="ReLU MLP in torch, Grinsztajn et al.'s space (AdamW, schedule, early stopping)",
    build=build,
    space=SPACE,
    defaults=DEFAULTS,
    uses_device=True,
    precision_param="dtype",
    refit_params=refit_params,
    paper_space=PAPER_SPACE,
    validation_score=neg_log_loss_score,
)
