"""The one evaluation loop of the x``s`` SR benchmarks (``hdm eval-sr``, ``hdm eval-diffusion``) and
their shared summary.

For every photo of a folder (sorted, :func:`~hdm.io.images.list_photos`): read it
(:func:`~hdm.io.images.read_image`; an unreadable file is skipped with a warning naming it and listed
in ``records.skipped``), ``hr = mod_crop(image, crop_multiple)``, ``lr`` = antialiased bicubic x1/s of
``hr`` rounded to 8 bits (as an LR image file is), or the real-world chain of :mod:`hdm.data.degrade`; every method upscales ``lr`` and is timed; its
output is quantised to 8 bits (as when saved) and scored: PSNR and SSIM on Y with an ``s``-pixel
border (:func:`~hdm.ops.metrics.psnr_ssim_y`), then each benchmark's own scorers.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.degrade import make_lr
from ..errors import ImageError
from ..io.images import list_photos, read_image, to_uint8
from ..ops.metrics import psnr_ssim_y
from ..ops.resize import bicubic_upsample, mod_crop
from .stats import paired_bootstrap

__all__ = ["Sample", "Records", "evaluate", "bicubic", "method_means", "paired_differences", "summarize_records",
           "skipped_note"]


@dataclass
class Sample:
    """One evaluated photo. ``hr``: ``(H, W, 3)`` float32 in [0, 1], ``H`` and ``W`` multiples of the crop
    multiple; ``hr_t``: the same as a ``(1, 3, H, W)`` tensor; ``lr_t``: ``(1, 3, H/s, W/s)`` float32, the
    antialiased bicubic x1/s of ``hr`` on 8-bit levels (``round(255 x) / 255``); ``lr_u8`` and ``lr``: the
    same picture as ``(h, w, 3)`` uint8 and float32. ``outputs``: each method's output so far;
    ``context``: what ``prepare`` found for the methods and scorers (face boxes); ``info``: the fields it
    adds to the record (face count)."""

    path: Path
    scale: int
    hr: np.ndarray
    hr_t: torch.Tensor
    lr_t: torch.Tensor
    outputs: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.hr_u8 = to_uint8(self.hr)
        self.lr_u8 = to_uint8(self.lr_t[0].permute(1, 2, 0).numpy())
        self.lr = self.lr_u8.astype(np.float32) / 255.0


class Records(list):
    """The per-image records of :func:`evaluate` (a list, written as is to the results JSON), with
    ``skipped``: ``[{"name", "reason"}]`` of the files that could not be read."""

    def __init__(self, records=(), skipped=()):
        super().__init__(records)
        self.skipped = list(skipped)


def bicubic(sample: Sample) -> np.ndarray:
    """The bicubic baseline: ``sample.lr`` upscaled x``s`` (:func:`~hdm.ops.resize.bicubic_upsample`),
    ``(H, W, 3)`` float32 in [0, 1]."""
    lr = torch.from_numpy(sample.lr).permute(2, 0, 1)
    return bicubic_upsample(lr, sample.scale).permute(1, 2, 0).numpy()


def _as_uint8(image) -> np.ndarray:
    """A method's output, ``(H, W, 3)`` array or ``(1, 3, H, W)`` tensor in [0, 1] -> ``(H, W, 3)`` uint8."""
    if isinstance(image, torch.Tensor):
        image = image[0].permute(1, 2, 0).cpu().numpy()
    return to_uint8(image)


def _load(path: Path, scale: int, crop_multiple: int, lr_kind: str = "clean") -> Sample:
    hr = mod_crop(read_image(path).rgb, crop_multiple)
    hr_t = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None]
    return Sample(path, scale, hr, hr_t, make_lr(hr_t, scale, lr_kind, path.name))  # LR images are 8-bit


def _sync() -> None:
    """Wait for queued GPU work, so that a method's time is its own."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@torch.no_grad()
def evaluate(folder, methods: Mapping[str, Callable[[Sample], object]],
             scorers: Sequence[Callable[[np.ndarray, Sample], dict]] = (), scale: int = 4,
             crop_multiple: int | None = None, prepare: Callable[[Sample], None] | None = None,
             reuses: Mapping[str, Sequence[str]] | None = None, limit: int | None = None, progress: bool = True,
             desc: str = "evaluate", lr_kind: str = "clean") -> Records:
    """Per-image records ``{"name", "size", **sample.info, "values": {method: {key: float}},
    "seconds": {method: s}}`` for the first ``limit`` photos of ``folder``.

    ``methods[name](sample)`` -> the x``scale`` image, ``(H, W, 3)`` array or ``(1, 3, H, W)`` tensor in
    [0, 1]; they run in order, so a method may use ``sample.outputs`` of the earlier ones. ``scorers``:
    ``scorer(sr_u8, sample) -> {key: float}``, after ``psnr`` and ``ssim``. ``crop_multiple`` (default
    ``scale``): HR sides are cropped to its multiples. ``prepare(sample)`` runs once per photo before the
    methods. ``reuses[name]``: the methods (or ``"prepare"``) whose work ``name`` reuses; their seconds
    count in its time. ``lr_kind``: the LR image, ``"clean"`` or ``"real-world"``
    (:func:`hdm.data.degrade.make_lr`). Raises :class:`ImageError` when no photo could be read."""
    reuses = reuses or {}
    records, skipped = [], []
    for path in tqdm(list_photos(folder)[:limit], desc=f"{desc} {Path(folder).name}", disable=not progress):
        try:
            sample = _load(path, scale, crop_multiple or scale, lr_kind)
        except ImageError as e:
            skipped.append({"name": path.name, "reason": str(e)})
            tqdm.write(f"skipped {path.name}: {e}", file=sys.stderr)
            continue
        seconds = {}
        t0 = time.perf_counter()
        if prepare is not None:
            prepare(sample)
        prepare_s = time.perf_counter() - t0
        for name, method in methods.items():
            t0 = time.perf_counter()
            sample.outputs[name] = method(sample)
            _sync()
            seconds[name] = time.perf_counter() - t0
        for name, used in reuses.items():
            seconds[name] += sum(prepare_s if u == "prepare" else seconds[u] for u in used)
        values = {}
        for name, output in sample.outputs.items():
            sr_u8 = _as_uint8(output)
            p, s = psnr_ssim_y(sr_u8, sample.hr_u8, crop=scale)
            values[name] = {"psnr": p, "ssim": s}
            for scorer in scorers:
                values[name].update(scorer(sr_u8, sample))
        records.append({"name": path.name, "size": list(sample.hr.shape[:2]), **sample.info, "values": values,
                        "seconds": seconds})
    if not records:
        raise ImageError(f"no image of {folder} could be evaluated; unreadable: "
                         + "; ".join(f"{s['name']} ({s['reason']})" for s in skipped))
    return Records(records, skipped)


def method_means(records: Sequence[dict], method: str, keys: Sequence[str]) -> dict:
    """``{key: mean over the images where it is defined (NaN where none is), "seconds_per_image": mean}``."""
    out = {}
    for k in keys:
        v = [r["values"][method][k] for r in records]
        v = [x for x in v if not math.isnan(x)]
        out[k] = float(np.mean(v)) if v else math.nan
    out["seconds_per_image"] = float(np.mean([r["seconds"][method] for r in records]))
    return out


def paired_differences(records: Sequence[dict], a: str, b: str, keys: Sequence[str], n_boot: int = 2000) -> dict:
    """``{key: paired bootstrap of a - b over the images (a dict of PairedComparison's fields)}`` for
    each key defined for both on at least 2 images."""
    out = {}
    for k in keys:
        va = np.array([r["values"][a][k] for r in records], dtype=np.float64)
        vb = np.array([r["values"][b][k] for r in records], dtype=np.float64)
        if (~(np.isnan(va) | np.isnan(vb))).sum() >= 2:
            out[k] = vars(paired_bootstrap(va, vb, n_boot=n_boot))
    return out


def summarize_records(records: Sequence[dict], methods: Sequence[str], keys: Sequence[str],
                      pairs: Sequence[tuple[str, str]], n_boot: int = 2000) -> dict:
    """``{"n", "skipped", "methods": {m: method_means}, "comparisons": {"a - b": paired_differences}}``
    for the ``(a, b)`` pairs whose methods were both evaluated."""
    return {"n": len(records), "skipped": list(getattr(records, "skipped", [])),
            "methods": {m: method_means(records, m, keys) for m in methods},
            "comparisons": {f"{a} - {b}": paired_differences(records, a, b, keys, n_boot)
                            for a, b in pairs if a in methods and b in methods}}


def skipped_note(skipped: Sequence[dict]) -> list[str]:
    """The results file's lines on the files skipped as unreadable (``[{"name", "reason"}]``): none when
    none was, else a blank line and one line naming each with its reason."""
    if not skipped:
        return []
    return ["", "Skipped as unreadable (not in the figures): " + "; ".join(f"`{s['name']}` ({s['reason']})"
                                                                          for s in skipped)]
