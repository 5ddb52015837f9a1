"""hdm demo (Gradio): Grad-CAM | Grad-CAM++ | HDM-CAM side by side. Runs offline and on HF Spaces.

All method logic lives in the ``hdm`` library; this file only lays out the page.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

from hdm.explain import explain_photo, top_k
from hdm.images import load_rgb, to_model_input
from hdm.models import WeightsUnavailable, load_resnet50


def _load_classifier():
    """ImageNet ResNet-50 when it can be had; otherwise the named random stand-in."""
    try:
        return load_resnet50("imagenet"), ""
    except WeightsUnavailable as e:
        return load_resnet50("random"), str(e)


CLASSIFIER, OFFLINE_REASON = _load_classifier()


def _examples() -> list[str]:
    """scikit-image's bundled photos, written once to a temp folder (they work offline)."""
    from PIL import Image
    from skimage import data

    folder = Path(tempfile.gettempdir()) / "hdm_examples"
    folder.mkdir(exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee", "chelsea"):
        path = folder / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(data, name)()).save(path)
        paths.append(str(path))
    return paths


def weights_notice() -> str:
    text = f"**Model:** {CLASSIFIER.name}, weights: {CLASSIFIER.source}."
    if CLASSIFIER.note:
        text += f"\n\n**Stand-in in use:** {CLASSIFIER.note}."
    if OFFLINE_REASON:
        text += f"\n\n<details><summary>Why</summary>{OFFLINE_REASON}</details>"
    return text


def run_cam(image, target: str, alpha: str):
    """Gradio callback: overlays with times, top-5 classes, HDM-CAM per-layer maps."""
    if image is None:
        raise gr.Error("Upload an image or pick an example first.")
    try:
        rgb = load_rgb(image)
        category = None if target.strip() in ("", "top") else int(target)
        result = explain_photo(CLASSIFIER, rgb, category=category, alpha=alpha)
        probs = {f"{i}: {n}": p for i, n, p in top_k(CLASSIFIER, to_model_input(rgb))}
    except ValueError as e:
        raise gr.Error(str(e)) from None
    gallery = [(result.overlays[m], f"{m} - {result.seconds[m] * 1000:.0f} ms") for m in result.overlays]
    layers = [((np.clip(m, 0, 1) * 255).astype(np.uint8), name) for name, m in result.layer_maps.items()]
    caption = f"Explained class {result.category}: {result.category_name}"
    return gallery, probs, layers, caption


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="hdm: HDM-CAM explorer") as demo:
        gr.Markdown("# hdm - Grad-CAM, Grad-CAM++ and HDM-CAM side by side")
        gr.Markdown(weights_notice())
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(label="Image", type="numpy")
                target = gr.Textbox(value="top", label="Class index to explain ('top' = the top class)")
                alpha = gr.Radio(["exp", "inverse", "equal"], value="exp", label="HDM-CAM scale weights alpha_j (eq. 13)")
                button = gr.Button("Explain", variant="primary")
                gr.Examples(_examples(), inputs=[image])
            with gr.Column(scale=2):
                caption = gr.Markdown()
                gallery = gr.Gallery(label="Grad-CAM | Grad-CAM++ | HDM-CAM", columns=3, height="auto")
                probs = gr.Label(label="Top-5 classes", num_top_classes=5)
                layers = gr.Gallery(label="HDM-CAM per-layer maps", columns=4, height="auto")
        button.click(run_cam, [image, target, alpha], [gallery, probs, layers, caption])
    demo.queue(default_concurrency_limit=2)
    return demo


if __name__ == "__main__":
    build_demo().launch(server_name=os.environ.get("HDM_HOST", "127.0.0.1"))
