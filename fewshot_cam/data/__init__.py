"""Data: dataset formats read into decoded uint8 splits, the built-in synthetic benchmark, and episodes.

``EpisodeSampler`` is a ``torch.utils.data.Sampler`` of N-way K-shot episodes (``from_labels`` for any
labelled dataset); frozen episode files keep evaluation episodes fixed across runs.
"""

from fewshot_cam.data.datasets import DATASETS, load_split
from fewshot_cam.data.episodes import EpisodeSampler, EpisodeSet, load_episode_file, make_episodes, save_episode_file
from fewshot_cam.data.split import Split
from fewshot_cam.data.transforms import to_float

__all__ = [
    "DATASETS", "EpisodeSampler", "EpisodeSet", "Split", "load_episode_file", "load_split", "make_episodes",
    "save_episode_file", "to_float",
]
