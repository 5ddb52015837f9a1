"""Which model fits an image, so that a visitor never gets a confident label from a model that knows nothing
of it. ``Automatic`` picks, in this order:

1. an image of hdm's shapes benchmark (the examples, known by their pixels) -> the shapes ResNet-50;
2. any other image, when the ImageNet ResNet-50 can be had (cached, or downloadable) -> ImageNet;
3. offline, a photo with a face (MTCNN) -> face verification on dlib's face-recognition ResNet;
4. else no model: a plain sentence saying so, and which examples fit.

A model the visitor picks by name runs as asked; where it cannot know the image (the shapes model on a
photo, ImageNet on a shapes image, the random stand-in on anything) the caption says so and its class
probabilities are not shown.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .hub import FACE_NETWORK, IMAGENET, RANDOM, SHAPES, ModelHub
from .inputs import SHAPES_EXAMPLES, Example, example_images, shapes_sample

__all__ = ["AUTO", "Choice", "choose_model", "is_benchmark_image", "examples_for", "model_choices"]

AUTO = "Automatic: the model that fits the image"


@dataclass(frozen=True)
class Choice:
    """``model``: the hub choice to run (a classifier name or :data:`~hdm.app.hub.FACE_NETWORK`), ``None``
    when no model here fits; ``reason``: one sentence for the caption; ``knows_image``: ``False`` when a model
    picked by name cannot know this image (its class probabilities are then not shown)."""

    model: str | None
    reason: str
    knows_image: bool = True


def _digest(rgb: np.ndarray) -> str:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return hashlib.sha256(str(rgb.shape).encode() + rgb.tobytes()).hexdigest()


@lru_cache(maxsize=1)
def _benchmark_digests() -> frozenset[str]:
    return frozenset(_digest(shapes_sample(seed, index).image) for seed, index in SHAPES_EXAMPLES)


def is_benchmark_image(rgb: np.ndarray) -> bool:
    """Whether ``rgb`` ``(H, W, 3)`` uint8 is, pixel for pixel, one of the shapes-benchmark examples."""
    return _digest(rgb) in _benchmark_digests()


def model_choices(hub: ModelHub) -> list[str]:
    """The models a CAM-driven view offers: Automatic, the classifiers and face verification."""
    return [AUTO, *hub.classifiers, FACE_NETWORK]


def examples_for(hub: ModelHub, model: str, examples: list[Example] | None = None) -> list[Example]:
    """The examples that ``model`` fits (for Automatic: those some available model fits, faces first);
    every example for a model of the user's or the random stand-in. Never a network call."""
    examples = example_images() if examples is None else examples
    imagenet = hub.imagenet_available(probe=False)
    kinds = {IMAGENET: ("face", "photo"), FACE_NETWORK: ("face",), SHAPES: ("shapes",),
             AUTO: ("face", "photo", "shapes") if imagenet else ("face", "shapes")}.get(model)
    if kinds is None:
        return list(examples)
    return [e for e in examples if e.kind in kinds]


def _no_model(hub: ModelHub) -> str:
    fitting = ", ".join(e.title for e in examples_for(hub, AUTO))
    return ("No model here fits this image: the ImageNet ResNet-50's weights are not cached and cannot be "
            "downloaded now, no face was found for the face network, and the shapes model knows only the "
            f"shapes of hdm's benchmark. Examples that fit: {fitting}.")


def choose_model(hub: ModelHub, rgb: np.ndarray, requested: str = AUTO) -> Choice:
    """The model to run on ``rgb`` ``(H, W, 3)`` uint8 for the visitor's choice ``requested`` (see the module)."""
    benchmark = is_benchmark_image(rgb)
    if requested == AUTO:
        if benchmark and SHAPES in hub.classifiers:
            return Choice(SHAPES, "An image of hdm's shapes benchmark, so the shapes model explains it.")
        if hub.imagenet_available():
            return Choice(IMAGENET, "A photo, so the ImageNet model explains it.")
        if len(hub.face_detector()(rgb)):
            return Choice(FACE_NETWORK, "Offline, a photo with a face is explained by face verification on dlib's "
                                     "face-recognition network.")
        return Choice(None, _no_model(hub))
    if requested == SHAPES and not benchmark:
        return Choice(SHAPES, "The shapes model knows only the 8 synthetic shapes of hdm's benchmark: on this image "
                           "its class means nothing, so no class probabilities are shown.", knows_image=False)
    if requested == RANDOM:
        return Choice(RANDOM, "A random-weight stand-in knows no image: its classes mean nothing, so no class "
                           "probabilities are shown.", knows_image=False)
    if requested == IMAGENET and benchmark:
        return Choice(IMAGENET, "ImageNet has no classes for the benchmark's synthetic shapes: its class means "
                             "nothing here, so no class probabilities are shown.", knows_image=False)
    return Choice(requested, "")
