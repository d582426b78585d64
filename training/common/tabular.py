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

