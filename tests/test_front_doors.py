"""The front doors: ``hdm.upscale`` for paths, PIL images and arrays, ``from_pretrained`` on the fusion
pipeline, the diffusion sampler and the CAM classifier, SR models that describe themselves, and the
Upscaler's refusal of arguments its mode does not use. Checked against the models run directly."""
from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from skimage import data

import hdm
import hdm.upscaling.pipeline as pipeline
from hdm.cam import HDMCAM, TUNED, hdm_cam
from hdm.cam.classifiers import Classifier
from hdm.diffusion.sampler import DiffusionSR, OneStepSR
from hdm.errors import BadArgument, HDMError, MissingFile
from hdm.export.to_onnx import export_onnx
from hdm.io.weights import weights_path
from hdm.ops.resize import bicubic_upsample
from hdm.ops.tiling import tiled_forward
from hdm.sr import SRModel
from hdm.sr.archs.rrdbnet import RRDBNet
from hdm.sr.convert import load_rrdbnet
from hdm.sr.fusion import FaceFusionSR
from hdm.sr.model import check_sr_model
from hdm.sr.onnx_runtime import OnnxSR
from hdm.upscaling.pipeline import Upscaler, UpscaleResult

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def general() -> RRDBNet:
    """The shipped general generator, loaded directly (the reference the front doors must agree with)."""
    return load_rrdbnet(weights_path("sr_general_x4")).eval()


def _direct(model, rgb: np.ndarray) -> np.ndarray:
    """``model`` on the whole float image ``(H, W, 3)`` in [0, 1] -> ``(sH, sW, 3)`` clipped."""
    with torch.no_grad():
        out = model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())
    return out[0].clamp(0, 1).permute(1, 2, 0).numpy()


def test_errors_keep_their_builtin_bases():
    assert issubclass(BadArgument, HDMError) and issubclass(BadArgument, ValueError)
    assert issubclass(MissingFile, BadArgument) and issubclass(MissingFile, FileNotFoundError)
    assert str(MissingFile("no file at x")) == "no file at x"


def test_upscale_arrays_give_arrays_of_their_dtype_and_the_models_pixels(general):
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    out8 = hdm.upscale(rgb8, "general")
    assert out8.dtype == np.uint8 and out8.shape == (80, 112, 3)
    reference = (_direct(general, rgb8.astype(np.float32) / 255) * 255).round().astype(np.uint8)
    assert np.abs(out8.astype(int) - reference.astype(int)).max() <= 1  # float32 order of operations only
    # float RGBA: float out of the same dtype, alpha kept (bicubic x4, clipped to [0, 1])
    rgba = rng.random((20, 28, 4))
    out = hdm.upscale(rgba, "general")
    assert out.dtype == np.float64 and out.shape == (80, 112, 4)
    np.testing.assert_allclose(out[..., :3], _direct(general, rgba[..., :3].astype(np.float32)), atol=1e-5)
    alpha = bicubic_upsample(torch.from_numpy(rgba[..., 3].astype(np.float32))[None, None], 4)[0, 0].clamp(0, 1)
    np.testing.assert_allclose(out[..., 3], alpha.numpy(), atol=1e-6)


def test_upscale_paths_and_pil_images_give_pil_images(tmp_path, general):
    rgba = np.dstack([data.astronaut()[::16, ::16], np.full((32, 32), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    from_path = hdm.upscale(tmp_path / "a.png", "general")
    from_pil = hdm.upscale(Image.fromarray(rgba[..., :3]), "general")
    assert isinstance(from_path, Image.Image) and from_path.mode == "RGBA" and from_path.size == (128, 128)
    assert isinstance(from_pil, Image.Image) and from_pil.mode == "RGB"
    assert np.array_equal(np.asarray(from_path)[..., :3], np.asarray(from_pil))  # the same pixels either way
    assert np.abs(np.asarray(from_path)[..., 3].astype(int) - 200).max() <= 1


def test_upscale_loads_each_model_once(monkeypatch):
    loads, real = [], pipeline.load_generator

    def counting(weights, device="cpu"):
        loads.append(str(weights))
        return real(weights, device)

    monkeypatch.setattr(pipeline, "load_generator", counting)
    pipeline.clear_cache()
    photo = np.full((16, 16, 3), 0.5)
    for _ in range(3):
        hdm.upscale(photo, "general")
    hdm.upscale(photo, "face")
    assert loads == ["general", "face"]
    pipeline.clear_cache()


def test_upscale_fusion_intermediates():
    result = hdm.upscale(data.astronaut()[::4, ::4], "fusion", intermediates=True)  # MTCNN finds the face
    assert isinstance(result, UpscaleResult) and result.rgb.shape == (512, 512, 3)
    f = result.fusion
    assert f.general.shape == f.face.shape == (512, 512, 3) and f.mask.shape == (512, 512)
    assert f.boxes.shape[1] == 5 and len(f.boxes) == 1 and result.message == "1 face found and fused"
    outside = f.mask == 0
    assert outside.any() and np.array_equal(result.rgb[outside], f.general[outside])  # eq. (3) outside the mask


def test_upscale_diffusion_is_seeded_and_is_the_sampler():
    lr = np.random.default_rng(1).random((12, 10, 3)).astype(np.float32)
    a = hdm.upscale(lr, "diffusion", seed=3)
    b = hdm.upscale(lr, "diffusion", seed=3)
    sampler = DiffusionSR.from_pretrained("diffusion_student_hf_x4")
    with torch.no_grad():
        direct = sampler(torch.from_numpy(lr).permute(2, 0, 1)[None], seed=3)[0].permute(1, 2, 0).numpy()
    assert a.shape == (48, 40, 3) and np.array_equal(a, b)
    np.testing.assert_allclose(a, direct, atol=1e-6)
    assert not np.array_equal(a, hdm.upscale(lr, "diffusion", seed=4))


def test_upscale_refuses_what_it_cannot_use(tmp_path):
    photo = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(BadArgument, match="mode must be one of"):
        hdm.upscale(photo, "bicubic")
    with pytest.raises(BadArgument, match="seed= is used by the modes diffusion and diffusion-teacher, not by general"):
        hdm.upscale(photo, "general", seed=1)
    with pytest.raises(hdm.ImageError, match="too small"):
        hdm.upscale(np.zeros((4, 16, 3), np.uint8), "general")
    with pytest.raises(hdm.ImageError, match=r"\[0, 1\]"):
        hdm.upscale(np.full((16, 16, 3), 2.0), "general")
    with pytest.raises(hdm.ImageError, match="no such file|no image file"):
        hdm.upscale(tmp_path / "none.png", "general")


@pytest.mark.parametrize("mode, given, user", [
    ("fusion", {"diffusion": "diffusion_student_x4"}, "modes diffusion and diffusion-teacher"),
    ("diffusion", {"general": "general"}, "modes general and fusion"),
    ("diffusion-teacher", {"face": "face"}, "modes face and fusion"),
    ("general", {"detector": lambda image: np.zeros((0, 5))}, "mode fusion"),
    ("face", {"seed": 0}, "modes diffusion and diffusion-teacher"),
])
def test_upscaler_refuses_arguments_its_mode_does_not_use(mode, given, user):
    name = next(iter(given))
    with pytest.raises(BadArgument, match=re.escape(f"{name}= is used by the {user}, not by {mode}")):
        Upscaler(mode, **given)


def test_fusion_from_pretrained_loads_the_shipped_pair(general):
    pipe = FaceFusionSR.from_pretrained(detector=lambda image: np.zeros((0, 5)))
    face = load_rrdbnet(weights_path("sr_face_x4"))
    for loaded, reference in ((pipe.general, general), (pipe.face, face)):
        assert isinstance(loaded, RRDBNet) and not loaded.training
        for (k, v), (k2, v2) in zip(loaded.state_dict().items(), reference.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
    rgb = data.coffee()[::20, ::20]
    result = pipe(rgb)
    assert result.message.startswith("no face found")
    np.testing.assert_allclose(result.fused, _direct(general, rgb.astype(np.float32) / 255), atol=1e-5)
    with pytest.raises(BadArgument, match="x4, the face model x2"):
        FaceFusionSR(general, RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4), detector=lambda i: [])


def test_diffusion_from_pretrained_by_name():
    student = DiffusionSR.from_pretrained("diffusion_student_hf_x4")
    teacher = DiffusionSR.from_pretrained("diffusion_teacher_x4")
    assert student.one_step and student.evaluations == 1 and student.scale == 4
    assert not teacher.one_step and teacher.evaluations == teacher.schedule.steps == 15
    with pytest.raises(BadArgument, match="one-step student"):
        DiffusionSR.from_pretrained("diffusion_student_x4", one_step=False)
    with pytest.raises(MissingFile, match="train one with"):
        DiffusionSR.from_pretrained("nosuch.safetensors")


def test_classifier_from_pretrained_by_name():
    shapes = Classifier.from_pretrained("shapes_resnet50")
    assert shapes.input_size == 128 and len(shapes.categories) == 8 and "held-out accuracy" in shapes.note
    with torch.no_grad():
        assert shapes.model(torch.zeros(1, 3, 128, 128)).shape == (1, 8)
    random = Classifier.from_pretrained("random")
    assert random.source == "random stand-in" and len(random.categories) == 1000
    with pytest.raises(BadArgument, match="not a classifier"):
        Classifier.from_pretrained("sr_general_x4")
    with pytest.raises(MissingFile, match="nosuch"):
        Classifier.from_pretrained("nosuch.pth")


def test_tuned_is_exported_beside_hdmcam():
    assert TUNED is hdm_cam.TUNED and HDMCAM is hdm_cam.HDMCAM
    assert "TUNED" in hdm.cam.__all__


def test_sr_models_describe_themselves(tmp_path):
    x4, x2 = RRDBNet.compact(), RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).eval()
    assert isinstance(x4, SRModel) and (x4.scale, x4.input_multiple, x4.receptive_radius) == (4, 1, 50)
    assert (x2.scale, x2.input_multiple, x2.receptive_radius) == (2, 2, 40) and torch.float32 in x2.dtypes
    runner = OnnxSR(export_onnx(x2, tmp_path / "x2.onnx", "x2", 2), providers=["CPUExecutionProvider"]).as_generator()
    assert isinstance(runner, SRModel)
    assert (runner.scale, runner.input_multiple, runner.receptive_radius, runner.dtypes) == (2, 2, 40, (torch.float32,))
    half = OnnxSR(export_onnx(x2, tmp_path / "h.onnx", "x2", 2, fp16=True), providers=["CPUExecutionProvider"])
    assert half.as_generator().dtypes == (torch.float16,)
    student = DiffusionSR.from_pretrained("diffusion_student_hf_x4")
    teacher = DiffusionSR.from_pretrained("diffusion_teacher_hf_x4")
    radius = student.model.receptive_radius
    assert isinstance(student, SRModel) and student.input_multiple == 1 and student.dtypes == (torch.float32,)
    assert student.receptive_radius == radius + 2 and teacher.receptive_radius == 15 * radius + 2
    graph = OneStepSR(student.model, student.schedule)
    assert isinstance(graph, SRModel) and graph.input_multiple == 2 and torch.float16 in graph.dtypes


class _Plain(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=4, mode="nearest")


class _Multiple(_Plain):
    """Says its inputs must be multiples of 4, and records the sizes it was given."""

    scale, input_multiple, receptive_radius, dtypes = 4, 4, 0, (torch.float32,)

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return super().forward(x)


def test_tiling_and_export_read_the_description_and_refuse_a_model_without_one(tmp_path):
    model = _Multiple()
    out = tiled_forward(model, torch.rand(1, 3, 13, 10), 4, tile=6, pad=1)
    assert out.shape == (1, 3, 52, 40) and all(h % 4 == 0 and w % 4 == 0 for h, w in model.sizes)
    with pytest.raises(BadArgument, match="lacks scale, input_multiple, receptive_radius, dtypes"):
        check_sr_model(_Plain())
    with pytest.raises(BadArgument, match="the general model .* is not an SR model"):
        Upscaler("general", general=_Plain())
    with pytest.raises(BadArgument, match="does not run in float16"):
        export_onnx(DiffusionSR.from_pretrained("diffusion_student_x4"), tmp_path / "d.onnx", "d", 4, fp16=True)


def test_upscale_docstring_example_runs():
    assert doctest.testmod(pipeline, raise_on_error=True).attempted == 3
