"""Feature normalisation before the few-shot methods (SimpleShot's UN / L2N / CL2N), checked by hand,
against numpy, and through every evaluator against the per-episode oracles on normalised features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import episode_loop
from test_evaluators import clustered_features, random_episodes

from fewshot_cam.errors import UserError
from fewshot_cam.fewshot.episodic import METHODS, evaluate_episodes
from fewshot_cam.fewshot.normalize import NORMALIZATIONS, base_mean, normalize_features


def test_hand_computed_values():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(normalize_features(x, "l2"), [[0.6, 0.8], [0.0, 0.0], [1 / 5**0.5, 2 / 5**0.5]],
                               rtol=1e-6)
    mean = torch.tensor([1.0, 0.0])  # (3, 4) - m = (2, 4), length sqrt(20); (1, 2) - m = (0, 2)
    np.testing.assert_allclose(normalize_features(x, "cl2n", mean),
                               [[2 / 20**0.5, 4 / 20**0.5], [-1.0, 0.0], [0.0, 1.0]], rtol=1e-6)
    assert normalize_features(x, "none") is x  # the default leaves today's features untouched


def test_against_numpy_on_random_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7)).astype(np.float32) + 3.0
    base = rng.normal(size=(200, 7)).astype(np.float32) + 2.0
    m = base.mean(axis=0)
    np.testing.assert_allclose(base_mean(torch.from_numpy(base)), m, rtol=1e-6)
    np.testing.assert_allclose(normalize_features(torch.from_numpy(x), "l2"),
                               x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-5)
    centred = x - m
    np.testing.assert_allclose(normalize_features(torch.from_numpy(x), "cl2n", torch.from_numpy(m)),
                               centred / np.linalg.norm(centred, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_unknown_name_and_missing_mean_raise_user_errors():
    with pytest.raises(UserError, match="none, l2, cl2n"):
        normalize_features(torch.ones(2, 3), "zscore")
    with pytest.raises(UserError, match="cl2n"):
        normalize_features(torch.ones(2, 3), "cl2n")


@pytest.mark.parametrize("name", NORMALIZATIONS.names())
def test_every_evaluator_with_every_normalisation_matches_the_oracle(name):
    """Batched methods on normalised features == the per-episode plain loops on features normalised by numpy."""
    features = clustered_features(spread=0.5) + 2.0  # off the origin, so centring changes the geometry
    indices = random_episodes(4, ways=3, per_class=2 + 3)
    m = features.numpy()[:100].mean(axis=0)  # a stand-in "base" mean
    raw = features.numpy()
    expected = {"none": raw, "l2": raw / np.linalg.norm(raw, axis=1, keepdims=True),
                "cl2n": (raw - m) / np.linalg.norm(raw - m, axis=1, keepdims=True)}[name]
    normalised = normalize_features(features, name, torch.from_numpy(m))
    got = evaluate_episodes(normalised, indices, shots=2, methods=METHODS.names(), seed=1)
    for method in METHODS.names():
        oracle = episode_loop(torch.from_numpy(np.ascontiguousarray(expected)), indices, 2, method, seed=1)
        np.testing.assert_allclose(got[method], oracle, atol=1e-6, err_msg=f"{method} with {name}")


def test_normalisation_changes_what_it_should():
    """l2 leaves logreg unchanged (it L2-normalises itself); cl2n changes ProtoNet on off-centre features."""
    features = clustered_features(spread=0.3, seed=2) + 5.0
    indices = random_episodes(30, ways=5, per_class=1 + 5, seed=2)
    m = features.mean(0)
    runs = {n: evaluate_episodes(normalize_features(features, n, m), indices, 1, ["protonet", "logreg"])
            for n in NORMALIZATIONS.names()}
    np.testing.assert_allclose(runs["l2"]["logreg"], runs["none"]["logreg"], atol=1e-9)
    assert not np.array_equal(runs["cl2n"]["protonet"], runs["none"]["protonet"])
