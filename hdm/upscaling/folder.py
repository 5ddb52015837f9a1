"""Upscaling a folder to a folder: every input once, under ``torchrun`` in any number of processes.

Each process takes its share of the sorted inputs (``jobs[rank::world]``; the share does not depend on
what is already done, so every process agrees on it). An output that exists is skipped (a re-run
finishes what a stopped one left), each output is written atomically (:func:`hdm.io.images.write_image`:
a temporary file renamed into place), so a crash loses nothing already written and leaves no partial
file. A file that cannot be read or upscaled is reported and skipped; the others go on.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..errors import ImageError
from ..io.images import MAX_PIXELS, MIN_SIDE, read_image, write_image
from .pipeline import Upscaler, UpscaleResult

__all__ = ["folder_jobs", "join_processes", "leave_processes", "FolderReport", "save_result", "upscale_folder"]


def folder_jobs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs, sorted: every visible file of the folder ``source`` -> ``target/<stem>.png``
    (``<name>.png`` when two inputs share a stem). Files that are not images are kept in the list: they are
    reported, not silently skipped."""
    files = sorted(p for p in Path(source).iterdir() if p.is_file() and not p.name.startswith("."))
    stems = [p.stem for p in files]
    return [(p, Path(target) / (f"{p.stem}.png" if stems.count(p.stem) == 1 else f"{p.name}.png")) for p in files]


def join_processes(device: str = "cpu") -> tuple[int, int, str]:
    """``(rank, world size, device)`` of this process: ``torchrun``'s ``RANK`` and ``WORLD_SIZE`` (``0, 1``
    when started without it). With more than one process it joins a gloo group (the summary adds up the
    counts of every process) and a ``"cuda"`` device becomes this process's GPU, ``cuda:LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return dist.get_rank(), dist.get_world_size(), device


def leave_processes() -> None:
    """Leave the process group :func:`join_processes` joined (nothing outside ``torchrun``)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def save_result(out: Path, result: UpscaleResult, bits: int = 8, intermediates: bool = False) -> Path:
    """Write ``result`` to ``out`` (``bits`` 8 or 16 per channel, alpha kept). ``intermediates``: fusion's general
    and face outputs and its mask beside it (``<stem>.general.png``, ``<stem>.face.png``, ``<stem>.mask.png``),
    written first, so that an ``out`` on disk always has them."""
    if intermediates and result.fusion is not None:
        f = result.fusion
        for name, rgb in (("general", f.general), ("face", f.face)):
            write_image(out.with_name(f"{out.stem}.{name}.png"), rgb)
        write_image(out.with_name(f"{out.stem}.mask.png"), f.mask[..., None].repeat(3, axis=2))
    return write_image(out, result.rgb, result.alpha, bits=bits)


@dataclass
class FolderReport:
    """What one process did: ``done`` (outputs written), ``failed`` ``[(input, why)]``, ``skipped`` (outputs
    that existed); ``total`` the ``(done, failed, skipped)`` counts of every process together."""

    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: int = 0
    total: tuple[int, int, int] = (0, 0, 0)

    @property
    def exit_code(self) -> int:
        """0: every file done; 1: some failed; 2: none could be done (all processes together)."""
        done, failed, skipped = self.total
        return 0 if not failed else (1 if done or skipped else 2)


def upscale_folder(upscaler: Upscaler, jobs: list[tuple[Path, Path]], *, overwrite: bool = False,
                   max_pixels: int = MAX_PIXELS, intermediates: bool = False, rank: int = 0, world: int = 1,
                   log: Callable[[str], None] = print, progress: bool = False) -> FolderReport:
    """Upscale this process's share ``jobs[rank::world]`` (see the module docstring) with :func:`save_result`;
    ``log`` gets one line per file written; ``progress``: a progress bar over the images (on stderr)."""
    report = FolderReport()
    share = jobs[rank::world]
    for path, out in tqdm(share, desc="images", unit="image", disable=not progress or len(share) < 2):
        if out.exists() and not overwrite:
            report.skipped += 1
            continue
        try:
            image = read_image(path, max_pixels=max_pixels, min_side=MIN_SIDE)
            result = upscaler(image)
            save_result(out, result, image.bits, intermediates)
        except Exception as e:  # noqa: BLE001 - one bad file (or out of memory) must not end a folder run
            why = str(e) if isinstance(e, ImageError) else f"{type(e).__name__}: {e}"
            why = why.removeprefix(f"{path.name}: ")  # the report names the file once
            report.failed.append((path, why))
            print(f"skipped {path.name}: {why}", file=sys.stderr)
            continue
        report.done.append(out)
        log(f"{path.name} -> {out} ({result.message})")
    counts = torch.tensor([len(report.done), len(report.failed), report.skipped])
    if world > 1 and dist.is_initialized():
        dist.all_reduce(counts)  # gloo: sums every process's counts
    report.total = tuple(int(c) for c in counts)
    return report
