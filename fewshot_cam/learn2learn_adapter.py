"""Every learn2learn import in fewshot-cam goes through this module, imported lazily.

learn2learn 0.2.0 is installed by scripts/setup.sh (built from regenerated Cython sources);
``import learn2learn`` also needs ``gym``. Nothing else in the package imports learn2learn directly.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

from fewshot_cam.errors import UserError

_L2L: ModuleType | None = None


def l2l() -> ModuleType:
    """The learn2learn module, imported on first use (gym's import-time notices silenced)."""
    global _L2L
    if _L2L is None:
        os.environ.setdefault("GYM_NOTICES", "0")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import contextlib
                import io

                with contextlib.redirect_stderr(io.StringIO()):
                    import learn2learn
        except ImportError as err:
            raise UserError(f"learn2learn is not installed ({err}); run scripts/setup.sh") from None
        _L2L = learn2learn
    return _L2L


def resnet12_backbone(wider: bool = True, dropblock_dropout: float = 0.0, dropblock_size: int = 5):
    """learn2learn's ``ResNet12Backbone`` without pooling: its ``layer1``..``layer4`` give the spatial
    map, its ``forward`` the flattened one, (B, 640 * 5 * 5) for 84 px. Used as the oracle for
    ``fewshot_cam.models.resnet.ResNet12``, whose parameter names match, so state dicts transfer."""
    return l2l().vision.models.ResNet12Backbone(
        avg_pool=False, wider=wider, dropblock_dropout=dropblock_dropout, dropblock_size=dropblock_size
    )


_L2L_MODES = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def _l2l_root(root) -> str:
    # learn2learn's readers create a missing root (and may try to download): check first.
    path = os.path.abspath(os.path.expanduser(str(root)))
    if not os.path.isdir(path):
        raise UserError(f"dataset root '{path}' does not exist")
    return path


def l2l_mini_imagenet(root, mode: str):
    """learn2learn's ``MiniImagenet`` reader of ``mini-imagenet-cache-{mode}.pkl`` (never downloads).

    ``mode``: train, val (= validation) or test. Items are (float (3, 84, 84) in [0, 255], label),
    labels numbered by the order of the pickle's ``class_dict`` keys. Oracle for our reader.
    """
    return l2l().vision.datasets.MiniImagenet(_l2l_root(root), mode=_L2L_MODES[mode], download=False)


def l2l_tiered_imagenet(root, mode: str):
    """learn2learn's ``TieredImagenet`` reader of ``root/tiered-imagenet/{split}_images_png.pkl``.

    Items are (PIL image, ``label_specific`` id); never downloads. Oracle for our reader.
    """
    return l2l().vision.datasets.TieredImagenet(_l2l_root(root), mode=_L2L_MODES[mode], download=False)


def task_episodes(labels, ways: int, samples_per_class: int, n: int, seed: int):
    """``n`` episodes from learn2learn's ``TaskDataset`` over a split's labels: (n, N, K+Q) LongTensor.

    The dataset is a light index dataset (item i = (i, labels[i])), so tasks hold image indices, not
    images; transforms ``NWays``, ``KShots(K+Q)``, ``LoadData``, ``RemapLabels``, ``ConsecutiveLabels``.
    Row n of an episode holds the images of episode-label n in learn2learn's draw order (support first).
    learn2learn draws from Python's global ``random``: it is seeded with ``seed`` for the draw and
    restored afterwards, so the episodes are a function of ``seed`` alone.
    """
    import random

    import numpy as np
    import torch

    labels = np.asarray(labels, dtype=np.int64)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        members.setdefault(label, []).append(index)
    indices = torch.arange(len(labels))
    dataset = torch.utils.data.TensorDataset(indices, torch.from_numpy(labels))  # item i: (i, label_i)
    meta = l2l().data.MetaDataset(dataset, labels_to_indices=members)
    t = l2l().data.transforms
    transforms = [t.NWays(meta, ways), t.KShots(meta, samples_per_class), t.LoadData(meta),
                  t.RemapLabels(meta), t.ConsecutiveLabels(meta)]
    tasks = l2l().data.TaskDataset(meta, task_transforms=transforms, num_tasks=-1)
    saved = random.getstate()
    random.seed(seed)
    try:
        drawn = [tasks.sample() for _ in range(n)]  # each (N*(K+Q),) indices, (N*(K+Q),) episode labels
    finally:
        random.setstate(saved)
    out = torch.empty((n, ways, samples_per_class), dtype=torch.int64)
    for e, (index, label) in enumerate(drawn):
        order = torch.sort(label, stable=True).indices  # group by episode label, keep draw order within
        out[e] = index[order].view(ways, samples_per_class)  # (N, K+Q)
    return out
