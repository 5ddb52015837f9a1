"""Score functions ("targets") that say which output a CAM explains.

Compatible with pytorch-grad-cam: a target is a callable taking one image's model output
(``(num_classes,)`` logits, or a ``(D,)`` descriptor) and returning a 0-d score tensor. Plain ``int``
class indices are accepted everywhere a target is.
"""
from __future__ import annotations

import torch

__all__ = ["ClassifierOutputTarget", "SimilarityTarget"]


class ClassifierOutputTarget:
    """The logit of class ``category``: ``output[..., category]``."""

    def __init__(self, category: int):
        self.category = int(category)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output[..., self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputTarget({self.category})"


class SimilarityTarget:
    """How much an image's descriptor ``e`` matches a reference descriptor ``r`` ``(D,)``: face verification.

    ``cosine=True``: ``S = e . r / (|e| |r|)``, the similarity of two faces (explains "which regions make
    these two faces match"). ``cosine=False``: ``S = e . r``, a dot product; with ``r`` an image's own
    descriptor, detached, this is the one that explains a single image, since the cosine of a descriptor
    with itself sits at its maximum 1 and its gradient there is zero. The dot product is linear in ``e``,
    so a piecewise-linear network keeps the closed-form higher derivatives of Grad-CAM++ and HDM-CAM exact.
    """

    def __init__(self, reference: torch.Tensor, cosine: bool = True):
        reference = torch.as_tensor(reference).detach().reshape(-1)
        self.reference, self.cosine = reference, bool(cosine)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        r = self.reference.to(model_output.device, model_output.dtype)
        if self.cosine:
            return torch.nn.functional.cosine_similarity(model_output, r, dim=-1, eps=1e-8)
        return (model_output * r).sum(-1)

    def __repr__(self) -> str:
        return f"SimilarityTarget(dim={self.reference.numel()}, cosine={self.cosine})"
