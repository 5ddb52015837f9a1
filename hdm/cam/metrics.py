"""How good is a saliency map? Localisation against a ground-truth mask, and faithfulness to the model.

Localisation (pure functions of one map ``(H, W)`` float >= 0 and one mask ``(H, W)`` bool):
:func:`pixel_auc`, :func:`energy_inside`, :func:`pointing_game`, :func:`threshold_iou`,
:func:`box_accuracy`. A map that is constant (or all zero) carries no information and scores as such:
AUC 0.5, energy share = pointing = mask fraction, IoU = IoU of the whole image.

Faithfulness (need the model): :func:`deletion_insertion` (Petsiuk et al., RISE, BMVC 2018) and
:func:`drop_and_increase` (Average Drop and Increase in Confidence, Chattopadhyay et al.,
Grad-CAM++, WACV 2018, eqs. 20-21) and :func:`road` (ROAD, Rong et al., ICML 2022: remove pixels and
fill them by noisy linear imputation, the grad-cam package's implementation). A target is a class index,
scored by its softmax probability, or a score callable on one image's model output (:mod:`hdm.cam.targets`,
e.g. a face descriptor's cosine similarity to a reference).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.stats import rankdata

from ..errors import BadArgument
from ..ops.derivatives import gaussian_blur2d

__all__ = ["pixel_auc", "energy_inside", "pointing_game", "threshold_iou", "largest_component_box", "box_iou",
           "box_accuracy", "deletion_insertion", "drop_and_increase", "road", "IOU_THRESHOLDS", "BOX_THRESHOLD",
           "ROAD_PERCENTILES"]

#: Fractions of the map's maximum at which it is binarised for IoU.
IOU_THRESHOLDS = (0.15, 0.25, 0.5)
#: ROAD's thresholds (the grad-cam package's default): at percentile ``p`` the ``100 - p`` % of pixels with the
#: highest (MoRF) or lowest (LeRF) saliency are removed.
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: Fraction of the maximum for the box (Grad-CAM's localisation protocol, Selvaraju et al. 2017).
BOX_THRESHOLD = 0.15


def _check(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam, mask = np.asarray(cam, dtype=np.float64), np.asarray(mask, dtype=bool)
    if cam.shape != mask.shape or cam.ndim != 2:
        raise BadArgument(f"cam and mask must be (H, W) of one shape, got {cam.shape} and {mask.shape}")
    return cam, mask


def pixel_auc(cam, mask) -> float:
    """ROC-AUC of the map's values as a score for "pixel is in the mask" (ties count one half).

    Mann-Whitney: ``(sum of ranks of mask pixels - n+ (n+ + 1) / 2) / (n+ n-)``. NaN if the mask is
    empty or full."""
    cam, mask = _check(cam, mask)
    n_pos = int(mask.sum())
    n_neg = mask.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(cam.ravel())
    return float((ranks[mask.ravel()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def energy_inside(cam, mask) -> float:
    """Share of the map's energy inside the mask, ``sum_mask cam / sum cam`` (the energy-based pointing
    game of Score-CAM); an all-zero map counts as constant (the mask's area fraction)."""
    cam, mask = _check(cam, mask)
    cam = np.clip(cam, 0, None)
    total = cam.sum()
    return float(mask.mean()) if total <= 0 else float(cam[mask].sum() / total)


def pointing_game(cam, mask) -> float:
    """1 if the map's maximum (the first in raster order when tied) lies in the mask, else 0; a constant map
    points nowhere and scores the mask's area fraction (the hit rate of a point drawn at random)."""
    cam, mask = _check(cam, mask)
    if cam.max() == cam.min():
        return float(mask.mean())
    return float(mask.ravel()[int(np.argmax(cam))])


def _binary(cam: np.ndarray, threshold: float) -> np.ndarray:
    return cam >= threshold * cam.max()


def threshold_iou(cam, mask, threshold: float) -> float:
    """IoU between ``cam >= threshold * max(cam)`` and the mask."""
    cam, mask = _check(cam, mask)
    pred = _binary(cam, threshold)
    union = (pred | mask).sum()
    return float((pred & mask).sum() / union) if union else float("nan")


def largest_component_box(binary: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` (inclusive) of the largest 8-connected component of a boolean map."""
    labels, n = ndimage.label(binary, structure=np.ones((3, 3)))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def box_iou(a, b) -> float:
    """IoU of two inclusive pixel boxes ``(x0, y0, x1, y1)``."""
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(ix, 0) * max(iy, 0)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def box_accuracy(cam, boxes, threshold: float = BOX_THRESHOLD, min_iou: float = 0.5) -> float:
    """1 if the box of the largest component of ``cam >= threshold * max`` has IoU >= ``min_iou``
    with any ground-truth box ``(n, 4)``, else 0."""
    cam = np.asarray(cam, dtype=np.float64)
    box = largest_component_box(_binary(cam, threshold))
    if box is None or len(boxes) == 0:
        return 0.0
    return float(max(box_iou(box, b) for b in np.asarray(boxes)) >= min_iou)


def _scores(model, x: torch.Tensor, targets, image: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Score of each row of ``x`` ``(N, C, H, W)`` for the target of its image, ``targets[image[row]]``:
    the softmax probability of a class index, or a score callable applied to the row's output."""
    out = []
    for i in range(0, len(x), batch_size):
        outputs = model(x[i:i + batch_size].contiguous(memory_format=torch.channels_last)).float()
        rows = image[i:i + batch_size].tolist()
        if all(isinstance(targets[r], int) for r in rows):
            classes = torch.tensor([targets[r] for r in rows], device=outputs.device)
            out.append(F.softmax(outputs, dim=1).gather(1, classes[:, None])[:, 0])
        else:
            out.append(torch.stack([_score(targets[r], o) for r, o in zip(rows, outputs)]).float())
    return torch.cat(out)


def _score(target, output: torch.Tensor) -> torch.Tensor:
    return F.softmax(output, dim=0)[target] if isinstance(target, int) else target(output)


def _targets(targets, n: int) -> list:
    targets = [int(t) if isinstance(t, (int, np.integer)) or (torch.is_tensor(t) and t.numel() == 1) else t
               for t in (targets.tolist() if torch.is_tensor(targets) else targets)]
    if len(targets) != n or not all(isinstance(t, int) or callable(t) for t in targets):
        raise BadArgument(f"got {len(targets)} targets for {n} images: give one per image, a class index or a "
                          "score callable")
    return targets


@torch.no_grad()
def deletion_insertion(model, x: torch.Tensor, cams: torch.Tensor, targets, steps: int = 16,
                       blur_sigma: float = 5.0, batch_size: int = 64, fill=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion AUCs (RISE) of maps ``cams`` ``(B, H, W)`` for inputs ``x`` ``(B, C, H, W)``.

    Pixels are ranked by decreasing saliency (ties in raster order). Deletion replaces the top
    ``k/steps`` share of pixels with ``fill`` (a number or one per channel; default 0, the dataset mean
    of normalised inputs); insertion starts from the input blurred with a Gaussian of ``blur_sigma`` px
    and puts back the top share. The curve of the target's score (class probability, or the callable's
    value) over ``k = 0..steps`` is integrated by the trapezoid rule on [0, 1]. Lower deletion and higher
    insertion are better. Returns two ``(B,)`` arrays.
    """
    B, C, H, W = x.shape
    targets = _targets(targets, B)
    order = torch.argsort(-cams.reshape(B, -1).to(x.device), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(H * W, device=x.device).expand(B, -1))  # rank of each pixel
    blurred = gaussian_blur2d(x, blur_sigma)
    fractions = torch.arange(steps + 1, device=x.device) / steps
    keep = rank[:, None, :] < (fractions * H * W).round().long()[None, :, None]  # (B, steps+1, HW): top share
    keep = keep.reshape(B, steps + 1, 1, H, W).to(x.dtype)
    fill = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
    fill = fill.expand(C).reshape(1, 1, C, 1, 1) if fill.numel() == 1 else fill.reshape(1, 1, C, 1, 1)
    deleted = x[:, None] * (1 - keep) + fill * keep
    inserted = blurred[:, None] * (1 - keep) + x[:, None] * keep
    rows = torch.arange(B).repeat_interleave(steps + 1)
    p_del = _scores(model, deleted.flatten(0, 1), targets, rows, batch_size).view(B, steps + 1)
    p_ins = _scores(model, inserted.flatten(0, 1), targets, rows, batch_size).view(B, steps + 1)
    auc = lambda p: ((p[:, 1:] + p[:, :-1]) / 2).mean(dim=1)  # noqa: E731  trapezoid on [0, 1]
    return auc(p_del).cpu().numpy(), auc(p_ins).cpu().numpy()


@torch.no_grad()
def drop_and_increase(model, x: torch.Tensor, cams: torch.Tensor, targets, batch_size: int = 64):
    """Per-image terms of Average Drop and Increase in Confidence (Grad-CAM++ eqs. 20-21).

    With ``Y`` the class probability on ``x`` and ``O`` on ``x * cam`` (the explanation map as a mask):
    drop ``= 100 max(0, Y - O) / Y`` and increase ``= 100 [O > Y]``; their means over images are
    Average Drop % (lower is better) and Increase in Confidence % (higher is better).
    Returns two ``(B,)`` arrays."""
    targets, rows = _targets(targets, len(x)), torch.arange(len(x))
    y = _scores(model, x, targets, rows, batch_size)
    o = _scores(model, x * cams.to(x.device, x.dtype)[:, None], targets, rows, batch_size)
    drop = 100 * (y - o).clamp_min(0) / y.clamp_min(torch.finfo(y.dtype).tiny)
    return drop.cpu().numpy(), (100.0 * (o > y)).cpu().numpy()


@torch.no_grad()
def road(model, x: torch.Tensor, cams, targets, percentiles=ROAD_PERCENTILES, seed: int = 0) -> dict[str, np.ndarray]:
    """ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022)
    with the grad-cam package's implementation (``pytorch_grad_cam.metrics.road``).

    For each percentile ``p`` the package removes the pixels whose saliency is at or above the map's
    ``p``-th percentile (MoRF: most relevant first) or, for LeRF, at or below its ``(100 - p)``-th, fills them
    by noisy linear imputation from their neighbours (noise 0.01 from torch's generator, seeded with ``seed``
    before each ordering inside a forked RNG state: results repeat and the caller's state is untouched)
    and scores the target (class probability, or the callable's value). Maps ``cams`` ``(B, H, W)`` (array
    or tensor), inputs ``x`` ``(B, C, H, W)``, one target per image. Returns ``(B,)`` arrays:
    ``road_morf`` (mean probability over the percentiles, lower is better), ``road_lerf`` (higher is
    better) and ``road`` = ``(road_lerf - road_morf) / 2``, the package's ROADCombined (higher is better).
    """
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst  # optional: [train]
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget  # optional, as above

    cams = cams.detach().cpu().numpy() if isinstance(cams, torch.Tensor) else np.asarray(cams)
    if cams.ndim != 3 or cams.shape[0] != x.shape[0] or cams.shape[1:] != tuple(x.shape[-2:]):
        raise BadArgument(f"cams must be (B, H, W) matching x {tuple(x.shape)}, got {cams.shape}")
    targets = _targets(targets, x.shape[0])
    if not percentiles or any(not 0 < float(p) < 100 for p in percentiles):
        raise BadArgument(f"ROAD percentiles must lie strictly between 0 and 100, got {percentiles!r}")
    cams = cams.astype(np.float32)
    score = [ClassifierOutputSoftmaxTarget(t) if isinstance(t, int) else t for t in targets]
    out = {}
    with torch.random.fork_rng(devices=[]):
        for key, metric in (("road_morf", ROADMostRelevantFirst), ("road_lerf", ROADLeastRelevantFirst)):
            torch.manual_seed(seed)
            probs = [metric(p)(x, cams, score, model, return_diff=False) for p in percentiles]
            out[key] = np.mean(np.asarray(probs, dtype=np.float64), axis=0)
    out["road"] = (out["road_lerf"] - out["road_morf"]) / 2
    return out
