"""The Explain view: Grad-CAM | Grad-CAM++ | HDM-CAM overlays side by side at a readable size, with one
colour bar, the class explained, the top-k classes, HDM-CAM's per-layer maps, one caption sentence and the
provenance behind "details". The model is the one that fits the image (:mod:`hdm.app.chooser`): a classifier, or
face verification on dlib's face-recognition network for a photo with a face offline."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..cam.base import RESNET_LAYERS
from ..cam.explain import METHOD_NAMES, explain_photo, flat_note
from ..cam.faces import FACE_LAYERS, explain_face
from ..cam.hdm_cam import ALPHA_MODES, TUNED
from .chooser import AUTO, Choice, choose_model
from .display import colour_bar, enlarge
from .hub import FACE_NETWORK, ModelHub
from .inputs import MAX_SIDE, ViewError, check_image, shown_as

__all__ = ["CamView", "cam_view", "class_choices", "parse_target", "hdm_options", "details_markdown", "sentence",
           "VARIANTS", "TOP", "OWN", "LAYERS"]

#: HDM-CAM variants: the paper's equations as written, or the settings chosen on the benchmark's
#: validation split (hdm.cam.hdm_cam.TUNED; docs/cam_benchmark.md).
VARIANTS = ("paper", "tuned")
TOP = "top class"
OWN = "the face's own descriptor"
#: The four stages of a torchvision ResNet (the face network's are :data:`~hdm.cam.faces.FACE_LAYERS`).
LAYERS = RESNET_LAYERS
METHODS = ", ".join(METHOD_NAMES[:-1]) + " and " + METHOD_NAMES[-1]


@dataclass
class CamView:
    """``overlays``: ``[(uint8 (H, W, 3), caption)]`` per method, long side at least 384 px; ``colour_bar``:
    uint8 (the shared scale; ``None`` when nothing ran); ``probabilities``: top-k ``{label: p}`` (``None`` for
    face verification or a model that cannot know the image); ``layer_maps``: ``[(uint8 (h, w), name)]`` of
    HDM-CAM; ``explained``: what the maps explain; ``caption``: one sentence; ``details``: markdown
    provenance; ``model``: the choice that ran (``None``: no model fits the image)."""

    overlays: list[tuple[np.ndarray, str]]
    probabilities: dict[str, float] | None
    layer_maps: list[tuple[np.ndarray, str]]
    caption: str
    details: str = ""
    explained: str = ""
    colour_bar: np.ndarray | None = None
    model: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def sentence(label: str) -> str:
    """A model's label as the start of a sentence ("the ImageNet ResNet-50" -> "The ..."; "hdm's" stays)."""
    return label if label.startswith("hdm") else label[:1].upper() + label[1:]


def details_markdown(lines) -> str:
    """Provenance and settings lines -> a markdown list."""
    return "\n".join(f"- {line}" for line in lines if line)


def class_choices(hub: ModelHub, model: str) -> list[str]:
    """The targets a dropdown offers for ``model``: ``["top class", "0: name", ...]`` for a classifier (ImageNet's
    names without its weights), the face's own descriptor for face verification, the top class for Automatic."""
    if model == AUTO:
        return [TOP]
    if model == FACE_NETWORK:
        return [OWN]
    with shown_as(f"Cannot load {model}"):
        names = hub.categories(model)
    return [TOP] + [f"{i}: {name}" for i, name in enumerate(names)]


def parse_target(target, num_classes: int) -> int | None:
    """``"top class"``/empty -> ``None``; ``"12: name"`` or ``"12"`` or ``12`` -> 12 (checked)."""
    if target is None or str(target).strip() in ("", TOP, "top"):
        return None
    text = str(target).split(":", 1)[0].strip()
    try:
        index = int(text)
    except ValueError:
        raise ViewError(f"The class must be 'top class' or a class index, got {target!r}.") from None
    if not 0 <= index < num_classes:
        raise ViewError(f"Class index {index} is out of range: this model has {num_classes} classes "
                        f"(0..{num_classes - 1}).")
    return index


def hdm_options(classifier, variant: str, alpha: str, layers=LAYERS) -> dict:
    """HDMCAM keyword arguments for a UI ``variant`` and ``alpha`` mode (``learned`` needs a fitted theta).
    The tuned variant is :data:`~hdm.cam.hdm_cam.TUNED` whole, its own alpha included (``alpha`` is the paper
    variant's). ``layers``: the model's four stages (the tuned variant's ``target_layers`` are named among them)."""
    if variant not in VARIANTS:
        raise ViewError(f"HDM-CAM variant must be one of {VARIANTS}, got {variant!r}.")
    if alpha not in ALPHA_MODES:
        raise ViewError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}.")
    if variant == "tuned":
        options = dict(TUNED)
        options["target_layers"] = [layers[LAYERS.index(name)] for name in TUNED["target_layers"]]
        return options
    options = {"alpha": alpha}
    if alpha == "learned":
        theta = classifier.theta
        if theta is None:
            raise ViewError("alpha 'learned' needs a fitted theta (`hdm fit-theta`); this model has none.")
        options["theta"] = theta
    return options


def _classifier(hub: ModelHub, model: str):
    with shown_as(f"Cannot load {model}"):
        return hub.classifier(model)


def _face_embedder(hub: ModelHub):
    with shown_as(f"Cannot load {FACE_NETWORK}"):
        return hub.face_embedder()


def _settings(variant: str, options: dict) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in options.items() if k not in ("theta", "alpha"))
    return f"HDM-CAM: {variant} variant, alpha={options.get('alpha', 'exp')}" + (f", {extra}" if extra else "")


def _timed(seconds: dict) -> list[str]:
    return ["times: " + ", ".join(f"{m} {t * 1000:.0f} ms" for m, t in seconds.items())]


def _no_model(choice: Choice) -> CamView:
    return CamView([], None, [], choice.reason, details_markdown([choice.reason]))


def cam_view(hub: ModelHub, image, model: str = AUTO, target=TOP, alpha: str = "exp", variant: str = "paper",
             k: int = 5) -> CamView:
    """Explain ``image`` with the three methods: by the model that fits it (``model`` Automatic) or the one
    named; ``target`` a class (see :func:`parse_target`) of a classifier."""
    rgb = check_image(image, MAX_SIDE * MAX_SIDE)
    choice = choose_model(hub, rgb, model)
    if choice.model is None:
        return _no_model(choice)
    if choice.model == FACE_NETWORK:
        return _face_view(hub, rgb, choice, alpha, variant)
    served = _classifier(hub, choice.model)
    classifier = served.obj
    category = parse_target(target, len(classifier.categories))
    options = hdm_options(classifier, variant, alpha)
    settings = _settings(variant, options)
    alpha = options.pop("alpha")
    start = time.perf_counter()
    with served.lock:
        result = explain_photo(classifier, rgb, category=category, alpha=alpha, hdm_options=options, k=k)
    took = time.perf_counter() - start
    overlays = [(enlarge(result.overlays[m]), f"{m}: {result.seconds[m] * 1000:.0f} ms") for m in result.overlays]
    layers = [(enlarge((np.clip(m, 0, 1) * 255).astype(np.uint8), 192, smooth=False), name)
              for name, m in result.layer_maps.items()]
    probabilities = {f"{i}: {name}": p for i, name, p in result.top} if choice.knows_image else None
    p = dict((i, q) for i, _, q in result.top).get(result.category)
    explained = f"class {result.category}: {result.category_name}"
    chance = f" ({p:.0%} probable)" if p is not None and choice.knows_image else ""
    caption = (f"{sentence(served.label)} explained why it sees **{result.category_name}**{chance} "
               f"with {METHODS} in {took:.1f} s." + (f" {choice.reason}" if not choice.knows_image else "")
               + (f" {note}" if (note := flat_note(result.maps)) else ""))
    details = details_markdown([choice.reason if choice.knows_image else "", f"model: {served.label} ({choice.model})", *served.details,
                                f"model input: {classifier.input_size} px", settings, *_timed(result.seconds)])
    return CamView(overlays, probabilities, layers, caption, details, explained, colour_bar(), choice.model,
                   dict(result.seconds))


def _face_view(hub: ModelHub, rgb: np.ndarray, choice: Choice, alpha: str, variant: str) -> CamView:
    """Face verification: what makes the most confident face's descriptor its own (:func:`explain_face`)."""
    served = _face_embedder(hub)
    options = hdm_options(served.obj, variant, alpha, layers=FACE_LAYERS)
    settings = _settings(variant, options)
    alpha = options.pop("alpha")
    start = time.perf_counter()
    with served.lock, shown_as("Cannot explain this face"):
        e = explain_face(rgb, embedder=served.obj, alpha=alpha, hdm_options=options)
    took = time.perf_counter() - start
    overlays = [(enlarge(e.overlays[m]), f"{m}: {e.seconds[m] * 1000:.0f} ms") for m in e.overlays]
    stages = {name: f"stage {i + 1}" for i, name in enumerate(FACE_LAYERS)}
    layers = [(enlarge((np.clip(m, 0, 1) * 255).astype(np.uint8), 192, smooth=False),
               f"{stages.get(name, name)} ({m.shape[0]} px)") for name, m in e.layer_maps.items()]
    x0, y0, x1, y1, p = (float(v) for v in e.box[:5])
    caption = (f"dlib's face-recognition network explained what makes the face it found its own (its 128-d descriptor) "
               f"with {METHODS} in {took:.1f} s." + (f" {note}" if (note := flat_note(e.maps)) else ""))
    details = details_markdown([
        choice.reason, f"model: {served.label}", *served.details,
        f"the face: MTCNN box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) px, probability {p:.3f}; aligned to dlib's "
        "150 px chip, over which the maps are drawn",
        f"score explained: the descriptor's dot product with its own value, detached ({e.score:.3f})",
        settings, *_timed(e.seconds)])
    return CamView(overlays, None, layers, caption, details, OWN, colour_bar(), FACE_NETWORK, dict(e.seconds))
