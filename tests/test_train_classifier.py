"""The shapes ResNet-50 trainer: a stopped and resumed run equals an uninterrupted one."""
from __future__ import annotations

import json

import pytest
import torch

from hdm.training.classifier import _segment, train
from hdm.training.loop import cosine_lr

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
    assert straight["schedule_segments"] == resumed["schedule_segments"]
    assert [(g["start"], g["steps"], g["augment"]) for g in resumed["schedule_segments"]] == [(0, 4, 0)]
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4] and "val_acc" in log[1]
    assert (tmp_path / "b.md").is_file()  # the model card comes with the export


def test_learning_rate_schedule():
    """The classifier's schedule is the shared one."""
    assert cosine_lr(0, 100, 1.0, 10) == 0.1 and cosine_lr(9, 100, 1.0, 10) == 1.0
    assert cosine_lr(10, 100, 1.0, 10) == 1.0 and abs(cosine_lr(55, 100, 1.0, 10) - 0.5) < 1e-12
    assert cosine_lr(100, 100, 1.0, 10) == 0.0


@pytest.mark.parametrize("bf16", [False, True])
def test_weight_average_resumes_exactly_and_is_exported(tmp_path, bf16):
    """float32 resumes bit for bit; bf16 autocast only closely (oneDNN's bf16 kernels do not promise
    run-to-run determinism, and gave NaNs on 16 px images in batches of 2, so this uses 64 px, batches of 4)."""
    kw = dict(TINY, bf16=bf16, ema_decay=0.5, **(dict(size=64, warm_size=32, batch_size=4) if bf16 else {}))
    tol = dict(rtol=1e-3, atol=1e-4) if bf16 else dict(rtol=0, atol=0)
    train(tmp_path / "a", None, None, export=tmp_path / "a.safetensors", **kw)
    train(tmp_path / "b", None, None, stop_at=3, **kw)
    train(tmp_path / "b", None, None, **kw)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for k in a["ema"]:
        torch.testing.assert_close(a["ema"][k], b["ema"][k], **tol, msg=k)
    # the export is the average (in fp16), not the last weights
    from safetensors.torch import load_file

    exported = load_file(str(tmp_path / "a.safetensors"))
    k = "fc.weight"
    torch.testing.assert_close(exported[k].float(), a["ema"][k].half().float())
    assert not torch.equal(a["ema"][k], a["model"][k])
    assert a["segments"][-1]["bf16"] == int(bf16) and a["segments"][-1]["ema_decay"] == 0.5


def test_resume_with_new_settings_adds_a_segment(tmp_path):
    train(tmp_path / "a", None, None, **TINY)
    record = train(tmp_path / "a", None, None, **dict(TINY, steps=6, ema_decay=0.9))
    starts = [(g["start"], g["steps"], g["ema_decay"]) for g in record["schedule_segments"]]
    assert starts == [(0, 4, 0.0), (4, 6, 0.9)]
    # checkpoints written before segments were dicts
    assert _segment([5000, 9000, 1]) == {"start": 5000, "steps": 9000, "lr": 1e-3, "augment": 1, "bf16": 0,
                                         "ema_decay": 0.0}


def test_precise_bn_averages_batch_statistics(tmp_path):
    from hdm.training.classifier import calibrate_bn, export_weights, precise_bn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    data = [(torch.randn(3, 8, 8) + i % 3, i % 2, 0) for i in range(12)]
    precise_bn(net, data, batch_size=4)
    with torch.no_grad():
        means = [net[0](torch.stack([d[0] for d in data[k:k + 4]])).mean(dim=(0, 2, 3)) for k in (0, 4, 8)]
    torch.testing.assert_close(net[1].running_mean, torch.stack(means).mean(0))
    assert not net.training and net[1].momentum == 0.1  # restored
    # on an exported shapes model: the record and card say what was done, and it cannot be done twice
    import torchvision

    model = torchvision.models.resnet50(num_classes=8)
    path = export_weights(model, tmp_path / "m.safetensors", {"size": 32, "heldout_n": 4, "heldout_seed": 1000})
    entry = calibrate_bn(path, None, None, n=8, batch_size=4, progress=False)
    assert entry["n"] == 8 and 0 <= entry["heldout_accuracy_after"] <= 1
    assert "precise BN after training" in (tmp_path / "m.md").read_text()
    with pytest.raises(ValueError, match="already"):
        calibrate_bn(path, None, None, n=8, progress=False)


def test_precise_bn_over_two_datasets_averages_all_their_batches():
    from hdm.training.classifier import precise_bn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    small = [(torch.randn(3, 8, 8), 0, 0) for _ in range(4)]
    large = [(torch.randn(3, 12, 12) + 2, 0, 0) for _ in range(4)]
    precise_bn(net, small, large, batch_size=4)
    with torch.no_grad():
        means = [net[0](torch.stack([d[0] for d in part])).mean(dim=(0, 2, 3)) for part in (small, large)]
    torch.testing.assert_close(net[1].running_mean, torch.stack(means).mean(0))


def test_fine_tuning_starts_from_the_given_weights_and_mixes_two_sizes(tmp_path):
    """``init``: with a zero learning rate the fine-tuned export has its parent's weights; ``mix_size``: odd steps after
    the warm-up at the second side, both accuracies recorded; the record and card name the parent."""
    from safetensors.torch import load_file

    from hdm.io.cards import sha256

    parent = tmp_path / "parent.safetensors"
    train(tmp_path / "p", None, None, export=parent, **TINY)
    record = train(tmp_path / "c", None, None, export=tmp_path / "child.safetensors", init=str(parent),
                   mix_size=48, **dict(TINY, lr=0.0))
    a, b = load_file(str(parent)), load_file(str(tmp_path / "child.safetensors"))
    for k in (k for k in a if "running_" not in k):  # BatchNorm statistics move even at lr 0
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert record["init"]["sha256"] == sha256(parent) and record["init"]["record"]["steps"] == TINY["steps"]
    assert record["mix_size"] == 48 and 0 <= record["heldout_accuracy_mix"] <= 1
    log = [json.loads(line) for line in (tmp_path / "c" / "log.jsonl").read_text().splitlines()]
    assert [e["val_size"] for e in log if "val_size" in e] == [48, 48]  # steps 2 and 4 (odd indices 1, 3)
    card = (tmp_path / "child.md").read_text()
    assert "fine-tuned from an earlier model" in card and "every other step at 48 px" in card
    assert f"started from `parent.safetensors` (sha256 `{sha256(parent)}`)" in card
    # a resumed fine-tuning keeps its parent
    train(tmp_path / "d", None, None, init=str(parent), stop_at=2, **TINY)
    resumed = train(tmp_path / "d", None, None, init=str(parent), **TINY)
    assert resumed["init"]["sha256"] == sha256(parent)
