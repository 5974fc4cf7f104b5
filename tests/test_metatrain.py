"""ProtoNet meta-training: the episodic step against plain per-episode loops, both episode samplers,
and ``fewshot-cam metatrain`` end to end (run folder, eval on its best.pt, resume, errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fewshot_cam.config import read_yaml, to_dict
from fewshot_cam.data.split import Split
from fewshot_cam.errors import UserError
from fewshot_cam.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from fewshot_cam.models.factory import ModelConfig, build_model
from fewshot_cam.training import metatrain
from fewshot_cam.training.config import DataConfig
from fewshot_cam.training.metatrain import (
    SAMPLERS,
    MetaTrainConfig,
    episodic_loss,
    epoch_episodes,
    meta_step,
    resolve_config,
)
from fewshot_cam.training.optim import OptimConfig, build_optimizer, build_scheduler
from fewshot_cam.training.run_dir import read_metrics

SIZE = 16
SHAPE = (3, 4, 5)  # E episodes, N ways, K+Q images per class
SHOTS = 2


def toy_images(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """(E*N*S, 3, SIZE, SIZE) in [0, 1]: class n of each episode has its own colour, plus noise."""
    g = torch.Generator().manual_seed(seed)
    e, n, s = shape
    colour = torch.rand(e, n, 1, 3, 1, 1, generator=g)  # (E, N, 1, 3, 1, 1)
    noise = 0.3 * torch.rand(e, n, s, 3, SIZE, SIZE, generator=g)  # (E, N, S, 3, H, W)
    return (0.7 * colour + noise).reshape(-1, 3, SIZE, SIZE)


def tiny_model(seed: int = 0, num_classes: int = 6):
    torch.manual_seed(seed)
    return build_model(ModelConfig(backbone="tiny"), num_classes)


def test_step_lowers_the_loss_of_a_fixed_episode():
    model = tiny_model()
    x = toy_images(SHAPE, seed=1)
    cfg = OptimConfig(epochs=1, lr=0.05, schedule="constant")
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=20)
    first, _ = episodic_loss(model.embed, x, SHAPE, SHOTS, "euclidean")
    for _ in range(20):
        meta_step(model.embed, optimizer, scheduler, x, SHAPE, SHOTS, "euclidean")
    last, accuracy = episodic_loss(model.embed, x, SHAPE, SHOTS, "euclidean")
    assert last.item() < 0.5 * first.item()
    assert accuracy.item() == 1.0


def loop_loss(model, x: torch.Tensor, metric: str) -> torch.Tensor:
    """Mean over episodes of the per-episode prototypical loss, written out query by query."""
    e_, n_, s_ = SHAPE
    images = x.view(e_, n_, s_, 3, SIZE, SIZE)
    losses = []
    for e in range(e_):
        z = model.embed(images[e].reshape(-1, 3, SIZE, SIZE)).view(n_, s_, -1)  # one episode alone
        protos = [z[n, :SHOTS].mean(0) for n in range(n_)]
        terms = []
        for n in range(n_):
            for q in z[n, SHOTS:]:
                if metric == "euclidean":
                    logits = torch.stack([-((q - c) ** 2).sum() for c in protos])
                else:
                    logits = torch.stack([10 * (q @ c) / (q.norm() * c.norm()) for c in protos])
                terms.append(-F.log_softmax(logits, 0)[n])
        losses.append(torch.stack(terms).mean())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_batched_loss_and_gradient_equal_a_loop_over_episodes(metric):
    model = tiny_model().eval()  # eval: BatchNorm statistics do not depend on the batch
    x = toy_images(SHAPE, seed=2)
    batched, _ = episodic_loss(model.embed, x, SHAPE, SHOTS, metric)
    batched_grad = torch.autograd.grad(batched, list(model.backbone.parameters()))
    looped = loop_loss(model, x, metric)
    looped_grad = torch.autograd.grad(looped, list(model.backbone.parameters()))
    torch.testing.assert_close(batched, looped, rtol=1e-4, atol=1e-5)
    for a, b in zip(batched_grad, looped_grad):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.fixture(scope="module")
def uneven_split():
    sizes = [5, 9, 6, 7, 8, 5, 6]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(labels))  # classes interleaved in the split
    images = np.zeros((len(labels), 4, 4, 3), np.uint8)
    names = tuple(f"c{c}" for c in range(len(sizes)))
    return Split(images, labels[perm], names, name="toy/train")


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_samplers_give_valid_seeded_episodes(uneven_split, sampler):
    cfg = MetaTrainConfig(ways=4, shots=2, queries=3, episodes_per_epoch=60, tasks_per_step=3, sampler=sampler)
    episodes = epoch_episodes(uneven_split, cfg, epoch=1)  # (steps, E, N, K+Q)
    assert episodes.shape == (20, 3, 4, 5)
    flat = episodes.reshape(60, 4, 5).numpy()
    labels = uneven_split.labels[flat]  # (60, N, K+Q)
    assert (labels == labels[..., :1]).all()  # one class per row
    for e in range(60):
        assert len(set(labels[e, :, 0])) == 4  # N distinct classes
        assert len(set(flat[e].ravel())) == 20  # distinct images: support and query disjoint
    assert set(labels[..., 0].ravel()) == set(range(7))  # every class gets drawn
    torch.testing.assert_close(epoch_episodes(uneven_split, cfg, 1), episodes)  # seeded
    assert not torch.equal(epoch_episodes(uneven_split, cfg, 2), episodes)  # a new draw per epoch


def test_impossible_setting_is_a_user_error(uneven_split):
    for sampler in SAMPLERS:
        with pytest.raises(UserError, match="fewer than shots"):
            epoch_episodes(uneven_split, MetaTrainConfig(ways=3, shots=4, queries=4, sampler=sampler), 1)
    with pytest.raises(UserError, match="tasks_per_step"):
        MetaTrainConfig(episodes_per_epoch=2, tasks_per_step=3)


def write_imagefolder(root, split: str, classes: int, per_class: int) -> None:
    rng = np.random.default_rng(len(split))
    for c in range(classes):
        colour = rng.integers(0, 256, 3)
        (root / split / f"{split}{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(colour + rng.integers(-40, 40, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / f"{split}{c}" / f"{i}.png")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 'pretrained' tiny model over 6 base classes, saved as pretrain would, with its data folder."""
    tmp = tmp_path_factory.mktemp("metatrain")
    write_imagefolder(tmp / "data", "train", classes=6, per_class=8)
    write_imagefolder(tmp / "data", "val", classes=5, per_class=6)
    model = tiny_model(seed=3)
    save_checkpoint(tmp / "pretrained.pt", {
        "model": model.state_dict(), "model_config": to_dict(ModelConfig(backbone="tiny")), "num_classes": 6,
        "class_names": [f"train{c}" for c in range(6)], "epoch": 5, "best_metric": 50.0,
        "config": {"data": {"dataset": "imagefolder", "root": str(tmp / "data"), "image_size": SIZE}},
    })
    return tmp


def metatrain_args(pretrained, out, epochs=2, *extra):
    return ["metatrain", "--checkpoint", pretrained / "pretrained.pt", "--out", out, "--epochs", epochs,
            "--ways", 3, "--shots", 1, "--queries", 3, "--device", "cpu", "--seed", 7,
            "--set", "episodes_per_epoch=6", "--set", "tasks_per_step=2", "--set", "optim.lr=0.01",
            "--set", "augment.enabled=true", "--set", "augment.scale=[0.5,1.0]",
            "--set", "val.ways=3", "--set", "val.queries=3", "--set", "val.episodes=8",
            "--set", "run.tensorboard=false", *extra]


@pytest.fixture(scope="module")
def straight_run(pretrained):
    """An uninterrupted two-epoch run through the CLI."""
    from fewshot_cam.cli import main

    out = pretrained / "straight"
    assert main([str(a) for a in metatrain_args(pretrained, out)]) == 0
    return out


def test_run_folder_carries_the_pretrained_model_over(pretrained, straight_run):
    assert {"config.yaml", "metrics.jsonl", "best.pt", "last.pt"} <= {p.name for p in straight_run.iterdir()}
    assert [r["epoch"] for r in read_metrics(straight_run / "metrics.jsonl")] == [1, 2]
    before = load_checkpoint(pretrained / "pretrained.pt")
    model, ckpt = load_model(straight_run / "best.pt", backbone="tiny")
    assert ckpt["model_config"] == before["model_config"] and ckpt["num_classes"] == 6
    assert ckpt["class_names"] == before["class_names"]
    assert ckpt["config"]["data"]["dataset"] == "imagefolder" and ckpt["config"]["data"]["image_size"] == SIZE
    assert ckpt["config"]["ways"] == 3 and ckpt["config"]["checkpoint"] == str((pretrained / "pretrained.pt").resolve())
    state = model.state_dict()
    for key, value in before["model"].items():  # head kept, backbone trained
        if key.startswith("head."):
            torch.testing.assert_close(state[key], value)
    trained = [k for k, v in before["model"].items() if k.startswith("backbone.") and v.is_floating_point()]
    assert any(not torch.equal(state[k], before["model"][k]) for k in trained)


def test_best_checkpoint_is_evaluable(cli, straight_run):
    code, out, err = cli("eval", "--checkpoint", straight_run / "best.pt", "--split", "val", "--ways", 3, "--shots", 1,
                         "--queries", 3, "--episodes", 10, "--methods", "protonet", "--device", "cpu")
    assert code == 0, err
    assert "protonet" in out


def test_resume_ends_where_an_uninterrupted_run_ends(pretrained, straight_run, monkeypatch, cli):
    out = pretrained / "resumed"
    real = metatrain.train_one_epoch

    def interrupted(state, epoch, autocast):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(state, epoch, autocast)

    monkeypatch.setattr(metatrain, "train_one_epoch", interrupted)
    assert cli(*metatrain_args(pretrained, out))[0] == 130
    monkeypatch.setattr(metatrain, "train_one_epoch", real)
    code, _, err = cli(*metatrain_args(pretrained, out))
    assert code == 2 and "--resume" in err
    assert cli(*metatrain_args(pretrained, out, 2, "--resume"))[0] == 0
    a, b = load_checkpoint(straight_run / "last.pt"), load_checkpoint(out / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0)
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert drop_time(read_metrics(out / "metrics.jsonl")) == drop_time(read_metrics(straight_run / "metrics.jsonl"))


def test_missing_or_damaged_checkpoint_exits_2(cli, tmp_path):
    code, _, err = cli("metatrain", "--checkpoint", tmp_path / "nope.pt", "--out", tmp_path / "run")
    assert code == 2 and "nope.pt" in err and "not found" in err
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli("metatrain", "--checkpoint", tmp_path / "bad.pt", "--out", tmp_path / "run")
    assert code == 2 and "damaged" in err
    code, _, err = cli("metatrain", "--out", tmp_path / "run")
    assert code == 2 and "checkpoint" in err


def test_model_settings_that_contradict_the_checkpoint_are_refused(cli, pretrained, tmp_path):
    code, _, err = cli("metatrain", "--checkpoint", pretrained / "pretrained.pt", "--out", tmp_path / "run",
                       "--set", "model.backbone=conv4")
    assert code == 2 and "model comes from the checkpoint" in err


def test_non_finite_loss_stops_with_a_user_error(cli, pretrained, tmp_path):
    code, _, err = cli(*metatrain_args(pretrained, tmp_path / "nan", 1, "--set", "optim.lr=1.0e30"))
    assert code == 2 and "non-finite loss" in err


CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*-metatrain.yaml"))


def test_defaults_fill_partly_given_sections_and_data_comes_from_the_checkpoint(pretrained):
    user = {"checkpoint": str(pretrained / "pretrained.pt"), "optim": {"epochs": 3}, "augment": {"hflip": 0.1}}
    cfg, model, _ = resolve_config(user)
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.optim.schedule) == (3, MetaTrainConfig().optim.lr, "constant")
    assert not cfg.augment.enabled and cfg.augment.hflip == 0.1 and cfg.run.out == MetaTrainConfig().run.out
    assert (cfg.data.dataset, cfg.data.root, cfg.data.image_size) == ("imagefolder", str(pretrained / "data"), SIZE)
    assert cfg.model == ModelConfig(backbone="tiny") and model.head.weight.shape == (6, model.out_channels)
    other, _, _ = resolve_config(user | {"data": {"dataset": "synthetic"}})
    assert (other.data.root, other.data.image_size) == (None, DataConfig().image_size)  # nothing of another dataset


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_resolve(pretrained, path):
    cfg, _, _ = resolve_config(read_yaml(path) | {"checkpoint": str(pretrained / "pretrained.pt")}, path)
    assert cfg.steps_per_epoch >= 1 and cfg.optim.lr <= 1e-2
