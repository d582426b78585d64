"""Small torch building blocks for the tabular reference models (CPU, deterministic)."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn


class MLP(nn.Module):
    """``in -> [Linear, ReLU, Dropout] * len(hidden) -> Linear(out)``; returns logits."""

    def __init__(self, n_in: int, hidden: Sequence[int] = (64, 64), n_out: int = 1, dropout: float = 0.2):
        super().__init__()
        layers, prev = [], n_in
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        layers.append(nn.Linear(prev, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class SigmoidEnsemble(nn.Module):
    """Mean of ``sigmoid(member(x))`` over the members: the exported probability head."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([torch.sigmoid(m(x)) for m in self.members], 0).mean(0)


def fit_logits(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 30, lr: float = 1e-3,
               weight_decay: float = 1e-3, batch_size: int = 256, pos_weight: Optional[np.ndarray] = None,
               seed: int = 0) -> nn.Module:
    """Train ``model`` (producing logits of shape [N, K]) with BCE-with-logits and AdamW for a fixed
    number of epochs; ``y`` is [N] or [N, K] of 0/1. Deterministic for a given ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
    if yt.dim() == 1:
        yt = yt[:, None]
    pw = None if pos_weight is None else torch.as_tensor(np.asarray(pos_weight, dtype=np.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            b = perm[i:i + batch_size]
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(model(xt[b]), yt[b], pos_weight=pw)
            loss.backward()
            opt.step()
    model.eval()
    return model


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Eval-mode forward pass on float32 numpy input; returns numpy."""
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()


def fit_members(make_member: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, hparams: dict, count: int,
                seed: int) -> List[nn.Module]:
    """Trains ``count`` ensemble members with :func:`fit_logits`, member ``k`` seeded with ``seed * 100 + k``
    (both its initialisation and its batch order), using ``hparams`` epochs, lr, weightDecay, batchSize."""
    members = []
    for k in range(count):
        torch.manual_seed(seed * 100 + k)
        member = make_member()
        fit_logits(member, x, y, epochs=hparams['epochs'], lr=hparams['lr'], weight_decay=hparams['weightDecay'],
                   batch_size=hparams['batchSize'], seed=seed * 100 + k)
        members.append(member)
    return members






class BoostedTrees(nn.Module):
    """A fitted scikit-learn ``HistGradientBoostingClassifier`` (binary, numeric features, no missing
    values) as tensor operations, so that ``torch.onnx.export`` writes it with plain ONNX operators
    (Gather, LessOrEqual, MatMul, Equal), which onnxruntime's CUDA provider implements too; its
    ONNX-ML tree operators are CPU-only.

    Every split of every tree is evaluated at once and each tree's leaf found by a matrix product (the
    "GEMM" strategy of Hummingbird, Nakandala et al. 2020), per tree so that the matrices stay small:

    - ``d[t, k, n] = x[n, feature[t, k]] <= threshold[t, k]`` for split k of tree t (1 = go left);
    - ``paths[t, l, k]`` is +1 when leaf l lies under split k's left branch, -1 under its right, else 0;
      ``lefts[t, l]`` counts the left branches on leaf l's path. ``sum_k paths * d == lefts`` holds for
      exactly the leaf the row reaches (all the left turns on its path taken, none of the right ones);
    - the raw score (log-odds, as ``decision_function``) is ``baseline + sum of the reached leaves' values``.

    Thresholds are rounded down to float32: for a float32 input ``v`` and a float64 threshold ``t``,
    ``v <= t`` exactly when ``v <= float32_down(t)``, so the float32 graph takes the same branches as
    scikit-learn's float64 comparison; the path sums are small integers, exact in float32. Tensors are
    laid out with the batch last, so that each broadcast runs along a contiguous row of the batch
    (onnxruntime's CPU broadcasts are several times slower along short inner dimensions)."""

    def __init__(self, gb):
        super().__init__()
        if gb.n_trees_per_iteration_ != 1:
            raise ValueError('BoostedTrees supports binary classification only')
        trees = [tree.nodes for (tree,) in gb._predictors]
        if any(nodes['is_categorical'].any() for nodes in trees):
            raise ValueError('BoostedTrees supports numeric features only')
        n_split = max(1, max(int((nodes['is_leaf'] == 0).sum()) for nodes in trees))
        n_leaf = max(int(nodes['is_leaf'].sum()) for nodes in trees)
        feature = np.zeros((len(trees), n_split), np.int64)
        threshold = np.zeros((len(trees), n_split), np.float32)
        paths = np.zeros((len(trees), n_leaf, n_split), np.float32)
        lefts = np.full((len(trees), n_leaf), -1.0, np.float32)  # -1: a padding leaf is never reached
        values = np.zeros((len(trees), n_leaf), np.float32)
        for t, nodes in enumerate(trees):
            n_splits, n_leaves = 0, 0
            stack = [(0, [])]  # (node index, [(split slot, went left)] from the root)
            while stack:
                i, path = stack.pop()
                n = nodes[i]
                if n['is_leaf']:
                    values[t, n_leaves] = n['value']
                    lefts[t, n_leaves] = sum(1 for _, left in path if left)
                    for k, left in path:
                        paths[t, n_leaves, k] = 1.0 if left else -1.0
                    n_leaves += 1
                    continue
                k, n_splits = n_splits, n_splits + 1
                thr = np.float32(n['num_threshold'])
                if float(thr) > float(n['num_threshold']):
                    thr = np.nextafter(thr, np.float32(-np.inf))
                feature[t, k], threshold[t, k] = int(n['feature_idx']), thr
                stack += [(int(n['left']), path + [(k, True)]), (int(n['right']), path + [(k, False)])]
        self.n_trees, self.n_split = len(trees), n_split
        self.register_buffer('feature', torch.from_numpy(feature.reshape(-1)))
        self.register_buffer('threshold', torch.from_numpy(threshold.reshape(-1, 1)))
        self.register_buffer('paths', torch.from_numpy(paths))
        self.register_buffer('lefts', torch.from_numpy(lefts.reshape(len(trees), n_leaf, 1)))
        self.register_buffer('values', torch.from_numpy(values.reshape(1, -1)))
        self.register_buffer('baseline', torch.tensor(float(np.ravel(gb._baseline_prediction)[0]), dtype=torch.float32))

    def forward(self, x):
        xt = x.t()  # [features, N]: gathering whole rows is one copy per split
        d = (xt[self.feature] <= self.threshold).to(torch.float32)  # [trees * splits, N]
        d = d.reshape(self.n_trees, self.n_split, -1)
        reached = (torch.matmul(self.paths, d) == self.lefts).to(torch.float32)  # [trees, leaves, N]
        raw = torch.matmul(self.values, reached.reshape(self.values.shape[1], -1))  # [1, N]
        return raw.t() + self.baseline
