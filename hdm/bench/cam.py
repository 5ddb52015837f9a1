"""The CAM benchmark: every method on :mod:`hdm.data.shapes` images, scored against the true masks.

``hdm eval-cam`` runs :func:`evaluate` and writes ``docs/results/cam.md`` with
:func:`markdown` (and JSON with :func:`summarize`). Methods are callables
``(x (B, 3, H, W), targets list[int]) -> maps (B, H, W)`` in [0, 1]; :func:`default_methods` builds
the peers (hdm's and the grad-cam package's), the HDM-CAM modes and three floors;
:mod:`hdm.bench.cam_ladder` walks HDM-CAM's components one at a time. :func:`write_csv` writes the per-image
values behind a table, :func:`goal_check` says whether a method meets the goal against the best peer.

A flat map (constant: no spatial evidence, e.g. an hdm CAM that found none, :attr:`hdm.cam.CAMResult.flat`) is
scored as uninformative: the localisation metrics give it their no-information values (:mod:`hdm.cam.metrics`),
the faithfulness metrics take the random floor's pixel order in its place, and the ``flat`` column counts them.
:func:`read_result` reads a published table back and :func:`carry_rows` re-measures some of its rows.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from .. import __version__
from ..cam import HDMCAM, GradCAM, GradCAMPlusPlus, LayerCAM
from ..cam import metrics as M
from ..cam.base import RESNET_LAYERS, constant_maps
from ..cam.hdm_cam import TUNED
from ..data.shapes import ShapesDataset
from ..errors import BadArgument
from ..io.images import IMAGENET_MEAN, IMAGENET_STD, to_model_input
from .stats import ci_text, paired_bootstrap

__all__ = ["LAYERS", "default_methods", "uninformative_where_flat", "read_result", "carry_rows", "check_settings", "run_meta", "LOCALISATION",
           "CARRY_TOLERANCE", "package_peers", "centre_prior", "evaluate", "EvalResult", "summarize",
           "markdown", "write_csv", "goal_check", "peers_of", "METRICS", "REFERENCES", "BASELINES", "FLOORS",
           "tuned_hdm_cam", "CENTRE_SIGMA", "SCORE_CAM", "as_method", "package_cam", "random_map", "sobel_map"]

LAYERS = list(RESNET_LAYERS)
#: (key, column title, higher is better)
METRICS = [
    ("auc", "pixel AUC", True), ("energy", "energy pointing game", True), ("pointing", "pointing", True),
    ("iou@0.15", "IoU@.15", True), ("iou@0.25", "IoU@.25", True), ("iou@0.5", "IoU@.5", True),
    ("miou", "mean IoU", True), ("box_acc", "box acc", True), ("flat", "flat maps", False),
    ("deletion", "deletion AUC", False), ("insertion", "insertion AUC", True),
    ("road_morf", "ROAD MoRF", False), ("road_lerf", "ROAD LeRF", True), ("road", "ROAD", True),
    ("avg_drop", "Avg Drop %", False), ("increase", "Incr. Conf. %", True),
]
FAITHFULNESS = ("deletion", "insertion", "road_morf", "road_lerf", "road", "avg_drop", "increase")
#: The metrics of the maps alone (no model call): what :func:`carry_rows` recomputes to check a carried row.
LOCALISATION = ("auc", "energy", "pointing", "iou@0.15", "iou@0.25", "iou@0.5", "miou", "box_acc")
ROAD_KEYS = ("road_morf", "road_lerf", "road")
#: The centre prior's standard deviation, as a fraction of the image side.
CENTRE_SIGMA = 0.25
#: Score-CAM's name in the tables (layer4 only: a forward pass per channel, 2048 per image).
SCORE_CAM = "Score-CAM (layer4)"
#: The methods compared against every baseline (the paper's HDM-CAM and the tuned one), and the baselines.
REFERENCES = ("HDM-CAM (exp)", "HDM-CAM tuned")
BASELINES = ["HDM-CAM (exp)", "Grad-CAM++ (layer4)", "Grad-CAM++ (layers 1-4)", "Grad-CAM (layer4)", "Grad-CAM (layers 1-4)",
             "LayerCAM (layers 1-4)", "grad-cam pkg Grad-CAM++ mean (layers 1-4)", "ShapleyCAM (layer4)",
             "ShapleyCAM (layers 1-4)", "RefineCAM (layers 1-4)", "XGrad-CAM (layer4)", "XGrad-CAM (layers 1-4)",
             "HiResCAM (layer4)", "HiResCAM (layers 1-4)", SCORE_CAM, "random", "Sobel", "centre prior"]
#: The methods that are neither HDM-CAM nor a floor: the goal is set against the best of them.
FLOORS = ("random", "Sobel", "centre prior")

Method = Callable[[torch.Tensor, list], np.ndarray]


def random_map(seed: int = 0) -> Method:
    """Floor: i.i.d. uniform noise per pixel, drawn from ``seed`` and the image's bytes (so an image gets the
    same map whatever batch it is in, and a resumed run the same maps as an uninterrupted one)."""
    def fn(x, targets):
        out = []
        for image in x.detach().cpu().numpy():
            gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(image.tobytes()))
            out.append(torch.rand(*x.shape[-2:], generator=gen).numpy())
        return np.stack(out)
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


def _clear_hooks(model) -> None:
    """Drop every forward hook of a model copy (a copy carries no one's hooks)."""
    for m in model.modules():
        m._forward_hooks.clear()  # noqa: SLF001
        m._forward_pre_hooks.clear()  # noqa: SLF001


def as_method(cam) -> Method:
    """An hdm CAM object as a benchmark method: ``(x, targets) -> maps (B, H, W)``."""
    return lambda x, targets: cam(x, list(targets))


def centre_prior(sigma: float = CENTRE_SIGMA) -> Method:
    """Floor: an isotropic Gaussian centred on the image, standard deviation ``sigma`` x the side (peak 1).

    It ignores the image and the model; it scores what "objects sit near the middle" alone is worth."""
    def fn(x, targets):
        H, W = x.shape[-2:]
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
        r2 = ((yy - (H - 1) / 2) / (sigma * H)) ** 2 + ((xx - (W - 1) / 2) / (sigma * W)) ** 2
        return np.broadcast_to(np.exp(-r2 / 2), (x.shape[0], H, W)).astype(np.float32)
    return fn


def _release(cam) -> None:
    """Remove the hooks of a grad-cam package method (RefineCAM holds one method per layer)."""
    for c in getattr(cam, "base_cam_per_layer", [cam]):
        c.activations_and_grads.release()


@contextlib.contextmanager
def _replaced(owner, name: str, value):
    """``owner.name`` is ``value`` inside the block and restored after it (here: a third-party progress bar
    silenced)."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def package_cam(model, method: str, layers=LAYERS, score: str = "logit", images_per_call: int | None = None,
                 batch_size: int | None = None, per_layer: bool = False) -> Method | None:
    """The grad-cam package's ``method`` (a class name of ``pytorch_grad_cam``) over ``layers``, with the
    package's own multi-layer fusion, explaining the given class (or score callable: a target of
    :mod:`hdm.cam.targets`); ``layers``: module names, dotted for nested ones; ``None`` if the package is
    not installed.

    ``score``: ``"logit"`` (the class logit, as hdm's methods) or ``"rest"`` (the package's
    ClassifierOutputReST: logit minus cross-entropy, the score ShapleyCAM's paper explains).
    ``images_per_call`` splits a batch (Score-CAM holds ``K`` masked copies of each image);
    ``batch_size`` is Score-CAM's forward batch. ``per_layer`` runs the method once per layer and fuses the
    maps with the package's own ``aggregate_multi_layers`` (its ShapleyCAM frees the graph after the first
    layer's Hessian-vector product, so it cannot take several layers in one call). The method's hooks live
    only during each call, so they never slow down or leak into other methods; Score-CAM's per-image progress
    bars are silenced."""
    try:
        import pytorch_grad_cam as pgc  # optional: the reference package (the [train] extra)
        from pytorch_grad_cam import score_cam as pgc_score_cam  # optional, as above
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget  # optional
    except ImportError:
        return None
    target_cls = {"logit": ClassifierOutputTarget, "rest": ClassifierOutputReST}[score]
    quiet = SimpleNamespace(tqdm=lambda iterable, *a, **k: iterable)

    def run(x, targets, names):
        cam = getattr(pgc, method)(model, [model.get_submodule(n) for n in names])
        for c in getattr(cam, "base_cam_per_layer", [cam]):  # a graph even for a frozen model
            c.compute_input_gradient = True
        if batch_size is not None:
            cam.batch_size = batch_size
        try:
            with _replaced(pgc_score_cam, "tqdm", quiet):
                return cam(input_tensor=x, targets=[c if callable(c) else target_cls(int(c)) for c in targets])
        finally:
            _release(cam)

    def one_call(x, targets):
        if not per_layer or len(layers) == 1:
            return run(x, targets, layers)
        maps = [run(x, targets, [name])[:, None] for name in layers]
        return pgc.base_cam.BaseCAM.aggregate_multi_layers(None, maps)

    def fn(x, targets):
        step = images_per_call or len(x)
        return np.concatenate([one_call(x[i:i + step], list(targets)[i:i + step]) for i in range(0, len(x), step)])
    return fn


def package_peers(model, score_cam: bool = True) -> dict[str, Method]:
    """The grad-cam package's peers on the layers and class of hdm's methods (empty without the package):
    its Grad-CAM++ mean over layers 1-4, ShapleyCAM, XGrad-CAM and HiResCAM on layer4 and on layers 1-4
    (mean of per-layer normalised maps), RefineCAM (per-layer Grad-CAM++ maps multiplied) on layers 1-4,
    and Score-CAM on layer4 (forward passes in batches of 64 on a channels-last copy of the model).
    ShapleyCAM's layers 1-4 map is the package's mean fusion of its four single-layer maps.

    ShapleyCAM explains ClassifierOutputReST (its paper's score): with a class logit its Hessian-vector
    product is exactly zero in a ReLU network and it is Grad-CAM."""
    if package_cam(model, "GradCAM") is None:
        return {}
    peers = {"grad-cam pkg Grad-CAM++ mean (layers 1-4)": package_cam(model, "GradCAMPlusPlus")}
    for title, name, score in (("ShapleyCAM", "ShapleyCAM", "rest"), ("XGrad-CAM", "XGradCAM", "logit"),
                               ("HiResCAM", "HiResCAM", "logit")):
        peers[f"{title} (layer4)"] = package_cam(model, name, ["layer4"], score=score)
        peers[f"{title} (layers 1-4)"] = package_cam(model, name, LAYERS, score=score, per_layer=name == "ShapleyCAM")
    peers["RefineCAM (layers 1-4)"] = package_cam(model, "RefineCAM")
    if score_cam:
        fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
        _clear_hooks(fast)
        peers[SCORE_CAM] = package_cam(fast, "ScoreCAM", ["layer4"], images_per_call=1, batch_size=64)
    return peers


def tuned_hdm_cam(model, **overrides) -> HDMCAM:
    """HDM-CAM with :data:`hdm.cam.hdm_cam.TUNED` (the settings chosen on the validation split)."""
    kw = {**TUNED, **overrides}
    return HDMCAM(model, kw.pop("target_layers", LAYERS), **kw)


def default_methods(model, theta=None, seed: int = 0, score_cam: bool = True) -> dict[str, Method]:
    """Peers (hdm's and :func:`package_peers`), HDM-CAM in each alpha mode (``learned`` only with ``theta``) and
    with eq. (13)'s weights on ``A``'s subbands (the other reading of eq. 14), the tuned HDM-CAM, and the three
    floors."""
    methods = {
        "Grad-CAM (layer4)": as_method(GradCAM(model, ["layer4"])),
        "Grad-CAM (layers 1-4)": as_method(GradCAM(model, LAYERS)),
        "Grad-CAM++ (layer4)": as_method(GradCAMPlusPlus(model, ["layer4"])),
        "Grad-CAM++ (layers 1-4)": as_method(GradCAMPlusPlus(model, LAYERS)),
        "LayerCAM (layers 1-4)": as_method(LayerCAM(model, LAYERS)),
    }
    methods.update(package_peers(model, score_cam=score_cam))
    for mode in ("exp", "inverse", "equal"):
        methods[f"HDM-CAM ({mode})"] = as_method(HDMCAM(model, LAYERS, alpha=mode))
    methods["HDM-CAM (exp, on subbands)"] = as_method(HDMCAM(model, LAYERS, apply_to="subbands"))
    if theta is not None:
        methods["HDM-CAM (learned)"] = as_method(HDMCAM(model, LAYERS, alpha="learned", theta=theta))
    methods["HDM-CAM tuned"] = as_method(tuned_hdm_cam(model))
    methods["random"] = random_map(seed)
    methods["Sobel"] = sobel_map
    methods["centre prior"] = centre_prior()
    return methods


@dataclass
class EvalResult:
    """Per-image values ``values[method][metric]`` ``(N,)`` (NaN where a method ran on a subset), seconds
    per image, and the data used (``meta["labels"]``: the explained class of each image)."""

    values: dict[str, dict[str, np.ndarray]]
    seconds: dict[str, float]
    n: int
    accuracy: float
    meta: dict = field(default_factory=dict)


def evaluate(model, dataset: ShapesDataset, methods: dict[str, Method], *, batch_size: int = 16,
             faithfulness: bool = True, steps: int = 16, road=M.ROAD_PERCENTILES, road_n: int | None = None,
             faithfulness_n: int | None = None, limits: dict | None = None, progress: bool = True,
             checkpoint=None, describe: dict | None = None,
             shard: tuple[int, int] | None = None) -> EvalResult | None:
    """Run every method on every image of ``dataset`` (explaining the true class) and score it.

    ``road``: ROAD's percentiles (empty: no ROAD columns), on the first ``road_n`` images only if given (its
    imputation is the costliest metric); ROAD and the other faithfulness metrics need ``faithfulness``, and
    all of them (deletion/insertion, Average Drop, ROAD) run on the first ``faithfulness_n`` images only if
    given (each image costs them tens of forward passes per method, the maps one or two).
    ``limits`` ``{method: n}`` runs a costly method on the first ``n`` images only (its
    other values are NaN; summaries and paired comparisons use the images it has).

    ``checkpoint``: a folder where the values so far are saved after every batch, in files named by a
    fingerprint of the run (the model's weights, the first image, the method names, the settings, hdm's
    version, :data:`~hdm.cam.hdm_cam.TUNED` and ``describe``: anything else the methods depend on, such as a
    fitted theta); a run with the same fingerprint continues from them, and a finished one is read back
    without running. The methods' code is not in the fingerprint: resume with the code that started the run.

    ``shard`` ``(i, k)`` (needs ``checkpoint``): run only batches ``i, i + k, i + 2k, ...`` (``0 <= i < k``),
    so that ``k`` processes share the work (each in its own file of the folder); returns ``None`` while
    another shard's batches are missing, and the result once every batch is in the folder. A run without
    ``shard`` does every batch still missing."""
    if shard is not None:
        i, k = shard
        if checkpoint is None:
            raise BadArgument("a shard needs a checkpoint folder, where the shards' values meet")
        if not (k >= 1 and 0 <= i < k):
            raise BadArgument(f"shard {i + 1} of {k} does not exist: give i/k with 1 <= i <= k")
    model.eval()
    # the many forward passes of deletion/insertion run on a channels-last copy (faster on CPU)
    scorer = copy.deepcopy(model).to(memory_format=torch.channels_last) if faithfulness else None
    if scorer is not None:
        _clear_hooks(scorer)
    skip = set() if faithfulness else set(FAITHFULNESS)
    if not road:
        skip |= set(ROAD_KEYS)
    keys = [k for k, *_ in METRICS if k not in skip]
    limits = {m: int(v) for m, v in (limits or {}).items() if m in methods}
    starts = list(range(0, len(dataset), batch_size))
    batches: dict[int, dict] = {}
    store = None
    if checkpoint is not None:
        settings = {"keys": keys, "batch_size": batch_size, "steps": steps, "road": list(road or ()),
                    "road_n": road_n, "limits": limits, "tuned": TUNED, "version": __version__,
                    "describe": describe or {}}
        if faithfulness_n is not None:  # only when given: runs without it keep their fingerprints
            settings["faithfulness_n"] = faithfulness_n
        store = _Checkpoint(checkpoint, _fingerprint(model, dataset, methods, settings), shard)
        batches = store.load()
        if batches and progress:
            print(f"eval-cam: resuming from {store.folder} ({len(batches)} of {len(starts)} batches done)")
    todo = [s for b, s in enumerate(starts) if s not in batches and (shard is None or b % shard[1] == shard[0])]
    for start in tqdm(todo, desc="eval-cam", disable=not progress):
        batches[start] = _score_batch(model, scorer, dataset, methods, start, batch_size, keys, steps=steps,
                                      road=road, road_n=road_n, faithfulness_n=faithfulness_n, limits=limits)
        if store is not None:
            store.save(batches, start)
    if store is not None and any(s not in batches for s in starts):
        batches.update({s: r for s, r in store.load().items() if s not in batches})  # other shards' batches since
    if any(s not in batches for s in starts):
        return None
    n = len(dataset)
    values = {name: {k: np.full(n, np.nan) for k in keys} for name in methods}
    seconds = {name: 0.0 for name in methods}
    counted = {name: 0 for name in methods}
    labels, correct = [], 0
    for start in starts:
        r = batches[start]
        labels += r["labels"]
        correct += r["correct"]
        for name in methods:
            seconds[name] += r["seconds"].get(name, 0.0)
            counted[name] += r["counted"].get(name, 0)
            for k, v in r["values"].get(name, {}).items():
                values[name][k][start:start + len(v)] = v
    meta = run_meta(n, steps=steps, road=road, road_n=road_n, faithfulness_n=faithfulness_n)
    return EvalResult(values, {m: seconds[m] / max(counted[m], 1) for m in methods}, n, correct / n,
                      {**meta, "batch_size": batch_size, "limits": limits, "labels": labels})


def _score_batch(model, scorer, dataset, methods, start, batch_size, keys, *, steps, road, road_n,
                 faithfulness_n, limits) -> dict:
    """One batch's record: its labels, how many the model gets right, and every method's time and values."""
    samples = [dataset.sample(i) for i in range(start, min(start + batch_size, len(dataset)))]
    x = torch.cat([to_model_input(s.image, size=None) for s in samples])
    labels = [int(s.label) for s in samples]
    with torch.no_grad():
        correct = int((model(x).argmax(1) == torch.tensor(labels)).sum())
    record = {"labels": labels, "correct": correct, "seconds": {}, "counted": {}, "values": {}}
    for name, fn in methods.items():
        take = min(len(samples), limits.get(name, len(dataset)) - start)
        if take <= 0:
            continue
        t0 = time.perf_counter()
        cams = np.asarray(fn(x[:take], labels[:take]), dtype=np.float32)
        record["seconds"][name] = time.perf_counter() - t0
        record["counted"][name] = take
        rows = {k: [] for k in keys}
        ordered, flat = uninformative_where_flat(x[:take], cams)
        rows["flat"] = flat.astype(float).tolist()
        for cam, s in zip(cams, samples):
            rows["auc"].append(M.pixel_auc(cam, s.mask))
            rows["energy"].append(M.energy_inside(cam, s.mask))
            rows["pointing"].append(M.pointing_game(cam, s.mask))
            ious = [M.threshold_iou(cam, s.mask, t) for t in M.IOU_THRESHOLDS]
            for t, iou in zip(M.IOU_THRESHOLDS, ious):
                rows[f"iou@{t}"].append(iou)
            rows["miou"].append(float(np.mean(ious)))
            rows["box_acc"].append(M.box_accuracy(cam, s.boxes))
        if scorer is not None:
            rows.update(_faithfulness(scorer, x, ordered, labels, start, take, len(dataset), steps=steps, road=road,
                                      road_n=road_n, faithfulness_n=faithfulness_n))
        record["values"][name] = {k: np.asarray(rows[k], dtype=float) for k in keys}
    return record


#: The pixel order that the faithfulness metrics give a flat map.
_UNINFORMATIVE = random_map(0)


def uninformative_where_flat(x: torch.Tensor, cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maps ``(B, H, W)`` the faithfulness metrics score, and which were flat ``(B,)``: a flat map (constant,
    :func:`hdm.cam.base.constant_maps`) has no pixel order of its own, so it takes the random floor's (seed 0)
    for the images ``x`` ``(B, C, H, W)``."""
    cams = np.asarray(cams, dtype=np.float32)
    flat = constant_maps(cams)
    if flat.any():
        cams = cams.copy()
        cams[flat] = _UNINFORMATIVE(x[torch.from_numpy(flat)], None)
    return cams, flat


def _faithfulness(scorer, x, cams, labels, start, take, n, *, steps, road, road_n, faithfulness_n) -> dict:
    """Deletion/insertion, Average Drop terms and ROAD of the first ``take`` maps of a batch that starts at
    image ``start``; NaN past the first ``faithfulness_n`` images (ROAD: ``road_n``) of the ``n``."""
    def first(limit):
        return max(0, min(take, (n if limit is None else limit) - start))

    def pad(v, k):
        return np.concatenate([np.asarray(v, dtype=float), np.full(take - k, np.nan)])

    rows, k = {}, first(faithfulness_n)
    cams_t = torch.from_numpy(cams[:k])
    deletion, insertion = M.deletion_insertion(scorer, x[:k], cams_t, labels[:k], steps=steps) if k else ([], [])
    drop, increase = M.drop_and_increase(scorer, x[:k], cams_t, labels[:k]) if k else ([], [])
    rows.update(deletion=pad(deletion, k), insertion=pad(insertion, k), avg_drop=pad(drop, k),
                increase=pad(increase, k))
    if road:
        k_road = min(k, first(road_n))
        scores = (M.road(scorer, x[:k_road], cams[:k_road], labels[:k_road], percentiles=road, seed=start)
                  if k_road else {key: [] for key in ROAD_KEYS})
        rows.update({key: pad(v, k_road) for key, v in scores.items()})
    return rows


def _fingerprint(model, dataset, methods, settings: dict) -> str:
    """A short hash of what an evaluation's figures depend on (but the methods' code): the model's weights
    and buffers, the number of images and the first one, the method names and the settings."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    s = dataset.sample(0)
    h.update(np.ascontiguousarray(s.image).tobytes())
    h.update(json.dumps({"n": len(dataset), "label": int(s.label), "methods": list(methods), **settings},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class _Checkpoint:
    """One evaluation's finished batches as JSON (NaN as null), written atomically after every batch:
    ``folder/eval-<fingerprint>.json``, or ``eval-<fingerprint>.shard<i>of<k>.json`` for a shard (1-based);
    :meth:`load` gathers the batches of every file of the run."""

    def __init__(self, folder, fingerprint: str, shard: tuple[int, int] | None = None):
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise BadArgument(f"the checkpoint folder {folder} is a file; give a folder (it is created if missing)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadArgument(f"cannot make the checkpoint folder {folder} ({e}); give a writable folder") from e
        self.folder, self.fingerprint = folder, fingerprint
        self.path = folder / (f"eval-{fingerprint}.json" if shard is None else
                              f"eval-{fingerprint}.shard{shard[0] + 1}of{shard[1]}.json")
        self.own: set[int] = set()

    _KEYS = ("labels", "correct", "seconds", "counted", "values")

    def load(self) -> dict[int, dict]:
        """Every finished batch of the run, by its first image's index (this file's batches in :attr:`own`)."""
        batches = {}
        for path in sorted(self.folder.glob(f"eval-{self.fingerprint}*.json")):
            try:
                state = json.loads(path.read_text())
                records = state["batches"]
                if not all(isinstance(r, dict) and all(k in r for k in self._KEYS) for r in records.values()):
                    raise ValueError(f"a batch lacks some of {self._KEYS}")
                read = {int(s): {**r, "values": {m: {k: np.array([np.nan if a is None else a for a in v], dtype=float)
                                                     for k, v in d.items()} for m, d in r["values"].items()}}
                        for s, r in records.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise BadArgument(f"cannot read the checkpoint {path} ({e}); delete it to run its batches "
                                  f"afresh") from e
            batches.update(read)
            if path == self.path:
                self.own = set(read)
        return batches

    def save(self, batches: dict[int, dict], new: int) -> None:
        """Add batch ``new`` to this file's batches (:attr:`own`) and rewrite the file with them."""
        self.own.add(new)
        state = {"batches": {str(s): {**batches[s], "values": {
            m: {k: [None if np.isnan(v) else float(v) for v in a] for k, a in d.items()}
            for m, d in batches[s]["values"].items()}} for s in sorted(self.own)}}
        tmp = self.path.with_suffix(".tmp")
        try:
            with tmp.open("w") as f:
                f.write(json.dumps(state))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            raise BadArgument(f"cannot write the checkpoint {self.path} ({e})") from e


def write_csv(path, tables: dict[str, EvalResult]) -> Path:
    """The per-image values behind every table: one row per table, image and method, one column per metric
    (empty where a method did not run on the image); ``tables`` maps a table's name to its result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [k for k, *_ in METRICS if any(k in d for r in tables.values() for d in r.values.values())]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["table", "image", "label", "method", *keys])
        for table, result in tables.items():
            labels = result.meta.get("labels") or [""] * result.n
            for method, d in result.values.items():
                for i in range(result.n):
                    cells = ["" if k not in d or np.isnan(d[k][i]) else repr(float(d[k][i])) for k in keys]
                    w.writerow([table, i, labels[i], method, *cells])
    return path


def read_result(path, table: str = "methods") -> EvalResult:
    """A table written by ``hdm eval-cam`` read back: the per-image values of ``table`` from the CSV beside the
    JSON ``path`` (same name, ``.csv``), and from the JSON (where it has them) the accuracy, each method's seconds
    per image, the run's settings (``meta``) and the date in the ``.md`` beside it (``meta["date"]``)."""
    path = Path(path)
    csv_path = path.with_suffix(".csv")
    try:
        record = json.loads(path.read_text())
        with csv_path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["table"] == table]
    except (OSError, ValueError, KeyError) as e:
        raise BadArgument(f"cannot read the table {path} and its values {csv_path} ({e}): give the JSON that "
                          f"hdm eval-cam --json wrote, with its --csv beside it") from e
    if not rows:
        raise BadArgument(f"{csv_path} has no rows of the table {table!r}")
    n = 1 + max(int(r["image"]) for r in rows)
    keys = [k for k, *_ in METRICS if k in rows[0]]
    values: dict[str, dict[str, np.ndarray]] = {}
    labels = [None] * n
    for r in rows:
        d = values.setdefault(r["method"], {k: np.full(n, np.nan) for k in keys if r.get(k, "") != ""})
        i = int(r["image"])
        labels[i] = int(r["label"]) if r["label"] != "" else None
        for k in d:
            d[k][i] = float(r[k]) if r.get(k, "") != "" else np.nan
    for d in values.values():  # a column empty for every image of a method (e.g. "flat" before it existed)
        for k in [k for k, a in d.items() if np.isnan(a).all()]:
            del d[k]
    methods = record.get("methods", {})
    meta = {**record.get("meta", {}), "labels": labels}
    md = path.with_suffix(".md")
    date = next((line.split(":", 1)[1].strip() for line in md.read_text().splitlines()
                 if line.startswith("- date:")), None) if md.is_file() else None
    meta["date"] = date
    return EvalResult(values, {m: methods.get(m, {}).get("seconds_per_image", float("nan")) for m in values}, n,
                      float(record.get("accuracy", float("nan"))), meta)


def check_settings(base: EvalResult, meta: dict, source: str = "") -> None:
    """Raise :class:`BadArgument` where ``base`` was measured with other faithfulness settings than ``meta``
    (an :attr:`EvalResult.meta`, or :func:`run_meta` of a run's options)."""
    for key in ("steps", "road_percentiles", "road_n", "faithfulness_n"):
        if key in base.meta and base.meta[key] != meta.get(key):
            raise BadArgument(f"{source or 'the base table'} was measured with {key} = {base.meta[key]!r}, this run "
                              f"with {meta.get(key)!r}: give the same options as its command")


def run_meta(n: int, *, steps: int, road=M.ROAD_PERCENTILES, road_n=None, faithfulness_n=None, **_) -> dict:
    """The settings :func:`evaluate` records in :attr:`EvalResult.meta` for a run of ``n`` images."""
    return {"steps": steps, "road_percentiles": list(road or ()),
            "road_n": None if road_n is None or road_n >= n else int(road_n),
            "faithfulness_n": None if faithfulness_n is None or faithfulness_n >= n else int(faithfulness_n)}


#: How far :func:`carry_rows` lets a carried row's recomputed localisation values stray from the base run's: float
#: rounding differs between machines (seen: up to 1.5e-3 on one image's pixel AUC, 2.5e-3 on one IoU, 1e-5 on
#: average, for the grad-cam package's own methods), a changed map moves them by orders of magnitude more.
CARRY_TOLERANCE = {"image": 0.01, "mean": 1e-4, "flips": 0.01}


def _same_maps(old: np.ndarray, new: np.ndarray, key: str, tol: dict) -> str:
    """``""`` if a metric's per-image values agree within ``tol`` (:data:`CARRY_TOLERANCE`), else why not."""
    both = ~(np.isnan(old) | np.isnan(new))
    if not np.array_equal(np.isnan(old), np.isnan(new)):
        return f"{key} is missing on other images"
    diff = np.abs(old[both] - new[both])
    if key in ("pointing", "box_acc"):  # 0/1 per image (pointing: a fraction for a flat map)
        flipped = int((diff > 1e-9).sum())
        return "" if flipped <= tol["flips"] * both.sum() else f"{key} differs on {flipped} of {both.sum()} images"
    if diff.size and diff.max() > tol["image"]:
        i = int(np.flatnonzero(both)[int(np.argmax(diff))])
        return f"{key} of image {i}: {old[i]:.6g} then, {new[i]:.6g} now"
    if diff.size and diff.mean() > tol["mean"]:
        return f"{key} differs by {diff.mean():.3g} on average"
    return ""


def carry_rows(fresh: EvalResult, maps: EvalResult, base: EvalResult, order: list[str], source: str = "",
               tol: dict | None = None) -> EvalResult:
    """A table whose rows in ``fresh`` were re-measured and whose other rows carry ``base``'s values.

    ``maps`` holds this run's maps-only values (no faithfulness) of the carried rows it could afford: a row
    there is carried only if every localisation value (:data:`LOCALISATION`) of every image agrees with
    ``base``'s to float rounding (``tol``, default :data:`CARRY_TOLERANCE`): then its maps are unchanged, and so
    are its faithfulness values, which are carried with its localisation values; its seconds and ``flat``
    column come from this run. A ``base`` row absent from ``maps`` is carried unchecked (said in the table). ``order``:
    the rows' order; ``source``: how the table names ``base``. Raises :class:`BadArgument` where the images or
    settings differ, or a carried row's maps changed (re-measure that row)."""
    labels = fresh.meta.get("labels") or maps.meta.get("labels")
    if base.n != fresh.n or (base.meta.get("labels") and labels and list(base.meta["labels"]) != list(labels)):
        raise BadArgument(f"{source or 'the base table'} was measured on other images ({base.n} images, or other "
                          "labels): re-measure every row")
    check_settings(base, fresh.meta, source)
    values, seconds, checked, unchecked = {}, {}, [], []
    for name in order:
        if name in fresh.values:
            values[name], seconds[name] = fresh.values[name], fresh.seconds[name]
            continue
        if name not in base.values:
            continue
        values[name] = {k: v.copy() for k, v in base.values[name].items() if k != "flat"}
        seconds[name] = base.seconds[name]
        if name not in maps.values:
            values[name]["flat"] = np.full(base.n, np.nan)
            unchecked.append(name)
            continue
        for key in LOCALISATION:
            old, new = base.values[name].get(key), maps.values[name].get(key)
            why = "" if old is None or new is None else _same_maps(old, new, key, tol or CARRY_TOLERANCE)
            if why:
                raise BadArgument(f"the maps of {name!r} changed since {source or 'the base table'} ({why}): "
                                  "re-measure that row too")
        values[name]["flat"] = maps.values[name]["flat"]
        seconds[name] = maps.seconds[name]
        checked.append(name)
    meta = {**fresh.meta, "carried": {"source": source, "date": base.meta.get("date"), "checked": checked,
                                      "unchecked": unchecked, "remeasured": [m for m in order if m in fresh.values]}}
    return EvalResult(values, seconds, fresh.n, fresh.accuracy, meta)


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
            b: {k: _compare(result.values[ref][k], result.values[b][k], n_boot, seed) for k in result.values[ref]}
            for b in others}
    return summary


def _compare(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> dict:
    """:func:`paired_bootstrap` as a dict; NaN figures (and ``n``) where fewer than 2 images have both values."""
    n = int((~(np.isnan(a) | np.isnan(b))).sum())
    if n < 2:
        return {**dict.fromkeys(("diff", "diff_lo", "diff_hi", "ratio", "ratio_lo", "ratio_hi"), float("nan")), "n": n}
    return vars(paired_bootstrap(a, b, n_boot=n_boot, seed=seed))


def peers_of(methods) -> list[str]:
    """The peers among method names: neither an HDM-CAM variant nor a floor."""
    return [m for m in methods if not m.startswith("HDM-CAM") and m not in FLOORS]


def goal_check(summary: dict, reference: str) -> dict | None:
    """The goal for ``reference`` against the best peer on each metric (``None`` without comparisons).

    ``auc``: its pixel AUC >= the best peer's + 0.01; ``miou``: its mean IoU >= 1.10x the best peer's (both on
    means); ``insertion`` and ``road``: the 95 % paired-bootstrap CI of its difference from the best peer on that
    metric does not lie below zero (needs the peer in ``summary["comparisons"][reference]``). Each entry names
    the peer and says ``met``; ``met`` overall needs all four. Missing metrics give ``None`` entries. A peer
    run on a subset of the images (``summary["meta"]["limits"]``, e.g. Score-CAM) is left out: its means are
    over other images."""
    comps = summary.get("comparisons", {}).get(reference)
    methods = summary["methods"]
    if comps is None or reference not in methods:
        return None
    limits = summary.get("meta", {}).get("limits") or {}
    peers = [m for m in peers_of(methods) if m in comps and (m not in limits or limits[m] >= summary.get("n", 0))]
    if not peers:
        return None
    out = {"reference": reference}
    for key in ("auc", "miou", "insertion", "road"):
        have = [m for m in peers if key in methods[m] and np.isfinite(methods[m][key])]
        if key not in methods[reference] or not have:
            out[key] = None
            continue
        peer = max(have, key=lambda m: methods[m][key])
        value, best = methods[reference][key], methods[peer][key]
        if key == "auc":
            out[key] = {"peer": peer, "value": value, "peer_value": best, "met": bool(value >= best + 0.01)}
        elif key == "miou":
            ratio = value / best if best > 0 else float("inf")
            out[key] = {"peer": peer, "value": value, "peer_value": best, "ratio": ratio, "met": bool(ratio >= 1.10)}
        else:
            c = comps[peer][key]
            out[key] = {"peer": peer, "value": value, "peer_value": best, "diff": c["diff"], "diff_lo": c["diff_lo"],
                        "diff_hi": c["diff_hi"], "met": bool(c["diff_hi"] >= 0)}
    out["met"] = all(out[k] is not None and out[k]["met"] for k in ("auc", "miou", "insertion", "road"))
    return out


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _fmt(v: float, key: str) -> str:
    if not np.isfinite(v):
        return "-"
    return f"{v:.1f}" if key in ("avg_drop", "increase") else f"{v:.3f}"


def markdown(summary: dict | None, header: list[str], ladder: list[str] | None = None,
             theta: dict | None = None) -> str:
    """The results file: header, the method table, the comparisons, the goal check (:func:`goal_check`),
    theta, and the ablation ladder's lines (:func:`hdm.bench.cam_ladder.ladder_markdown`). Without a
    ``summary`` (a ladder run) only the header and the ladder."""
    if summary is None:
        return "\n".join(list(header) + (ladder or [])) + "\n"
    methods = summary["methods"]
    keys = [(k, t) for k, t, _ in METRICS if k in next(iter(methods.values()))]
    better = {k: hi for k, _, hi in METRICS}
    lines = list(header)
    lines += [f"Model accuracy on these images: {summary['accuracy']:.4f} ({summary['n']} images). Every map explains "
              "the true class. Arrows: which way is better.", ""]
    lines.append("| method | " + " | ".join(f"{t} {'↑' if better[k] else '↓'}" for k, t in keys) + " | ms/image |")
    lines.append("|---" * (len(keys) + 2) + "|")
    limits = summary.get("meta", {}).get("limits") or {}
    for m, d in methods.items():
        name = f"{m} †" if m in limits else m
        cells = " | ".join(_fmt(d[k], k) for k, _ in keys)
        lines.append(f"| {name} | {cells} | {1000 * d['seconds_per_image']:.1f} |")
    meta = summary.get("meta", {})
    if meta.get("faithfulness_n"):
        lines += ["", f"Deletion/insertion, Average Drop and Increase in Confidence: on the first "
                      f"{meta['faithfulness_n']} images; their comparisons pair those images."]
    if meta.get("road_percentiles"):
        road_n = min(v for v in (meta.get("road_n"), meta.get("faithfulness_n"), summary["n"]) if v)
        on = f"the first {road_n} images" if road_n < summary["n"] else "every image"
        lines += ["", f"ROAD (percentiles {meta['road_percentiles']}): on {on}; its comparisons pair those images."]
    for m, n in limits.items():
        lines += ["", f"† {m}: on the first {min(n, summary['n'])} images only (its cost); its comparisons pair "
                      "those images."]
    if any("flat" in d for d in methods.values()):
        lines += ["", "Flat maps: the share of maps that are constant (no spatial evidence). They are scored as "
                      "uninformative: pixel AUC 0.5, energy share and pointing = the mask's area fraction, IoU of "
                      "the whole image, and the random floor's pixel order for deletion/insertion, Average Drop and "
                      "ROAD."]
    carried = meta.get("carried")
    if carried:
        lines += ["", f"Re-measured by this run: {', '.join(carried['remeasured'])}. The other rows carry the "
                      f"per-image values of {carried['source']}"
                      + (f" (run of {carried['date']})" if carried.get("date") else "") + "."]
        if carried["checked"]:
            lines[-1] += (" This run recomputed their maps and found every localisation value of every image "
                          "unchanged to float rounding (within 0.01 per image and 1e-4 on average; pointing and box "
                          f"accuracy on all but 1 % of the images at most): {', '.join(carried['checked'])}.")
        if carried["unchecked"]:
            lines[-1] += (f" Carried without that check (too costly to recompute): {', '.join(carried['unchecked'])}"
                          "; their flat-map share is not known.")
    for ref, comps in summary.get("comparisons", {}).items():
        lines += ["", f"## {ref} minus each baseline (mean difference, 95 % paired-bootstrap CI)", "",
                  "`*` marks an interval that excludes zero.", ""]
        lines.append("| baseline | " + " | ".join(t for _, t in keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for b, c in comps.items():
            cells = [ci_text(c[k], star=True) if c[k]["n"] >= 2 else "-" for k, _ in keys]
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
    for ref in summary.get("comparisons", {}):
        goal = goal_check(summary, ref)
        if goal is None:
            continue
        if "## Goal" not in "\n".join(lines):
            lines += ["", "## Goal: pixel AUC >= best peer + 0.01, mean IoU >= 1.10x best peer, insertion and ROAD "
                          "no worse (95 % CI of the difference not below zero)", "",
                      "| method | pixel AUC vs best peer | mean IoU ratio vs best peer | insertion diff vs best peer "
                      "| ROAD diff vs best peer | met |", "|---|---|---|---|---|---|"]
        cells = []
        for key in ("auc", "miou", "insertion", "road"):
            g = goal.get(key)
            if g is None:
                cells.append("-")
            elif key == "auc":
                cells.append(f"{g['value']:.3f} vs {g['peer_value']:.3f} ({g['peer']}): {_yes(g['met'])}")
            elif key == "miou":
                cells.append(f"{g['ratio']:.3f}x ({g['peer']}): {_yes(g['met'])}")
            else:
                ci = ci_text(g) if np.isfinite(g["diff"]) else "-"
                cells.append(f"{ci} ({g['peer']}): {_yes(g['met'])}")
        lines.append(f"| {ref} | " + " | ".join(cells) + f" | {_yes(goal['met'])} |")
    if theta:
        lines += ["", "## Learned scale weights (eq. 13)", "",
                  f"theta = {[round(t, 4) for t in theta['theta']]}, alpha = sigmoid(theta) = "
                  f"{[round(a, 4) for a in theta['alpha']]} (fitted by `{theta.get('command', 'hdm fit-theta')}`).", "",
                  "Objective (cross-entropy of the classifier on x * CAM) on the calibration split, per alpha mode:", "",
                  "| mode | objective |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in theta.get("objective", {}).items()]
    if ladder:
        lines += [""] + ladder
    return "\n".join(lines) + "\n"
