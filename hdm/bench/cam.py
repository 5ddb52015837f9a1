"""The CAM benchmark: every method on :mod:`hdm.bench.shapes` images, scored against the true masks.

``hdm eval-cam`` runs :func:`evaluate` and writes ``docs/results/cam.md`` with
:func:`markdown` (and JSON with :func:`summarize`). Methods are callables
``(x (B, 3, H, W), targets list[int]) -> maps (B, H, W)`` in [0, 1]; :func:`default_methods` builds
the peers, the HDM-CAM modes and two floors, :func:`ablation_methods` the HDM-CAM variants.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from ..cam import HDMCAM, GradCAM, GradCAMPlusPlus, LayerCAM
from ..cam import metrics as M
from ..cam.hdm_cam import TUNED
from ..errors import BadArgument
from ..io.images import IMAGENET_MEAN, IMAGENET_STD
from .shapes import ShapesDataset, to_tensor
from .stats import paired_bootstrap

__all__ = ["LAYERS", "default_methods", "ablation_methods", "evaluate", "EvalResult", "summarize", "markdown",
           "METRICS", "REFERENCES", "BASELINES", "tuned_hdm_cam", "ABLATIONS", "best_ablation"]

LAYERS = ["layer1", "layer2", "layer3", "layer4"]
#: (key, column title, higher is better)
METRICS = [
    ("auc", "pixel AUC", True), ("energy", "energy in mask", True), ("pointing", "pointing", True),
    ("iou@0.15", "IoU@.15", True), ("iou@0.25", "IoU@.25", True), ("iou@0.5", "IoU@.5", True),
    ("miou", "mean IoU", True), ("box_acc", "box acc", True),
    ("deletion", "deletion AUC", False), ("insertion", "insertion AUC", True),
    ("avg_drop", "Avg Drop %", False), ("increase", "Incr. Conf. %", True),
]
FAITHFULNESS = ("deletion", "insertion", "avg_drop", "increase")
#: The methods compared against every baseline (the paper's HDM-CAM and the tuned one), and the baselines.
REFERENCES = ("HDM-CAM (exp)", "HDM-CAM tuned")
BASELINES = ["HDM-CAM (exp)", "Grad-CAM++ (layer4)", "Grad-CAM++ (layers 1-4)", "Grad-CAM (layer4)", "Grad-CAM (layers 1-4)",
             "LayerCAM (layers 1-4)", "grad-cam pkg Grad-CAM++ mean (layers 1-4)", "random", "Sobel"]

Method = Callable[[torch.Tensor, list], np.ndarray]


def random_map(seed: int = 0) -> Method:
    """Floor: i.i.d. uniform noise per pixel (a fresh, seeded draw per call)."""
    gen = torch.Generator().manual_seed(seed)

    def fn(x, targets):
        return torch.rand(x.shape[0], *x.shape[-2:], generator=gen).numpy()
    return fn


def sobel_map(x: torch.Tensor, targets=None) -> np.ndarray:
    """Floor: Sobel gradient magnitude of the grey image, min-max normalised (ignores the model)."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    grey = ((x.detach().cpu() * std + mean) * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).numpy()
    out = []
    for g in grey:
        mag = np.hypot(ndimage.sobel(g, axis=0, mode="nearest"), ndimage.sobel(g, axis=1, mode="nearest"))
        out.append((mag - mag.min()) / (mag.max() - mag.min() + 1e-7))
    return np.stack(out).astype(np.float32)


def _ours(cam) -> Method:
    return lambda x, targets: cam(x, list(targets))


def _package_gradcampp(model) -> Method | None:
    """pytorch-grad-cam's GradCAMPlusPlus over layers 1-4 (its mean of per-layer maps), if installed.

    Its hooks live only during each call, so they never slow down or leak into other methods."""
    try:
        import pytorch_grad_cam as pgc  # optional: the reference package (the [train] extra)
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # optional, as above
    except ImportError:
        return None

    def fn(x, targets):
        with pgc.GradCAMPlusPlus(model, [getattr(model, n) for n in LAYERS]) as ref:
            return ref(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in targets])
    return fn


def tuned_hdm_cam(model, **overrides) -> HDMCAM:
    """HDM-CAM with :data:`hdm.cam.hdm_cam.TUNED` (the settings chosen on the validation split)."""
    kw = {**TUNED, **overrides}
    return HDMCAM(model, kw.pop("target_layers", LAYERS), **kw)


def default_methods(model, theta=None, seed: int = 0) -> dict[str, Method]:
    """Peers, HDM-CAM in each alpha mode (``learned`` only with ``theta``), the tuned HDM-CAM, and
    the two floors."""
    methods = {
        "Grad-CAM (layer4)": _ours(GradCAM(model, ["layer4"])),
        "Grad-CAM (layers 1-4)": _ours(GradCAM(model, LAYERS)),
        "Grad-CAM++ (layer4)": _ours(GradCAMPlusPlus(model, ["layer4"])),
        "Grad-CAM++ (layers 1-4)": _ours(GradCAMPlusPlus(model, LAYERS)),
        "LayerCAM (layers 1-4)": _ours(LayerCAM(model, LAYERS)),
    }
    package = _package_gradcampp(model)
    if package is not None:
        methods["grad-cam pkg Grad-CAM++ mean (layers 1-4)"] = package
    for mode in ("exp", "inverse", "equal"):
        methods[f"HDM-CAM ({mode})"] = _ours(HDMCAM(model, LAYERS, alpha=mode))
    if theta is not None:
        methods["HDM-CAM (learned)"] = _ours(HDMCAM(model, LAYERS, alpha="learned", theta=theta))
    methods["HDM-CAM tuned"] = _ours(tuned_hdm_cam(model))
    methods["random"] = random_map(seed)
    methods["Sobel"] = sobel_map
    return methods


#: HDM-CAM variants of the ablation table: name -> HDMCAM keyword arguments (``target_layers`` included).
ABLATIONS = {
    "HDM-CAM (exp) [default: diag Hessian, weighted bands, layers 1-4, J=2, sum]": {},
    "Hessian term alone (bands equal)": {"bands": "equal"},
    "wavelet term alone (no Hessian)": {"hessian": "none"},
    "neither (bands equal, no Hessian)": {"bands": "equal", "hessian": "none"},
    "eigen Hessian, sigmas (0.5, 1, 2)": {"hessian": "eigen"},
    "eigen Hessian, sigmas (1,)": {"hessian": "eigen", "sigmas": (1.0,)},
    "eigen Hessian, sigmas (2, 4)": {"hessian": "eigen", "sigmas": (2.0, 4.0)},
    "layer4 only": {"target_layers": ["layer4"]},
    "layers 3-4": {"target_layers": ["layer3", "layer4"]},
    "layers 2-4": {"target_layers": ["layer2", "layer3", "layer4"]},
    "J=1": {"levels": 1},
    "J=3": {"levels": 3},
    "layer fusion mean": {"layer_fusion": "mean"},
    "bands equal + layer fusion mean": {"bands": "equal", "layer_fusion": "mean"},
    "bands modulate": {"bands": "modulate"},
    "bands modulate + layer fusion mean": {"bands": "modulate", "layer_fusion": "mean"},
    "bands modulate, detail gain 4 (lambda = 1, 4, 4, 4)": {"bands": "modulate", "band_gain": (1.0, 4.0, 4.0, 4.0)},
    "bands modulate + layer fusion mean, alpha equal": {"bands": "modulate", "layer_fusion": "mean", "alpha": "equal"},
    "bands modulate + layer fusion mean, alpha inverse": {"bands": "modulate", "layer_fusion": "mean",
                                                          "alpha": "inverse"},
    "bands modulate + layer fusion mean, no Hessian": {"bands": "modulate", "layer_fusion": "mean", "hessian": "none"},
    "bands modulate + layer fusion mean, layers 2-4": {"bands": "modulate", "layer_fusion": "mean",
                                                       "target_layers": ["layer2", "layer3", "layer4"]},
    "bands modulate + layer fusion mean, J=1": {"bands": "modulate", "layer_fusion": "mean", "levels": 1},
}


def best_ablation(ablations: dict, metric: str = "miou") -> tuple[str, dict]:
    """``(name, HDMCAM keyword arguments)`` of the :data:`ABLATIONS` variant with the highest ``metric``
    in an ablation summary (the rule that picks :data:`hdm.cam.hdm_cam.TUNED` on the validation split)."""
    scores = {name: m[metric] for name, m in ablations["methods"].items() if name in ABLATIONS}
    if not scores:
        raise BadArgument("the summary holds none of the ablation variants")
    name = max(scores, key=scores.get)
    return name, dict(ABLATIONS[name])


def ablation_methods(model) -> dict[str, Method]:
    """HDM-CAM with one part changed at a time (all alpha = exp unless named): :data:`ABLATIONS`."""
    out = {}
    for name, kw in ABLATIONS.items():
        kw = dict(kw)
        layers = kw.pop("target_layers", LAYERS)
        out[name] = _ours(HDMCAM(model, layers, **kw))
    return out


@dataclass
class EvalResult:
    """Per-image values ``values[method][metric]`` ``(N,)``, seconds per image, and the data used."""

    values: dict[str, dict[str, np.ndarray]]
    seconds: dict[str, float]
    n: int
    accuracy: float
    meta: dict = field(default_factory=dict)


def evaluate(model, dataset: ShapesDataset, methods: dict[str, Method], *, batch_size: int = 16,
             faithfulness: bool = True, steps: int = 16, progress: bool = True) -> EvalResult:
    """Run every method on every image of ``dataset`` (explaining the true class) and score it."""
    model.eval()
    # the many forward passes of deletion/insertion run on a channels-last copy (faster on CPU)
    scorer = copy.deepcopy(model).to(memory_format=torch.channels_last) if faithfulness else None
    for m in scorer.modules() if scorer is not None else ():  # a copy carries no one's hooks
        m._forward_hooks.clear()  # noqa: SLF001
        m._forward_pre_hooks.clear()  # noqa: SLF001
    keys = [k for k, *_ in METRICS if faithfulness or k not in FAITHFULNESS]
    values = {name: {k: [] for k in keys} for name in methods}
    seconds = {name: 0.0 for name in methods}
    correct = 0
    for start in tqdm(range(0, len(dataset), batch_size), desc="eval-cam", disable=not progress):
        samples = [dataset.sample(i) for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([to_tensor(s.image) for s in samples])
        labels = [s.label for s in samples]
        with torch.no_grad():
            correct += int((model(x).argmax(1) == torch.tensor(labels)).sum())
        for name, fn in methods.items():
            t0 = time.perf_counter()
            cams = np.asarray(fn(x, labels), dtype=np.float32)
            seconds[name] += time.perf_counter() - t0
            v = values[name]
            for cam, s in zip(cams, samples):
                v["auc"].append(M.pixel_auc(cam, s.mask))
                v["energy"].append(M.energy_inside(cam, s.mask))
                v["pointing"].append(M.pointing_game(cam, s.mask))
                ious = [M.threshold_iou(cam, s.mask, t) for t in M.IOU_THRESHOLDS]
                for t, iou in zip(M.IOU_THRESHOLDS, ious):
                    v[f"iou@{t}"].append(iou)
                v["miou"].append(float(np.mean(ious)))
                v["box_acc"].append(M.box_accuracy(cam, s.boxes))
            if faithfulness:
                cams_t = torch.from_numpy(cams)
                deletion, insertion = M.deletion_insertion(scorer, x, cams_t, labels, steps=steps)
                drop, increase = M.drop_and_increase(scorer, x, cams_t, labels)
                v["deletion"] += deletion.tolist()
                v["insertion"] += insertion.tolist()
                v["avg_drop"] += drop.tolist()
                v["increase"] += increase.tolist()
    n = len(dataset)
    return EvalResult({m: {k: np.asarray(a, dtype=np.float64) for k, a in d.items()} for m, d in values.items()},
                      {m: s / n for m, s in seconds.items()}, n, correct / n,
                      {"steps": steps, "batch_size": batch_size})


def summarize(result: EvalResult, references=REFERENCES, baselines=None, n_boot: int = 2000,
              seed: int = 0) -> dict:
    """Means per method and metric, and paired-bootstrap comparisons of each of ``references`` with
    each baseline: ``summary["comparisons"][reference][baseline][metric]``."""
    summary = {"n": result.n, "accuracy": result.accuracy, "meta": result.meta,
               "methods": {m: {**{k: float(np.nanmean(a)) for k, a in d.items()}, "seconds_per_image": result.seconds[m]}
                           for m, d in result.values.items()},
               "comparisons": {}}
    for ref in [r for r in references if r in result.values]:
        others = [b for b in (baselines or BASELINES) if b in result.values and b != ref]
        summary["comparisons"][ref] = {
            b: {k: vars(paired_bootstrap(result.values[ref][k], result.values[b][k], n_boot=n_boot, seed=seed))
                for k in result.values[ref]}
            for b in others}
    return summary


def _fmt(v: float, key: str) -> str:
    return f"{v:.1f}" if key in ("avg_drop", "increase") else f"{v:.3f}"


def markdown(summary: dict, header: list[str], ablations: dict | None = None, theta: dict | None = None) -> str:
    """The results file: header, the method table, the comparisons, the goal check, ablations, theta."""
    methods = summary["methods"]
    keys = [(k, t) for k, t, _ in METRICS if k in next(iter(methods.values()))]
    better = {k: hi for k, _, hi in METRICS}
    lines = list(header)
    lines += [f"Model accuracy on these images: {summary['accuracy']:.4f} ({summary['n']} images). Every map explains "
              "the true class. Arrows: which way is better.", ""]
    lines.append("| method | " + " | ".join(f"{t} {'↑' if better[k] else '↓'}" for k, t in keys) + " | ms/image |")
    lines.append("|---" * (len(keys) + 2) + "|")
    for m, d in methods.items():
        lines.append(f"| {m} | " + " | ".join(_fmt(d[k], k) for k, _ in keys) + f" | {1000 * d['seconds_per_image']:.1f} |")
    for ref, comps in summary.get("comparisons", {}).items():
        lines += ["", f"## {ref} minus each baseline (mean difference, 95 % paired-bootstrap CI)", "",
                  "`*` marks an interval that excludes zero.", ""]
        lines.append("| baseline | " + " | ".join(t for _, t in keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for b, c in comps.items():
            cells = []
            for k, _ in keys:
                r = c[k]
                star = "*" if (r["diff_lo"] > 0 or r["diff_hi"] < 0) else ""
                cells.append(f"{r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]{star}")
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
    goal_rows = [(ref, b, comps[b]) for ref, comps in summary.get("comparisons", {}).items()
                 for b in ("Grad-CAM++ (layer4)", "Grad-CAM++ (layers 1-4)") if b in comps and "insertion" in comps[b]]
    if goal_rows:
        lines += ["", "## Goal: IoU at least 1.10x Grad-CAM++, insertion higher, deletion no worse (CIs excluding zero)", ""]
        lines.append("| method | baseline | IoU ratio (mean IoU) [95 % CI] | IoU@.15 | IoU@.25 | IoU@.5 | insertion diff "
                     "| deletion diff | met |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for ref, b, c in goal_rows:
            ratio = lambda k: f"{c[k]['ratio']:.3f}"  # noqa: E731
            # IoU gain >= 10 % and significant, insertion significantly higher, deletion not significantly worse
            met = (c["miou"]["ratio"] >= 1.10 and c["miou"]["diff_lo"] > 0
                   and c["insertion"]["diff_lo"] > 0 and c["deletion"]["diff_lo"] <= 0)
            lines.append(f"| {ref} | {b} | {c['miou']['ratio']:.3f} [{c['miou']['ratio_lo']:.3f}, {c['miou']['ratio_hi']:.3f}] | "
                         f"{ratio('iou@0.15')} | {ratio('iou@0.25')} | {ratio('iou@0.5')} | "
                         f"{c['insertion']['diff']:+.3f} [{c['insertion']['diff_lo']:+.3f}, {c['insertion']['diff_hi']:+.3f}] | "
                         f"{c['deletion']['diff']:+.3f} [{c['deletion']['diff_lo']:+.3f}, {c['deletion']['diff_hi']:+.3f}] | "
                         f"{'yes' if met else 'no'} |")
    if theta:
        lines += ["", "## Learned scale weights (eq. 13)", "",
                  f"theta = {[round(t, 4) for t in theta['theta']]}, alpha = sigmoid(theta) = "
                  f"{[round(a, 4) for a in theta['alpha']]} (fitted by `{theta.get('command', 'hdm fit-theta')}`).", "",
                  "Objective (cross-entropy of the classifier on x * CAM) on the calibration split, per alpha mode:", "",
                  "| mode | objective |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in theta.get("objective", {}).items()]
    if ablations:
        akeys = [(k, t) for k, t, _ in METRICS if k in next(iter(ablations["methods"].values()))]
        lines += ["", f"## Ablations of HDM-CAM ({ablations['n']} images, localisation only)", ""]
        lines.append("| variant | " + " | ".join(t for _, t in akeys) + " | ms/image |")
        lines.append("|---" * (len(akeys) + 2) + "|")
        for m, d in ablations["methods"].items():
            lines.append(f"| {m} | " + " | ".join(_fmt(d[k], k) for k, _ in akeys) + f" | {1000 * d['seconds_per_image']:.1f} |")
    return "\n".join(lines) + "\n"
