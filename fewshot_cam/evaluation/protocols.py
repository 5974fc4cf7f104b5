"""Evaluation protocols: named presets of the settings a published table rests on (``eval --protocol``).

A protocol fixes the number of episodes, the queries per class, the feature normalisation
(:data:`fewshot_cam.fewshot.normalize.NORMALIZATIONS`), the support augmentation and the default
methods. Each is a default: a setting given explicitly (a flag, an ``EvalRequest`` field that is not
None, an episode file) wins, and the result records the protocol, every setting used and which ones
were given explicitly (``overrides``). Episodes of a protocol with a fixed count are drawn with the
request's seed (default 0) by the same sampler as ``fewshot-cam episodes make``, so ``episodes make
--n 600 --seed 0`` writes the same episodes as a frozen file. Ways and shots are never set by a
protocol: 5-way 1-shot and 5-shot are the usual tables.

What each preset was checked against (2026-12-01, the authors' code):

- ``closerlook``: Chen et al., ICLR 2019, CloserLookFewShot ``test.py``: ``iter_num = 600``,
  ``feature_evaluation(..., n_query = 15)``, features as saved by ``save_features.py`` (no
  normalisation; Baseline++'s ``distLinear`` normalises inside). Their interval is 1.96 std / sqrt(n)
  (numpy's std, ddof 0); ours is the t interval. Conv-4's flattened 1600-d embedding is a property of
  the checkpoint (``model.pool: flatten``), not of the protocol.
- ``rfs``: Tian et al., ECCV 2020, rfs ``eval_fewshot.py`` (``n_test_runs`` 600, ``n_queries`` 15,
  ``n_aug_support_samples`` 5) and ``eval/meta_eval.py`` (``is_norm=True``: x / ||x||; scikit-learn
  ``LogisticRegression``). Their loader (``dataset/mini_imagenet.py``) tiles the support set 5 times and
  passes every copy through the training transform: the un-augmented original is not kept.
- ``feat``: Ye et al., CVPR 2020, FEAT ``model/trainer/fsl_trainer.py`` ``evaluate_test``: 10,000
  episodes, ``eval_query`` 15; no feature normalisation of ours (FEAT's own adaptation is not here).
- ``simpleshot``: Wang et al., arXiv:1911.04623, simple_shot ``src/utils/configuration.py``
  (``meta-test-iter`` 10000, ``meta-val-query`` 15) and ``metric_class_type``: CL2N with the train
  split's mean feature, then the nearest class mean by Euclidean distance (our ``protonet``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fewshot_cam.errors import UserError
from fewshot_cam.fewshot.episodic import DEFAULT_METHODS
from fewshot_cam.registry import Registry


@dataclass(frozen=True)
class Protocol:
    """The settings one protocol implies."""

    episodes: int | None
    """Episodes drawn with the request's seed; None: the shipped frozen file for the setting, else 2,000."""
    queries: int
    """Query images per class."""
    normalize: str
    """Feature normalisation before every method (none, l2, cl2n)."""
    support_augment: int
    """Augmented copies per support image (0: the support images as they are)."""
    methods: tuple[str, ...]
    """Methods run when none are asked for."""
    source: str
    """The paper and code the settings come from."""


PROTOCOLS: Registry[Protocol] = Registry("protocol")
PROTOCOLS.register(
    "fewshot-cam", Protocol(None, 15, "none", 0, DEFAULT_METHODS, "fewshot-cam's own choice"),
    help="the shipped frozen 2,000-episode file (else 2,000 seeded episodes), 15 queries, no normalisation")
PROTOCOLS.register(
    "closerlook", Protocol(600, 15, "none", 0, ("protonet", "baseline", "baseline++"),
                           "Chen et al., ICLR 2019; CloserLookFewShot test.py"),
    help="600 episodes, 15 queries, raw features (Chen et al. 2019)")
PROTOCOLS.register(
    "rfs", Protocol(600, 15, "l2", 5, ("logreg",), "Tian et al., ECCV 2020; rfs eval_fewshot.py, eval/meta_eval.py"),
    help="600 episodes, 15 queries, L2-normalised features, 5 augmented copies per support image, logreg "
         "(Tian et al. 2020)")
PROTOCOLS.register(
    "feat", Protocol(10000, 15, "none", 0, DEFAULT_METHODS, "Ye et al., CVPR 2020; FEAT fsl_trainer.py"),
    help="10,000 episodes, 15 queries (Ye et al. 2020)")
PROTOCOLS.register(
    "simpleshot", Protocol(10000, 15, "cl2n", 0, ("protonet",),
                           "Wang et al., arXiv:1911.04623; simple_shot configuration.py, train.py"),
    help="10,000 episodes, 15 queries, CL2N (base-class mean), nearest class mean (Wang et al. 2019)")


@dataclass(frozen=True)
class Settings:
    """What a run uses once a protocol and the explicit settings are combined."""

    protocol: str
    episodes: int | None
    queries: int | None
    """None when an episode file decides."""
    normalize: str
    support_augment: int
    methods: tuple[str, ...]
    overrides: tuple[str, ...]
    """The settings given explicitly in place of the protocol's (those that differ from it)."""


def resolve(protocol: str, *, episodes: int | None, queries: int | None, normalize: str | None,
            support_augment: int | None, methods: tuple[str, ...] | None, episode_file: bool) -> Settings:
    """The protocol's settings, each replaced by the explicit one where given (not None)."""
    preset = PROTOCOLS.get(protocol)
    if support_augment is not None and support_augment < 0:
        raise UserError(f"--support-augment must be >= 0, got {support_augment}")
    given = {"episodes": episodes, "queries": queries, "normalize": normalize,
             "support_augment": support_augment, "methods": None if methods is None else tuple(methods)}
    overrides = tuple(k for k, v in given.items() if v is not None and v != getattr(preset, k))
    pick = lambda key: getattr(preset, key) if given[key] is None else given[key]  # noqa: E731
    return Settings(
        protocol=protocol,
        episodes=None if episode_file else pick("episodes"),
        queries=queries if episode_file else pick("queries"),
        normalize=pick("normalize"), support_augment=pick("support_augment"), methods=pick("methods"),
        overrides=overrides + (("episode_file",) if episode_file else ()),
    )
