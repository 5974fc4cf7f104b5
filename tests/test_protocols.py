"""``eval --protocol / --normalize / --support-augment`` end to end on a tiny checkpoint (synthetic, 32 px).

Oracles: evaluate_episodes on features extracted here (the default reproduces it exactly); the train
split's mean computed here (CL2N); one episode of support augmentation rebuilt by a plain loop.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.episodes import make_episodes
from fewshot_cam.errors import UserError
from fewshot_cam.evaluation.protocols import PROTOCOLS, resolve
from fewshot_cam.evaluation.results import read_result
from fewshot_cam.evaluation.run import EvalRequest, run_evaluation
from fewshot_cam.evaluation.support_augment import (
    augmentation_seed,
    augmented_features,
    expand_support,
    take,
)
from fewshot_cam.fewshot.episodic import METHODS, evaluate_episodes
from fewshot_cam.models.checkpoint import load_model, save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.models.features import extract_features
from fewshot_cam.training.augment import AugmentConfig, augment_batch, sample_params

SIZE = 32
REAL = {"crop": "pad", "padding": 4, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "jitter_order": "random"}
IDENTITY = {"crop": "pad", "padding": 0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hflip": 0.0}


def make_checkpoint(path, augment):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny")
    config = {"data": {"dataset": "synthetic", "root": None, "image_size": SIZE}}
    if augment is not None:
        config["augment"] = augment
    save_checkpoint(path, {"model": build_model(cfg, 10).state_dict(), "model_config": asdict(cfg),
                           "num_classes": 10, "config": config})
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    return {name: make_checkpoint(root / f"{name}.pt", aug)
            for name, aug in (("real", REAL), ("identity", IDENTITY), ("none", None))}


@pytest.fixture(scope="module")
def test_split():
    return load_split("synthetic", None, "test", SIZE)


def evaluate(checkpoint, **kw):
    request = dict(checkpoint=str(checkpoint), ways=5, shots=2, queries=3, episodes=6, seed=4,
                   methods=tuple(METHODS.names()))
    return run_evaluation(EvalRequest(**{**request, **kw}), torch.device("cpu"))


def per_episode(result):
    return {r.method: np.asarray(r.per_episode) for r in result.results}


def test_default_reproduces_evaluate_episodes_without_normalisation(ckpts, test_split):
    result = evaluate(ckpts["real"])
    assert (result.protocol, result.normalize, result.support_augment) == ("fewshot-cam", "none", 0)
    assert result.overrides == ["episodes", "queries", "methods"]  # given explicitly in place of the preset's
    model, _ = load_model(ckpts["real"])
    episodes = make_episodes(test_split, 5, 2, 3, 6, seed=4)
    expected = evaluate_episodes(extract_features(model, test_split.images), episodes.indices, 2,
                                 METHODS.names(), seed=4)
    got = per_episode(result)
    for method in METHODS.names():
        name = "cosine-finetune" if method == "baseline++" else method
        np.testing.assert_array_equal(got[name], expected[method], err_msg=method)


def test_cl2n_centres_on_the_train_split_mean(ckpts, test_split):
    result = evaluate(ckpts["real"], normalize="cl2n", methods=("protonet",))
    model, _ = load_model(ckpts["real"])
    train = load_split("synthetic", None, "train", SIZE)
    mean = extract_features(model, train.images).double().numpy().mean(axis=0)  # the oracle's own mean
    raw = extract_features(model, test_split.images).double().numpy()
    normalised = (raw - mean) / np.linalg.norm(raw - mean, axis=1, keepdims=True)
    episodes = make_episodes(test_split, 5, 2, 3, 6, seed=4)
    expected = evaluate_episodes(torch.from_numpy(normalised), episodes.indices, 2, ["protonet"])["protonet"]
    np.testing.assert_allclose(per_episode(result)["protonet"], expected)
    assert result.base_split == {"dataset": "synthetic", "split": "train", "n_images": len(train.images),
                                 "fingerprint": train.fingerprint()}


def test_presets_fill_every_setting_and_flags_override():
    for name in PROTOCOLS.names():
        preset = PROTOCOLS.get(name)
        s = resolve(name, episodes=None, queries=None, normalize=None, support_augment=None, methods=None,
                    episode_file=False)
        assert (s.episodes, s.queries, s.normalize, s.support_augment, s.methods, s.overrides) == (
            preset.episodes, preset.queries, preset.normalize, preset.support_augment, preset.methods, ())
    table = {n: (p.episodes, p.queries, p.normalize, p.support_augment) for n, p in PROTOCOLS.items()}
    assert table == {"fewshot-cam": (None, 15, "none", 0), "closerlook": (600, 15, "none", 0),
                     "rfs": (600, 15, "l2", 5), "feat": (10000, 15, "none", 0), "simpleshot": (10000, 15, "cl2n", 0)}
    s = resolve("rfs", episodes=50, queries=None, normalize="none", support_augment=5, methods=None, episode_file=False)
    assert (s.episodes, s.normalize, s.support_augment, s.overrides) == (50, "none", 5, ("episodes", "normalize"))
    s = resolve("rfs", episodes=None, queries=None, normalize=None, support_augment=None, methods=None,
                episode_file=True)
    assert (s.episodes, s.queries) == (None, None)  # the file decides
    with pytest.raises(UserError, match="closerlook"):
        resolve("chen", episodes=None, queries=None, normalize=None, support_augment=None, methods=None,
                episode_file=False)


def test_rfs_preset_through_the_cli(ckpts, test_split, tmp_path, cli):
    out = tmp_path / "rfs.json"
    code, stdout, _ = cli("eval", "--checkpoint", ckpts["real"], "--ways", 5, "--shots", 1, "--protocol", "rfs",
                          "--episodes", 8, "--device", "cpu", "--json", out)
    assert code == 0 and "protocol rfs: normalize l2, support augment 5" in stdout
    record = json.loads(out.read_text())
    assert {k: record[k] for k in ("protocol", "normalize", "support_augment", "queries", "n_episodes")} == {
        "protocol": "rfs", "normalize": "l2", "support_augment": 5, "queries": 15, "n_episodes": 8}
    assert [r["method"] for r in record["results"]] == ["logreg"] and record["overrides"] == ["episodes"]
    assert record["episodes_from"].startswith("drawn with seed 0")
    read = read_result(out)
    assert (read.protocol, read.normalize, read.support_augment, read.overrides) == ("rfs", "l2", 5, ["episodes"])


def test_preset_episode_count_and_seed_match_episodes_make(ckpts, test_split, tmp_path, cli):
    out = tmp_path / "closerlook.json"
    code, _, _ = cli("eval", "--checkpoint", ckpts["real"], "--ways", 5, "--shots", 1, "--protocol", "closerlook",
                     "--methods", "protonet", "--device", "cpu", "--json", out)
    record = json.loads(out.read_text())
    assert code == 0 and record["n_episodes"] == 600 and record["queries"] == 15 and record["normalize"] == "none"
    frozen = tmp_path / "ep.json"
    assert cli("episodes", "make", "--dataset", "synthetic", "--split", "test", "--image-size", SIZE, "--ways", 5,
               "--shots", 1, "--queries", 15, "--n", 600, "--seed", 0, "--out", frozen)[0] == 0
    code, _, _ = cli("eval", "--checkpoint", ckpts["real"], "--episode-file", frozen, "--methods", "protonet",
                     "--device", "cpu", "--json", tmp_path / "f.json")
    from_file = json.loads((tmp_path / "f.json").read_text())
    assert from_file["episodes_hash"] == record["episodes_hash"]
    assert from_file["results"][0]["per_episode"] == record["results"][0]["per_episode"]


def test_one_identity_copy_equals_no_augmentation(ckpts):
    plain = per_episode(evaluate(ckpts["identity"]))
    copied = evaluate(ckpts["identity"], support_augment=1)
    assert copied.support_augment == 1
    for method, acc in per_episode(copied).items():
        np.testing.assert_allclose(acc, plain[method], atol=1e-9, err_msg=method)


def test_expand_support_gives_n_copies_per_support_image():
    indices = torch.tensor([[[0, 1, 5], [2, 3, 6]], [[1, 4, 0], [3, 2, 7]]])  # (E=2, N=2, K=2 + Q=1)
    rows, expanded = expand_support(indices, shots=2, n_features=8, copies=3)
    assert rows.tolist() == [0, 1, 2, 3, 4]
    assert expanded.shape == (2, 2, 2 * 3 + 1)
    assert expanded[..., -1].tolist() == [[5, 6], [0, 7]]  # queries keep their rows
    for e in range(2):
        for n in range(2):
            want = [8 + rows.tolist().index(int(i)) * 3 + a for i in indices[e, n, :2] for a in range(3)]
            assert expanded[e, n, :6].tolist() == want


def test_real_augmentation_matches_a_plain_loop_for_one_episode(ckpts, test_split):
    copies, seed = 3, 4
    result = evaluate(ckpts["real"], support_augment=copies, methods=("protonet",))
    model, _ = load_model(ckpts["real"])
    episodes = make_episodes(test_split, 5, 2, 3, 6, seed=seed)
    distinct = torch.unique(episodes.indices[:, :, :2]).tolist()  # every support image of the run, in order
    cfg = AugmentConfig(**{**REAL, "jitter_order": "random"})
    params = sample_params(len(distinct) * copies, cfg, torch.Generator().manual_seed(augmentation_seed(seed)))
    e = 2
    episode = episodes.indices[e]  # (N, K+Q)
    with torch.no_grad():
        support = []
        for n in range(5):
            row = []
            for k in range(2):
                s = distinct.index(int(episode[n, k]))
                for a in range(copies):
                    image = torch.from_numpy(test_split.images[int(episode[n, k])][None])
                    x = augment_batch(image, take(params, slice(s * copies + a, s * copies + a + 1)))
                    row.append(model.eval().embed(x)[0])
            support.append(torch.stack(row))  # (K * copies, D)
        support = torch.stack(support)  # (N, K * copies, D): N * K copies per class
        query = extract_features(model, test_split.images[episode[:, 2:].reshape(-1).numpy()])
    plain = extract_features(model, test_split.images[episode[:, :2].reshape(-1).numpy()]).view(5, 2, -1)
    assert support.shape[1] == 2 * copies and not torch.allclose(support[:, ::copies], plain, atol=1e-3)
    pred = torch.cdist(query, support.mean(1)).argmin(1)
    expected = 100.0 * (pred == torch.arange(5).repeat_interleave(3)).double().mean().item()
    assert per_episode(result)["protonet"][e] == pytest.approx(expected)


def test_augmented_features_do_not_depend_on_the_batch_size(ckpts, test_split):
    model, _ = load_model(ckpts["real"])
    images = torch.from_numpy(test_split.images[:7])
    cfg = AugmentConfig(**REAL)
    a = augmented_features(model, images, 3, cfg, seed=1, batch_size=4)
    b = augmented_features(model, images, 3, cfg, seed=1, batch_size=21)
    assert a.shape == (7, 3, b.shape[-1])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 0], a[:, 1], atol=1e-3)  # the copies differ


def test_support_augment_needs_a_training_augmentation(ckpts, cli):
    code, _, err = cli("eval", "--checkpoint", ckpts["none"], "--ways", 5, "--shots", 1, "--episodes", 2,
                       "--support-augment", 2, "--device", "cpu")
    assert code == 2 and "config.augment" in err and "Traceback" not in err


def test_negative_support_augment_is_a_user_error(ckpts, cli):
    code, _, err = cli("eval", "--checkpoint", ckpts["real"], "--ways", 5, "--shots", 1, "--episodes", 2,
                       "--support-augment", -1, "--device", "cpu")
    assert code == 2 and "--support-augment must be >= 0, got -1" in err
