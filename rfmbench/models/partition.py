"""Partitioned RFM: the xRFM tree (Beaglehole et al., arXiv 2508.10053), our implementation.

The rows are split recursively until every leaf holds at most ``max_leaf_size`` of them. A node's
split direction is the top eigenvector of the AGOP of a kernel ridge predictor (``M = I``) fitted
exactly on a seeded random subsample of the node's rows; the rows are sorted by their projection on
it and split in two halves (balanced, so duplicated rows cannot stall the recursion), at the
midpoint between the two middle projections. Each leaf is then an ordinary RFM, fitted by
`rfmbench.models.rfm` on its rows; a new row is routed to its leaf by comparing its projections
with the thresholds (``<=`` goes left: a training row whose projection ties a threshold may have
been placed right, to keep the halves balanced).

Mapping to ``xrfm.xRFM`` 0.4.5 (``split_method='top_vector_agop_on_subset'``, its default):

- ``max_leaf_size`` (ours and theirs): the same; theirs defaults to 60,000 scaled by the device's
  memory relative to a 40 GB GPU, ours to what the memory plan and a time target allow.
- the split model: theirs is fixed (``default_rfm_params``: ``l2_high_dim`` kernel, bandwidth 10,
  reg 1e-3, no iteration) on a subset of up to 50,000 rows (95% fitted); ours uses the estimator's
  own kernel, bandwidth, exponent and reg on a random ``rfm.SPLIT_ROWS`` (2,000) of the node's rows
  (or all, when fewer), and its AGOP over all of them. 2,000 rather than the leaf size:
  at n = 100,000 (32 leaves of ~3,000 rows, 31 splits) the splits on 5,000 rows were a third of the
  fit (38.0 s -> 25.8 s with 2,000; test MSE 0.0084 -> 0.0085, classification error 0.0328 -> 0.0332).
  At n = 20,000 (4 leaves, regression, seeds 0-2) 5,000 rows gave 0.0110 / 0.0106 / 0.0110 against
  2,000's 0.0109 / 0.0103 / 0.0106: a steadier direction (near (x1 + x2) / sqrt 2), no better tree.
- the median split: theirs sends the sorted first half left (``_get_balanced_split`` with
  ``overlap_fraction=0``) and validation rows by ``projection <= median``; ours the same halves,
  and every routed row by ``projection <= midpoint``.
- overlap: theirs ``overlap_fraction`` (default 0) sends the middle ``2 * overlap_fraction`` of a
  node's rows (by projection) to both children at each split; ours ``leaf_overlap`` (default 0)
  adds to each finished leaf that share of its count: the rows of the whole training set nearest
  its region across all its splits (`overlapping_rows`), so the overlap does not compound down
  the tree.
- validation: theirs routes ``X_val`` down the tree and refills small leaf validation sets from the
  leaf's training rows; ours routes an explicit ``X_val``, or with ``split_temperature="auto"``
  carves ``val_fraction`` of the rows (stratified) before the split and routes those; a leaf that
  receives none, or any leaf under a fixed temperature, carves its own.
- ``n_trees``, ``n_tree_iters``: not implemented (their defaults: one tree, no iteration).
  Averaging trees of seeds 0-2 (n = 20,000, 4 leaves, the regression task of
  ``benchmarks/rfm_scale.py``) took test MSE from 0.0110 (seed 0's tree) to 0.0102, 1.03x the
  exact RFM's, for 3x the time; 5 trees 0.0104. Theirs ``n_tree_iters`` with this split method
  rebuilds the tree from new random subsets and keeps the one best on validation (the averaged
  leaf ``M`` steers the splits only under ``split_method='random_global_agop'``).
- soft routing: theirs by default (``use_temperature_tuning=True``) tunes a ``split_temperature``
  on the validation rows among 0 (hard) and 20 values from 0.025 to 4.5, a row's prediction then
  mixing the leaves on either side of a split near its boundary (`leaf_weights`); ours the same
  with ``split_temperature="auto"`` (`rfmbench.models.rfm`), over the same temperatures, keeping
  99% of a row's weight in at most 12 leaves as theirs.
  Before it, at n = 20,000 (4 leaves, the classification task of ``benchmarks/rfm_scale.py``,
  seeds 0-2): test error ours (hard) 0.0316 / 0.0320 / 0.0286, xRFM hard 0.0292 / 0.0324 /
  0.0298, xRFM tuned 0.0282 / 0.0312 / 0.0292; a tree's seed moves the error by 10%, the
  routing by 3%.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rfmbench.models.agop import agop
from rfmbench.models.kernels import Kernel, block_rows_for
from rfmbench.models.solvers import KernelSystem, exact_solve

# Soft routing keeps, per row, its heaviest leaves up to this share of the weight, at most
# SOFT_MAX_LEAVES of them (xRFM's keep_weight_frac_in_predict and max_leaf_count_in_ensemble).
SOFT_KEEP_MASS = 0.99
SOFT_MAX_LEAVES = 12
# The split temperatures tried on the validation rows (xRFM 0.4.5's space; 0 = hard routing).
SPLIT_TEMPERATURES = (
    0.0,
    *(
        float(t)
        for t in torch.logspace(math.log10(0.025), math.log10(4.5), 20, dtype=torch.float64)
    ),
)


@dataclass
class Node:
    """A split (``direction``, ``threshold``, children) or a leaf (``leaf`` >= 0, its index)."""

    direction: torch.Tensor | None = None
    threshold: float = 0.0
    scale: float = 1.0  # inter-quartile range of the node's projections (soft routing's unit)
    left: Node | None = None
    right: Node | None = None
    leaf: int = -1


def build_tree(
    X: torch.Tensor,
    max_leaf_size: int,
    direction: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[Node, list[torch.Tensor]]:
    """Split the rows of ``X`` until each part has at most ``max_leaf_size`` rows.

    ``direction(idx)`` returns the unit split direction for the rows ``X[idx]``. Returns the root
    and, per leaf (in leaf-index order), the sorted indices of its rows.
    """
    leaves: list[torch.Tensor] = []

    def grow(idx: torch.Tensor) -> Node:
        if idx.shape[0] <= max_leaf_size:
            leaves.append(idx.sort().values)
            return Node(leaf=len(leaves) - 1)
        v = direction(idx)
        proj = X[idx] @ v
        order = torch.argsort(proj, stable=True)
        half = (idx.shape[0] + 1) // 2
        threshold = 0.5 * (float(proj[order[half - 1]]) + float(proj[order[half]]))
        n = idx.shape[0]
        iqr = float(proj[order[(3 * (n - 1)) // 4]]) - float(proj[order[(n - 1) // 4]])
        left = grow(idx[order[:half]])
        right = grow(idx[order[half:]])
        return Node(direction=v, threshold=threshold, left=left, right=right, scale=max(iqr, 1e-6))

    root = grow(torch.arange(X.shape[0], device=X.device))
    return root, leaves


def overlapping_rows(
    tree: Node, X: torch.Tensor, leaf_rows: list[torch.Tensor], overlap: float
) -> list[torch.Tensor]:
    """Each leaf's rows plus the ``overlap`` x as many rows of ``X`` nearest its region.

    A row's distance to a leaf is its largest violation of the leaf's path: at each split, how
    far (in units of the split's ``scale``) its projection lies on the wrong side.
    """
    out = list(leaf_rows)
    if overlap <= 0:
        return out
    stack = [(tree, torch.zeros(X.shape[0], dtype=X.dtype, device=X.device))]
    while stack:
        node, viol = stack.pop()
        if node.leaf >= 0:
            own = leaf_rows[node.leaf]
            extra = min(int(round(overlap * own.shape[0])), X.shape[0] - own.shape[0])
            if extra > 0:
                viol = viol.clone()
                viol[own] = float("inf")
                near = torch.topk(viol, extra, largest=False).indices
                out[node.leaf] = torch.cat([own, near]).sort().values
            continue
        z = (X @ node.direction.to(X.dtype) - node.threshold) / node.scale
        stack.append((node.left, torch.maximum(viol, z.clamp(min=0))))
        stack.append((node.right, torch.maximum(viol, (-z).clamp(min=0))))
    return out


def route(tree: Node, X: torch.Tensor) -> torch.Tensor:
    """The leaf index of each row of ``X`` (``projection <= threshold`` goes left)."""
    out = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    stack = [(tree, torch.arange(X.shape[0], device=X.device))]
    while stack:
        node, idx = stack.pop()
        if node.leaf >= 0:
            out[idx] = node.leaf
            continue
        go_left = X[idx] @ node.direction.to(X.dtype) <= node.threshold
        stack.append((node.left, idx[go_left]))
        stack.append((node.right, idx[~go_left]))
    return out


def agop_direction(
    kernel: Kernel,
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    reg: float,
    agop_samples: int,
    block_bytes: float,
    generator: torch.Generator,
    fits: Callable[[float], bool] = lambda nbytes: True,
) -> torch.Tensor:
    """Top eigenvector of the AGOP of the kernel ridge predictor (``M = I``) fitted on ``(X, Y)``.

    The AGOP is taken over a random ``agop_samples`` of the rows. Its sign is fixed (largest
    coordinate positive) so that a seed gives one tree. ``fits``: as in `solvers.exact_solve`.
    """
    system = KernelSystem(kernel, X, None, reg, block_bytes)
    coef = exact_solve(system, Y, fits=fits).coef
    # A repaired solve's float64 coefficients are large and cancel: their gradients summed in
    # float32 lose the AGOP (as in the RFM iterations, `rfm._BaseRFM._next_metric`).
    X_g = X.to(coef.dtype)
    sample = None
    if agop_samples < X.shape[0]:
        sample = torch.randperm(X.shape[0], generator=generator)[:agop_samples].to(X.device)
    per_row = kernel.agop_bytes_per_row(X.shape[0], X.shape[1], Y.shape[1], X_g.element_size())
    rows = block_rows_for(block_bytes, per_row, X.shape[0])
    G = agop(kernel, X_g, coef, None, sample=sample, block_rows=rows)
    _, vecs = torch.linalg.eigh((G + G.mT).to(torch.float64) / 2)
    v = vecs[:, -1]
    v = v if v[v.abs().argmax()] >= 0 else -v
    return v.to(X.dtype)


def leaf_weights(tree: Node, X: torch.Tensor, temperature: float, n_leaves: int) -> torch.Tensor:
    """Soft routing (xRFM's ``split_temperature``): each row's weight on each leaf, (n, leaves).

    At a split a row goes right with probability ``sigmoid((projection - threshold) /
    (temperature * scale))`` (``scale``: the inter-quartile range of the node's training
    projections) and left with the rest; a leaf's weight is the product along its path. A row
    keeps its heaviest leaves until they hold `SOFT_KEEP_MASS` of its weight (at most
    `SOFT_MAX_LEAVES`), renormalised, as xRFM does: a row is predicted by the few leaves near it.
    ``temperature > 0``; as it goes to 0 the weights go to `route`'s leaf.
    """
    W = torch.zeros(X.shape[0], n_leaves, dtype=X.dtype, device=X.device)
    stack = [(tree, torch.zeros(X.shape[0], dtype=X.dtype, device=X.device))]
    while stack:
        node, log_w = stack.pop()
        if node.leaf >= 0:
            W[:, node.leaf] = torch.exp(log_w)
            continue
        z = (X @ node.direction.to(X.dtype) - node.threshold) / (temperature * node.scale)
        stack.append((node.left, log_w + torch.nn.functional.logsigmoid(-z)))
        stack.append((node.right, log_w + torch.nn.functional.logsigmoid(z)))
    heaviest, order = torch.sort(W, dim=1, descending=True)
    # Leaves before the one that reaches the mass are kept, and that one: positions <= count.
    count = (torch.cumsum(heaviest, dim=1) < SOFT_KEEP_MASS).sum(dim=1)
    count = count.clamp(max=min(SOFT_MAX_LEAVES, n_leaves) - 1)
    kept_sorted = torch.arange(n_leaves, device=X.device)[None, :] <= count[:, None]
    keep = torch.zeros_like(kept_sorted).scatter_(1, order, kept_sorted)
    W = W * keep
    return W / W.sum(dim=1, keepdim=True)
