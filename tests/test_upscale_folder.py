"""A folder upscale in several processes (torchrun, gloo on the CPU) gives exactly the files and pixels of
one process; a re-run skips what is done; a crash keeps every file already written, whole."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hdm.io.images import read_image
from hdm.upscaling.folder import folder_jobs, upscale_folder
from hdm.upscaling.pipeline import Upscaler

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def photos(tmp_path) -> Path:
    """Five small PNGs of different sizes (one RGBA)."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(12, 16), (16, 12), (9, 20), (20, 9), (14, 14)]):
        pixels = rng.integers(0, 256, (h, w, 4 if i == 2 else 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hdm(args: list[str], processes: int | None = None) -> subprocess.CompletedProcess:
    """``python -m hdm ARGS`` (or under ``torch.distributed.run`` with ``processes``) from the checkout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads per process with and without torchrun
    launcher = [] if processes is None else ["-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                                             "--master_port", str(_free_port())]
    return subprocess.run([sys.executable, *launcher, "-m", "hdm", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.iterdir())}


def test_two_processes_give_the_files_and_pixels_of_one(photos, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["upscale", str(photos), "--model", "general", "--device", "cpu"]
    single = _hdm([args[0], args[1], str(one), *args[2:]])
    assert single.returncode == 0, single.stderr
    assert "5 upscaled, 0 failed, 0 already done" in single.stdout
    double = _hdm([args[0], args[1], str(two), *args[2:]], processes=2)
    assert double.returncode == 0, double.stderr
    # the summary is printed once (rank 0) and counts the files of both processes
    assert double.stdout.count("upscaled,") == 1
    assert "5 upscaled, 0 failed, 0 already done (--overwrite redoes them); 2 processes together" in double.stdout
    written = {name: rank for rank, name in re.findall(r"\[(\d)/2\] (p\d\.png) -> ", double.stdout)}
    assert written == {"p0.png": "1", "p2.png": "1", "p4.png": "1", "p1.png": "2", "p3.png": "2"}  # files[rank::2]
    a, b = _pixels(one), _pixels(two)
    assert list(a) == list(b) == [f"p{i}.png" for i in range(5)]
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert a["p2.png"].shape == (36, 80, 4)  # alpha kept
    # a re-run does nothing; a lost output is redone, and only that one
    (two / "p3.png").unlink()
    again = _hdm([args[0], args[1], str(two), *args[2:]], processes=2)
    assert again.returncode == 0, again.stderr
    assert "1 upscaled, 0 failed, 4 already done" in again.stdout
    assert np.array_equal(_pixels(two)["p3.png"], a["p3.png"])


class _Stops(Upscaler):
    """The general model, killed (as by Ctrl-C or the OOM killer's signal) at its third image."""

    def __init__(self):
        super().__init__("general")
        self.calls = 0

    def __call__(self, image, seed=None):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return super().__call__(image, seed)


def test_a_crash_keeps_every_finished_file_whole(photos, tmp_path):
    out = tmp_path / "out"
    jobs = folder_jobs(photos, out)
    with pytest.raises(KeyboardInterrupt):
        upscale_folder(_Stops(), jobs, log=lambda line: None)
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]  # no partial or temporary file
    for name in ("p0.png", "p1.png"):
        w, h = Image.open(photos / name).size
        assert read_image(out / name).rgb.shape == (4 * h, 4 * w, 3)
    report = upscale_folder(Upscaler("general"), jobs, log=lambda line: None)
    assert (len(report.done), report.skipped, report.failed, report.total) == (3, 2, [], (3, 0, 2))
    assert report.exit_code == 0


def test_bench_upscale_measures_each_case_in_its_own_process(tmp_path, capsys):
    """Time and peak memory per case; a tile as large as the image is the whole-image case, left out."""
    from hdm.cli import main

    assert main(["bench-upscale", "--model", "realesr_animevideov3", "--sizes", "48", "--tiles", "none", "32", "64",
                 "--out", str(tmp_path / "cost.md")]) == 0
    text = (tmp_path / "cost.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 48x48")]
    assert [row.split(" | ")[1] for row in rows] == ["whole", "32"]
    for row in rows:
        seconds, peak = float(row.split(" | ")[2]), float(row.split(" | ")[3])
        assert 0 <= seconds < 60 and 100 < peak < 20_000 and row.endswith("| 192x192 |")  # 0.1-s resolution
