"""The diffusion trainer: a teacher with the HF loss, a student distilled from it, exact resume, export."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from skimage import data as skdata

from hdm.cli import main
from hdm.diffusion import DiffusionSR
from hdm.training.diffusion import DiffusionTrainConfig, train


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
    teacher = DiffusionSR.from_pretrained(tmp_path / "t.safetensors")
    assert not teacher.one_step and teacher.evaluations == 4
    sr = teacher(torch.rand(1, 3, 16, 20), seed=1)
    assert sr.shape == (1, 3, 64, 80) and 0 <= sr.min() and sr.max() <= 1


def test_student_with_both_terms_resumes_exactly(hr_folder, tmp_path):
    """A student run with the HF and ground-truth terms, stopped and resumed, ends bit for bit where an
    uninterrupted one does: weights, average, optimiser state and log."""
    from hdm.diffusion.denoiser import Denoiser
    from hdm.diffusion.file import export_diffusion
    from hdm.diffusion.schedule import ResShiftSchedule

    torch.manual_seed(3)
    export_diffusion(Denoiser(width=8, blocks=1), ResShiftSchedule.resshift(4), tmp_path / "t.safetensors", "teacher",
                     {})
    cfg = dict(stage="student", teacher=str(tmp_path / "t.safetensors"), hf_weight=1.0, perceptual="haarpsi",
               gt_weight=2.0, ckpt_every=2)
    train(tiny(hr_folder, tmp_path / "a", **cfg), progress=False)
    assert train(tiny(hr_folder, tmp_path / "b", stop_at=1, **cfg), progress=False)[0] == {"stopped_at": 1}
    train(tiny(hr_folder, tmp_path / "b", **cfg), progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    for i, state in a["opt"]["state"].items():
        for k in state:
            torch.testing.assert_close(state[k], b["opt"]["state"][i][k], rtol=0, atol=0, msg=f"opt.{i}.{k}")
    log_a, log_b = ((tmp_path / run / "log.jsonl").read_text() for run in ("a", "b"))
    assert log_a == log_b and all({"distill", "gt", "hf"} <= set(json.loads(line)) for line in log_a.splitlines())


def test_student_distils_the_teacher_in_one_step(hr_folder, tmp_path):
    from hdm.diffusion.denoiser import Denoiser
    from hdm.diffusion.file import export_diffusion
    from hdm.diffusion.sampler import DiffusionSR
    from hdm.diffusion.schedule import ResShiftSchedule

    # a teacher whose multi-step result differs clearly from its one-step answer: random weights everywhere
    torch.manual_seed(3)
    net = Denoiser(width=8, blocks=1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    export_diffusion(net, ResShiftSchedule.resshift(4), tmp_path / "t.safetensors", "teacher", {})
    assert main(["train-diffusion", "--stage", "student", "--teacher", str(tmp_path / "t.safetensors"), "--hr",
                 str(hr_folder), "--out", str(tmp_path / "s"), "--batch", "4", "--steps", "15", "--warmup", "1",
                 "--lr", "2e-3", "--ema", "0.5", "--export", str(tmp_path / "s.safetensors")]) == 0
    log = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert "gt" not in log[0]  # the ground-truth term is off by default
    teacher = DiffusionSR.from_pretrained(tmp_path / "t.safetensors")
    student = DiffusionSR.from_pretrained(tmp_path / "s.safetensors")
    # distillation works: the one-step student is closer to the teacher's deterministic result than the
    # teacher's own one-step answer (the student's starting point) is
    lr = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    target = DiffusionSR(teacher.model, teacher.schedule, deterministic=True)(lr, seed=4)
    before = DiffusionSR(teacher.model, teacher.schedule, one_step=True)(lr, seed=4)
    after = student(lr, seed=4)
    assert (after - target).pow(2).mean() < (before - target).pow(2).mean()
    assert student.one_step and student.evaluations == 1
    # the export writes a model card naming the teacher by its sha256
    from hdm.io.cards import sha256

    card = (tmp_path / "s.md").read_text()
    assert "one-step **student**" in card and sha256(tmp_path / "t.safetensors") in card
    assert sha256(tmp_path / "s.safetensors") in card and "Not evaluated yet" in card
    lr = torch.rand(2, 3, 12, 12)
    out = student(lr, seed=0)
    assert out.shape == (2, 3, 48, 48)
    torch.testing.assert_close(student(lr, seed=0), out)
    with pytest.raises(ValueError, match="teacher"):
        train(tiny(hr_folder, tmp_path / "x", stage="student"), progress=False)
    with pytest.raises(ValueError, match="not a teacher"):
        train(tiny(hr_folder, tmp_path / "x", stage="student", teacher=str(tmp_path / "s.safetensors")), progress=False)
    with pytest.raises(ValueError, match="one-step student"):
        DiffusionSR.from_pretrained(tmp_path / "s.safetensors", one_step=False)
    with pytest.raises(ValueError, match="hr_size"):
        train(tiny(hr_folder, tmp_path / "x", hr_size=64), progress=False)


def test_student_ground_truth_term_uses_the_distilled_output(hr_folder, tmp_path, monkeypatch):
    """The control arm's term: ``gt_weight * MSE(f(z_T), z0)`` on the very output the distillation term
    sees (one student forward per step), not a second forward on other inputs; teachers refuse it."""
    import torch.nn.functional as F

    from hdm.diffusion.denoiser import Denoiser
    from hdm.diffusion.file import export_diffusion
    from hdm.diffusion.schedule import ResShiftSchedule

    torch.manual_seed(3)
    export_diffusion(Denoiser(width=8, blocks=1), ResShiftSchedule.resshift(4), tmp_path / "t.safetensors", "teacher", {})
    calls, mse = [], F.mse_loss

    def recording(a, b, *args, **kw):
        out = mse(a, b, *args, **kw)
        calls.append((a, b, out.detach()))
        return out

    monkeypatch.setattr(F, "mse_loss", recording)
    train(tiny(hr_folder, tmp_path / "s", stage="student", teacher=str(tmp_path / "t.safetensors"), steps=1,
               gt_weight=2.0), progress=False)
    assert len(calls) == 2  # distillation, then the ground-truth term
    (out_d, target, _), (out_g, z0, value) = calls
    assert out_g is out_d and not torch.equal(target, z0)  # same student output, other target
    logged = json.loads((tmp_path / "s" / "log.jsonl").read_text().splitlines()[0])
    assert logged["gt"] == pytest.approx(2.0 * value.item(), abs=1e-6)
    with pytest.raises(ValueError, match="gt_weight"):
        train(tiny(hr_folder, tmp_path / "x", gt_weight=1.0), progress=False)


def test_upscale_command_runs_the_diffusion_models(hr_folder, tmp_path):
    from hdm.io.images import read_image

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
    from hdm.bench.diffusion import hf_error

    for name, hf in (("t", 0.0), ("th", 1.0)):
        train(tiny(hr_folder, tmp_path / name, steps=1, hf_weight=hf, perceptual="haarpsi",
                   export=str(tmp_path / f"{name}.safetensors")), progress=False)
    import shutil

    shutil.copy(tmp_path / "t.safetensors", tmp_path / "g.safetensors")  # stand-ins for the students' files
    shutil.copy(tmp_path / "th.safetensors", tmp_path / "h.safetensors")
    out, js = tmp_path / "d.md", tmp_path / "d.json"
    args = ["eval-diffusion", "--hr", str(hr_folder), "--teacher", str(tmp_path / "t.safetensors"), "--teacher-hf",
            str(tmp_path / "th.safetensors"), "--student", str(tmp_path / "t.safetensors"), "--student-gt",
            str(tmp_path / "g.safetensors"), "--student-hf", str(tmp_path / "h.safetensors"), "--perceptual", "haarpsi",
            "--bootstrap", "50", "--out", str(out), "--json", str(js)]
    assert main(args[:-2] + ["--cards"]) == 2  # the cards quote the JSON file
    assert main(args + ["--cards"]) == 0
    card = (tmp_path / "th.md").read_text()
    assert "**teacher** (4 sampling steps), with the multi-scale" in card and "| teacher+HF |" in card
    assert "| bicubic |" in card and "high-frequency error-map loss distance: 1 - HaarPSI" in card
    text = out.read_text()
    assert "| bicubic |" in text and "teacher+HF - teacher" in text and "## Goals" in text and "HaarPSI" in text
    assert "student+HF - student+GT" in text and "| control: student+HF ahead of student+GT on HF error |" in text
    assert "student+GT - student" in text and "| student+GT |" in text and "| student+GT |" in (tmp_path / "g.md").read_text()
    summary = json.loads(js.read_text())["summary"]
    assert summary["methods"]["teacher"]["evaluations"] == 4 and summary["methods"]["student"]["evaluations"] == 1
    # the HF error: 0 for the HR image itself, about 1 for a flat (detail-free) image
    import numpy as np

    hr = skdata.astronaut()[:64, :64]
    assert hf_error(hr, hr) == 0
    flat = np.full_like(hr, 128)
    assert abs(hf_error(flat, hr) - 1) < 1e-6


def test_torchrun_two_processes_equal_one(hr_folder, tmp_path):
    """The diffusion trainer under torchrun (2 gloo processes x 1 image) = 1 process x 2 images."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    args = ["train-diffusion", "--hr", str(hr_folder), "--batch", "2", "--steps", "2", "--warmup", "1",
            "--width", "8", "--blocks", "1", "--timesteps", "4", "--ckpt-every", "2"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(port), "-m", "hdm", *args, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300, cwd=root)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "hdm", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=root)
    assert one.returncode == 0, one.stderr[-3000:]
    a = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert json.loads((tmp_path / "two" / "record.json").read_text())["world_size"] == 2


def test_eval_diffusion_adds_the_pyiqa_columns_when_they_load(hr_folder, tmp_path, monkeypatch, capsys):
    """pyiqa's CLIPIQA and MUSIQ need downloaded weights: a stand-in module (scores = mean brightness)
    checks the wiring; a create_metric that fails (offline) is reported, not fatal."""
    import sys
    import types

    from hdm.bench.diffusion import no_reference_metrics

    calls = []

    def create_metric(name, device="cpu"):
        calls.append(name)
        return lambda img: img.mean() * (2 if name == "musiq" else 1)

    monkeypatch.setitem(sys.modules, "pyiqa", types.SimpleNamespace(create_metric=create_metric))
    train(tiny(hr_folder, tmp_path / "t", steps=1, export=str(tmp_path / "t.safetensors")), progress=False)
    js = tmp_path / "d.json"
    assert main(["eval-diffusion", "--hr", str(hr_folder), "--student", str(tmp_path / "t.safetensors"), "--perceptual",
                 "haarpsi", "--bootstrap", "20", "--json", str(js)]) == 0
    assert calls == ["clipiqa", "musiq"]
    summary = json.loads(js.read_text())["summary"]["methods"]
    assert summary["bicubic"]["MUSIQ"] == pytest.approx(2 * summary["bicubic"]["CLIPIQA"])
    assert "CLIPIQA ↑" in capsys.readouterr().out

    def offline(name, device="cpu"):
        raise OSError("no internet")

    monkeypatch.setitem(sys.modules, "pyiqa", types.SimpleNamespace(create_metric=offline))
    metrics, why = no_reference_metrics()
    assert metrics == {} and "could not be loaded (OSError: no internet)" in why
