"""The app's views as plain functions (inputs -> images, captions, times), so that ``app.py`` only lays out
the page and every view is tested without a browser. Each raises :class:`ViewError` with a message for the
user; models come from a shared :class:`ModelHub`, chosen for the image by :mod:`hdm.app.chooser`."""
from .cam import CamView, cam_view, class_choices
from .chooser import AUTO, Choice, choose_model, examples_for, model_choices
from .hub import DIFFUSION, FACE_NETWORK, IMAGENET, RANDOM, SHAPES, ModelHub
from .inputs import Example, Upload, ViewError, check_image, example_images, low_res_examples, read_upload
from .sr import DiffusionView, FusionView, RegionView, diffusion_view, fusion_view, region_view
from .subbands import SubbandView, subband_view
from .words import intro

__all__ = ["ModelHub", "ViewError", "DIFFUSION", "IMAGENET", "SHAPES", "RANDOM", "FACE_NETWORK", "AUTO", "Choice",
           "choose_model", "examples_for", "model_choices", "check_image", "read_upload", "Upload", "Example",
           "example_images", "low_res_examples", "CamView", "cam_view", "class_choices", "SubbandView", "subband_view",
           "FusionView", "fusion_view", "DiffusionView", "diffusion_view", "RegionView", "region_view", "intro"]
