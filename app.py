"""hdm demo (Gradio): CAMs, wavelet subbands, face-fusion SR, diffusion SR and region fusion by CAM.

Runs offline (python app.py) and on Hugging Face Spaces. This file only lays out the page: every
result comes from ``hdm.app`` (tested without a browser), whose errors are shown as messages.
Environment: ``HDM_HOST``/``HDM_PORT`` (default: Gradio's, 127.0.0.1:7860), and the ``HDM_*`` model variables of
:mod:`hdm.app.hub` (your own classifier or SR weights).
"""
from __future__ import annotations

import functools
import logging
import os

import gradio as gr

from hdm.app import (
    DIFFUSION_FILES,
    ModelHub,
    ViewError,
    cam_view,
    class_choices,
    diffusion_view,
    example_images,
    fusion_view,
    low_res_examples,
    region_view,
    subband_view,
)
from hdm.app.cam import ALPHAS, TOP, VARIANTS
from hdm.app.subbands import LAYERS
from hdm.cam.classifiers import imagenet_weights_path
from hdm.errors import HDMError

HUB = ModelHub()
log = logging.getLogger("hdm.app")


def _ui(fn):
    """A callback whose errors reach the user as a message: hdm's errors (ViewError among them) as they are,
    anything else named (the traceback goes to the server log, not the page)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HDMError as e:
            raise gr.Error(str(e)) from None
        except Exception as e:  # noqa: BLE001 - the page shows a message, the log keeps the details
            log.exception("view failed")
            raise gr.Error(f"Something went wrong ({type(e).__name__}: {e}). Nothing was changed; try another "
                           "input or model.") from None
    return wrapper


def models_notice() -> str:
    """Markdown: the models each view can use and where their weights come from."""
    lines = ["**Models.** Each result says which weights made it."]
    lines.append("- Classifiers: " + "; ".join(HUB.classifiers))
    lines.append("- General SR: " + "; ".join(HUB.general) + ". Face SR: " + "; ".join(HUB.face))
    shipped = HUB.diffusion_shipped
    lines.append("- Diffusion SR (hdm demo weights): " + ("; ".join(shipped) if shipped else "none in " + str(HUB.weights_dir)))
    lines.append("- 'downloaded' models need the network (offline they fail with a message naming the file "
                 "to place); 'stand-in' means random weights whose output means nothing; 'demo weights' are "
                 "trained by this project on small data (see weights/README.md).")
    lines.append(f"- Device: {HUB.device.type.upper()}.")
    return "\n".join(lines)


def default_classifier() -> str:
    names = list(HUB.classifiers)
    imagenet = next(n for n in names if n.startswith("ImageNet"))
    if names[0] != imagenet and not names[0].startswith("Random"):
        return names[0]  # the shipped shapes model or the user's file
    return imagenet if imagenet_weights_path().is_file() else names[-1]  # no network call at start-up


@_ui
def on_classifier(model):
    try:
        choices = class_choices(HUB, model)
    except ViewError as e:
        gr.Warning(str(e))
        choices = [TOP]
    return gr.Dropdown(choices=choices, value=TOP)


@_ui
def run_cam(image, model, target, alpha, variant):
    v = cam_view(HUB, image, model, target, alpha, variant)
    return v.overlays, v.probabilities, v.layer_maps, v.caption


@_ui
def run_subbands(image, model, layer, levels, target):
    v = subband_view(HUB, image, model, layer, int(levels), target)
    return v.mosaics, v.weights, v.caption


@_ui
def run_fusion(image, general, face, progress=gr.Progress()):
    progress(0.1, desc="Upscaling and fusing")
    v = fusion_view(HUB, image, general, face)
    gallery = [(v.general, "general"), (v.face, "face model on the faces"), (v.mask, "fusion mask (red)"),
               (v.fused, "fused")]
    return gallery, (v.bicubic, v.fused), v.faces, str(v.download), v.caption


@_ui
def run_diffusion(image, variants, seed, progress=gr.Progress()):
    progress(0.1, desc="Sampling")
    v = diffusion_view(HUB, image, tuple(variants or ()), int(seed or 0))
    return v.results, v.caption


@_ui
def run_region(image, model, target, general, specialist, threshold, progress=gr.Progress()):
    progress(0.1, desc="HDM-CAM and upscaling")
    v = region_view(HUB, image, model, target, general, specialist, float(threshold))
    gallery = [(v.saliency, "HDM-CAM class map"), (v.mask, "fusion mask (red)"), (v.general, "general"),
               (v.specialist, "specialist"), (v.fused, "fused")]
    return gallery, str(v.download), v.caption


def _classifier_inputs(default: str):
    model = gr.Dropdown(list(HUB.classifiers), value=default, label="Classifier")
    target = gr.Dropdown([TOP], value=TOP, label="Class to explain (top-k below)", allow_custom_value=True)
    return model, target


def build_demo() -> gr.Blocks:
    default = default_classifier()
    general_default = next(iter(HUB.general))
    face_default = next(iter(HUB.face))
    # results are cached files: Gradio deletes those older than an hour, every hour
    with gr.Blocks(title="hdm: explainability and restoration", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# hdm: HDM-CAM, wavelet subbands, face-fusion and diffusion super-resolution")
        gr.Markdown(models_notice())
        with gr.Tab("Explain (CAM)"):
            with gr.Row():
                with gr.Column(scale=1):
                    cam_image = gr.Image(label="Image", type="numpy", elem_id="cam-image")
                    cam_model, cam_target = _classifier_inputs(default)
                    alpha = gr.Radio(list(ALPHAS), value="exp", label="HDM-CAM scale weights alpha_j (eq. 13)")
                    variant = gr.Radio(list(VARIANTS), value="paper",
                                       label="HDM-CAM variant (paper equations, or tuned on the benchmark)")
                    cam_button = gr.Button("Explain", variant="primary", elem_id="cam-run")
                    gr.Examples(example_images(), inputs=[cam_image])
                with gr.Column(scale=2):
                    cam_caption = gr.Markdown()
                    cam_gallery = gr.Gallery(label="Grad-CAM | Grad-CAM++ | HDM-CAM", columns=3, height="auto",
                                             elem_id="cam-gallery")
                    cam_probs = gr.Label(label="Top-5 classes", num_top_classes=5)
                    cam_layers = gr.Gallery(label="HDM-CAM per-layer maps", columns=4, height="auto")
            cam_model.change(on_classifier, cam_model, cam_target)
            cam_button.click(run_cam, [cam_image, cam_model, cam_target, alpha, variant],
                             [cam_gallery, cam_probs, cam_layers, cam_caption])

        with gr.Tab("Subbands"):
            with gr.Row():
                with gr.Column(scale=1):
                    sb_image = gr.Image(label="Image", type="numpy")
                    sb_model, sb_target = _classifier_inputs(default)
                    sb_layer = gr.Dropdown(list(LAYERS), value="layer3", label="Layer")
                    sb_levels = gr.Slider(1, 4, value=2, step=1, label="DWT levels")
                    sb_button = gr.Button("Show subbands", variant="primary", elem_id="sb-run")
                    gr.Examples(example_images(), inputs=[sb_image])
                with gr.Column(scale=2):
                    sb_caption = gr.Markdown()
                    sb_gallery = gr.Gallery(label="Haar subbands: image | activation | 3rd | 4th derivative",
                                            columns=2, height="auto", elem_id="sb-gallery")
                    sb_weights = gr.Markdown()
            sb_model.change(on_classifier, sb_model, sb_target)
            sb_button.click(run_subbands, [sb_image, sb_model, sb_layer, sb_levels, sb_target],
                            [sb_gallery, sb_weights, sb_caption])

        with gr.Tab("Face-fusion SR"):
            with gr.Row():
                with gr.Column(scale=1):
                    fu_image = gr.Image(label="Low-resolution image (x4)", type="numpy")
                    fu_general = gr.Dropdown(list(HUB.general), value=general_default, label="General model")
                    fu_face = gr.Dropdown(list(HUB.face), value=face_default, label="Face model")
                    fu_button = gr.Button("Upscale", variant="primary", elem_id="fu-run")
                    gr.Examples(low_res_examples(), inputs=[fu_image])
                with gr.Column(scale=2):
                    fu_caption = gr.Markdown()
                    fu_gallery = gr.Gallery(label="general | face | mask | fused", columns=4, height="auto",
                                            elem_id="fu-gallery", format="png")
                    fu_slider = gr.ImageSlider(label="bicubic | fused", type="numpy", format="png")
                    fu_faces = gr.Dataframe(headers=["face", "x0", "y0", "x1", "y1", "probability"],
                                            label="Faces found (input pixels)")
                    fu_file = gr.File(label="Full-size fused result (PNG)")
            fu_button.click(run_fusion, [fu_image, fu_general, fu_face],
                            [fu_gallery, fu_slider, fu_faces, fu_file, fu_caption])

        with gr.Tab("Diffusion SR"):
            with gr.Row():
                with gr.Column(scale=1):
                    df_image = gr.Image(label="Low-resolution image (x4)", type="numpy")
                    df_variants = gr.CheckboxGroup(list(DIFFUSION_FILES), value=list(DIFFUSION_FILES), label="Models")
                    df_seed = gr.Number(value=0, precision=0, label="Noise seed")
                    df_button = gr.Button("Upscale", variant="primary", elem_id="df-run")
                    gr.Examples(low_res_examples(), inputs=[df_image])
                with gr.Column(scale=2):
                    df_caption = gr.Markdown()
                    df_gallery = gr.Gallery(label="bicubic | diffusion results", columns=3, height="auto",
                                            elem_id="df-gallery", format="png")
            df_button.click(run_diffusion, [df_image, df_variants, df_seed], [df_gallery, df_caption])

        with gr.Tab("Region fusion by CAM"):
            with gr.Row():
                with gr.Column(scale=1):
                    rf_image = gr.Image(label="Low-resolution image (x4)", type="numpy")
                    rf_model, rf_target = _classifier_inputs(default)
                    rf_general = gr.Dropdown(list(HUB.general), value=general_default, label="General model (outside)")
                    specialists = list(HUB.face) + list(HUB.general)
                    rf_special = gr.Dropdown(specialists, value=specialists[0], label="Specialist model (inside)")
                    rf_threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Mask threshold (of the map's peak)")
                    rf_button = gr.Button("Upscale", variant="primary", elem_id="rf-run")
                    gr.Examples(low_res_examples(), inputs=[rf_image])
                with gr.Column(scale=2):
                    rf_caption = gr.Markdown()
                    rf_gallery = gr.Gallery(label="class map | mask | general | specialist | fused", columns=5,
                                            height="auto", elem_id="rf-gallery", format="png")
                    rf_file = gr.File(label="Full-size fused result (PNG)")
            rf_model.change(on_classifier, rf_model, rf_target)
            rf_button.click(run_region, [rf_image, rf_model, rf_target, rf_general, rf_special, rf_threshold],
                            [rf_gallery, rf_file, rf_caption])
        for model, target in ((cam_model, cam_target), (sb_model, sb_target), (rf_model, rf_target)):
            demo.load(on_classifier, model, target)
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


if __name__ == "__main__":
    # no host given: Gradio's own default (127.0.0.1, or GRADIO_SERVER_NAME, which Spaces sets to 0.0.0.0)
    port = os.environ.get("HDM_PORT")
    build_demo().launch(server_name=os.environ.get("HDM_HOST") or None, server_port=int(port) if port else None,
                        max_file_size="20mb", ssr_mode=False)
