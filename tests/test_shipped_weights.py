"""The weights in weights/ (all shipped with the repository: a missing one fails): each matches the sha256
its model card states, loads, and does its job on data made here (no ../shared needed)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from hdm.io.registry import MODELS

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
CARDS = sorted(WEIGHTS.glob("*.md"))


#: The registry models read from a data package (their cards list the package's files; tests/test_registry.py
#: checks them there).
PACKAGED = {c.name for c in MODELS.values() if c.package is not None}


def _card_hashes(card: Path) -> dict[str, str]:
    return dict(re.findall(r"^\| (\S+) \| `([0-9a-f]{64})` \|$", card.read_text(), flags=re.M))


@pytest.mark.parametrize("card", [c for c in CARDS if c.name != "README.md"], ids=lambda c: c.stem)
def test_card_hashes_match_the_files(card):
    hashes = _card_hashes(card)
    assert hashes, f"{card.name} lists no sha256"
    for name, digest in hashes.items():
        if not (WEIGHTS / name).is_file():  # a model read from a package: its files are checked on loading
            assert card.stem in PACKAGED, f"{card.name} lists {name}, which is not in weights/"
            continue
        assert hashlib.sha256((WEIGHTS / name).read_bytes()).hexdigest() == digest, name


def test_shapes_model_classifies_fresh_benchmark_images():
    """48 images on procedural backgrounds (a split no run used): the model must get nearly all right."""
    from hdm.cam.classifiers import load_shapes_resnet50, shapes_theta_path
    from hdm.data.shapes import CLASSES, ShapesDataset

    classifier = load_shapes_resnet50(WEIGHTS / "shapes_resnet50.safetensors")
    assert classifier.categories == list(CLASSES) and classifier.input_size == 128
    data = ShapesDataset(48, seed=777)
    x = torch.stack([data[i][0] for i in range(48)])
    y = torch.tensor([data[i][1] for i in range(48)])
    with torch.no_grad():
        accuracy = (classifier.model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9, accuracy
    theta = json.loads(shapes_theta_path(WEIGHTS / "shapes_resnet50.safetensors").read_text())["theta"]
    assert len(theta) == 2 and all(isinstance(v, float) for v in theta)


def _gain(upscale, rgb, multiple: int = 4) -> float:
    """PSNR (Y, border 4) of ``upscale(lr)`` minus that of bicubic, on ``rgb`` (cropped to a multiple of
    ``multiple``) degraded x4 as in training."""
    from hdm.io.images import to_uint8
    from hdm.ops.metrics import psnr_ssim_y
    from hdm.ops.resize import bicubic_downsample, bicubic_upsample, mod_crop

    hr = torch.from_numpy(mod_crop(rgb, multiple).copy()).permute(2, 0, 1).float()[None] / 255
    lr = (bicubic_downsample(hr, 4) * 255).round() / 255
    with torch.no_grad():
        sr = upscale(lr).clamp(0, 1)
    hr_u8 = to_uint8(hr[0].permute(1, 2, 0).numpy())
    ours = psnr_ssim_y(to_uint8(sr[0].permute(1, 2, 0).numpy()), hr_u8)[0]
    bicubic = psnr_ssim_y(to_uint8(bicubic_upsample(lr, 4)[0].permute(1, 2, 0).numpy()), hr_u8)[0]
    return ours - bicubic


def _sr_gain(weights: Path, rgb) -> float:
    from hdm.sr.convert import load_rrdbnet

    return _gain(load_rrdbnet(weights).eval(), rgb)


def test_shipped_sr_generators_beat_bicubic_and_the_face_model_wins_on_faces():
    """On scikit-image photos (never trained on: ``--exclude`` left out every evaluation photo) the
    general generator is clearly ahead of bicubic on a cat, and on a face the face model is ahead of
    the general one (its fine-tune's purpose)."""
    from skimage import data

    general, face = WEIGHTS / "sr_general_x4.safetensors", WEIGHTS / "sr_face_x4.safetensors"
    cat, astronaut_face = data.chelsea()[:288, 80:368], data.astronaut()[:224, 144:336]
    assert _sr_gain(general, cat) > 0.4  # 0.54 dB when written
    general_on_face, face_on_face = _sr_gain(general, astronaut_face), _sr_gain(face, astronaut_face)
    assert general_on_face > 0.8 and face_on_face > general_on_face + 0.1  # 1.56 and 1.73 dB when written


def _diffusion_gain(model, rgb) -> float:
    """As :func:`_sr_gain`, for a loaded diffusion model (seed 0; its sides must be multiples of 8)."""
    return _gain(lambda lr: model(lr, seed=0), rgb, multiple=8)


#: dB over bicubic each must beat (measured when written: 1.14, 1.19, 0.74, 2.02)
GAINS = {"diffusion_teacher_x4": 0.8, "diffusion_teacher_hf_x4": 0.8, "diffusion_student_x4": 0.4,
         "diffusion_student_hf_x4": 1.5}
DIFFUSION = list(GAINS)


@pytest.mark.parametrize("name", DIFFUSION)
def test_shipped_diffusion_models_beat_bicubic(name):
    """Each shipped diffusion model (teachers: 15 steps; students: one) is ahead of bicubic on the
    astronaut's face, a photo none of them trained on; the students take one network evaluation."""
    from skimage import data

    from hdm.diffusion import DiffusionSR

    weights = WEIGHTS / f"{name}.safetensors"
    model = DiffusionSR.from_pretrained(weights)
    assert model.evaluations == (1 if "student" in name else 15)
    assert _diffusion_gain(model, data.astronaut()[:224, 144:336]) > GAINS[name]


def test_diffusion_figure_script(tmp_path):
    """scripts/diffusion_figure.py draws from the shipped models, and names missing weights."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("diffusion_figure", WEIGHTS.parent / "scripts" / "diffusion_figure.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--weights", str(tmp_path), "--out", str(tmp_path / "f.png")]) == 1
    assert script.main(["--out", str(tmp_path / "f.png")]) == 0 and (tmp_path / "f.png").stat().st_size > 10_000
