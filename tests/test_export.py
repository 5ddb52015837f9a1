"""ONNX export of the SR generators: parity with torch, metadata, clear errors, tiled runtime, and the
TensorRT path skipped with a reason where it cannot run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from export.__main__ import main
from export.runtime import OnnxSR
from export.tensorrt_engine import tensorrt_status
from export.to_onnx import check_parity, export_onnx, read_metadata
from hdm.sr.rrdbnet import RRDBNet

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()


@pytest.mark.parametrize("scale", [4, 2])
def test_onnx_matches_torch_at_several_sizes(tmp_path, scale):
    torch.manual_seed(1)
    model = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()
    path = export_onnx(model, tmp_path / "m.onnx", "tiny", scale, sha256="abc")
    check = check_parity(model, path)
    assert check.passed and max(check.max_abs.values()) < 1e-4 and len(check.max_abs) == 3
    half = export_onnx(model, tmp_path / "h.onnx", "tiny", scale, fp16=True)
    report = check_parity(model, half, fp16=True)
    assert report.tolerance is None and max(report.max_abs.values()) < 0.05  # reported, and still close


def test_metadata_round_trip_and_bad_files(tmp_path, tiny):
    path = export_onnx(tiny, tmp_path / "m.onnx", "general", 4, sha256="f" * 64)
    meta = read_metadata(path)
    assert meta["hdm.model"] == "general" and meta["hdm.scale"] == "4" and meta["hdm.checkpoint_sha256"] == "f" * 64
    assert "NCHW" in meta["hdm.input"] and meta["hdm.precision"] == "fp32" and meta["hdm.receptive_radius"] == "20"
    (tmp_path / "broken.onnx").write_bytes(path.read_bytes()[: 500])
    with pytest.raises(ValueError, match="not a readable ONNX"):
        read_metadata(tmp_path / "broken.onnx")
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="without hdm metadata"):
        read_metadata(tmp_path / "plain.onnx")
    with pytest.raises(FileNotFoundError):
        read_metadata(tmp_path / "none.onnx")
    sr = OnnxSR(path, providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="RGB"):
        sr(np.zeros((1, 4, 8, 8), np.float32))
    # a file whose graph is not an hdm SR generator's (another input) is refused with the reason
    proto = onnx.load(str(path))
    proto.graph.input[0].name = "image"
    for node in proto.graph.node:
        node.input[:] = ["image" if i == "lr" else i for i in node.input]
    onnx.save(proto, str(tmp_path / "renamed.onnx"))
    with pytest.raises(ValueError, match="one 'lr' input"):
        OnnxSR(tmp_path / "renamed.onnx", providers=["CPUExecutionProvider"])


def test_runtime_tiles_like_the_torch_pipeline(tmp_path, tiny):
    path = export_onnx(tiny, tmp_path / "m.onnx", "tiny", 4)
    lr = np.random.default_rng(0).random((37, 29, 3)).astype(np.float32)
    cpu = ["CPUExecutionProvider"]  # exact float32 (a GPU provider may use TF32)
    whole = OnnxSR(path, providers=cpu, tile=None)
    assert whole.provider == "CPUExecutionProvider"
    tiled = OnnxSR(path, providers=cpu, tile=12)(lr)
    with torch.no_grad():
        ref = tiny(torch.from_numpy(lr).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert tiled.shape == (148, 116, 3)
    assert np.abs(whole(lr) - ref).max() < 1e-4 and np.abs(tiled - ref).max() < 1e-4


def test_export_command(tmp_path, tiny, capsys):
    from hdm.sr.train import export_generator

    weights = export_generator(tiny, tmp_path / "g.safetensors", {})
    assert main(["onnx", "--model", str(weights), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "g_x4_fp32.onnx" in text and "g_x4_fp16.onnx" in text and ": ok" in text
    assert read_metadata(tmp_path / "out" / "g_x4_fp32.onnx")["hdm.model"] == "g"
    assert main(["onnx", "--model", str(tmp_path / "none.safetensors")]) == 2


def test_tensorrt_is_skipped_with_a_reason_without_gpu_or_package(tmp_path, capsys):
    ok, why = tensorrt_status()
    if ok:
        pytest.skip("TensorRT and a GPU are here: the engine is built by `python -m export tensorrt` instead")
    assert why
    assert main(["tensorrt", str(tmp_path / "m.onnx")]) == 0
    assert "cannot be built here" in capsys.readouterr().out


def test_bench_command_prints_ratios(tmp_path, tiny, capsys):
    from hdm.sr.train import export_generator

    weights = export_generator(tiny, tmp_path / "g.safetensors", {})
    out = tmp_path / "export.md"
    assert main(["bench", "--model", str(weights), "--sizes", "16", "--repeats", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 16x16 | torch eager fp32 |" in text and "1.00x" in text and "ONNX Runtime CPU fp32" in text
    assert "GFLOP/s" in text and "- command: `" in text
