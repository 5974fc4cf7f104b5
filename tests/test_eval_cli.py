"""``fewshot-cam eval`` end to end on a tiny checkpoint and the built-in synthetic data at 32 px."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import scipy.stats
import torch
from oracles import episode_loop

from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.episodes import make_episodes, save_episode_file
from fewshot_cam.models.checkpoint import load_model, save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.models.features import extract_features

SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny")
    path = tmp_path_factory.mktemp("eval") / "tiny.pt"
    save_checkpoint(path, {
        "model": build_model(cfg, 10).state_dict(), "model_config": asdict(cfg), "num_classes": 10,
        "config": {"data": {"dataset": "synthetic", "root": None, "image_size": SIZE}},
    })
    return path


@pytest.fixture(scope="module")
def test_split():
    return load_split("synthetic", None, "test", SIZE)


def test_eval_json_matches_a_per_episode_oracle(checkpoint, test_split, tmp_path, cli):
    out = tmp_path / "r.json"
    code, stdout, _ = cli("eval", "--checkpoint", checkpoint, "--ways", 5, "--shots", 1, "--queries", 4,
                          "--episodes", 12, "--seed", 3, "--methods", "protonet,logreg", "--device", "cpu",
                          "--json", out)
    assert code == 0 and "12 episodes from seed 3" in stdout and "| protonet" in stdout
    record = json.loads(out.read_text())
    expected = dict(ways=5, shots=1, queries=4, n_episodes=12, seed=3, episode_file=None,
                    dataset="synthetic", split="test")
    assert {k: record[k] for k in expected} == expected
    assert record["fingerprint"] == test_split.fingerprint() and record["checkpoint"] == str(checkpoint)
    # Oracle: every image's features, the same sampler, one episode at a time.
    model, _ = load_model(checkpoint)
    features = extract_features(model, test_split.images)
    episodes = make_episodes(test_split, 5, 1, 4, 12, seed=3)
    for entry in record["results"]:
        oracle = episode_loop(features, episodes.indices, 1, entry["method"], seed=3)
        np.testing.assert_allclose(entry["per_episode"], oracle, atol=1e-6)
        acc = np.asarray(entry["per_episode"])
        assert entry["mean"] == pytest.approx(acc.mean())
        low, high = scipy.stats.t.interval(0.95, len(acc) - 1, loc=acc.mean(), scale=scipy.stats.sem(acc))
        assert entry["ci95"] == pytest.approx((high - low) / 2)


def test_eval_uses_a_shipped_episode_file(checkpoint, test_split, tmp_path, cli, monkeypatch):
    shipped = save_episode_file(make_episodes(test_split, 3, 1, 15, 6, seed=9), test_split, tmp_path / "ep.json")
    monkeypatch.setenv("FEWSHOT_CAM_EPISODES", str(tmp_path))
    code, stdout, _ = cli("eval", "--checkpoint", checkpoint, "--ways", 3, "--shots", 1, "--methods", "protonet",
                          "--json", tmp_path / "r.json", "--device", "cpu")
    assert code == 0 and "6 episodes from episode file" in stdout
    assert json.loads((tmp_path / "r.json").read_text())["episode_file"] == str(shipped)


def bad_requests(checkpoint, tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(checkpoint.read_bytes()[:500])
    val = load_split("synthetic", None, "val", SIZE)
    other = save_episode_file(make_episodes(val, 5, 1, 15, 3, seed=0), val, tmp_path / "val-episodes.json")
    base = ["eval", "--checkpoint", checkpoint, "--device", "cpu"]
    return {
        "unknown method": ([*base, "--ways", 5, "--shots", 1, "--methods", "protonet,svm"], "svm"),
        "impossible shots": ([*base, "--ways", 5, "--shots", 70, "--episodes", 2], "shots"),
        "too many ways": ([*base, "--ways", 50, "--shots", 1, "--episodes", 2], "ways"),
        "other split's episodes": ([*base, "--episode-file", other], "fingerprint"),
        "setting mismatch": ([*base, "--episode-file", other, "--split", "val", "--ways", 3], "ways"),
        "other backbone": ([*base, "--backbone", "conv4", "--ways", 5, "--shots", 1], "conv4"),
        "damaged checkpoint": (["eval", "--checkpoint", damaged, "--ways", 5, "--shots", 1], "damaged"),
    }


def test_bad_input_exits_2_with_one_line(checkpoint, tmp_path, cli):
    for name, (argv, needle) in bad_requests(checkpoint, tmp_path).items():
        code, _, err = cli(*argv)
        assert code == 2, name
        assert len(err.strip().splitlines()) == 1 and needle in err, (name, err)
