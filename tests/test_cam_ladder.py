"""The ablation ladder: the choice rule on hand-built results, the walk, the test-split report and its command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from hdm.bench import cam_ladder as L
from hdm.bench.cam import EvalResult
from hdm.cam import HDMCAM, TUNED
from hdm.cli import main

BASE = np.array([0.20, 0.30, 0.25, 0.35, 0.15, 0.22])


def _result(values: dict) -> EvalResult:
    vals = {m: {k: np.asarray(v, dtype=float) for k, v in d.items()} for m, d in values.items()}
    return EvalResult(vals, {m: 0.01 for m in vals}, len(BASE), 1.0, {})


def test_choose_keeps_the_incumbent_unless_a_challenger_is_significantly_better_and_no_worse():
    wobble = np.array([0.02, -0.02, 0.01, -0.01, 0.02, -0.02])
    result = _result({
        "A": {"miou": BASE, "auc": BASE + 0.5},
        "B": {"miou": BASE + 0.05, "auc": BASE + 0.5},           # better on IoU, equal AUC: qualifies
        "C": {"miou": BASE + 0.10, "auc": BASE + 0.45},          # better still, but AUC significantly worse
        "D": {"miou": BASE + wobble, "auc": BASE + 0.6},         # IoU not significantly different
    })
    options = {"a": "A", "b": "B", "c": "C", "d": "D"}
    choice, reason = L.choose(result, options, "a", n_boot=200)
    assert choice == "b" and "beats" in reason
    # without B, nothing qualifies: the incumbent stays
    assert L.choose(result, {"a": "A", "c": "C", "d": "D"}, "a", n_boot=200)[0] == "a"
    # with only IoU as guard-free criterion, C wins (the highest gain)
    assert L.choose(result, options, "a", guards=(), n_boot=200)[0] == "c"
    # a lower-is-better primary metric: the challenger must lower it
    low = _result({"A": {"deletion": BASE}, "B": {"deletion": BASE - 0.05}, "C": {"deletion": BASE + 0.05}})
    assert L.choose(low, {"a": "A", "b": "B", "c": "C"}, "a", metric="deletion", n_boot=200)[0] == "b"
    with pytest.raises(ValueError, match="incumbent"):
        L.choose(result, options, "z")
    with pytest.raises(ValueError, match="lacks"):
        L.choose(result, {"a": "A", "e": "E"}, "a")


def test_walk_follows_the_rule_rung_by_rung():
    """A fake evaluator whose mean IoU is a known function of the configuration: +0.05 for modulated bands,
    +0.03 for the product fusion, +0.001 (not significant with a wobble) for the softmax target."""
    calls = []
    wobble = np.array([0.02, -0.02, 0.01, -0.01, 0.02, -0.02])

    def evaluate(configs):
        calls.append(configs)
        out = {}
        for name, c in configs.items():
            v = BASE + 0.05 * (c["bands"] == "modulate") + 0.03 * (c["layer_fusion"] == "product")
            if c["target"] == "softmax":
                v = v + 0.001 + wobble
            out[name] = {"miou": v, "auc": np.full(6, 0.9)}
        return _result(out)

    records = L.walk(evaluate, n_boot=200)
    assert [r["choice"] for r in records] == ["exp", "none", "modulate", "equal", "product", "layers 1-4"]
    final = records[-1]["config"]
    assert final == {**L.START, "bands": "modulate", "layer_fusion": "product"}
    # each rung evaluates its options on the configuration the previous rungs chose, each configuration once
    assert all(c["bands"] == "modulate" for call in calls[3:] for c in call.values())
    names = [n for call in calls for n in call]
    assert len(names) == len(set(names)) == 2 + 2 * 5  # rung 1: both targets; later: two new options each
    assert records[1]["options"] == ["diag", "eigen", "none"]  # exp target: eigen is offered
    assert records[1]["incumbent"] == "none" and records[1]["paper"] == "diag"
    assert records[1]["paper_config"] == {**L.START, "hessian": "diag"}  # the paper's option on rung 1's choice
    assert records[5]["choice"] == "layers 1-4" and "kept 'layers 1-4'" in records[5]["reason"]
    assert set(records[2]["means"]) == {"weighted", "modulate", "equal"}
    assert L.config_name(final) == ("HDM-CAM [target exp, Hessian none, bands modulate, alpha equal, fusion product, "
                                    "layers 1-4]")


def test_ladder_summary_and_markdown_compare_each_rung_with_the_one_before():
    records = [{"title": "smooth target", "choice": "exp", "options": ["exp", "softmax"], "reason": "kept 'exp'",
                "config": dict(L.START), "paper": "exp", "paper_config": dict(L.START)},
               {"title": "bands", "choice": "modulate", "options": ["weighted", "modulate", "equal"], "reason": "r",
                "config": {**L.START, "bands": "modulate"}, "paper": "weighted",
                "paper_config": {**L.START, "bands": "weighted"}}]
    names = [L.BASE, L.config_name(records[0]["config"]), L.config_name(records[1]["config"]),
             L.config_name(records[1]["paper_config"])]
    result = _result({names[0]: {"miou": BASE, "auc": BASE}, names[1]: {"miou": BASE + 0.01, "auc": BASE - 0.02},
                      names[2]: {"miou": BASE + 0.04, "auc": BASE - 0.02},
                      names[3]: {"miou": BASE - 0.01, "auc": BASE - 0.02}})
    rows = L.ladder_summary(result, records, n_boot=100)
    assert [r["method"] for r in rows] == names and rows[0]["vs_previous"] is None
    # the paper's option is compared with the same previous rung (1), not with rung 2's choice
    assert rows[3]["rung"] == "2 paper: bands = weighted" and rows[3]["vs_previous"]["miou"]["diff"] == pytest.approx(-0.02)
    assert rows[1]["vs_previous"]["miou"]["diff"] == pytest.approx(0.01)
    assert rows[2]["vs_previous"]["miou"]["diff_lo"] == pytest.approx(0.03)  # a constant paired gain
    assert rows[2]["vs_previous"]["auc"]["diff"] == pytest.approx(0)
    text = "\n".join(L.ladder_markdown(rows, records))
    assert "| 2: bands = modulate | +0.000 [+0.000, +0.000] | +0.030 [+0.030, +0.030]* |" in text
    assert f"| 0: start | {L.BASE} | {BASE.mean():.3f} | {BASE.mean():.3f} |" in text
    assert "1. smooth target: options exp, softmax; kept 'exp'." in text
    with pytest.raises(ValueError, match="lacks the ladder's method"):
        L.ladder_summary(_result({L.BASE: {"miou": BASE}}), records)


def test_ladder_commands_choose_on_one_split_and_report_on_another(tmp_path):
    choices, out, table = tmp_path / "choices.json", tmp_path / "ladder.md", tmp_path / "ladder.csv"
    common = ["--weights", "random", "--n", "3", "--size", "32", "--batch", "3", "--bootstrap", "20",
              "--no-faithfulness"]
    assert main(["eval-cam", *common, "--seed", "4000", "--ladder-choose", str(choices)]) == 0
    record = json.loads(choices.read_text())
    assert len(record["rungs"]) == len(L.RUNGS) and record["metric"] == "miou"
    assert all("result" not in r and r["choice"] in r["options"] for r in record["rungs"])
    assert main(["eval-cam", *common, "--ladder", str(choices), "--out", str(out), "--csv", str(table)]) == 0
    text = out.read_text()
    assert "Ablation ladder" in text and "| 0: start | Grad-CAM++ (layers 1-4) |" in text
    assert text.count("\n| 6: layer set") == 2  # the means table and the differences table
    assert "HDM-CAM (exp)" in table.read_text()  # the paper's method is evaluated beside the ladder


def test_ladder_methods_build_every_rung(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    records = [{"config": {**L.START, "target": "softmax"}}, {"config": {**L.START, "layer_fusion": "product",
                                                                         "target_layers": ["layer3", "layer4"]}}]
    methods = L.ladder_methods(model, records)
    assert next(iter(methods)) == L.BASE and "HDM-CAM (exp)" in methods and len(methods) == 4
    x = torch.randn(2, 3, 64, 64)
    for fn in methods.values():
        cam = fn(x, [0, 3])
        assert cam.shape == (2, 64, 64) and cam.min() >= 0 and cam.max() <= 1 + 1e-6


def test_tuned_is_the_end_of_the_published_ladder():
    """``TUNED`` (the app's tuned variant) is the configuration the validation ladder ended on."""
    record = json.loads((Path(__file__).parents[1] / "docs/results/cam_ladder_choices.json").read_text())
    final = record["rungs"][-1]["config"]
    assert TUNED == final
    assert set(final) == set(L.START) and all(k in HDMCAM.__init__.__kwdefaults__ for k in final if k != "target_layers")


def test_ladder_figure_script_draws_the_json_and_refuses_a_bad_file(tmp_path, capsys):
    import importlib.util

    from PIL import Image
    spec = importlib.util.spec_from_file_location("cam_ladder_figure",
                                                  Path(__file__).parents[1] / "scripts/cam_ladder_figure.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ci = {"diff": 0.02, "diff_lo": 0.01, "diff_hi": 0.03, "n": 10}
    rows = [{"rung": "0: start", "method": "a", "means": {}, "vs_previous": None},
            {"rung": "1: fusion = product", "method": "b", "means": {}, "vs_previous": dict.fromkeys(
                ("auc", "miou", "insertion", "road"), ci)},
            {"rung": "1 paper: fusion = sum", "method": "c", "means": {}, "vs_previous": {"miou": ci}}]
    (tmp_path / "l.json").write_text(json.dumps({"data": "d", "rows": rows}))
    assert script.main(["--ladder", str(tmp_path / "l.json"), "--out", str(tmp_path / "f.png")]) == 0
    assert Image.open(tmp_path / "f.png").size[0] > 400
    (tmp_path / "bad.json").write_text("{")
    assert script.main(["--ladder", str(tmp_path / "bad.json"), "--out", str(tmp_path / "g.png")]) == 2
    assert "cannot read a ladder" in capsys.readouterr().err and not (tmp_path / "g.png").exists()
