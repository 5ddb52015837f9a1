"""ONNX export of the SR generators: parity with torch, metadata, clear errors, tiled runtime, and the
TensorRT path skipped with a reason where it cannot run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (requirements.txt: onnxruntime-gpu): the runtime under test
import pytest
import torch

from hdm.cli import main as hdm_main
from hdm.export.tensorrt_engine import tensorrt_status
from hdm.export.to_onnx import check_parity, export_onnx
from hdm.formats.onnx_metadata import read_metadata
from hdm.sr.archs.rrdbnet import RRDBNet
from hdm.sr.onnx_runtime import OnnxSR


def main(argv):
    """``hdm export ARGV...``."""
    return hdm_main(["export", *argv])


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
    with pytest.raises(ValueError, match="does not take an 'lr' input"):
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
    from hdm.training.sr import export_generator

    weights = export_generator(tiny, tmp_path / "g.safetensors", {})
    assert main(["onnx", "--model", str(weights), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "g_x4_fp32.onnx" in text and "g_x4_fp16.onnx" in text and ": ok" in text
    assert read_metadata(tmp_path / "out" / "g_x4_fp32.onnx")["hdm.model"] == "g"
    assert main(["onnx", "--model", str(tmp_path / "none.safetensors")]) == 2


def test_export_command_out_file_takes_one_model_and_one_precision(tmp_path, tiny, capsys):
    """``--out x.onnx`` is that file for one model and one precision; for more it is an error that says so
    (it once made a folder named x.onnx), and nothing is written."""
    from hdm.training.sr import export_generator

    weights = export_generator(tiny, tmp_path / "g.safetensors", {})
    for argv, files in ((["--model", str(weights), "--fp16", "both"], 2), (["--model", "all", "--fp16", "no"], 3),
                        ([], 6)):
        assert main(["onnx", *argv, "--out", str(tmp_path / "x.onnx")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --out") and f"makes {files} files" in err and err.count("\n") == 1
        assert not (tmp_path / "x.onnx").exists()
    for fp16 in ("no", "yes"):
        out = tmp_path / f"g_{fp16}.onnx"
        assert main(["onnx", "--model", str(weights), "--fp16", fp16, "--out", str(out)]) == 0
        assert out.is_file() and f"{out}: onnx.checker ok" in capsys.readouterr().out
        assert read_metadata(out)["hdm.precision"] == ("fp16" if fp16 == "yes" else "fp32")


def test_tensorrt_is_skipped_with_a_reason_without_gpu_or_package(tmp_path, capsys):
    ok, why = tensorrt_status()
    if ok:
        pytest.skip("TensorRT and a GPU are here: the engine is built by `hdm export tensorrt` instead")
    assert why
    path = export_onnx(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval(), tmp_path / "m.onnx", "tiny", 4)
    assert main(["tensorrt", str(path)]) == 0
    assert "cannot be built here" in capsys.readouterr().out
    assert main(["tensorrt", str(tmp_path / "none.onnx")]) == 2  # the file is checked first, TensorRT or not
    assert capsys.readouterr().err == f"error: no ONNX file at {tmp_path / 'none.onnx'}\n"


def test_bench_command_prints_ratios(tmp_path, tiny, capsys):
    from hdm.training.sr import export_generator

    weights = export_generator(tiny, tmp_path / "g.safetensors", {})
    out = tmp_path / "export.md"
    assert main(["bench", "--model", str(weights), "--sizes", "16", "--repeats", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 16x16 | torch eager fp32 |" in text and "1.00x" in text and "ONNX Runtime CPU fp32" in text
    assert "GFLOP/s" in text and "- command: `" in text
    # every CPU row has its peak memory, measured in a fresh process per runtime
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 16x16 |")]
    assert len(rows) == 4 and all(float(r[-1]) >= 0 for r in rows)


def test_cpu_peak_memory_grows_with_the_input(tmp_path, tiny):
    """Measured in fresh processes: the torch run's working memory at 256x256 input (x4: 1024x1024
    feature maps, 32 MB each) is far above that at 16x16."""
    from hdm.export.speed import cpu_peak_mb
    from hdm.training.sr import export_generator

    if not Path("/proc/self/status").is_file():
        pytest.skip("peak memory is measured from /proc (Linux)")
    weights = export_generator(tiny, tmp_path / "g.safetensors", {})
    inputs = {s: (np.random.default_rng(0).random((1, 3, s, s), dtype=np.float32),) for s in (16, 256)}
    peaks = cpu_peak_mb(weights, None, None, inputs, ["lr"])
    if not peaks:
        pytest.skip("this kernel does not let a process reset its peak resident memory (/proc/self/clear_refs)")
    assert peaks[("torch eager fp32", 256)] > peaks[("torch eager fp32", 16)] + 20


# -- the one-step diffusion student -----------------------------------------------------------------
@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A tiny untrained student exported as hdm writes it, and its sampler."""
    from hdm.diffusion import DiffusionSR
    from hdm.diffusion.denoiser import Denoiser
    from hdm.diffusion.file import export_diffusion
    from hdm.diffusion.schedule import ResShiftSchedule

    torch.manual_seed(3)
    net = Denoiser(width=8, blocks=1)
    for p in net.parameters():  # zero-initialised output layers would hide the network: perturb them
        p.data += 0.05 * torch.randn_like(p)
    path = export_diffusion(net, ResShiftSchedule.resshift(4), tmp_path_factory.mktemp("d") / "s.safetensors",
                            "student", {})
    return path, DiffusionSR.from_pretrained(path, one_step=True)


def test_one_step_graph_equals_the_student_sampler(student):
    from hdm.diffusion.sampler import OneStepSR

    _, sampler = student
    graph = OneStepSR(sampler.model, sampler.schedule).eval()
    lr = torch.rand(2, 3, 10, 14, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(graph.noise_shape(lr.shape), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(graph(lr, noise), sampler(lr, seed=5), atol=1e-5, rtol=0)
        mean = graph(lr, torch.zeros_like(noise))
    assert not torch.allclose(mean, graph(lr, noise))  # the noise input matters


def test_student_exports_with_a_noise_input_and_runs_seeded(tmp_path, student):
    from hdm.export.to_onnx import load_exportable

    path, sampler = student
    graph = load_exportable(path)
    onnx_path = export_onnx(graph, tmp_path / "s.onnx", "diffusion", 4)
    assert check_parity(graph, onnx_path).passed
    assert read_metadata(onnx_path)["hdm.inputs"] == '["lr", "noise"]'
    lr = torch.rand(1, 3, 11, 13, generator=torch.Generator().manual_seed(1))  # odd: padded as the sampler does
    with torch.no_grad():
        ref = sampler(lr, seed=7).numpy()
    for tile in (None, 6):
        out = OnnxSR(onnx_path, tile=tile)(lr.numpy(), seed=7)
        assert out.shape == (1, 3, 44, 52) and np.abs(out - ref).max() < 1e-4, tile
    with pytest.raises(ValueError, match="diffusion student"):
        OnnxSR(onnx_path).as_generator()


def test_bench_command_runs_the_student(tmp_path, student, capsys):
    path, _ = student
    out = tmp_path / "export.md"
    assert main(["bench", "--model", str(path), "--sizes", "16", "--repeats", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "| 16x16 | ONNX Runtime CPU fp32 |" in out.read_text()


def test_teachers_are_not_exported(tmp_path):
    from hdm.diffusion.denoiser import Denoiser
    from hdm.diffusion.file import export_diffusion
    from hdm.diffusion.schedule import ResShiftSchedule
    from hdm.export.to_onnx import load_exportable

    path = export_diffusion(Denoiser(width=8, blocks=1), ResShiftSchedule.resshift(4), tmp_path / "t.safetensors",
                            "teacher", {})
    with pytest.raises(ValueError, match="multi-step teacher"):
        load_exportable(path)
    assert main(["onnx", "--model", str(path), "--out", str(tmp_path / "o")]) == 2
