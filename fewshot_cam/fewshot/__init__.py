"""Few-shot maths on precomputed features: pure, batched tensor functions (the stage after ``data``).

ProtoNet (prototypes, logits, metrics), the fine-tuned Baseline / Baseline++ classifiers, logistic
regression and batched evaluation over many episodes with the methods registry :data:`METHODS`; the
feature normalisations before them (:data:`NORMALIZATIONS`: none, l2, cl2n).
Used by pretraining's validation, meta-training, evaluation and the analysis alike.
"""

from fewshot_cam.fewshot.episodic import (
    DEFAULT_METHODS,
    METHODS,
    check_methods,
    episode_accuracy,
    episode_seeds,
    evaluate_chunk,
    evaluate_episodes,
    gather_episodes,
    method_scores,
    predict_episodes,
    score_episodes,
)
from fewshot_cam.fewshot.finetune import baseline, baseline_pp
from fewshot_cam.fewshot.logreg import logreg, logreg_weights
from fewshot_cam.fewshot.normalize import NORMALIZATIONS, normalize_features
from fewshot_cam.fewshot.protonet import METRICS, protonet, protonet_cosine, protonet_logits, prototypes

__all__ = [
    "DEFAULT_METHODS", "METHODS", "METRICS", "baseline", "baseline_pp", "check_methods", "episode_accuracy",
    "episode_seeds", "evaluate_chunk", "evaluate_episodes", "gather_episodes", "logreg", "logreg_weights",
    "method_scores", "predict_episodes", "protonet", "protonet_cosine", "protonet_logits", "prototypes",
    "score_episodes", "NORMALIZATIONS", "normalize_features",
]
