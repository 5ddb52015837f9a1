"""The shared training loop (hdm.training.loop.fit) on a toy task: an exact resume, stop_at, the weight
average, validation and the log, skipped data files in the record and the model cards, errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hdm.diffusion.denoiser import Denoiser
from hdm.diffusion.file import export_diffusion
from hdm.diffusion.schedule import ResShiftSchedule
from hdm.errors import TrainingError
from hdm.sr.archs.rrdbnet import RRDBNet
from hdm.training.cards import write_diffusion_card, write_sr_card
from hdm.training.classifier import export_weights, write_model_card
from hdm.training.loop import Env, Settings, Task, cosine_lr, ema_decay_at, fit
from hdm.training.sr import export_generator


class Folder:
    """A stand-in for a data folder that skipped some files."""

    def __init__(self, skipped):
        self.skipped = skipped


class Toy(Task):
    """Least squares ``y = w . x`` with Adam: items depend on ``(seed, i)`` only, as hdm's data do."""

    def __init__(self, out, source=None, nan_at=None, distributed=True, **kw):
        self.settings = Settings(**{**dict(out=str(out), steps=7, batch=4, lr=0.05, warmup=2, ema=0.9, val_every=3,
                                           ckpt_every=2, export=str(Path(out) / "toy.safetensors")), **kw})
        self.source, self.nan_at, self.distributed = source, nan_at, distributed
        self.true_w = torch.tensor([1.0, -2.0, 0.5, 3.0])

    def config(self):
        return {"lr": self.settings.lr, "steps": self.settings.steps}

    fixed = ("steps",)

    def build(self, env: Env, state):
        self.model = nn.Linear(4, 1)  # drawn from the loop's seed
        self.optimizers = [torch.optim.Adam(self.model.parameters())]
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizers[0].load_state_dict(state["opt"])
        self.step = None

    def checkpoint(self):
        return {"model": self.model.state_dict(), "opt": self.optimizers[0].state_dict()}

    def new_model(self):
        return nn.Linear(4, 1)

    def item(self, i):
        return torch.randn(4, generator=torch.Generator().manual_seed(self.settings.seed * 1000 + i))

    def batch(self, step, part):
        self.step = step
        x = torch.stack([self.item(step * self.settings.batch + i) for i in range(part.start, part.stop)])
        return x, x @ self.true_w

    def loss(self, batch):
        x, y = batch
        loss = F.mse_loss(self.model(x)[:, 0], y)
        if self.step == self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": loss}

    @property
    def validates(self):
        return True

    def validate(self, model):
        x = torch.stack([self.item(10_000 + i) for i in range(8)])
        with torch.no_grad():
            err = F.mse_loss(model(x)[:, 0], x @ self.true_w).item()
        return {"val_mse": err}, f"val mse {err:.3f}"

    def record(self, final, info):
        return {"steps": self.settings.steps, **info}

    def export(self, model, path, record):
        save_file(model.state_dict(), str(path), metadata={"record": json.dumps(record)})
        return [Path(path)]


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    record, final = fit(Toy(tmp_path / "a"), progress=False)
    stopped, live = fit(Toy(tmp_path / "b", stop_at=3), progress=False)
    assert stopped == {"stopped_at": 3} and live.training
    with open(tmp_path / "b" / "log.jsonl", "a") as f:  # a crash after the checkpoint
        f.write('{"step": 4, "lr": 9.0, "mse": 9.0}\n')
    resumed, final_b = fit(Toy(tmp_path / "b"), progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 7
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    for k, s in a["opt"]["state"].items():  # Adam's moments and step count
        for name in s:
            assert torch.equal(s[name], b["opt"]["state"][k][name]), name
    assert (tmp_path / "a" / "log.jsonl").read_text() == (tmp_path / "b" / "log.jsonl").read_text()
    for k, v in final.state_dict().items():
        assert torch.equal(v, final_b.state_dict()[k])
    # the export is the average, on the CPU, in eval mode
    assert not final.training
    exported = load_file(str(tmp_path / "a" / "toy.safetensors"))
    assert all(torch.equal(exported[k], a["ema"][k]) for k in exported)
    assert json.loads((tmp_path / "a" / "record.json").read_text())["skipped_files"] == []
    assert record["world_size"] == 1 and record["replicas_identical"] and resumed["config"] == {"lr": 0.05, "steps": 7}


def test_schedule_average_validation_and_log(tmp_path):
    """The log holds the scheduled lr of every step, validation at every val_every-th and the last step;
    the average follows ema <- d ema + (1 - d) w with the warm-up decay."""
    weights = []

    class Recording(Toy):
        def after_step(self, batch, logs):
            weights.append({k: v.clone() for k, v in self.model.state_dict().items()})

    fit(Recording(tmp_path / "r", steps=5, val_every=2), progress=False)
    torch.manual_seed(0)
    start = nn.Linear(4, 1).state_dict()  # the loop seeds before build: the same initial weights
    ema = {k: v.clone() for k, v in start.items()}
    for step, w in enumerate(weights):
        d = min(0.9, (1 + step) / (10 + step))
        ema = {k: d * ema[k] + (1 - d) * w[k] for k in ema}
    saved = torch.load(tmp_path / "r" / "last.pt", weights_only=True)["ema"]
    for k in ema:
        torch.testing.assert_close(saved[k], ema[k], rtol=1e-6, atol=1e-7)
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4, 5]
    assert [e["lr"] for e in log] == [cosine_lr(s, 5, 0.05, 2) for s in range(5)]
    assert [("val_mse" in e) for e in log] == [False, True, False, True, True]
    assert log[-1]["mse"] == round(log[-1]["mse"], 5)


def test_without_an_average_the_weights_are_exported(tmp_path):
    _, final = fit(Toy(tmp_path / "n", ema=None, steps=3), progress=False)
    state = torch.load(tmp_path / "n" / "last.pt", weights_only=True)
    assert "ema" not in state
    assert all(torch.equal(v, state["model"][k]) for k, v in final.state_dict().items())


def test_ema_decay_schedules():
    assert ema_decay_at(0, 0.999) == 0.1 and ema_decay_at(10, 0.999) == 11 / 20
    assert ema_decay_at(10 ** 6, 0.999) == 0.999
    assert ema_decay_at(0, 0.5, warmup=False) == 0.5 and ema_decay_at(8, 0.5) == 0.5


def test_skipped_files_go_into_the_record(tmp_path):
    record, _ = fit(Toy(tmp_path / "s", steps=1, source=Folder([(Path("x/bad.png"), "not an image")])),
                    progress=False)
    assert record["skipped_files"] == [str(Path("x/bad.png"))]
    with safe_open(str(tmp_path / "s" / "toy.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["record"])["skipped_files"] == [str(Path("x/bad.png"))]


def test_errors(tmp_path, monkeypatch):
    # a non-finite loss stops the run, naming the step; the checkpoint is from before it
    with pytest.raises(TrainingError, match="non-finite loss at step 4"):
        fit(Toy(tmp_path / "e", nan_at=3), progress=False)
    assert torch.load(tmp_path / "e" / "last.pt", weights_only=True)["step"] == 2
    # a resume with another fixed setting is refused
    with pytest.raises(ValueError, match="other settings"):
        fit(Toy(tmp_path / "e", steps=9), progress=False)
    # a one-process task under torchrun
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="one process"):
        fit(Toy(tmp_path / "w", distributed=False), progress=False)


def test_cards_name_the_skipped_files(tmp_path):
    """Every model card lists the training files that were skipped as unreadable (and says nothing when none were)."""
    skipped = {"skipped_files": ["photos/a.png", "photos/b.jpg"]}
    sr = export_generator(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), tmp_path / "sr.safetensors", skipped)
    diffusion = export_diffusion(Denoiser(width=8, blocks=1), ResShiftSchedule.resshift(4),
                                 tmp_path / "d.safetensors", "teacher", skipped)
    shapes = export_weights(torchvision.models.resnet50(num_classes=8), tmp_path / "c.safetensors", skipped)
    for card in (write_sr_card(sr), write_diffusion_card(diffusion), write_model_card(shapes)):
        assert "- 2 unreadable files skipped: `photos/a.png`, `photos/b.jpg`" in card.read_text()
    export_generator(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), sr, {"skipped_files": []})
    assert "unreadable" not in write_sr_card(sr).read_text()
