"""Episode sampler invariants and uniformity, frozen episode files, shipped files and the CLI."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from scipy import stats

from fewshot_cam.data import episode_file
from fewshot_cam.data.episodes import (
    EpisodeSampler,
    find_shipped_episodes,
    load_episode_file,
    make_episodes,
    read_episode_header,
    save_episode_file,
    save_episodes_for_classes,
)
from fewshot_cam.data.split import Split, class_fingerprint
from fewshot_cam.data.synthetic import SynthConfig, generate_split
from fewshot_cam.errors import UserError

SIZES = [7, 9, 12, 20, 8, 10]


def picture_split(sizes=SIZES, names=None, seed=0) -> Split:
    """1x1 images whose pixel encodes (class, index within class); images of all classes shuffled together."""
    names = names or [f"class{c}" for c in range(len(sizes))]
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(sizes)), sizes))  # classes mixed
    within = [int((labels[:i] == c).sum()) for i, c in enumerate(labels)]  # in order within each class
    images = np.array([[[[c, j, 0]]] for c, j in zip(labels, within)], dtype=np.uint8)
    return Split(images, labels, tuple(names), name=f"toy/test{seed}")


def pictures(split: Split, indices: torch.Tensor) -> np.ndarray:
    """(..., 2) (class, index within class) of each indexed image."""
    return split.images[indices.numpy(), 0, 0, :2]


def test_invariants_of_every_episode():
    split = picture_split()
    eps = EpisodeSampler(split, ways=3, shots=2, queries=3, seed=0).sample(400)  # (E, N, K+Q)
    assert eps.shape == (400, 3, 5) and eps.dtype == torch.int64
    labels = split.labels[eps.numpy()]
    assert (labels == labels[..., :1]).all()  # each row one class
    for episode_labels, episode in zip(labels[..., 0], eps):
        assert len(set(episode_labels.tolist())) == 3  # distinct classes
        assert len(set(episode.flatten().tolist())) == 15  # no image twice: support and query disjoint


def test_plain_loop_oracle_and_stream_properties():
    """The vectorised sampler equals a per-episode loop over the same uniforms; batching never changes episodes."""
    split, (ways, shots, queries) = picture_split(), (4, 1, 4)
    rng, largest = np.random.default_rng(5), max(SIZES)
    expected = []
    for _ in range(30):
        keys = rng.random(len(SIZES) + ways * largest)
        episode = []
        for n, c in enumerate(np.argsort(keys[: len(SIZES)])[:ways]):
            own = keys[len(SIZES) + n * largest:][: SIZES[c]]
            episode.append([split.class_indices()[c][j] for j in np.argsort(own)[: shots + queries]])
        expected.append(episode)
    sampler = EpisodeSampler(split, ways, shots, queries, seed=5)
    got = torch.cat([sampler.sample(4), sampler.sample(0), sampler.sample(16)])
    got = torch.cat([got, torch.stack([torch.tensor(next(iter(sampler))).view(ways, -1) for _ in range(10)])])
    assert torch.equal(got, torch.tensor(expected))
    chunked = EpisodeSampler(split, ways, shots, queries, seed=5).sample_within(30, chunk=7)
    whole = EpisodeSampler(split, ways, shots, queries, seed=5).sample_within(30)
    assert all(np.array_equal(a, b) for a, b in zip(chunked, whole))


def test_seeds():
    split = picture_split()
    a, b, c = (EpisodeSampler(split, 5, 1, 5, seed=s).sample(50) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_class_sizes_source_matches_a_contiguous_split():
    split = Split(np.zeros((sum(SIZES), 1, 1, 3), np.uint8), np.repeat(np.arange(6), SIZES), tuple("abcdef"))
    a = EpisodeSampler(split, 3, 2, 2, seed=3).sample(20)
    b = EpisodeSampler(SIZES, 3, 2, 2, seed=3).sample(20)
    assert torch.equal(a, b)


def test_classes_and_images_are_used_uniformly():
    split, (ways, shots, queries) = picture_split(), (3, 1, 3)
    eps = EpisodeSampler(split, ways, shots, queries, seed=0).sample(6000).numpy()
    class_counts = np.bincount(split.labels[eps[:, :, 0]].ravel(), minlength=len(SIZES))
    assert stats.chisquare(class_counts).pvalue > 1e-3
    for slot in (eps[:, :, :shots], eps[:, :, shots:]):  # support and query slots separately
        counts = np.bincount(slot.ravel(), minlength=len(split.labels))
        for members in split.class_indices():
            assert stats.chisquare(counts[members]).pvalue > 1e-4


@pytest.mark.parametrize(
    "setting, message",
    [
        ((7, 1, 1), "ways=7 exceeds the 6 classes of split toy/test0"),
        ((3, 4, 4), "class 'class0' of split toy/test0 has 7 images, fewer than shots \\+ queries = 4 \\+ 4"),
        ((0, 1, 1), "ways must be a whole number >= 1, got 0"),
        ((3, 0, 1), "shots must be a whole number >= 1, got 0"),
        ((3, 1, 0), "queries must be a whole number >= 1, got 0"),
    ],
)
def test_impossible_settings(setting, message):
    with pytest.raises(UserError, match=message):
        EpisodeSampler(picture_split(), *setting, seed=0)


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_file_round_trip_points_at_the_same_pictures(tmp_path, suffix):
    split = picture_split(seed=0)
    eps = make_episodes(split, 4, 2, 3, n=50, seed=9)
    path = save_episode_file(eps, split, tmp_path / f"eps{suffix}")
    back = load_episode_file(path, split)
    assert torch.equal(back.indices, eps.indices)
    assert (back.ways, back.shots, back.queries, back.seed, back.path) == (4, 2, 3, 9, path)
    other_order = picture_split(seed=1)  # same classes and sizes, images stored in another order
    moved = load_episode_file(path, other_order)
    assert np.array_equal(pictures(other_order, moved.indices), pictures(split, eps.indices))
    header = read_episode_header(path)
    assert header["format"] == "fewshot-cam-episodes/1" and header["dataset"] == "toy" and header["n"] == 50


def test_file_from_names_and_sizes_equals_file_from_the_split(tmp_path):
    split = picture_split()
    save_episode_file(make_episodes(split, 3, 1, 2, 40, seed=4), split, tmp_path / "a.json")
    save_episodes_for_classes(tmp_path / "b.json", "toy", "test0", split.class_names, SIZES, 3, 1, 2, 40, seed=4)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_fingerprint_mismatch_names_both(tmp_path):
    split = picture_split()
    path = save_episode_file(make_episodes(split, 3, 1, 2, 5, seed=0), split, tmp_path / "e.json")
    other = picture_split(sizes=[7, 9, 12, 20, 8, 11])
    with pytest.raises(UserError) as err:
        load_episode_file(path, other)
    for part in (split.fingerprint(), other.fingerprint(), str(path)):
        assert part in str(err.value)


def _corrupt(record: dict) -> list[bytes]:
    wrong_shape = dict(record, n=record["n"] + 1)
    bad_class = dict(record, episode_classes=[[99] * record["ways"]] * record["n"])
    return [b"", b"{not json", b"\x1f\x8b garbage", json.dumps(dict(record, format="other/1")).encode(),
            json.dumps({k: v for k, v in record.items() if k != "fingerprint"}).encode(),
            json.dumps(wrong_shape).encode(), json.dumps(bad_class).encode()]


def test_corrupt_or_missing_files_raise_user_errors(tmp_path):
    split = picture_split()
    path = save_episode_file(make_episodes(split, 3, 1, 2, 5, seed=0), split, tmp_path / "e.json")
    for i, data in enumerate(_corrupt(json.loads(path.read_text()))):
        bad = tmp_path / f"bad{i}.json"
        bad.write_bytes(data)
        with pytest.raises(UserError, match=str(bad)):
            load_episode_file(bad, split)
    with pytest.raises(UserError, match="cannot read"):
        load_episode_file(tmp_path / "missing.json", split)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_find_shipped_episodes_in_env_folder(tmp_path, monkeypatch):
    split = picture_split()
    monkeypatch.setenv(episode_file.ENV_VAR, str(tmp_path))
    assert find_shipped_episodes(split, 3, 1, 2) is None
    path = save_episode_file(make_episodes(split, 3, 1, 2, 5, seed=0), split, tmp_path / "e.json.gz")
    assert find_shipped_episodes(split, 3, 1, 2) == path
    assert find_shipped_episodes(split, 3, 2, 2) is None


@pytest.mark.parametrize("shots", [1, 5])
def test_shipped_synthetic_files_match_the_sampler(shots):
    split = generate_split("test", SynthConfig(image_size=8))  # the fingerprint ignores the image size
    path = find_shipped_episodes(split, 5, shots, 15)
    assert path is not None and path.name == f"synthetic-test-5way-{shots}shot-15q.json"
    shipped = load_episode_file(path, split)
    assert shipped.n == 2000 and torch.equal(shipped.indices, make_episodes(split, 5, shots, 15, 2000, 0).indices)


def test_shipped_mini_imagenet_files_fit_the_standard_test_split():
    from fewshot_cam.data.episode_file import episode_files

    files = [p for p in episode_files() if p.name.startswith("mini-imagenet-test-5way")]
    assert len(files) == 2
    for path in files:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt") as f:
            names = json.load(f)["classes"]
        assert len(names) == 20 and path.stat().st_size < 1_000_000
        split = Split(np.zeros((12000, 1, 1, 3), np.uint8), np.repeat(np.arange(20), 600), tuple(names))
        assert read_episode_header(path)["fingerprint"] == class_fingerprint(names, [600] * 20) == split.fingerprint()
        eps = load_episode_file(path, split)
        assert (split.labels[eps.indices.numpy()] == split.labels[eps.indices[..., :1].numpy()]).all()


def test_cli_make_info_and_errors(tmp_path, cli):
    pytest.importorskip("fewshot_cam.data.datasets", reason="engineer A's dataset registry missing")
    out = tmp_path / "e.json"
    common = ["--dataset", "synthetic", "--split", "val", "--image-size", "8", "--out", out]
    code, stdout, _ = cli("episodes", "make", *common, "--ways", "4", "--shots", "2", "--n", "10", "--seed", "3")
    assert code == 0 and str(out) in stdout
    split = generate_split("val", SynthConfig(image_size=8))
    assert torch.equal(load_episode_file(out, split).indices, make_episodes(split, 4, 2, 15, 10, 3).indices)
    code, stdout, _ = cli("episodes", "info", out)
    assert code == 0 and "ways: 4" in stdout and f"fingerprint: {split.fingerprint()}" in stdout
    code, _, stderr = cli("episodes", "make", *common, "--ways", "17")
    assert code == 2 and stderr.count("\n") == 1 and "ways=17 exceeds the 16 classes" in stderr
    code, _, stderr = cli("episodes", "make", *common, "--shots", "50")
    assert code == 2 and stderr.count("\n") == 1 and "fewer than shots + queries = 50 + 15" in stderr
    (tmp_path / "bad.json").write_text("[]")
    code, _, stderr = cli("episodes", "info", tmp_path / "bad.json")
    assert code == 2 and stderr.count("\n") == 1 and "not an episode file" in stderr


def test_sampler_from_labels_feeds_a_dataloader():
    """Labels in any order (as ImageFolder.targets after shuffling files): every batch is one episode whose
    row n holds K+Q distinct images of one class, N distinct classes, as many batches as ``episodes``."""
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat([3, 7, 11, 20, 42], [6, 9, 7, 8, 6]))  # 5 classes, shuffled order
    dataset = torch.utils.data.TensorDataset(torch.arange(len(labels)), torch.from_numpy(labels))
    sampler = EpisodeSampler.from_labels(labels.tolist(), ways=3, shots=2, queries=3, seed=1, episodes=7)
    assert isinstance(sampler, torch.utils.data.Sampler) and len(sampler) == 7
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)
    batches = list(loader)
    assert len(batches) == 7
    seen = set()
    for index, y in batches:
        rows = y.view(3, 5)
        assert (rows == rows[:, :1]).all() and len(set(rows[:, 0].tolist())) == 3  # one class per row
        assert len(set(index.tolist())) == 15  # distinct images
        assert np.array_equal(labels[index.numpy()], y.numpy())
        seen.update(rows[:, 0].tolist())
    assert seen <= {3, 7, 11, 20, 42} and len(seen) > 3
    again = [b[0] for b in torch.utils.data.DataLoader(dataset, batch_sampler=EpisodeSampler.from_labels(
        labels, 3, 2, 3, seed=1, episodes=7))]
    assert all(torch.equal(a[0], b) for a, b in zip(batches, again))  # seeded


def test_sampler_without_episodes_is_endless_and_has_no_length():
    sampler = EpisodeSampler([5, 5, 5], 2, 1, 1)
    with pytest.raises(TypeError, match="endless"):
        len(sampler)
    it = iter(sampler)
    assert all(len(next(it)) == 4 for _ in range(50))
