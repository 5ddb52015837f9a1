"""The command line's error corpus: for every command that takes a file or a model, a missing file, a bad
image (a text file named .png), an unknown model name, weights unavailable (``HDM_WEIGHTS_DIR`` an empty
folder) and a file of the wrong kind each end as one line ``error: ...`` on stderr and a non-zero exit
code, never a traceback. Every case stops before any long work."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hdm.cli import main

# (id, argv with {placeholders}, empty weights folder?, a piece the message must hold)
CASES = [
    # cam: the image and the classifier
    ("cam-missing-image", ["cam", "{missing}.png", "--weights", "random"], False, "no image file"),
    ("cam-bad-image", ["cam", "{bad_png}", "--weights", "random"], False, "not an image file"),
    ("cam-unknown-model", ["cam", "{good}", "--weights", "nosuch_model"], False, "nosuch_model"),
    ("cam-wrong-kind", ["cam", "{good}", "--weights", "{text_safetensors}"], False, "not a readable"),
    ("cam-weights-unavailable", ["cam", "{good}", "--weights", "shapes_resnet50"], True, "not installed"),
    ("cam-unknown-method", ["cam", "{good}", "--method", "nosuch"], False, "invalid choice"),
    ("compare-cam-unknown-model", ["compare-cam", "--weights", "nosuch_model"], False, "nosuch_model"),
    ("compare-cam-weights-unavailable", ["compare-cam", "--weights", "shapes_resnet50"], True, "not installed"),
    # upscale: the input and every model of each mode
    ("upscale-missing-input", ["upscale", "{missing}.png", "{out}.png", "--model", "general"], False, "no such file"),
    ("upscale-bad-image", ["upscale", "{bad_png}", "{out}.png", "--model", "general"], False, "not an image file"),
    ("upscale-unknown-mode", ["upscale", "{good}", "{out}.png", "--model", "nosuch"], False,
     "or a model file; got 'nosuch'"),
    ("upscale-unknown-model", ["upscale", "{good}", "{out}.png", "--model", "general", "--general-weights",
                               "nosuch_model"], False, "nosuch_model"),
    ("upscale-wrong-kind", ["upscale", "{good}", "{out}.png", "--model", "face", "--face-weights",
                            "{text_safetensors}"], False, "not a readable"),
    ("upscale-general-unavailable", ["upscale", "{good}", "{out}.png", "--model", "general"], True, "sr_general_x4"),
    ("upscale-fusion-unavailable", ["upscale", "{good}", "{out}.png"], True, "not installed"),
    ("upscale-diffusion-unavailable", ["upscale", "{good}", "{out}.png", "--model", "diffusion"], True,
     "diffusion_student_hf_x4"),
    ("upscale-diffusion-unknown-model", ["upscale", "{good}", "{out}.png", "--model", "diffusion-teacher",
                                         "--diffusion-weights", "nosuch_model"], False, "nosuch_model"),
    ("upscale-argument-of-another-mode", ["upscale", "{good}", "{out}.png", "--model", "general", "--seed", "3"], False,
     "used by the modes diffusion and diffusion-teacher"),
    ("upscale-bad-tile", ["upscale", "{good}", "{out}.png", "--model", "general", "--tile", "0"], False, "tile"),
    # eval-sr: the folders and the two generators
    ("eval-sr-missing-folder", ["eval-sr", "--natural", "{missing}"], False, "no folder at"),
    ("eval-sr-unknown-model", ["eval-sr", "--natural", "{photos}", "--general-weights", "nosuch_model"], False,
     "nosuch_model"),
    ("eval-sr-weights-unavailable", ["eval-sr", "--natural", "{photos}"], True, "not installed"),
    # the CAM benchmark's commands: classifier, theta, backgrounds
    ("eval-cam-missing-weights", ["eval-cam", "--weights", "{missing}.safetensors"], False, "no weights file"),
    ("eval-cam-unknown-model", ["eval-cam", "--weights", "nosuch_model"], False, "nosuch_model"),
    ("eval-cam-wrong-kind", ["eval-cam", "--weights", "{text_safetensors}"], False, "not a readable"),
    ("eval-cam-weights-unavailable", ["eval-cam"], True, "shapes_resnet50"),
    ("eval-cam-shard-without-checkpoint", ["eval-cam", "--weights", "random", "--shard", "1/2"], False,
     "--shard needs --checkpoint"),
    ("eval-cam-bad-shard", ["eval-cam", "--weights", "random", "--shard", "3/2"], False, "between 1 and K"),
    ("eval-cam-shard-text", ["eval-cam", "--weights", "random", "--shard", "half"], False, "is not I/K"),
    ("eval-cam-missing-theta", ["eval-cam", "--weights", "random", "--theta", "{missing}.json"], False, "no file at"),
    ("eval-cam-bad-theta", ["eval-cam", "--weights", "random", "--theta", "{bad_json}"], False, "not a theta file"),
    ("eval-cam-missing-backgrounds", ["eval-cam", "--weights", "random", "--backgrounds", "{missing}"], False,
     "no folder at"),
    ("fit-theta-missing-weights", ["fit-theta", "--weights", "{missing}.safetensors"], False, "no weights file"),
    ("fit-theta-unknown-model", ["fit-theta", "--weights", "nosuch_model"], False, "nosuch_model"),
    ("fit-theta-weights-unavailable", ["fit-theta"], True, "shapes_resnet50"),
    ("fit-theta-missing-backgrounds", ["fit-theta", "--weights", "random", "--backgrounds", "{missing}"], False,
     "no folder at"),
    ("calibrate-bn-missing-weights", ["calibrate-bn", "--weights", "{missing}.safetensors"], False, "no weights file"),
    ("calibrate-bn-unknown-model", ["calibrate-bn", "--weights", "nosuch_model"], False, "nosuch_model"),
    ("calibrate-bn-weights-unavailable", ["calibrate-bn"], True, "shapes_resnet50"),
    ("calibrate-bn-missing-backgrounds", ["calibrate-bn", "--backgrounds", "{missing}"], False, "no folder at"),
    ("train-cam-model-missing-backgrounds", ["train-cam-model", "--backgrounds", "{missing}"], False, "no folder at"),
    # training: data, config, the model to start from
    ("train-sr-missing-folder", ["train-sr", "--hr", "{missing}"], False, "no folder at"),
    ("train-sr-missing-config", ["train-sr", "--config", "{missing}.json"], False, "no file at"),
    ("train-sr-bad-config", ["train-sr", "--config", "{bad_json}"], False, "not a JSON config"),
    ("train-sr-unknown-config-key", ["train-sr", "--config", "{odd_config}"], False, "unknown config keys"),
    ("train-sr-no-data", ["train-sr"], False, "give --hr"),
    ("train-diffusion-missing-folder", ["train-diffusion", "--hr", "{missing}"], False, "no folder at"),
    ("train-diffusion-missing-config", ["train-diffusion", "--config", "{missing}.json"], False, "no file at"),
    ("train-diffusion-bad-stage", ["train-diffusion", "--hr", "{photos}", "--stage", "nosuch"], False,
     "invalid choice"),
    # eval-diffusion: the folder and each model
    ("eval-diffusion-missing-folder", ["eval-diffusion", "--hr", "{missing}", "--student", "diffusion_student_x4"],
     False, "no folder at"),
    ("eval-diffusion-no-model", ["eval-diffusion", "--hr", "{photos}"], False, "give at least one"),
    ("eval-diffusion-unknown-model", ["eval-diffusion", "--hr", "{photos}", "--student", "nosuch_model"], False,
     "nosuch_model"),
    ("eval-diffusion-wrong-kind", ["eval-diffusion", "--hr", "{photos}", "--teacher", "{text_safetensors}"], False,
     "not a readable"),
    ("eval-diffusion-weights-unavailable", ["eval-diffusion", "--hr", "{photos}", "--student", "diffusion_student_x4"],
     True, "diffusion_student_x4"),
    # export
    ("export-onnx-missing-model", ["export", "onnx", "--model", "{missing}.pth", "--out", "{out}"], False,
     "no weights file"),
    ("export-onnx-unknown-model", ["export", "onnx", "--model", "nosuch_model", "--out", "{out}"], False,
     "nosuch_model"),
    ("export-onnx-wrong-kind", ["export", "onnx", "--model", "{text_safetensors}", "--out", "{out}"], False,
     "not a readable"),
    ("export-onnx-weights-unavailable", ["export", "onnx", "--model", "general", "--out", "{out}"], True,
     "sr_general_x4"),
    ("export-onnx-one-file-for-many", ["export", "onnx", "--out", "{out}.onnx"], False, "makes 6 files"),
    ("export-tensorrt-missing-file", ["export", "tensorrt", "{missing}.onnx"], False, "no ONNX file"),
    ("export-tensorrt-wrong-kind", ["export", "tensorrt", "{text_onnx}"], False, "not a readable ONNX"),
    ("export-bench-unknown-model", ["export", "bench", "--model", "nosuch_model"], False, "nosuch_model"),
    ("export-bench-weights-unavailable", ["export", "bench", "--model", "face"], True, "sr_face_x4"),
    # faces: dlib's model file, the face network
    ("convert-dlib-face-missing-dat", ["convert-dlib-face", "--dat", "{missing}.dat", "--out", "{out}.safetensors"],
     False, "no file at"),
    ("convert-dlib-face-wrong-kind", ["convert-dlib-face", "--dat", "{bad_png}", "--out", "{out}.safetensors"], False,
     "not dlib's face recognition model"),
    ("eval-face-chips-missing-folder", ["eval-face-chips", "{missing}"], False, "no folder at"),
    ("eval-face-chips-unknown-model", ["eval-face-chips", "--weights", "nosuch_model"], False, "nosuch_model"),
    ("eval-face-chips-wrong-kind", ["eval-face-chips", "--weights", "{text_safetensors}"], False, "not a readable"),
    ("eval-face-chips-weights-unavailable", ["eval-face-chips"], True, "dlib_face_resnet_v1"),
    ("eval-cam-face-missing-folder", ["eval-cam-face", "{missing}"], False, "no folder at"),
    ("eval-cam-face-missing-pairs", ["eval-cam-face", "--pairs", "{missing}.txt"], False, "no file at"),
    ("eval-cam-face-unknown-model", ["eval-cam-face", "--weights", "nosuch_model"], False, "nosuch_model"),
    ("eval-cam-face-wrong-kind", ["eval-cam-face", "--weights", "{text_safetensors}"], False, "not a readable"),
    ("eval-cam-face-weights-unavailable", ["eval-cam-face"], True, "dlib_face_resnet_v1"),
    ("cam-face-missing-image", ["cam-face", "{missing}.png"], False, "no image file at"),
    ("cam-face-bad-image", ["cam-face", "{bad_png}"], False, "not an image file"),
    ("cam-face-no-face", ["cam-face", "{good}", "--out", "{out}"], False, "no face found in the image"),
    ("cam-face-bad-reference", ["cam-face", "{good}", "--reference", "{bad_png}"], False, "not an image file"),
    ("cam-face-weights-unavailable", ["cam-face", "{good}"], True, "dlib_face_resnet_v1"),
    ("eval-sr-bad-compare-face", ["eval-sr", "--natural", "{photos}", "--compare-face", "face={missing}.pth"], False,
     "LABEL=WEIGHTS with a new label"),
    ("eval-sr-missing-compare-face", ["eval-sr", "--natural", "{photos}", "--compare-face", "b={missing}.pth"], False,
     "missing.pth"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "photos" / "good.png")
    (root / "bad.png").write_text("this is text, not a PNG")
    (root / "text.safetensors").write_text("this is text, not weights")
    (root / "text.onnx").write_text("this is text, not an ONNX graph")
    (root / "bad.json").write_text("{not json")
    (root / "odd.json").write_text(json.dumps({"hr": str(root / "photos"), "nosuch_key": 1}))
    (root / "empty_weights").mkdir()
    return {"good": str(root / "photos" / "good.png"), "bad_png": str(root / "bad.png"), "photos": str(root / "photos"),
            "text_safetensors": str(root / "text.safetensors"), "text_onnx": str(root / "text.onnx"),
            "bad_json": str(root / "bad.json"), "odd_config": str(root / "odd.json"), "missing": str(root / "missing"),
            "out": str(root / "out"), "empty_weights": str(root / "empty_weights")}


def run(argv: list[str], capsys) -> tuple[int, str]:
    """``hdm ARGV`` in this process: (exit code, stderr). An exception escaping ``main`` fails the test."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors exit
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, empty_weights, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_error_is_one_line_and_a_non_zero_exit(argv, empty_weights, match, corpus, capsys, monkeypatch):
    if empty_weights:
        monkeypatch.setenv("HDM_WEIGHTS_DIR", corpus["empty_weights"])
    monkeypatch.setenv("TORCH_HOME", corpus["empty_weights"])  # nothing third-party is cached: no network either
    code, err = run([a.format(**corpus) for a in argv], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and code is not None
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]
    assert "Traceback" not in err


def test_the_corpus_covers_every_command_that_takes_a_file_or_a_model():
    commands = {c[1][0] if c[1][0] != "export" else " ".join(c[1][:2]) for c in CASES}
    assert commands >= {"cam", "compare-cam", "upscale", "eval-sr", "eval-cam", "fit-theta", "calibrate-bn",
                        "train-cam-model", "train-sr", "train-diffusion", "eval-diffusion", "export onnx",
                        "export tensorrt", "export bench", "convert-dlib-face", "eval-face-chips", "cam-face",
                        "eval-cam-face"}


def test_a_folder_reports_its_bad_files_and_goes_on(corpus, tmp_path, capsys):
    """In a folder the bad file is named and skipped, the good one is written; exit code 1 (some failed),
    and 2 when nothing could be done."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(corpus["good"]).save(folder / "good.png")
    (folder / "bad.png").write_text("not a PNG")
    code, err = run(["upscale", str(folder), str(tmp_path / "out"), "--model", "general", "--tile", "16"], capsys)
    assert code == 1 and "bad.png" in err and "Traceback" not in err
    failed = [line for line in err.splitlines() if line.strip().startswith("failed:")]
    assert len(failed) == 1 and failed[0].count("bad.png") == 1, failed  # the file is named once
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]
    (folder / "good.png").unlink()
    code, err = run(["upscale", str(folder), str(tmp_path / "out2"), "--model", "general"], capsys)
    assert code == 2 and "bad.png" in err and "Traceback" not in err
