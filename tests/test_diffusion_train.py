"""The diffusion trainer: a teacher with the HF loss, a student distilled from it, exact resume, export."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from skimage import data as skdata

from hdm.__main__ import main
from hdm.diffusion.train import DiffusionTrainConfig, load_diffusion, train


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    for name, img in (("astronaut", skdata.astronaut()), ("coffee", skdata.coffee())):
        Image.fromarray(img[:160, :176]).save(folder / f"{name}.png")
    return folder


def tiny(folder, out, **kw):
    return DiffusionTrainConfig(**{**dict(hr=str(folder), out=str(out), batch=2, steps=3, warmup=1, width=8, blocks=1,
                                          timesteps=4, ckpt_every=1, ema=0.5), **kw})


def test_teacher_with_the_hf_loss_resumes_exactly(hr_folder, tmp_path):
    cfg = dict(hf_weight=1.0, perceptual="haarpsi", val=str(hr_folder), val_n=1, val_every=3)
    record, model = train(tiny(hr_folder, tmp_path / "a", export=str(tmp_path / "t.safetensors"), **cfg), progress=False)
    train(tiny(hr_folder, tmp_path / "b", stop_at=2, **cfg), progress=False)
    train(tiny(hr_folder, tmp_path / "b", **cfg), progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for k in a["ema"]:
        torch.testing.assert_close(a["ema"][k], b["ema"][k], rtol=0, atol=0, msg=k)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(e["hf"] > 0 and e["mse"] > 0 for e in log) and "val_psnr" in log[-1]
    assert any("HaarPSI" in n for n in record["notes"])
    teacher = load_diffusion(tmp_path / "t.safetensors")
    assert not teacher.one_step and teacher.evaluations == 4
    sr = teacher(torch.rand(1, 3, 16, 20), seed=1)
    assert sr.shape == (1, 3, 64, 80) and 0 <= sr.min() and sr.max() <= 1


def test_student_distils_the_teacher_in_one_step(hr_folder, tmp_path):
    train(tiny(hr_folder, tmp_path / "t", export=str(tmp_path / "t.safetensors")), progress=False)
    assert main(["train-diffusion", "--stage", "student", "--teacher", str(tmp_path / "t.safetensors"), "--hr",
                 str(hr_folder), "--out", str(tmp_path / "s"), "--batch", "2", "--steps", "2", "--warmup", "1",
                 "--export", str(tmp_path / "s.safetensors")]) == 0
    log = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert all(e["distill"] >= 0 and e["gt"] > 0 for e in log)
    student = load_diffusion(tmp_path / "s.safetensors")
    assert student.one_step and student.evaluations == 1
    lr = torch.rand(2, 3, 12, 12)
    out = student(lr, seed=0)
    assert out.shape == (2, 3, 48, 48)
    torch.testing.assert_close(student(lr, seed=0), out)
    with pytest.raises(ValueError, match="teacher"):
        train(tiny(hr_folder, tmp_path / "x", stage="student"), progress=False)
    with pytest.raises(ValueError, match="hr_size"):
        train(tiny(hr_folder, tmp_path / "x", hr_size=64), progress=False)


def test_upscale_command_runs_the_diffusion_models(hr_folder, tmp_path):
    from hdm.sr.io import read_image

    train(tiny(hr_folder, tmp_path / "t", steps=1, export=str(tmp_path / "t.safetensors")), progress=False)
    Image.fromarray(skdata.astronaut()[:33, :45]).save(tmp_path / "in.png")  # odd sides
    for mode in ("diffusion-teacher", "diffusion"):
        out = tmp_path / f"{mode}.png"
        assert main(["upscale", str(tmp_path / "in.png"), str(out), "--model", mode, "--diffusion-weights",
                     str(tmp_path / "t.safetensors"), "--seed", "3"]) == 0
        assert read_image(out).rgb.shape == (132, 180, 3)
    assert main(["upscale", str(tmp_path / "in.png"), str(tmp_path / "x.png"), "--model", "diffusion",
                 "--diffusion-weights", str(tmp_path / "none.safetensors")]) == 2


def test_eval_diffusion_writes_the_ablation_table(hr_folder, tmp_path):
    from hdm.diffusion.evaluate import hf_error

    for name, hf in (("t", 0.0), ("th", 1.0)):
        train(tiny(hr_folder, tmp_path / name, steps=1, hf_weight=hf, perceptual="haarpsi",
                   export=str(tmp_path / f"{name}.safetensors")), progress=False)
    out, js = tmp_path / "d.md", tmp_path / "d.json"
    args = ["eval-diffusion", "--hr", str(hr_folder), "--teacher", str(tmp_path / "t.safetensors"), "--teacher-hf",
            str(tmp_path / "th.safetensors"), "--student", str(tmp_path / "t.safetensors"), "--perceptual", "haarpsi",
            "--bootstrap", "50", "--out", str(out), "--json", str(js)]
    assert main(args) == 0
    text = out.read_text()
    assert "| bicubic |" in text and "teacher+HF - teacher" in text and "## Goals" in text and "HaarPSI" in text
    summary = json.loads(js.read_text())["summary"]
    assert summary["methods"]["teacher"]["evaluations"] == 4 and summary["methods"]["student"]["evaluations"] == 1
    # the HF error: 0 for the HR image itself, about 1 for a flat (detail-free) image
    import numpy as np

    hr = skdata.astronaut()[:64, :64]
    assert hf_error(hr, hr) == 0
    flat = np.full_like(hr, 128)
    assert abs(hf_error(flat, hr) - 1) < 1e-6
