"""The demo's page (Gradio): CAMs, wavelet subbands, face-fusion SR, diffusion SR and region fusion by CAM.

Started by ``hdm demo`` (or ``python -m hdm.app``) from an installed package, and by a checkout's ``app.py``
(offline, and on Hugging Face Spaces). This module only lays out the page: every result comes from the views
of ``hdm.app`` (tested without a browser), whose errors are shown as messages. Uploads
reach hdm as files (``gr.File``: Gradio does not decode them) and are read by hdm's own image reader.
Environment: ``HDM_HOST``/``HDM_PORT`` (default: Gradio's, 127.0.0.1:7860), ``HDM_EXPLAIN_CONCURRENCY`` and
``HDM_SR_CONCURRENCY`` (requests run at once: 1 and 2), and the ``HDM_*`` model variables of :mod:`hdm.app.hub`
(your own classifier or SR weights; ``HDM_OFFLINE=1``).
"""
from __future__ import annotations

import functools
import logging
import os

import gradio as gr

from ..cam.hdm_cam import ALPHA_MODES
from ..errors import HDMError
from . import (
    AUTO,
    DIFFUSION,
    ModelHub,
    ViewError,
    cam_view,
    class_choices,
    diffusion_view,
    examples_for,
    fusion_view,
    intro,
    low_res_examples,
    model_choices,
    read_upload,
    region_view,
    subband_view,
)
from .cam import TOP, VARIANTS
from .display import png_file, shrink
from .subbands import LAYERS
from .words import DOCS
from .zoom import zoom_sheet

HUB = ModelHub()
log = logging.getLogger("hdm.app")
#: Two queues: explanations (CAMs, subbands: well under a second of compute each) one at a time, never waiting
#: behind a row of upscalings; the SR views (seconds each) two at a time between them (on 2 cores, 20 mixed
#: requests were answered fastest so: docs/results/app_load.md). ``HDM_EXPLAIN_CONCURRENCY`` and
#: ``HDM_SR_CONCURRENCY`` set other limits.
EXPLAIN = {"concurrency_id": "explain", "concurrency_limit": int(os.environ.get("HDM_EXPLAIN_CONCURRENCY", 1))}
SR = {"concurrency_id": "sr", "concurrency_limit": int(os.environ.get("HDM_SR_CONCURRENCY", 2))}


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


def show_upload(path):
    """The file as hdm decoded it, and one line on it; hdm's message in the page when it cannot be read."""
    if path is None:
        return None, ""
    try:
        upload = read_upload(path)
    except HDMError as e:
        return None, f"**{e}**"
    return upload.rgb, upload.summary


def _gallery(examples):
    return [(e.path, e.title) for e in examples]


def _fitting(model, low_res: bool):
    return examples_for(HUB, model, low_res_examples() if low_res else None)


def _examples_value(model, low_res: bool):
    examples = _fitting(model, low_res)
    return gr.Gallery(value=_gallery(examples), label=f"Examples that fit ({len(examples)}): click one")


def _on_model(low_res: bool):
    """The model dropdown's callback: the classes it can explain, and the examples that fit it."""

    @_ui
    def on_model(model):
        try:
            choices = class_choices(HUB, model)
        except ViewError as e:
            gr.Warning(str(e))
            choices = [TOP]
        return gr.Dropdown(choices=choices, value=choices[0]), _examples_value(model, low_res)
    return on_model


def _on_pick(low_res: bool):
    def pick(model, evt: gr.SelectData):
        return _fitting(model, low_res)[evt.index].path
    return pick


def pick_low_res(evt: gr.SelectData):
    return low_res_examples()[evt.index].path


@_ui
def run_cam(path, model, target, alpha, variant):
    v = cam_view(HUB, path, model, target, alpha, variant)
    label = f"Class explained: {v.explained}" if v.explained else "Grad-CAM | Grad-CAM++ | HDM-CAM"
    return (gr.Gallery(value=v.overlays, label=label, format="png"), v.colour_bar,
            gr.Label(value=v.probabilities, visible=v.probabilities is not None), v.layer_maps, v.caption, v.details)


@_ui
def run_subbands(path, model, layer, levels, target):
    v = subband_view(HUB, path, model, layer, int(levels), target)
    return v.mosaics, v.weights, v.caption, v.details


def _zoom(zooms):
    """The zoom sheet at its own height, so that its crops are shown at native resolution."""
    sheet = zoom_sheet(zooms)
    return gr.Image(value=None if sheet is None else png_file(sheet),
                    height=None if sheet is None else sheet.shape[0] + 48)


def _sliders(pairs, n=2):
    """Before/after sliders of full-size results (lossless PNG files, written fast), hidden when unused."""
    return [gr.ImageSlider(value=(png_file(a), png_file(b)), label=label, visible=True) for a, b, label in pairs[:n]] \
        + [gr.ImageSlider(value=None, visible=False)] * (n - len(pairs[:n]))


def _overview(items):
    """Gallery items ``(image, caption)`` shrunk to an overview's size, as PNG files."""
    return [(png_file(shrink(image)), caption) for image, caption in items]


@_ui
def run_fusion(path, general, face, progress=gr.Progress()):
    progress(0.1, desc="Upscaling and fusing")
    v = fusion_view(HUB, path, general, face)
    gallery = _overview([(v.general, "general"), (v.face, "face model on the faces"), (v.mask, "fusion mask (red)"),
                         (v.fused, "fused")])
    return (gallery, *_sliders(v.pairs), _zoom(v.zooms), v.faces, str(v.download), v.caption, v.details)


@_ui
def run_diffusion(path, variants, seed, progress=gr.Progress()):
    progress(0.1, desc="Sampling")
    v = diffusion_view(HUB, path, tuple(variants or ()), int(seed or 0))
    return (_overview(v.results), *_sliders(v.pairs), _zoom(v.zooms), [str(p) for p in v.downloads], v.caption,
            v.details)


@_ui
def run_region(path, model, target, general, specialist, threshold, progress=gr.Progress()):
    progress(0.1, desc="HDM-CAM and upscaling")
    v = region_view(HUB, path, model, target, general, specialist, float(threshold))
    if v.model is None:
        return ([], *_sliders([]), None, None, v.caption, v.details)
    gallery = _overview([(v.saliency, "HDM-CAM class map"), (v.mask, "fusion mask (red)"), (v.general, "general"),
                         (v.specialist, "specialist"), (v.fused, "fused")])
    return (gallery, *_sliders(v.pairs), _zoom(v.zooms), str(v.download), v.caption, v.details)


def _input(prefix: str, label: str):
    """An upload (a file: hdm decodes it) and what hdm read from it."""
    file = gr.File(label=label, elem_id=f"{prefix}-file", height=120)
    preview = gr.Image(label="What hdm read", interactive=False, height=220, format="png", elem_id=f"{prefix}-preview")
    status = gr.Markdown(elem_id=f"{prefix}-status")
    file.change(show_upload, file, [preview, status])
    return file


def _models(prefix: str):
    """The model and class dropdowns, placed later (``.render()``) so that the examples can follow the upload."""
    model = gr.Dropdown(model_choices(HUB), value=AUTO, label="Model", elem_id=f"{prefix}-model", render=False)
    target = gr.Dropdown([TOP], value=TOP, label="Class to explain", allow_custom_value=True, render=False)
    return model, target


def _examples(prefix: str, file, model=None, low_res: bool = False):
    """A gallery of the examples that fit the tab's ``model`` (or, without one, the SR inputs); a click loads one
    into ``file``; a new model updates it."""
    if model is None:
        gallery = gr.Gallery(_gallery(low_res_examples()), label="Examples: click one", columns=3, height=150,
                             allow_preview=False, elem_id=f"{prefix}-examples")
        gallery.select(pick_low_res, None, file)
        return gallery
    examples = _fitting(AUTO, low_res)
    gallery = gr.Gallery(_gallery(examples), label=f"Examples that fit ({len(examples)}): click one", columns=3,
                         height=250, allow_preview=False, elem_id=f"{prefix}-examples")
    gallery.select(_on_pick(low_res), model, file)
    return gallery


def _results_sr(prefix: str, gallery_label: str, columns: int, download_label: str, multiple=False):
    caption = gr.Markdown(elem_id=f"{prefix}-caption")
    gallery = gr.Gallery(label=gallery_label, columns=columns, height=280, object_fit="contain",
                         elem_id=f"{prefix}-gallery", format="png")
    with gr.Row():
        sliders = [gr.ImageSlider(label="before | after", type="numpy", format="png", max_height=520,
                                  elem_id=f"{prefix}-slider{i}") for i in range(2)]
    zoom = gr.Image(label="Zoom at native resolution: the same crop of each result, side by side", type="numpy",
                    format="png", interactive=False, elem_id=f"{prefix}-zoom")
    download = gr.File(label=download_label, file_count="multiple" if multiple else "single")
    with gr.Accordion("details", open=False):
        details = gr.Markdown()
    return caption, gallery, sliders, zoom, download, details


def build_demo() -> gr.Blocks:
    general_default = next(iter(HUB.general))
    face_default = next(iter(HUB.face))
    # results are cached files: Gradio deletes those older than an hour, every hour
    with gr.Blocks(title="hdm: explainability and restoration", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# hdm: HDM-CAM, wavelet subbands, face-fusion and diffusion super-resolution\n"
                    "Pick an example or upload an image (any file: hdm reads it as its command line does), then run. "
                    f"Models run on the {HUB.device.type.upper()}; each result's *details* say which weights made it.")
        with gr.Tab("Explain (CAM)"):
            gr.Markdown(intro("cam"))
            with gr.Row():
                with gr.Column(scale=1):
                    cam_model, cam_target = _models("cam")
                    cam_file = _input("cam", "Image file")
                    cam_examples = _examples("cam", cam_file, cam_model)
                    cam_model.render()
                    cam_target.render()
                    alpha = gr.Radio(list(ALPHA_MODES), value="exp",
                                     label="HDM-CAM scale weights alpha_j (eq. 13; the paper variant)")
                    variant = gr.Radio(list(VARIANTS), value="paper",
                                       label="HDM-CAM variant (paper equations, or tuned on the benchmark)")
                    cam_button = gr.Button("Explain", variant="primary", elem_id="cam-run")
                with gr.Column(scale=2):
                    cam_caption = gr.Markdown(elem_id="cam-caption")
                    cam_gallery = gr.Gallery(label="Grad-CAM | Grad-CAM++ | HDM-CAM", columns=3, height=340,
                                             object_fit="contain", elem_id="cam-gallery")
                    cam_bar = gr.Image(show_label=False, interactive=False, height=56, format="png",
                                       container=False, elem_id="cam-colour-bar")
                    cam_probs = gr.Label(label="Top-5 classes", num_top_classes=5)
                    cam_layers = gr.Gallery(label="HDM-CAM per-layer maps (coarser further right)", columns=4,
                                            height=200, object_fit="contain")
                    with gr.Accordion("details", open=False):
                        cam_details = gr.Markdown()
            cam_model.change(_on_model(False), cam_model, [cam_target, cam_examples])
            cam_button.click(run_cam, [cam_file, cam_model, cam_target, alpha, variant],
                             [cam_gallery, cam_bar, cam_probs, cam_layers, cam_caption, cam_details], **EXPLAIN)

        with gr.Tab("Subbands"):
            gr.Markdown(intro("subbands"))
            with gr.Row():
                with gr.Column(scale=1):
                    sb_model, sb_target = _models("sb")
                    sb_file = _input("sb", "Image file")
                    sb_examples = _examples("sb", sb_file, sb_model)
                    sb_model.render()
                    sb_target.render()
                    sb_layer = gr.Dropdown(list(LAYERS), value="layer3", label="Layer (stage of the network)")
                    sb_levels = gr.Slider(1, 4, value=2, step=1, label="DWT levels")
                    sb_button = gr.Button("Show subbands", variant="primary", elem_id="sb-run")
                with gr.Column(scale=2):
                    sb_caption = gr.Markdown(elem_id="sb-caption")
                    sb_gallery = gr.Gallery(label="Haar subbands: image | activation | 3rd | 4th derivative",
                                            columns=2, height=780, object_fit="contain", elem_id="sb-gallery")
                    sb_weights = gr.Markdown()
                    with gr.Accordion("details", open=False):
                        sb_details = gr.Markdown()
            sb_model.change(_on_model(False), sb_model, [sb_target, sb_examples])
            sb_button.click(run_subbands, [sb_file, sb_model, sb_layer, sb_levels, sb_target],
                            [sb_gallery, sb_weights, sb_caption, sb_details], **EXPLAIN)

        with gr.Tab("Face-fusion SR"):
            gr.Markdown(intro("fusion"))
            with gr.Row():
                with gr.Column(scale=1):
                    fu_file = _input("fu", "Low-resolution image file (x4)")
                    _examples("fu", fu_file)
                    fu_general = gr.Dropdown(list(HUB.general), value=general_default, label="General model")
                    fu_face = gr.Dropdown(list(HUB.face), value=face_default, label="Face model")
                    fu_button = gr.Button("Upscale", variant="primary", elem_id="fu-run")
                with gr.Column(scale=2):
                    fu_caption, fu_gallery, fu_sliders, fu_zoom, fu_download, fu_details = _results_sr(
                        "fu", "general | face | mask | fused", 4, "Full-size fused result (PNG)")
                    fu_faces = gr.Dataframe(headers=["face", "x0", "y0", "x1", "y1", "probability"],
                                            label="Faces found (input pixels)")
            fu_button.click(run_fusion, [fu_file, fu_general, fu_face],
                            [fu_gallery, *fu_sliders, fu_zoom, fu_faces, fu_download, fu_caption, fu_details], **SR)

        with gr.Tab("Diffusion SR"):
            gr.Markdown(intro("diffusion"))
            with gr.Row():
                with gr.Column(scale=1):
                    df_file = _input("df", "Low-resolution image file (x4)")
                    _examples("df", df_file)
                    df_variants = gr.CheckboxGroup(list(DIFFUSION), value=list(DIFFUSION)[:2],
                                                   label="Models (the multi-step ones take 15 steps)")
                    df_seed = gr.Number(value=0, precision=0, label="Noise seed")
                    df_button = gr.Button("Upscale", variant="primary", elem_id="df-run")
                with gr.Column(scale=2):
                    df_caption, df_gallery, df_sliders, df_zoom, df_download, df_details = _results_sr(
                        "df", "bicubic | diffusion results", 3, "Full-size results (PNG, model and seed in the name)",
                        multiple=True)
            df_button.click(run_diffusion, [df_file, df_variants, df_seed],
                            [df_gallery, *df_sliders, df_zoom, df_download, df_caption, df_details], **SR)

        with gr.Tab("Region fusion by CAM"):
            gr.Markdown(intro("region"))
            with gr.Row():
                with gr.Column(scale=1):
                    rf_model, rf_target = _models("rf")
                    rf_file = _input("rf", "Low-resolution image file (x4)")
                    rf_examples = _examples("rf", rf_file, rf_model, low_res=True)
                    rf_model.render()
                    rf_target.render()
                    rf_general = gr.Dropdown(list(HUB.general), value=general_default, label="General model (outside)")
                    specialists = list(HUB.face) + list(HUB.general)
                    rf_special = gr.Dropdown(specialists, value=specialists[0], label="Specialist model (inside)")
                    rf_threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05,
                                             label="Mask threshold (of the map's peak)")
                    rf_button = gr.Button("Upscale", variant="primary", elem_id="rf-run")
                with gr.Column(scale=2):
                    rf_caption, rf_gallery, rf_sliders, rf_zoom, rf_download, rf_details = _results_sr(
                        "rf", "class map | mask | general | specialist | fused", 5, "Full-size fused result (PNG)")
            rf_model.change(_on_model(True), rf_model, [rf_target, rf_examples])
            rf_button.click(run_region, [rf_file, rf_model, rf_target, rf_general, rf_special, rf_threshold],
                            [rf_gallery, *rf_sliders, rf_zoom, rf_download, rf_caption, rf_details], **SR)
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def main() -> None:
    """Start the demo: ``HDM_HOST`` / ``HDM_PORT`` (default: Gradio's own, 127.0.0.1:7860, or
    ``GRADIO_SERVER_NAME``, which Spaces sets to 0.0.0.0)."""
    port = os.environ.get("HDM_PORT")
    build_demo().launch(server_name=os.environ.get("HDM_HOST") or None, server_port=int(port) if port else None,
                        max_file_size="20mb", ssr_mode=False,
                        allowed_paths=[str(DOCS)] if DOCS.is_dir() else None)


if __name__ == "__main__":
    main()
