"""Few-shot episodes: an N-way K-shot Q-query sampler and frozen episode sets.

An episode is a LongTensor ``(N, K+Q)`` of image indices into a split: row ``n`` holds images of one
class, which is episode-label ``n``; the first ``K`` columns are the support set, the rest the queries.
A batch of episodes is ``(E, N, K+Q)``. Frozen episode files (``episode_file.py``) store the same
episodes by class name and image index within the class, so they survive any change of file format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from fewshot_cam.data.episode_file import (
    FORMAT,
    EpisodeFile,
    episode_dirs,
    episode_files,
    read_episode_file,
    read_episode_header,
    write_episode_file,
)
from fewshot_cam.data.split import Split, class_fingerprint
from fewshot_cam.errors import UserError

__all__ = [
    "EpisodeSampler", "EpisodeSet", "make_episodes", "save_episode_file", "load_episode_file",
    "save_episodes_for_classes", "find_shipped_episodes", "read_episode_header", "episode_dirs",
    "index_table", "check_setting", "check_seed", "check_episode_count", "available_memory",
]


@dataclass(frozen=True, eq=False)
class EpisodeSet:
    """Frozen episodes of one split.

    indices: (E, N, K+Q) int64 indices into the split; support ``[..., :K]``, queries ``[..., K:]``.
    seed: the sampler seed, or None when unknown. path: the file they came from, or None.
    fingerprint: :meth:`Split.fingerprint` of the split they index.
    """

    indices: torch.Tensor
    ways: int
    shots: int
    queries: int
    seed: int | None
    path: Path | None
    fingerprint: str

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def support(self) -> torch.Tensor:
        """(E, N, K) support indices."""
        return self.indices[:, :, : self.shots]

    @property
    def query(self) -> torch.Tensor:
        """(E, N, Q) query indices."""
        return self.indices[:, :, self.shots :]


def class_members(source: Split | Sequence[int]) -> list[np.ndarray]:
    """The split indices of each class's images (canonical order); for a list of class sizes the
    split is taken to hold its classes one after the other."""
    if isinstance(source, Split):
        return source.class_indices()
    ends = np.cumsum([int(s) for s in source])
    return [np.arange(e - s, e) for s, e in zip(source, ends)]


def index_table(source: Split | Sequence[int] | list[np.ndarray]) -> np.ndarray:
    """(C, S) int64: split index of image j of class c (canonical order), -1 past the class's size.

    ``source``: a split, a list of class sizes (classes one after the other) or :func:`class_members`.
    """
    given = isinstance(source, list) and bool(source) and isinstance(source[0], np.ndarray)
    members = source if given else class_members(source)
    table = np.full((len(members), max((len(m) for m in members), default=0)), -1, dtype=np.int64)
    for c, m in enumerate(members):  # one row copy per class
        table[c, : len(m)] = m
    return table


def check_setting(sizes: Sequence[int], names: Sequence[str], where: str, ways: int, shots: int, queries: int) -> None:
    """UserError for an impossible N-way K-shot Q-query request on classes of the given sizes."""
    for key, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        if int(value) != value or value < 1:
            raise UserError(f"{key} must be a whole number >= 1, got {value} (split {where})")
    if ways > len(sizes):
        raise UserError(f"ways={ways} exceeds the {len(sizes)} classes of split {where}")
    small = [c for c, s in enumerate(sizes) if s < shots + queries]
    if small:
        c = small[0]
        raise UserError(
            f"class '{names[c]}' of split {where} has {sizes[c]} images, fewer than shots + queries = "
            f"{shots} + {queries} ({len(small)} such classes)"
        )


class EpisodeSampler(Sampler[list[int]]):
    """Draws N-way K-shot Q-query episodes uniformly: N distinct classes, then K+Q distinct images of each.

    ``source`` is a :class:`Split` or a list of class sizes (classes stored one after another);
    :meth:`from_labels` builds one from any labelled dataset's labels (e.g. ``ImageFolder.targets``).

    It is a ``torch.utils.data.Sampler`` of episodes for ``DataLoader(dataset, batch_sampler=sampler)``:
    each batch is one episode, N*(K+Q) dataset indices class-major (class n's K support images, then its
    Q queries), so the episode labels are ``arange(N).repeat_interleave(K+Q)`` and
    ``x.view(N, K+Q, ...)[:, :K]`` is the support set. ``episodes`` sets ``len(sampler)`` (one epoch);
    without it iteration is endless.

    The sampler owns a ``np.random.Generator(PCG64(seed))`` and draws ``C + N*S`` uniforms per episode
    (C classes, S the largest class): the classes are the N smallest keys of the first C, the images of
    class n the K+Q smallest keys of its row (keys past the class's size pushed last). Episodes are a
    pure function of the stream, so ``sample(a + b)`` equals ``sample(a)`` then ``sample(b)``, and
    iterating yields the same episodes one at a time.
    """

    def __init__(
        self, source: Split | Sequence[int], ways: int, shots: int, queries: int, seed: int = 0,
        episodes: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(source, Split):
            names, where = list(source.class_names), source.name or "<unnamed>"
        else:
            names, where = [f"#{c}" for c in range(len(source))], "<class sizes>"
        self._setup(class_members(source), names, where, ways, shots, queries, seed, episodes)

    @classmethod
    def from_labels(
        cls, labels: Sequence[int], ways: int, shots: int, queries: int, seed: int = 0, episodes: int | None = None
    ) -> EpisodeSampler:
        """A sampler over a dataset whose image i has class ``labels[i]`` (any order, any int labels)."""
        labels = np.asarray(labels, dtype=np.int64).ravel()
        classes, counts = np.unique(labels, return_counts=True)
        members = np.split(np.argsort(labels, kind="stable"), np.cumsum(counts)[:-1])  # per class, dataset order
        sampler = cls.__new__(cls)
        Sampler.__init__(sampler)
        sampler._setup(members, [f"label {c}" for c in classes], "<labels>", ways, shots, queries, seed, episodes)
        return sampler

    def _setup(self, members: list[np.ndarray], names: list[str], where: str, ways: int, shots: int, queries: int,
               seed: int, episodes: int | None) -> None:
        sizes = [len(m) for m in members]
        check_setting(sizes, names, where, ways, shots, queries)
        check_seed(seed)
        if episodes is not None and episodes < 1:
            raise UserError(f"number of episodes must be >= 1, got {episodes} (split {where})")
        self.ways, self.shots, self.queries = int(ways), int(shots), int(queries)
        self.seed, self.episodes = seed, episodes
        self._sizes = np.asarray(sizes, dtype=np.int64)
        self._table = index_table(members)
        self._rng = np.random.default_rng(seed)

    def sample_within(self, n: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """``n`` episodes as class ids (E, N) and image indices within each class (E, N, K+Q)."""
        num_classes, largest = self._table.shape
        classes, within = [], []
        for start in range(0, n, chunk):  # bounded memory; the stream is the same as one big draw
            e = min(chunk, n - start)
            keys = self._rng.random((e, num_classes + self.ways * largest))  # (e, C + N*S)
            picked = np.argsort(keys[:, :num_classes], axis=1)[:, : self.ways]  # (e, N)
            image_keys = keys[:, num_classes:].reshape(e, self.ways, largest)  # (e, N, S)
            image_keys[np.arange(largest) >= self._sizes[picked][..., None]] = 2.0  # past the class end
            classes.append(picked)
            within.append(np.argsort(image_keys, axis=2)[:, :, : self.shots + self.queries])  # (e, N, K+Q)
        shape = (0, self.ways)
        if not classes:
            return np.zeros(shape, np.int64), np.zeros(shape + (self.shots + self.queries,), np.int64)
        return np.concatenate(classes), np.concatenate(within)

    def sample(self, n: int) -> torch.Tensor:
        """(E, N, K+Q) int64 indices into the split."""
        classes, within = self.sample_within(n)
        return torch.from_numpy(self._table[classes[..., None], within])

    def __iter__(self) -> Iterator[list[int]]:
        """Episodes one at a time, each N*(K+Q) indices class-major (``episodes`` of them, else endless)."""
        drawn = 0
        while self.episodes is None or drawn < self.episodes:
            drawn += 1
            yield self.sample(1)[0].flatten().tolist()

    def __len__(self) -> int:
        if self.episodes is None:
            raise TypeError("an EpisodeSampler without 'episodes' is endless and has no length")
        return self.episodes


BYTES_PER_INDEX = 96
"""Peak memory per stored index while making and writing an episode file: the int64 arrays (indices,
labels, positions, about 4 x 8 bytes), the Python list of ints ``tolist`` builds (about 36) and the
JSON text (about 4), with headroom."""


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo, else sysconf), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_episode_count(n: int, where: str, ways: int = 1, shots: int = 0, queries: int = 1) -> None:
    """n a whole number >= 1 whose episodes fit in the memory available (checked before allocating)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise UserError(f"number of episodes n must be a whole number >= 1, got {n} (split {where})")
    need = int(n) * int(ways) * (int(shots) + int(queries)) * BYTES_PER_INDEX
    have = available_memory()
    if have is not None and need > have:
        raise UserError(f"n={n} episodes of {ways}-way {shots}-shot {queries}-query need about "
                        f"{need / 2**30:.1f} GiB of memory, but only {have / 2**30:.1f} GiB is available "
                        f"(split {where}); make fewer episodes")


def check_seed(seed: object) -> int:
    """A sampler seed: a whole number >= 0 (numpy's generators refuse negative ones)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a whole number >= 0, got {seed!r}")
    return int(seed)


def make_episodes(split: Split, ways: int, shots: int, queries: int, n: int, seed: int = 0) -> EpisodeSet:
    """``n`` episodes of ``split`` from :class:`EpisodeSampler` with ``seed``."""
    check_episode_count(n, split.name, ways, shots, queries)
    indices = EpisodeSampler(split, ways, shots, queries, seed).sample(n)
    return EpisodeSet(indices, ways, shots, queries, seed, None, split.fingerprint())


def _dataset_and_split(split: Split) -> tuple[str, str]:
    dataset, _, name = split.name.rpartition("/")
    return dataset or "unknown", name or "unknown"


def save_episode_file(episodes: EpisodeSet, split: Split, path: str | Path) -> Path:
    """Write ``episodes`` (indices into ``split``) as a frozen file (format in ``episode_file.py``)."""
    if episodes.fingerprint != split.fingerprint():
        raise UserError(f"episodes of split {episodes.fingerprint} cannot be saved against {split.name} "
                        f"({split.fingerprint()})", path)
    indices = episodes.indices.cpu().numpy()  # (E, N, K+Q)
    labels = split.labels[indices]
    if not (labels == labels[..., :1]).all():
        raise ValueError("an episode row mixes classes")
    position = np.empty(len(split.labels), dtype=np.int64)  # index of every image within its class
    for members in split.class_indices():
        position[members] = np.arange(len(members))
    dataset, name = _dataset_and_split(split)
    header = dict(format=FORMAT, dataset=dataset, split=name, ways=episodes.ways, shots=episodes.shots,
                  queries=episodes.queries, n=episodes.n, seed=episodes.seed, fingerprint=episodes.fingerprint)
    return _write(path, header, split.class_names, labels[..., 0], position[indices])


def _write(path: str | Path, header: dict, names: Sequence[str], classes: np.ndarray, within: np.ndarray) -> Path:
    """Save episodes given as split class ids (E, N) and within-class image indices (E, N, K+Q)."""
    used = np.unique(classes)
    contents = EpisodeFile(header, [names[c] for c in used], np.searchsorted(used, classes), within)
    return write_episode_file(path, contents)


def save_episodes_for_classes(path: str | Path, dataset: str, split: str, class_names: Sequence[str],
                              class_sizes: Sequence[int], ways: int, shots: int, queries: int, n: int,
                              seed: int = 0) -> Path:
    """Sample and save episodes of a split known only by its sorted class names and sizes (no images).

    Gives the same file as :func:`make_episodes` then :func:`save_episode_file` on the real split.
    """
    if list(class_names) != sorted(class_names):
        raise UserError(f"class names of {dataset}/{split} must be sorted")
    check_episode_count(n, f"{dataset}/{split}", ways, shots, queries)
    classes, within = EpisodeSampler(class_sizes, ways, shots, queries, seed).sample_within(n)
    header = dict(format=FORMAT, dataset=dataset, split=split, ways=ways, shots=shots, queries=queries, n=n,
                  seed=seed, fingerprint=class_fingerprint(class_names, class_sizes))
    return _write(path, header, class_names, classes, within)


def load_episode_file(path: str | Path, split: Split) -> EpisodeSet:
    """Frozen episodes of ``split``; UserError when the file is missing, corrupt or made for another split."""
    contents = read_episode_file(path)
    h = contents.header
    if h["fingerprint"] != split.fingerprint():
        raise UserError(
            f"episode file made for {h['dataset']}/{h['split']} with fingerprint {h['fingerprint']}, but split "
            f"{split.name} has fingerprint {split.fingerprint()} (other classes or class sizes)", path)
    lookup = {name: c for c, name in enumerate(split.class_names)}
    unknown = [name for name in contents.classes if name not in lookup]
    if unknown:
        raise UserError(f"episode file names class '{unknown[0]}', which split {split.name} lacks", path)
    classes = np.array([lookup[name] for name in contents.classes], dtype=np.int64)[contents.class_ids]  # (E, N)
    sizes = np.asarray(split.class_sizes())[classes][..., None]
    over = (contents.image_ids >= sizes).reshape(len(sizes), -1).any(axis=1)  # (E,)
    if over.any():
        e = int(np.flatnonzero(over)[0])
        raise UserError(f"corrupt episode file: episode {e} has an image index beyond its class's size", path)
    indices = index_table(split)[classes[..., None], contents.image_ids]  # (E, N, K+Q)
    return EpisodeSet(torch.from_numpy(indices), h["ways"], h["shots"], h["queries"], h["seed"], Path(path),
                      h["fingerprint"])


def find_shipped_episodes(split: Split, ways: int, shots: int, queries: int) -> Path | None:
    """The first frozen file (see :func:`episode_dirs`) made for ``split`` with this setting, else None."""
    want = dict(fingerprint=split.fingerprint(), ways=ways, shots=shots, queries=queries)
    for path in episode_files():
        header = read_episode_header(path)
        if all(header[k] == v for k, v in want.items()):
            return path
    return None
