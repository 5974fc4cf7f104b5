"""Per-episode plain-loop oracles for the batched few-shot evaluators (independent code: torch.cdist,
explicit cosine, scikit-learn, a per-episode nn.Module trained with torch.optim as in Chen et al.'s code)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fewshot_cam.fewshot import finetune
from fewshot_cam.fewshot.episodic import episode_seeds


class DistLinear(nn.Module):
    """Chen et al.'s ``distLinear``: weight-normalised, bias-free, scale 2 for <= 200 classes."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.L = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.L.weight.data.copy_(weight)
        self.L = nn.utils.parametrizations.weight_norm(self.L, "weight", dim=0)

    def forward(self, x):
        x = x / (x.norm(dim=1, keepdim=True) + 1e-5)
        return 2.0 * self.L(x)


def chen_finetune(support: torch.Tensor, query: torch.Tensor, seed: int, cosine: bool) -> torch.Tensor:
    """Chen's ``set_forward_adaptation`` for one episode: support (N, K, D), query (M, D) -> scores (M, N)."""
    N, K, dim = support.shape
    weight, bias, order = finetune.draw_episode_randomness([seed], N, dim, N * K, finetune.EPOCHS)
    if cosine:
        clf = DistLinear(weight[0])
    else:
        clf = nn.Linear(dim, N)
        clf.weight.data.copy_(weight[0])
        clf.bias.data.copy_(bias[0])
    opt = torch.optim.SGD(clf.parameters(), lr=0.01, momentum=0.9, dampening=0.9, weight_decay=0.001)
    z, y = support.reshape(N * K, dim), torch.arange(N).repeat_interleave(K)
    for epoch in range(finetune.EPOCHS):
        rand_id = order[0, epoch]
        for i in range(0, N * K, 4):
            opt.zero_grad()
            selected = rand_id[i : i + 4]
            nn.CrossEntropyLoss()(clf(z[selected]), y[selected]).backward()
            opt.step()
    with torch.no_grad():
        return clf(query)


def protonet_episode(support: torch.Tensor, query: torch.Tensor, cosine: bool) -> torch.Tensor:
    """support (N, K, D), query (M, D) -> predicted class (M,): nearest class mean."""
    protos = support.mean(1)
    if not cosine:
        return torch.cdist(query, protos).argmin(1)
    cos = [[float(F.cosine_similarity(x, c, dim=0)) for c in protos] for x in query]
    return torch.tensor(cos).argmax(1)


def logreg_episode(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """scikit-learn's L2 logistic regression on unit-length features, fitted tightly -> (M,) predictions."""
    from sklearn.linear_model import LogisticRegression

    N, K, dim = support.shape
    x = F.normalize(support.reshape(-1, dim).double(), dim=-1).numpy()
    q = F.normalize(query.double(), dim=-1).numpy()
    clf = LogisticRegression(C=1.0, max_iter=10000, tol=1e-12).fit(x, np.repeat(np.arange(N), K))
    return torch.from_numpy(clf.predict(q))


def predict_episode(method: str, support: torch.Tensor, query: torch.Tensor, seed: int) -> torch.Tensor:
    if method in ("protonet", "protonet-cosine"):
        return protonet_episode(support, query, cosine=method == "protonet-cosine")
    if method == "logreg":
        return logreg_episode(support, query)
    return chen_finetune(support, query, seed, cosine=method in ("baseline++", "cosine-finetune")).argmax(1)


def episode_loop(features: torch.Tensor, indices: torch.Tensor, shots: int, method: str, seed: int = 0) -> np.ndarray:
    """Per-episode accuracy in percent (E,), one episode at a time: features (I, D), indices (E, N, K+Q)."""
    seeds = episode_seeds(seed, range(len(indices)))
    out = []
    for e, episode in enumerate(indices):
        n, kq = episode.shape
        support, query = features[episode[:, :shots]], features[episode[:, shots:]].reshape(-1, features.shape[1])
        labels = torch.arange(n).repeat_interleave(kq - shots)
        pred = predict_episode(method, support.double() if method == "logreg" else support, query, seeds[e])
        out.append(100.0 * (pred == labels).double().mean().item())
    return np.asarray(out)
