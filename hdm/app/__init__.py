"""The app's views as plain functions (inputs -> images, captions, times), so that ``app.py`` only lays
out the page and every view is tested without a browser. Each raises :class:`ViewError` with a message
for the user; models come from a shared :class:`ModelHub`."""
from .cam import CamView, cam_view, class_choices
from .hub import DIFFUSION_FILES, ModelHub
from .inputs import ViewError, check_image, example_images, low_res_examples
from .sr import DiffusionView, FusionView, RegionView, diffusion_view, fusion_view, region_view
from .subbands import SubbandView, subband_view

__all__ = ["ModelHub", "ViewError", "DIFFUSION_FILES", "check_image", "example_images", "low_res_examples",
           "CamView", "cam_view", "class_choices", "SubbandView", "subband_view", "FusionView", "fusion_view",
           "DiffusionView", "diffusion_view", "RegionView", "region_view"]
