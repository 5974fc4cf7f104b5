"""Published accuracies a study sets its numbers beside: (recipe, dataset, backbone, method, shots) ->
(mean %, 95% CI), 5-way, frozen embedding, 15 queries.

RFS-simple: Tian et al., "Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need?",
ECCV 2020, Table 1 (miniImageNet) and Table 2 (tieredImageNet), ResNet-12, logistic regression on the
frozen embedding ("logreg" here). The miniImageNet pair was checked against LibFewShot's reproduction
table (config/reproduce/RFS/README.md); the tieredImageNet pair is as quoted in the project's issue.
"""

from __future__ import annotations

PUBLISHED: dict[tuple[str, str, str, str, int], tuple[float, float]] = {
    ("rfs", "mini-imagenet", "resnet12", "logreg", 1): (62.02, 0.63),
    ("rfs", "mini-imagenet", "resnet12", "logreg", 5): (79.64, 0.44),
    ("rfs", "tiered-imagenet", "resnet12", "logreg", 1): (69.74, 0.72),
    ("rfs", "tiered-imagenet", "resnet12", "logreg", 5): (84.41, 0.55),
}
SOURCES = {"rfs": "Tian et al. 2020 (RFS-simple), Tables 1-2"}


def published(recipe: str, dataset: str, backbone: str, method: str, shots: int) -> tuple[float, float] | None:
    """The published (mean, ci95) for this setting, or None when the recipe's paper reports none."""
    return PUBLISHED.get((recipe, dataset, backbone, method, shots))
