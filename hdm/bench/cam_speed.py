"""Measurements that write docs/results/*.md: CAM speed, and how far HDM-CAM is from Grad-CAM++.

Both are run by ``hdm bench-cam`` and ``hdm compare-cam``; the files they write
carry the command line, the date and the machine, and are never edited by hand.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torchvision
from scipy.stats import spearmanr
from tqdm import tqdm

from ..cam import HDMCAM, GradCAM, GradCAMPlusPlus
from ..io.images import load_rgb, to_model_input
from .report import header

__all__ = ["cam_speed", "speed_markdown", "hdm_vs_gradcampp", "agreement_markdown", "sample_photos"]

LAYERS = ["layer1", "layer2", "layer3", "layer4"]






def _methods(model, with_reference: bool):
    methods = {
        "hdm Grad-CAM": GradCAM(model, LAYERS),
        "hdm Grad-CAM++": GradCAMPlusPlus(model, LAYERS),
        "hdm HDM-CAM (default: hessian=diag)": HDMCAM(model, LAYERS),
        "hdm HDM-CAM (hessian=eigen)": HDMCAM(model, LAYERS, hessian="eigen"),
    }
    if with_reference:
        try:
            import pytorch_grad_cam as pgc  # optional: the reference package (the [train] extra)
        except ImportError:
            print("grad-cam is not installed: the reference column is skipped (pip install -r requirements-dev.txt)")
        else:
            ref = pgc.GradCAMPlusPlus(model, [getattr(model, n) for n in LAYERS])
            methods["grad-cam package GradCAMPlusPlus"] = lambda x, t, ref=ref: ref(input_tensor=x, targets=None)
    return methods


def cam_speed(batches=(1, 8), size: int = 224, repeats: int = 5, seed: int = 0, reference: bool = True) -> dict:
    """Median seconds per call of each method on ResNet-50 (random weights: speed does not depend on them),
    layers 1-4, CPU. Methods alternate within each repeat so that drifts in machine load hit all alike."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet50().eval()
    methods = _methods(model, reference)
    results = {}
    for batch in batches:
        x = torch.randn(batch, 3, size, size)
        times = {name: [] for name in methods}
        for name, m in methods.items():  # warm-up
            m(x, None)
        for _ in tqdm(range(repeats), desc=f"batch {batch}", unit="round"):
            for name, m in methods.items():
                start = time.perf_counter()
                m(x, None)
                times[name].append(time.perf_counter() - start)
        results[batch] = {name: statistics.median(ts) for name, ts in times.items()}
    return results


def speed_markdown(results: dict, size: int, repeats: int) -> str:
    lines = header("CAM speed: ResNet-50, layers 1-4, CPU",
                    f"random N(0,1) input of {size}x{size} px, median of {repeats} alternating rounds after one warm-up")
    base, ref = "hdm Grad-CAM++", "grad-cam package GradCAMPlusPlus"
    lines += ["| batch | method | median s | x hdm Grad-CAM++ | x grad-cam GradCAMPlusPlus |", "|---|---|---|---|---|"]
    for batch, row in results.items():
        for name, sec in row.items():
            vs_ref = f"{sec / row[ref]:.2f}" if ref in row else "n/a"
            lines.append(f"| {batch} | {name} | {sec:.3f} | {sec / row[base]:.2f} | {vs_ref} |")
    lines += ["", "Goals: HDM-CAM (default mode) <= 1.3x hdm Grad-CAM++, and no slower than the grad-cam "
              "package's multi-layer GradCAMPlusPlus.", ""]
    return "\n".join(lines)


def sample_photos(size: int = 224) -> tuple[list[str], torch.Tensor]:
    """scikit-image's bundled photos (no download) as an ImageNet-normalised batch."""
    from skimage import data  # optional: the [app] and [train] extras

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"]
    images = []
    for n in names:
        img = getattr(data, n)()
        images.append(to_model_input(load_rgb(img), size=size))
    return names, torch.cat(images)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def hdm_vs_gradcampp(model: torch.nn.Module, size: int = 224) -> dict:
    """Spearman rho and mean |difference| between HDM-CAM (each alpha mode) and Grad-CAM++ maps,
    on the same photos, top class, same layers."""
    names, x = sample_photos(size)
    with torch.no_grad():
        targets = model(x).argmax(dim=1).tolist()
    configs = [("layer1-4", LAYERS)] + [(n, [n]) for n in LAYERS]
    rows = []
    for label, layers in tqdm(configs, desc="layer sets"):
        ref = GradCAMPlusPlus(model, layers)(x, targets)
        for alpha in ("exp", "inverse"):
            ours = HDMCAM(model, layers, alpha=alpha)(x, targets)
            rhos = [_spearman(ours[i], ref[i]) for i in range(len(names))]
            rows.append({"layers": label, "alpha": alpha, "rho": rhos,
                         "mean_abs_diff": float(np.abs(ours - ref).mean())})
    return {"photos": names, "rows": rows}


def agreement_markdown(result: dict, model_label: str) -> str:
    lines = header("HDM-CAM vs Grad-CAM++: how different are the maps?",
                    f"scikit-image photos {', '.join(result['photos'])} at 224 px, top class; model: {model_label}")
    lines += ["Spearman rank correlation of the two maps per photo (1 = same ranking of pixels), and the mean absolute",
              "difference of the [0, 1] maps.", "",
              "| layers | HDM alpha | Spearman rho per photo | median rho | mean abs diff |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        rhos = ", ".join(f"{v:.3f}" for v in r["rho"])
        lines.append(f"| {r['layers']} | {r['alpha']} | {rhos} | {statistics.median(r['rho']):.3f} | {r['mean_abs_diff']:.3f} |")
    lines.append("")
    return "\n".join(lines)


