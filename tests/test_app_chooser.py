"""Models that fit the input: Automatic picks the shapes model for the benchmark images, ImageNet when it can be
had, face verification on dlib's network for a face offline, and otherwise says that no model fits; a model
that cannot know the image shows no class probabilities; the ImageNet check never slows start-up."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import hdm.app.hub as hub_module
from hdm.app import (
    AUTO,
    FACE_NETWORK,
    IMAGENET,
    RANDOM,
    SHAPES,
    ModelHub,
    ViewError,
    cam_view,
    choose_model,
    examples_for,
)
from hdm.app.cam import OWN, class_choices
from hdm.app.inputs import example_images, low_res_examples
from hdm.app.sr import _chip_map_to_image, download_name, region_view
from hdm.app.words import DOCS, INTROS, doc_url, intro
from hdm.faces.chips import ChipDetails
from hdm.io.registry import MODELS
from hdm.io.weights import CHECKOUT_WEIGHTS


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The shipped shapes and face networks, and tiny untrained generators."""
    from hdm.sr.archs.rrdbnet import RRDBNet
    from hdm.training.sr import export_generator

    folder = tmp_path_factory.mktemp("weights")
    for name in ("shapes_resnet50", "dlib_face_resnet_v1"):
        for file, _ in MODELS[name].files:
            (folder / file).symlink_to(CHECKOUT_WEIGHTS / file)
    for seed, name in enumerate(("sr_general_x4", "sr_face_x4")):
        torch.manual_seed(seed)
        export_generator(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), folder / f"{name}.safetensors", {})
    return folder


@pytest.fixture
def offline(weights, tmp_path, monkeypatch):
    """A hub that cannot have the ImageNet weights: nothing cached, and its URL does not answer."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = ModelHub(weights_dir=weights, exports_dir=tmp_path, device="cpu", env={})
    probes = []
    monkeypatch.setattr(hub, "_reachable", lambda url: probes.append(url) or False)
    hub.probes = probes
    return hub


@pytest.fixture(scope="module")
def examples():
    return {e.title: e for e in example_images()}


def test_automatic_picks_the_model_that_fits(offline, examples):
    rgb = {name: np.asarray(Image.open(e.path).convert("RGB")) for name, e in examples.items()}
    assert choose_model(offline, rgb["shapes: star"]).model == SHAPES
    assert choose_model(offline, rgb["astronaut"]).model == FACE_NETWORK
    none = choose_model(offline, rgb["coffee"])
    assert none.model is None and none.reason.startswith("No model here fits this image")
    assert "Examples that fit: astronaut, camera, shapes: star, shapes: hexagon." in none.reason
    assert offline.probes  # Automatic asked whether ImageNet can be downloaded ...
    n = len(offline.probes)
    choose_model(offline, rgb["coffee"])
    assert len(offline.probes) == n  # ... once, remembered
    # a benchmark image that is not pixel for pixel an example is a photo to Automatic (no guess from content)
    shifted = np.roll(rgb["shapes: star"], 1, axis=1)
    assert choose_model(offline, shifted).model is None


def test_imagenet_when_it_can_be_had(offline, examples, monkeypatch):
    monkeypatch.setattr(offline, "_reachable", lambda url: True)
    offline._probed = None
    photo = np.asarray(Image.open(examples["coffee"].path).convert("RGB"))
    assert choose_model(offline, photo) == choose_model(offline, photo)
    assert choose_model(offline, photo).model == IMAGENET
    star = np.asarray(Image.open(examples["shapes: star"].path).convert("RGB"))
    assert choose_model(offline, star).model == SHAPES  # the benchmark's images still get the shapes model
    explicit = choose_model(offline, star, IMAGENET)
    assert explicit.model == IMAGENET and not explicit.knows_image and "no class probabilities" in explicit.reason
    # the examples follow what is known without asking the network: not probed yet, no photos without faces
    offline._probed = None
    assert [e.kind for e in examples_for(offline, AUTO)] == ["face", "face", "shapes", "shapes"]


def test_the_hub_never_probes_at_start_up_nor_offline(weights, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(hub_module.ModelHub, "_reachable", staticmethod(lambda url: calls.append(url) or True))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = ModelHub(weights_dir=weights, exports_dir=tmp_path, device="cpu", env={})
    assert calls == [] and hub.imagenet_available(probe=False) is False and calls == []
    assert hub.imagenet_available() is True and len(calls) == 1
    quiet = ModelHub(weights_dir=weights, exports_dir=tmp_path, device="cpu", env={"HDM_OFFLINE": "1"})
    assert quiet.imagenet_available() is False and len(calls) == 1
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert quiet.imagenet_available() is True  # the cached file is enough
    cached.unlink()


def test_a_failed_imagenet_download_sends_automatic_offline(weights, tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.__class__, "get_state_dict",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("connection reset")))
    hub = ModelHub(weights_dir=weights, exports_dir=tmp_path, device="cpu", env={})
    monkeypatch.setattr(hub, "_reachable", lambda url: True)
    assert hub.imagenet_available() is True
    with pytest.raises(ViewError, match="Cannot load ImageNet ResNet-50 .*connection reset"):
        cam_view(hub, example_images()[2].path)  # coffee: Automatic tries ImageNet, whose download fails
    assert hub.imagenet_available() is False  # remembered: the next photo gets the offline choices


def test_examples_fit_each_model(offline):
    titles = lambda model, ex=None: [e.title for e in examples_for(offline, model, ex)]  # noqa: E731
    assert titles(SHAPES) == ["shapes: star", "shapes: hexagon"]
    assert titles(FACE_NETWORK) == ["astronaut", "camera"]
    assert titles(IMAGENET) == ["astronaut", "camera", "coffee", "chelsea", "rocket"]
    assert titles(RANDOM) == [e.title for e in example_images()]
    assert titles(AUTO)[0] == "astronaut"  # the first example makes sense offline
    assert titles(AUTO, low_res_examples()) == ["astronaut, 128 px", "camera, 128 px"]
    # and each of them is fitted as announced
    for e in examples_for(offline, AUTO):
        rgb = np.asarray(Image.open(e.path).convert("RGB"))
        assert choose_model(offline, rgb).model == {"face": FACE_NETWORK, "shapes": SHAPES}[e.kind], e.title


def test_class_choices_without_loading_imagenet(offline):
    choices = class_choices(offline, IMAGENET)
    assert len(choices) == 1001 and choices[1] == "0: tench" and IMAGENET not in offline._cache
    assert class_choices(offline, AUTO) == ["top class"] and class_choices(offline, FACE_NETWORK) == [OWN]
    assert class_choices(offline, SHAPES)[1:3] == ["0: disk", "1: square"]


def test_the_astronaut_is_explained_by_face_verification_offline(offline, examples):
    v = cam_view(offline, examples["astronaut"].path)
    assert v.model == FACE_NETWORK and v.explained == OWN and v.probabilities is None
    assert v.caption.startswith("dlib's face-recognition network explained what makes the face it found its own")
    assert [c.split(":")[0] for _, c in v.overlays] == ["Grad-CAM", "Grad-CAM++", "HDM-CAM"]
    assert all(img.shape == (384, 384, 3) for img, _ in v.overlays)  # the 150-px chip, enlarged
    assert "dlib_face_resnet_v1.safetensors, sha256 " + MODELS["dlib_face_resnet_v1"].files[0][1] in v.details
    photo = cam_view(offline, examples["coffee"].path)
    assert photo.model is None and photo.overlays == [] and photo.caption.startswith("No model here fits")
    shapes_on_photo = cam_view(offline, examples["camera"].path, SHAPES)  # picked by name: runs, no probabilities
    assert shapes_on_photo.probabilities is None and "its class means nothing" in shapes_on_photo.caption
    star = cam_view(offline, examples["shapes: star"].path)
    assert star.model == SHAPES and star.explained == "class 3: star" and max(star.probabilities.values()) > 0.5


def test_a_chip_map_is_drawn_back_where_the_chip_was_cut():
    """Chip pixel (x, y) lands at ``matrix @ (x, y, 1)``: there the image map holds the chip map's value."""
    details = ChipDetails((40.0, 30.0, 100.0, 90.0), angle=0.3, size=16)
    matrix = details.matrix()
    ys, xs = np.mgrid[0:16, 0:16]
    cam = (xs + 2 * ys) / 45.0  # smooth, so bilinear sampling reproduces it exactly
    image_map = _chip_map_to_image(cam, matrix, 140, 150)
    assert image_map.shape == (140, 150)
    for x, y in ((3, 4), (8, 8), (12, 2)):
        u, v = matrix @ np.array([x, y, 1.0])
        ui, vi = int(round(u)), int(round(v))  # the nearest image pixel: chip coordinates a fraction away
        cx, cy = np.linalg.solve(matrix[:, :2], np.array([ui, vi]) - matrix[:, 2])
        assert image_map[vi, ui] == pytest.approx((cx + 2 * cy) / 45.0, abs=1e-5)
    assert image_map[0, 0] == 0 and image_map[-1, -1] == 0  # outside the chip


def test_region_fusion_offline_uses_the_face_map(offline, tmp_path):
    lowres = low_res_examples()[0].path
    v = region_view(offline, lowres, AUTO, "top class", "hdm general x4 (demo weights)", "hdm face x4 (demo weights)",
                    out_dir=tmp_path)
    assert v.model == FACE_NETWORK and "the face's own descriptor" in v.caption
    assert 0 < v.region.mean() < 0.2  # the face, not the picture
    assert v.download.name == "region_x4_face-verification_hdm-face-x4_hdm-general-x4.png"
    assert [p[2] for p in v.pairs] == ["bicubic | fused", "general | fused"]
    assert v.zooms and v.zooms[0][1] == "face 1"
    none = region_view(offline, low_res_examples()[2].path, AUTO, "top class", "hdm general x4 (demo weights)",
                       "hdm face x4 (demo weights)")
    assert none.model is None and none.fused is None and none.caption.startswith("No model here fits")


def test_download_names_carry_model_and_seed():
    assert download_name("fused", "hdm general x4 (demo weights)", "your face model (my.pth)") == \
        "fused_x4_hdm-general-x4_your-face-model.png"
    assert download_name("diffusion", "one step, with HF loss", seed=7) == \
        "diffusion_x4_one-step-with-hf-loss_seed7.png"


def test_every_tab_links_an_existing_section_of_the_docs(monkeypatch):
    for tab, (text, (link, file, anchor)) in INTROS.items():
        assert len(re.findall(r"[.?!](?: |$)", text)) in (2, 3), tab  # two or three sentences
        headings = [line.lstrip("#").strip() for line in (DOCS / file).read_text().splitlines() if line.startswith("#")]
        slugs = {"".join(c for c in h.lower().replace(" ", "-") if c.isalnum() or c == "-") for h in headings}
        assert anchor in slugs, (tab, anchor)
        assert f"]({doc_url(file, anchor)})" in intro(tab) and doc_url(file).endswith(f"docs/{file}")
    monkeypatch.setenv("SPACE_ID", "someone/hdm")
    assert doc_url("sr.md", "x") == "https://huggingface.co/spaces/someone/hdm/blob/main/docs/sr.md#x"
