"""Few-shot maths on precomputed features: pure, batched tensor functions (the stage after ``data``).

ProtoNet (prototypes, logits, metrics), the fine-tuned Baseline / Baseline++ classifiers, logistic
regression and batched evaluation over many episodes with the methods registry :data:`METHODS`.
Used by pretraining's validation, meta-training, evaluation and the analysis alike.
"""
