"""The CAM benchmark end to end on a tiny random model, and its commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from hdm.bench import cam as cb
from hdm.bench.shapes import ShapesDataset, to_tensor
from hdm.cli import main


@pytest.fixture(scope="module")
def tiny_resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet50(num_classes=8).eval()


def test_evaluate_runs_every_method_and_metric(tiny_resnet):
    data = ShapesDataset(4, seed=0, size=32)
    methods = cb.default_methods(tiny_resnet, theta=[0.0, 1.0])
    assert {"Grad-CAM++ (layer4)", "LayerCAM (layers 1-4)", "HDM-CAM (exp)", "HDM-CAM (inverse)",
            "HDM-CAM (learned)", "HDM-CAM tuned", "random", "Sobel"} <= set(methods)
    result = cb.evaluate(tiny_resnet, data, methods, batch_size=3, steps=4, progress=False)
    assert result.n == 4 and 0 <= result.accuracy <= 1
    for name, values in result.values.items():
        assert set(values) == {k for k, *_ in cb.METRICS}, name
        for key, v in values.items():
            assert v.shape == (4,), (name, key)
        assert np.all((values["auc"] >= 0) & (values["auc"] <= 1))
        assert result.seconds[name] > 0
    summary = cb.summarize(result, n_boot=100)
    assert set(summary["comparisons"]) == set(cb.REFERENCES)
    for ref, comps in summary["comparisons"].items():
        assert set(comps) <= set(cb.BASELINES) | set(cb.REFERENCES) and "Grad-CAM++ (layer4)" in comps
        assert ref not in comps
    # the tuned HDM-CAM is compared with the paper's, and the bootstrap is of the paired differences
    c = summary["comparisons"]["HDM-CAM tuned"]["HDM-CAM (exp)"]["miou"]
    diff = result.values["HDM-CAM tuned"]["miou"] - result.values["HDM-CAM (exp)"]["miou"]
    assert c["diff"] == pytest.approx(diff.mean()) and c["diff_lo"] <= c["diff"] <= c["diff_hi"]
    text = cb.markdown(summary, ["# title", ""])
    # method table: 4 alpha modes + tuned; goal table: 2 rows each; the tuned one's CI table: 1 row for the paper's
    assert text.count("\n| HDM-CAM (") == 4 + 2 + 1 and text.count("\n| HDM-CAM tuned |") == 1 + 2 and "Goal" in text


def test_floors_behave_as_floors():
    data = ShapesDataset(16, seed=1, size=64)
    x = torch.stack([data[i][0] for i in range(16)])
    masks = [data.sample(i).mask for i in range(16)]
    rnd = cb.random_map(0)(x, None)
    assert rnd.shape == (16, 64, 64)
    from hdm.cam.metrics import pixel_auc
    assert abs(np.mean([pixel_auc(c, m) for c, m in zip(rnd, masks)]) - 0.5) < 0.05
    # Sobel: zero on flat regions, highest on edges, whatever the model
    img = np.full((32, 32, 3), 90, dtype=np.uint8)
    img[8:24, 8:24] = 230
    sob = cb.sobel_map(to_tensor(img)[None])[0]
    assert sob.min() >= 0 and sob.max() == pytest.approx(1, abs=1e-6)
    assert sob[12:20, 12:20].max() == 0 and sob[:5].max() == 0
    assert sob[8, 12:20].min() > 0.5 and sob[16, 7] > 0.5


def test_eval_and_fit_theta_commands(tmp_path, capsys):
    theta = tmp_path / "theta.json"
    assert main(["fit-theta", "--weights", "random", "--n", "4", "--size", "32", "--batch", "2", "--epochs", "1",
                 "--out", str(theta)]) == 0
    fitted = json.loads(theta.read_text())
    assert len(fitted["theta"]) == 2 and set(fitted["objective"]) == {"exp", "inverse", "equal", "learned"}
    out, js = tmp_path / "cam.md", tmp_path / "cam.json"
    assert main(["eval-cam", "--weights", "random", "--theta", str(theta), "--n", "4", "--size", "32", "--batch", "4",
                 "--steps", "2", "--bootstrap", "50", "--ablations", "2", "--out", str(out), "--json", str(js)]) == 0
    text = out.read_text()
    assert "- command: `" in text and "- date: " in text and "random stand-in" in text
    assert "HDM-CAM (learned)" in text and "Ablations" in text and "Learned scale weights" in text
    summary = json.loads(js.read_text())
    assert summary["methods"]["HDM-CAM (exp)"]["miou"] >= 0
    assert "deletion" in summary["comparisons"]["HDM-CAM (exp)"]["Grad-CAM++ (layer4)"]


def test_commands_fail_clearly(tmp_path, capsys):
    assert main(["eval-cam", "--weights", str(tmp_path / "none.safetensors")]) == 2
    assert "no weights file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse checks the folder: usage error, exit 2
        main(["eval-cam", "--weights", "random", "--backgrounds", str(tmp_path / "nope")])
    assert e.value.code == 2 and "no folder at" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse checks the file: usage error, exit 2
        main(["eval-cam", "--weights", "random", "--theta", str(tmp_path / "t.json")])
    assert e.value.code == 2 and "no file at" in capsys.readouterr().err


def test_exported_weights_load_back_with_their_card(tmp_path, tiny_resnet):
    import hashlib

    from hdm.bench.shapes import CLASSES
    from hdm.cam.classifiers import load_shapes_resnet50, shapes_theta_path
    from hdm.training.classifier import export_weights, write_model_card

    path = export_weights(tiny_resnet, tmp_path / "m.safetensors", {"heldout_accuracy": 0.5, "steps": 3})
    loaded = load_shapes_resnet50(path)
    assert loaded.categories == list(CLASSES) and "0.5000" in loaded.note
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # fp16 storage: close to the float32 model, not equal
        torch.testing.assert_close(loaded.model(x), tiny_resnet(x), atol=0.05, rtol=0.05)
    shapes_theta_path(path).write_text(json.dumps({"theta": [0.1, 0.2], "alpha": [0.52, 0.55], "objective": {"exp": 1.0},
                                                   "calibration": {"n": 4, "seed": 3000, "backgrounds": "procedural"}}))
    card = write_model_card(path).read_text()
    assert hashlib.sha256(path.read_bytes()).hexdigest() in card
    assert "0.5000" in card and "theta = [0.1, 0.2]" in card


def test_best_ablation_picks_the_highest_mean_iou_variant():
    from hdm.bench.cam import ABLATIONS, best_ablation

    names = list(ABLATIONS)
    summary = {"methods": {names[0]: {"miou": 0.2}, names[3]: {"miou": 0.31}, names[5]: {"miou": 0.3},
                           "Grad-CAM (layer4)": {"miou": 0.9}}}  # not a variant: never picked
    assert best_ablation(summary) == (names[3], ABLATIONS[names[3]])
    assert best_ablation(summary)[1] is not ABLATIONS[names[3]]  # a copy: TUNED edits cannot leak back
    with pytest.raises(ValueError, match="none of the ablation variants"):
        best_ablation({"methods": {"Grad-CAM (layer4)": {"miou": 0.9}}})
