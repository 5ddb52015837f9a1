"""The shapes ResNet-50 trainer: a stopped and resumed run equals an uninterrupted one."""
from __future__ import annotations

import json

import torch

from hdm.train_classifier import lr_at, train

TINY = dict(steps=4, batch_size=2, size=32, warm_steps=1, warm_size=16, curriculum_steps=2, eval_every=2,
            val_n=2, final_val_n=4, progress=False)


def test_resumed_training_equals_uninterrupted(tmp_path):
    straight = train(tmp_path / "a", None, None, export=tmp_path / "a.safetensors", **TINY)
    assert train(tmp_path / "b", None, None, stop_at=2, **TINY) is None
    resumed = train(tmp_path / "b", None, None, export=tmp_path / "b.safetensors", **TINY)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    assert straight["heldout_accuracy"] == resumed["heldout_accuracy"]
    assert straight["schedule_segments"] == resumed["schedule_segments"] == [[0, 4, 0]]
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4] and "val_acc" in log[1]
    assert (tmp_path / "b.md").is_file()  # the model card comes with the export


def test_learning_rate_schedule():
    assert lr_at(0, 100, 1.0, 10) == 0.1 and lr_at(9, 100, 1.0, 10) == 1.0
    assert lr_at(10, 100, 1.0, 10) == 1.0 and abs(lr_at(55, 100, 1.0, 10) - 0.5) < 1e-12
    assert lr_at(100, 100, 1.0, 10) == 0.0
