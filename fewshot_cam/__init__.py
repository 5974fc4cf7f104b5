"""fewshot-cam: few-shot image classification with CAM-loss and class-activation-map analysis.

Stages, each importing only earlier ones (tests/test_layering.py enforces it):
data -> fewshot -> models -> losses -> training -> evaluation -> analysis; ``cli`` wires them together.
Stage-free helpers: ``errors``, ``config``, ``stats``, ``progress``, ``io``, ``registry``, ``learn2learn_adapter``.
"""

__version__ = "0.1.0"
