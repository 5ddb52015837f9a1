"""The CAM benchmark end to end on a tiny random model, and its commands."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torchvision

from hdm.bench import cam as cb
from hdm.bench.stats import ci_text
from hdm.cli import main
from hdm.data.shapes import ShapesDataset
from hdm.errors import BadArgument
from hdm.io.images import to_model_input


@pytest.fixture(scope="module")
def tiny_resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet50(num_classes=8).eval()


def test_evaluate_runs_every_method_and_metric(tiny_resnet, tmp_path):
    data = ShapesDataset(4, seed=0, size=32)
    methods = cb.default_methods(tiny_resnet, theta=[0.0, 1.0], score_cam=False)
    assert {"Grad-CAM++ (layer4)", "LayerCAM (layers 1-4)", "HDM-CAM (exp)", "HDM-CAM (inverse)",
            "HDM-CAM (learned)", "HDM-CAM tuned", "random", "Sobel", "centre prior", "ShapleyCAM (layers 1-4)",
            "RefineCAM (layers 1-4)", "XGrad-CAM (layer4)", "HiResCAM (layers 1-4)"} <= set(methods)
    result = cb.evaluate(tiny_resnet, data, methods, batch_size=3, steps=4, road=(50,), limits={"Sobel": 2},
                         progress=False)
    assert result.n == 4 and 0 <= result.accuracy <= 1 and result.meta["labels"] == [0, 1, 2, 3]
    for name, values in result.values.items():
        assert set(values) == {k for k, *_ in cb.METRICS}, name
        for key, v in values.items():
            assert v.shape == (4,), (name, key)
            assert np.isnan(v).sum() == (2 if name == "Sobel" else 0), (name, key)  # the subset: 2 of 4 images
        ok = ~np.isnan(values["auc"])
        assert np.all((values["auc"][ok] >= 0) & (values["auc"][ok] <= 1))
        np.testing.assert_allclose(values["road"], (values["road_lerf"] - values["road_morf"]) / 2)
        assert result.seconds[name] > 0
    rows = list(csv.DictReader(cb.write_csv(tmp_path / "v.csv", {"test": result}).open()))
    assert len(rows) == 4 * len(methods) and rows[0]["table"] == "test" and rows[0]["label"] == "0"
    sobel = [r for r in rows if r["method"] == "Sobel"]
    assert [r["miou"] == "" for r in sobel] == [False, False, True, True]
    assert float(sobel[1]["road"]) == result.values["Sobel"]["road"][1]
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
    # method table: 4 alpha modes + the subband reading + tuned; the tuned one's CI table: 1 row for the paper's;
    # goal table: 1 row each
    assert text.count("\n| HDM-CAM (") == 5 + 1 + 1 and text.count("\n| HDM-CAM tuned |") == 1 + 1 and "Goal" in text


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
    sob = cb.sobel_map(to_model_input(img, size=None))[0]
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
    table = tmp_path / "cam.csv"
    argv = ["eval-cam", "--weights", "random", "--theta", str(theta), "--n", "4", "--size", "32", "--batch", "2",
            "--steps", "2", "--bootstrap", "50", "--road-percentiles", "50", "--score-cam", "0",
            "--checkpoint", str(tmp_path / "ck"), "--out", str(out), "--json", str(js), "--csv", str(table)]
    capsys.readouterr()
    assert main([*argv, "--shard", "2/2"]) == 0  # the second of two shards: no table until the first is done
    assert "shard 2 of 2 is done" in capsys.readouterr().out and not out.exists()
    assert main([*argv, "--shard", "1/2"]) == 0
    text = out.read_text()
    assert "- command: `" in text and "- date: " in text and "random stand-in" in text
    assert "HDM-CAM (learned)" in text and "Learned scale weights" in text and "ROAD" in text
    rows = list(csv.DictReader(table.open()))
    assert {r["method"] for r in rows} >= {"centre prior", "RefineCAM (layers 1-4)"}
    assert "Score-CAM (layer4)" not in {r["method"] for r in rows}  # --score-cam 0: not run
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

    from hdm.cam.classifiers import load_shapes_resnet50, shapes_theta_path
    from hdm.data.shapes import CLASSES
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


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(3)
    return torchvision.models.resnet18(num_classes=8).eval()


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_package_peers_are_the_package_and_leave_no_hooks(resnet18):
    import pytorch_grad_cam as pgc  # the reference: the grad-cam package (requirements-dev.txt)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget

    x, labels = torch.randn(2, 3, 64, 64), [1, 5]
    peers = cb.package_peers(resnet18, score_cam=False)
    assert _hooks(resnet18) == 0
    layers = [getattr(resnet18, n) for n in cb.LAYERS]
    for name, cls in (("XGrad-CAM (layers 1-4)", pgc.XGradCAM), ("HiResCAM (layer4)", pgc.HiResCAM)):
        with cls(resnet18, layers if "1-4" in name else layers[-1:]) as ref:
            expected = ref(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in labels])
        np.testing.assert_allclose(peers[name](x, labels), expected, atol=1e-6)
        assert _hooks(resnet18) == 0, name
    # RefineCAM keeps one hooked method per layer: all are released after the call
    refine = pgc.RefineCAM(resnet18, layers)
    expected = refine(x, [ClassifierOutputTarget(c) for c in labels])
    for c in refine.base_cam_per_layer:
        c.activations_and_grads.release()
    np.testing.assert_allclose(peers["RefineCAM (layers 1-4)"](x, labels), expected, atol=1e-6)
    assert _hooks(resnet18) == 0
    # ShapleyCAM: its ReST score, and layers 1-4 as the package's mean of its single-layer maps
    rest = [ClassifierOutputReST(c) for c in labels]
    single = []
    for layer in layers:
        with pgc.ShapleyCAM(resnet18, [layer]) as ref:
            single.append(ref(input_tensor=x, targets=rest))
    np.testing.assert_allclose(peers["ShapleyCAM (layer4)"](x, labels), single[-1], atol=1e-6)
    mean = np.mean(single, axis=0)
    mean = (mean - mean.min(axis=(1, 2), keepdims=True))
    mean /= mean.max(axis=(1, 2), keepdims=True) + 1e-7
    np.testing.assert_allclose(peers["ShapleyCAM (layers 1-4)"](x, labels), mean, atol=1e-5)
    assert _hooks(resnet18) == 0


def test_shapley_cam_of_a_logit_is_grad_cam_in_a_relu_network(resnet18):
    """Why ShapleyCAM explains ReST: the Hessian-vector product of a class logit is zero in a ReLU network."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = torch.randn(2, 3, 64, 64)
    targets = [ClassifierOutputTarget(2), ClassifierOutputTarget(4)]
    with pgc.ShapleyCAM(resnet18, [resnet18.layer3]) as shapley, pgc.GradCAM(resnet18, [resnet18.layer3]) as grad:
        np.testing.assert_allclose(shapley(input_tensor=x, targets=targets), grad(input_tensor=x, targets=targets),
                                   atol=1e-6)


def test_score_cam_peer_runs_image_by_image_without_progress_bars(capsys):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    model.layer4 = torch.nn.Sequential(torch.nn.Conv2d(256, 8, 1), torch.nn.ReLU())  # 8 channels: 8 passes
    model.fc = torch.nn.Linear(8, 3)
    x = torch.randn(3, 3, 32, 32)
    fn = cb.package_cam(model, "ScoreCAM", ["layer4"], images_per_call=1, batch_size=4)
    ours = fn(x, [0, 1, 2])
    assert "it/s" not in capsys.readouterr().err and _hooks(model) == 0
    with pgc.ScoreCAM(model, [model.layer4]) as ref:
        ref.batch_size = 4
        expected = ref(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in (0, 1, 2)])
    np.testing.assert_allclose(ours, expected, atol=1e-5)  # one image vs three per call: float32 rounding


def test_centre_prior_is_a_centred_gaussian_of_the_stated_width():
    cam = cb.centre_prior()(torch.zeros(2, 3, 65, 33), None)
    assert cam.shape == (2, 65, 33) and cam[0, 32, 16] == pytest.approx(1)
    # one standard deviation (CENTRE_SIGMA x the side) from the centre: exp(-1/2)
    assert cam[1, 32 + round(cb.CENTRE_SIGMA * 64), 16] == pytest.approx(np.exp(-0.5 * (16 / 16.25) ** 2), rel=1e-6)
    assert cam[0, 32, 16 + 8] == pytest.approx(np.exp(-0.5 * (8 / (cb.CENTRE_SIGMA * 33)) ** 2), rel=1e-6)


def _hand_result():
    """3 images, 2 methods (an HDM-CAM and one peer) and a floor, with values whose summaries are known by hand."""
    ref = {"auc": [0.9, 0.8, 0.7], "miou": [0.30, 0.20, 0.25], "insertion": [0.6, 0.5, 0.7], "road": [0.2, 0.1, 0.3],
           "deletion": [0.1, 0.2, 0.3]}
    peer = {"auc": [0.6, 0.7, 0.8], "miou": [0.25, 0.15, 0.20], "insertion": [0.6, 0.5, 0.7], "road": [0.3, 0.2, 0.4],
            "deletion": [0.2, 0.2, 0.2]}
    floor = {k: [0.99, 0.99, 0.99] for k in ref}  # a floor never counts as the best peer
    values = {m: {k: np.array(v, dtype=float) for k, v in d.items()}
              for m, d in (("HDM-CAM (exp)", ref), ("Grad-CAM++ (layer4)", peer), ("centre prior", floor))}
    return cb.EvalResult(values, {"HDM-CAM (exp)": 0.02, "Grad-CAM++ (layer4)": 0.01, "centre prior": 0.0}, 3, 2 / 3,
                         {"labels": [0, 1, 2], "limits": {"centre prior": 2}})


def test_results_writer_on_a_case_known_by_hand():
    result = _hand_result()
    summary = cb.summarize(result, references=("HDM-CAM (exp)",), n_boot=500)
    m = summary["methods"]
    assert m["HDM-CAM (exp)"]["auc"] == pytest.approx(0.8) and m["Grad-CAM++ (layer4)"]["auc"] == pytest.approx(0.7)
    assert m["HDM-CAM (exp)"]["miou"] == pytest.approx(0.25) and m["Grad-CAM++ (layer4)"]["miou"] == pytest.approx(0.2)
    c = summary["comparisons"]["HDM-CAM (exp)"]["Grad-CAM++ (layer4)"]
    # paired differences: auc (+0.3, +0.1, -0.1) -> mean +0.1, the interval within [-0.1, +0.3];
    # mean IoU and ROAD differ by a constant (+0.05, -0.1): the interval has no width; insertion: equal
    assert c["auc"]["diff"] == pytest.approx(0.1)
    assert -0.1 - 1e-12 <= c["auc"]["diff_lo"] < 0.1 < c["auc"]["diff_hi"] <= 0.3 + 1e-12
    assert (c["miou"]["diff"], c["miou"]["diff_lo"], c["miou"]["diff_hi"]) == pytest.approx((0.05, 0.05, 0.05))
    assert c["miou"]["ratio"] == pytest.approx(1.25)
    assert (c["road"]["diff"], c["road"]["diff_lo"], c["road"]["diff_hi"]) == pytest.approx((-0.1, -0.1, -0.1))
    assert (c["insertion"]["diff"], c["insertion"]["diff_lo"], c["insertion"]["diff_hi"]) == (0, 0, 0)
    text = cb.markdown(summary, ["# t", ""])
    assert "Model accuracy on these images: 0.6667 (3 images)" in text
    assert "| HDM-CAM (exp) | 0.800 | 0.250 | 0.200 | 0.600 | 0.200 | 20.0 |" in text  # auc, miou, deletion, ins., ROAD
    assert "| Grad-CAM++ (layer4) | 0.700 | 0.200 | 0.200 | 0.600 | 0.300 | 10.0 |" in text
    assert "| centre prior † |" in text and "† centre prior: on the first 2 images only" in text
    row = next(line for line in text.splitlines() if line.startswith("| Grad-CAM++ (layer4) | +"))
    assert "| +0.050 [+0.050, +0.050]* |" in row and "| -0.100 [-0.100, -0.100]* |" in row
    assert "| +0.000 [+0.000, +0.000] |" in row  # insertion: equal, no star
    # the goal: AUC 0.8 >= 0.7 + 0.01 and IoU 1.25x met, insertion no worse, ROAD worse (CI below zero): not met
    goal = cb.goal_check(summary, "HDM-CAM (exp)")
    assert goal["auc"]["met"] and goal["miou"]["met"] and goal["insertion"]["met"] and not goal["road"]["met"]
    assert not goal["met"]
    assert all(goal[k]["peer"] == "Grad-CAM++ (layer4)" for k in ("auc", "miou", "insertion", "road"))
    goal_line = next(line for line in text.splitlines() if line.startswith("| HDM-CAM (exp) | 0.800 vs"))
    assert goal_line.endswith("| no |") and "1.250x (Grad-CAM++ (layer4)): yes" in goal_line
    assert "-0.100 [-0.100, -0.100] (Grad-CAM++ (layer4)): no" in goal_line


def test_goal_check_takes_the_best_peer_per_metric():
    def entry(diff_lo, diff_hi):
        return {"diff": (diff_lo + diff_hi) / 2, "diff_lo": diff_lo, "diff_hi": diff_hi}

    summary = {"methods": {"HDM-CAM tuned": {"auc": 0.96, "miou": 0.33, "insertion": 0.8, "road": 0.1},
                           "A": {"auc": 0.95, "miou": 0.20, "insertion": 0.82, "road": 0.05},
                           "B": {"auc": 0.90, "miou": 0.30, "insertion": 0.70, "road": 0.12},
                           "HDM-CAM (exp)": {"auc": 0.99, "miou": 0.9, "insertion": 0.9, "road": 0.9},
                           "Sobel": {"auc": 0.99, "miou": 0.9, "insertion": 0.9, "road": 0.9}},
               "comparisons": {"HDM-CAM tuned": {
                   "A": {"insertion": entry(-0.03, -0.01), "road": entry(0.0, 0.1)},
                   "B": {"insertion": entry(0.05, 0.15), "road": entry(-0.05, 0.01)},
                   "HDM-CAM (exp)": {}, "Sobel": {}}}}
    goal = cb.goal_check(summary, "HDM-CAM tuned")
    assert goal["auc"]["peer"] == "A" and goal["auc"]["met"]             # 0.96 >= 0.95 + 0.01
    assert goal["miou"]["peer"] == "B" and goal["miou"]["ratio"] == pytest.approx(1.1) and goal["miou"]["met"]
    assert goal["insertion"]["peer"] == "A" and not goal["insertion"]["met"]  # CI below zero
    assert goal["road"]["peer"] == "B" and goal["road"]["met"]               # CI straddles zero
    assert not goal["met"]
    summary["methods"]["HDM-CAM tuned"]["auc"] = 0.959
    assert not cb.goal_check(summary, "HDM-CAM tuned")["auc"]["met"]
    assert cb.goal_check(summary, "nobody") is None
    # a peer on a subset of the images (Score-CAM) is not the best peer: its means are over other images
    summary.update(n=300, meta={"limits": {"A": 16}})
    assert cb.goal_check(summary, "HDM-CAM tuned")["auc"]["peer"] == "B"


def test_road_on_a_subset_of_images(resnet18):
    data = ShapesDataset(3, seed=0, size=32)
    methods = {"centre prior": cb.centre_prior(), "random": cb.random_map(0)}
    result = cb.evaluate(resnet18, data, methods, batch_size=2, steps=2, road=(50,), road_n=1, progress=False)
    for d in result.values.values():
        assert [np.isnan(d["road"][i]) for i in range(3)] == [False, True, True]
        assert not np.isnan(d["insertion"]).any()
    summary = cb.summarize(result, references=("centre prior",), baselines=["random"], n_boot=10)
    c = summary["comparisons"]["centre prior"]["random"]
    assert c["road"]["n"] == 1 and np.isnan(c["road"]["diff"]) and c["insertion"]["n"] == 3  # one pair: no interval
    text = cb.markdown(summary, ["# t"])
    assert "ROAD (percentiles [50]): on the first 1 images" in text
    # all the faithfulness metrics on the first 2 images (ROAD still on the first 1), the maps on all 3
    part = cb.evaluate(resnet18, data, methods, batch_size=2, steps=2, road=(50,), road_n=1, faithfulness_n=2,
                       progress=False)
    for name, d in part.values.items():
        for k in ("deletion", "insertion", "avg_drop", "increase"):
            np.testing.assert_allclose(d[k][:2], result.values[name][k][:2], rtol=1e-6, err_msg=f"{name} {k}")
            assert np.isnan(d[k][2])
        assert np.array_equal(d["road"], result.values[name]["road"], equal_nan=True)
        assert np.array_equal(d["miou"], result.values[name]["miou"])
    part_text = cb.markdown(cb.summarize(part, references=("centre prior",), baselines=["random"], n_boot=10),
                            ["# t"])
    assert "Average Drop and Increase in Confidence: on the first 2 images" in part_text
    assert "ROAD (percentiles [50]): on the first 1 images" in part_text
    row = [line for line in text.splitlines() if line.startswith("| random | ")][-1]  # the comparisons table
    assert row.endswith("| - | - | - | " + " | ".join(ci_text(c[k], star=True) for k in ("avg_drop", "increase")) + " |")


def test_a_stopped_evaluation_resumes_from_its_checkpoint(resnet18, tmp_path):
    """A run that stops after its first batch and is started again with the same checkpoint folder gives the
    values of an uninterrupted run; a finished run is read back without calling a method; other settings
    start afresh in their own file."""
    data = ShapesDataset(5, seed=0, size=32)
    calls = []

    def methods(fail_after=None):
        def sobel(x, targets):
            calls.append(len(x))
            if fail_after is not None and len(calls) > fail_after:
                raise KeyboardInterrupt
            return cb.sobel_map(x)
        return {"random": cb.random_map(3), "Sobel": sobel}

    run = {"batch_size": 2, "steps": 2, "road": (50,), "progress": False}
    whole = cb.evaluate(resnet18, data, methods(), **run)
    with pytest.raises(KeyboardInterrupt):
        cb.evaluate(resnet18, data, methods(fail_after=len(calls) + 1), checkpoint=tmp_path / "ck", **run)
    files = list((tmp_path / "ck").glob("eval-*.json"))
    assert len(files) == 1 and list(json.loads(files[0].read_text())["batches"]) == ["0"]
    calls.clear()
    resumed = cb.evaluate(resnet18, data, methods(), checkpoint=tmp_path / "ck", **run)
    assert calls == [2, 1]  # images 2-3 and 4 only
    assert resumed.meta["labels"] == whole.meta["labels"] and resumed.accuracy == whole.accuracy
    for name, d in whole.values.items():
        for k, v in d.items():
            np.testing.assert_allclose(resumed.values[name][k], v, rtol=1e-6, err_msg=f"{name} {k}")
    calls.clear()
    again = cb.evaluate(resnet18, data, methods(), checkpoint=tmp_path / "ck", **run)
    assert calls == [] and np.array_equal(again.values["Sobel"]["miou"], whole.values["Sobel"]["miou"])
    cb.evaluate(resnet18, data, methods(), checkpoint=tmp_path / "ck", **{**run, "steps": 3})
    assert len(list((tmp_path / "ck").glob("eval-*.json"))) == 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadArgument, match="is a file"):
        cb.evaluate(resnet18, data, methods(), checkpoint=tmp_path / "file", **run)
    files[0].write_text('{"done": 2}')  # a damaged checkpoint: a clear error, never other figures
    with pytest.raises(BadArgument, match="delete it"):
        cb.evaluate(resnet18, data, methods(), checkpoint=tmp_path / "ck", **run)
    cb.evaluate(resnet18, data, methods(), checkpoint=tmp_path / "ck", describe={"theta": [1.0]}, **run)
    assert len(list((tmp_path / "ck").glob("eval-*.json"))) == 3  # what the methods depend on is in the name


def test_shards_share_an_evaluation_and_meet_in_the_checkpoint(resnet18, tmp_path):
    """Two shards run alternate batches, each in its own file; the one that completes the folder returns the
    values of a single whole run; a shard without a checkpoint or out of range is a clear error."""
    data = ShapesDataset(5, seed=0, size=32)
    calls = []

    def sobel(x, targets):
        calls.append(len(x))
        return cb.sobel_map(x)

    methods = {"random": cb.random_map(3), "Sobel": sobel}
    run = {"batch_size": 2, "steps": 2, "road": (50,), "road_n": 3, "progress": False}
    whole = cb.evaluate(resnet18, data, methods, **run)
    calls.clear()
    assert cb.evaluate(resnet18, data, methods, checkpoint=tmp_path, shard=(1, 2), **run) is None
    assert calls == [2]  # the second batch (images 2-3) only
    calls.clear()
    first = cb.evaluate(resnet18, data, methods, checkpoint=tmp_path, shard=(0, 2), **run)
    assert calls == [2, 1]  # images 0-1 and 4; the folder is then complete
    assert sorted(p.name.split(".")[1] for p in tmp_path.glob("eval-*.json")) == ["shard1of2", "shard2of2"]
    assert first.meta["labels"] == whole.meta["labels"] and first.accuracy == whole.accuracy
    for name, d in whole.values.items():
        for k, v in d.items():
            np.testing.assert_allclose(first.values[name][k], v, rtol=1e-6, err_msg=f"{name} {k}")
    calls.clear()
    again = cb.evaluate(resnet18, data, methods, checkpoint=tmp_path, **run)  # no shard: reads both, runs none
    assert calls == [] and np.array_equal(again.values["Sobel"]["road"], whole.values["Sobel"]["road"], equal_nan=True)
    with pytest.raises(BadArgument, match="needs a checkpoint"):
        cb.evaluate(resnet18, data, methods, shard=(0, 2), **run)
    with pytest.raises(BadArgument, match="does not exist"):
        cb.evaluate(resnet18, data, methods, checkpoint=tmp_path, shard=(2, 2), **run)


def test_model_accuracy_per_side_and_fit_theta_at_the_training_side(tmp_path, tiny_resnet, capsys):
    from hdm.cam.classifiers import load_shapes_resnet50
    from hdm.training.classifier import export_weights

    path = export_weights(tiny_resnet, tmp_path / "m.safetensors", {"size": 40, "heldout_accuracy": 0.5})
    out = tmp_path / "acc.md"
    assert main(["eval-cam-model", "--weights", str(path), "--sizes", "32", "48", "--n", "6", "--seed", "5",
                 "--out", str(out)]) == 0
    model = load_shapes_resnet50(path).model
    expected = []
    for side in (32, 48):
        data = ShapesDataset(6, seed=5, size=side)
        with torch.no_grad():
            pred = model(torch.stack([data[i][0] for i in range(6)])).argmax(1)
        expected.append(float((pred == torch.tensor([data[i][1] for i in range(6)])).float().mean()))
    row = [line for line in out.read_text().splitlines() if line.startswith(f"| {path} |")]
    assert len(row) == 1 and row[0].endswith(f"| {expected[0]:.4f} | {expected[1]:.4f} |") and "| 40 px |" in row[0]
    assert main(["eval-cam-model", "--weights", str(path), "--sizes", "8"]) == 2
    assert "at least 32 px" in capsys.readouterr().err
    theta = tmp_path / "theta.json"
    assert main(["fit-theta", "--weights", str(path), "--n", "2", "--batch", "2", "--epochs", "1",
                 "--out", str(theta)]) == 0
    assert json.loads(theta.read_text())["calibration"]["size"] == 40


def test_a_flat_map_is_scored_as_uninformative(resnet18):
    """A method that finds no evidence (all-zero maps): flagged in the flat column, AUC 0.5, pointing and energy
    the mask's area fraction, and the random floor's pixel order for every faithfulness metric."""
    data = ShapesDataset(3, seed=0, size=32)
    methods = {"nothing": lambda x, targets: np.zeros((len(x), *x.shape[-2:]), np.float32),
               "random 0": cb.random_map(0), "Sobel": cb.sobel_map}
    r = cb.evaluate(resnet18, data, methods, batch_size=2, steps=2, road=(50,), progress=False)
    area = np.array([data.sample(i).mask.mean() for i in range(3)])
    assert r.values["nothing"]["flat"].tolist() == [1.0] * 3 and r.values["Sobel"]["flat"].tolist() == [0.0] * 3
    np.testing.assert_allclose(r.values["nothing"]["auc"], 0.5)
    np.testing.assert_allclose(r.values["nothing"]["pointing"], area)
    np.testing.assert_allclose(r.values["nothing"]["energy"], area)
    for key in cb.FAITHFULNESS:
        np.testing.assert_allclose(r.values["nothing"][key], r.values["random 0"][key], err_msg=key)
    text = cb.markdown(cb.summarize(r, n_boot=20), ["# t"])
    assert "Flat maps" in text and "| nothing | 0.500 |" in text


def test_remeasured_rows_and_carried_rows_make_the_table_of_a_whole_run(tmp_path, capsys):
    """``--remeasure ROW ... --base JSON`` re-runs those rows, re-checks the maps of the others and carries their
    values: the table equals a whole run's; a carried row whose maps changed, an unknown row or a missing base
    are clear errors."""
    common = ["eval-cam", "--weights", "random", "--n", "4", "--size", "32", "--batch", "2", "--steps", "2",
              "--bootstrap", "50", "--road-percentiles", "50", "--score-cam", "0"]
    whole = tmp_path / "whole.json"
    assert main([*common, "--json", str(whole), "--csv", str(whole.with_suffix(".csv")),
                 "--out", str(whole.with_suffix(".md"))]) == 0
    part = tmp_path / "part.json"
    rows = ["HDM-CAM (exp)", "Sobel"]
    assert main([*common, "--remeasure", *rows, "--base", str(whole), "--json", str(part),
                 "--csv", str(part.with_suffix(".csv")), "--out", str(part.with_suffix(".md"))]) == 0
    a, b = cb.read_result(whole), cb.read_result(part)
    assert list(a.values) == list(b.values) and a.meta["labels"] == b.meta["labels"]
    for name, d in a.values.items():
        for k, v in d.items():
            np.testing.assert_allclose(b.values[name][k], v, rtol=1e-6, err_msg=f"{name} {k}")
    text = part.with_suffix(".md").read_text()
    assert "Re-measured by this run: HDM-CAM (exp), Sobel." in text
    assert "found every localisation value of every image unchanged to float rounding" in text
    assert "at most): Grad-CAM (layer4), " in text
    assert f"(run of {a.meta['date']})" in text

    lines = whole.with_suffix(".csv").read_text().splitlines()
    head = lines[0].split(",")
    for i, line in enumerate(lines):
        cells = line.split(",")
        if cells[3] == "Grad-CAM (layer4)" and cells[1] == "0":
            cells[head.index("auc")] = repr(float(cells[head.index("auc")]) + 0.02)
            lines[i] = ",".join(cells)
    whole.with_suffix(".csv").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main([*common, "--remeasure", *rows, "--base", str(whole)]) == 2
    assert "maps of 'Grad-CAM (layer4)' changed" in capsys.readouterr().err
    assert main([*common, "--remeasure", "HDM-CAM (nope)", "--base", str(whole)]) == 2
    assert "no row named 'HDM-CAM (nope)'" in capsys.readouterr().err
    assert main([*common, "--remeasure", "Sobel"]) == 2
    assert "--remeasure needs --base" in capsys.readouterr().err
    assert main([*common, "--steps", "3", "--remeasure", "Sobel", "--base", str(whole)]) == 2
    assert "steps = 2" in capsys.readouterr().err


def test_carried_rows_tolerate_float_rounding_but_not_a_changed_map():
    rng = np.random.default_rng(0)
    old = rng.random(300)
    assert cb._same_maps(old, old + 1e-6 * rng.standard_normal(300), "auc", cb.CARRY_TOLERANCE) == ""
    bumped = old.copy()
    bumped[7] += 0.003  # one image across an IoU threshold
    assert cb._same_maps(old, bumped, "miou", cb.CARRY_TOLERANCE) == ""
    assert "image 7" in cb._same_maps(old, old + np.eye(300)[7] * 0.05, "auc", cb.CARRY_TOLERANCE)
    assert "on average" in cb._same_maps(old, old + 0.005, "auc", cb.CARRY_TOLERANCE)
    hits = (old > 0.5).astype(float)
    flipped = hits.copy()
    flipped[:2] = 1 - flipped[:2]
    assert cb._same_maps(hits, flipped, "pointing", cb.CARRY_TOLERANCE) == ""  # 2 of 300
    flipped[:10] = 1 - hits[:10]
    assert "differs on 10 of 300" in cb._same_maps(hits, flipped, "pointing", cb.CARRY_TOLERANCE)
