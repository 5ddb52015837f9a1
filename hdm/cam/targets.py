"""Score functions ("targets") that say which output a CAM explains.

Compatible with pytorch-grad-cam: a target is a callable taking one image's model output
``(num_classes,)`` and returning a 0-d score tensor. Plain ``int`` class indices are accepted
everywhere a target is.
"""
from __future__ import annotations

import torch

__all__ = ["ClassifierOutputTarget"]


class ClassifierOutputTarget:
    """The logit of class ``category``: ``output[..., category]``."""

    def __init__(self, category: int):
        self.category = int(category)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output[..., self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputTarget({self.category})"
