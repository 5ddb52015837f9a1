"""The models the demo serves: loaded once, shared between requests, each with what the UI must say
about it: a short ``label`` for captions (which model, and a stand-in named as such) and ``details``, its
provenance (weights file and sha256, source, training notes) for the page's "details".

Every choice is a display name -> a loader; a loader that cannot work here (offline, file missing)
raises an error whose message the view shows as is. Users add their own files through environment
variables (read once, when the hub is built):

- ``HDM_CLASSIFIER``: a ResNet-50 state dict (``.pth``/``.safetensors``);
- ``HDM_SR_GENERAL``, ``HDM_SR_FACE``: RRDBNet checkpoints (hdm, Real-ESRGAN or ESRGAN layouts) or
  exported ``.onnx`` generators (served by ONNX Runtime);
- ``HDM_WEIGHTS_DIR``: a folder to read the shipped file names from (default: the registry's folder,
  :func:`hdm.io.weights.weights_dir`: a checkout's ``weights/``, else ``$HDM_HOME/weights``);
- ``HDM_EXPORTS_DIR``: where ``hdm export onnx`` wrote its files (default ``exports/``): the SR
  views can then run the shipped generators with ONNX Runtime;
- ``HDM_OFFLINE=1``: never download third-party weights (the ImageNet ResNet-50 is used only when cached).

Whether the ImageNet ResNet-50 can be had is known without slowing start-up: its file in torch's hub cache,
else (on the first request that needs to know, never at start-up) a HEAD request to its URL with a 3 s
timeout, remembered for 10 minutes.
"""
from __future__ import annotations

import os
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torchvision

from ..cam.classifiers import imagenet_weights_path, load_resnet50, load_shapes_resnet50
from ..diffusion.sampler import DiffusionSR
from ..errors import BadArgument, HDMError, MissingFile
from ..faces.detect import FaceDetector
from ..faces.embedder import WEIGHTS as FACE_WEIGHTS
from ..faces.embedder import FaceEmbedder
from ..io.cards import sha256
from ..io.registry import DEFAULTS, MODELS, ModelCfg, exported_file, get_cfg, models_of
from ..io.weights import CHECKOUT_WEIGHTS, read_record, weights_path
from ..io.weights import weights_dir as shipped_weights_dir
from ..sr.loading import load_generator

__all__ = ["ModelHub", "Served", "EXPORTS_DIR", "DIFFUSION", "IMAGENET", "SHAPES", "RANDOM", "FACE_NETWORK"]

EXPORTS_DIR = CHECKOUT_WEIGHTS.parent / "exports"
#: The diffusion SR variants of the app's Diffusion view: registry title -> registry entry.
DIFFUSION: dict[str, ModelCfg] = {c.title: c for c in models_of("diffusion_sr")}

#: The classifier choices the hub always knows (the shapes one when its weights are there).
IMAGENET = get_cfg("imagenet").title
SHAPES = get_cfg(DEFAULTS["classifier"]).title
RANDOM = "Random ResNet-50 (stand-in)"
#: dlib's face-recognition ResNet, explained as face verification (not a classifier: :meth:`ModelHub.face_embedder`).
FACE_NETWORK = f"Face verification: {get_cfg(DEFAULTS['face_embedder']).title}"
_PROBE_SECONDS, _PROBE_TIMEOUT = 600.0, 3.0


@dataclass
class Served:
    """A loaded model with what the UI says about it (``label``: a short name for a caption; ``details``:
    provenance lines) and a lock. Plain inference is safe from several threads; CAMs are not (they hook
    the model), so CAM requests on one model take its lock and run in turn."""

    obj: object
    label: str
    lock: threading.Lock
    details: list[str] = field(default_factory=list)


class ModelHub:
    """Lazily loaded, cached models for the views (thread-safe).

    Args:
        weights_dir: the shipped weights (default ``$HDM_WEIGHTS_DIR``, else :func:`hdm.io.weights.weights_dir`).
        exports_dir: exported ONNX generators (default ``$HDM_EXPORTS_DIR`` or ``exports/``).
        device: torch device (default: CUDA when present, else CPU).
        env: where the ``HDM_*`` variables are read (default ``os.environ``).
    """

    def __init__(self, weights_dir=None, exports_dir=None, device=None, env=None):
        env = os.environ if env is None else env
        self.weights_dir = Path(weights_dir or env.get("HDM_WEIGHTS_DIR") or shipped_weights_dir())
        self.exports_dir = Path(exports_dir or env.get("HDM_EXPORTS_DIR") or EXPORTS_DIR)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._cache: dict[str, Served] = {}
        self._locks: dict[str, threading.Lock] = {}  # one per choice: a slow load blocks only its own model
        self._meta = threading.Lock()

        self.offline = env.get("HDM_OFFLINE", "") not in ("", "0")
        self._probed: tuple[float, bool] | None = None  # (when, reachable) of the ImageNet weights' URL

        self.classifiers: dict[str, Callable[[], tuple]] = {IMAGENET: self._imagenet}
        for cfg in models_of("classifier", shipped=True):
            if (self.weights_dir / cfg.file).is_file():
                self.classifiers[cfg.title] = lambda p=self.weights_dir / cfg.file: self._shapes(p)
        if env.get("HDM_CLASSIFIER"):
            user = Path(env["HDM_CLASSIFIER"])
            self.classifiers[f"Your ResNet-50 ({user.name})"] = lambda u=user: (
                load_resnet50(str(u)), f"your ResNet-50 ({u.name})", [*_file_lines(u), "classes: named by index"])
        self.classifiers[RANDOM] = lambda: (
            load_resnet50("random"), "a random-weight STAND-IN ResNet-50",
            ["STAND-IN: torchvision's ResNet-50 with random weights (seed 0); its classes and maps mean nothing"])

        self.general: dict[str, Callable[[], tuple]] = {}
        self.face: dict[str, Callable[[], tuple]] = {}
        for slot, table, user_var in (("general", self.general, "HDM_SR_GENERAL"), ("face", self.face, "HDM_SR_FACE")):
            for cfg in models_of(f"sr_{slot}"):
                if cfg.shipped:
                    table[cfg.title] = lambda c=cfg, s=slot: self._generator(self.weights_dir / c.file, f"hdm's {s} x4 model")
                else:
                    table[cfg.title] = lambda c=cfg: self._registered(c)
            onnx = self.exports_dir / exported_file(slot)
            if onnx.is_file():
                table[f"hdm {slot} x4 (ONNX Runtime)"] = lambda p=onnx, s=slot: self._generator(
                    p, f"hdm's {s} x4 model on ONNX Runtime")
            if env.get(user_var):
                user = Path(env[user_var])
                table[f"your {slot} model ({user.name})"] = lambda p=user, s=slot: self._generator(
                    p, f"your {s} model ({p.name})")

    # -- loading -----------------------------------------------------------------------------------
    def get(self, table: dict, choice: str) -> Served:
        """The model of ``choice`` in ``table`` (loaded on first use). Raises :class:`BadArgument` for an unknown
        choice and the loader's :class:`~hdm.errors.HDMError` (weights unavailable, a missing or foreign file)."""
        if choice not in table:
            raise BadArgument(f"unknown model {choice!r}; choose from {list(table)}")
        served = self._cache.get(choice)
        if served is not None:
            return served
        with self._meta:
            lock = self._locks.setdefault(choice, threading.Lock())
        with lock:  # the first request loads; concurrent ones for the same model wait for it
            if choice not in self._cache:
                obj, label, details = table[choice]()  # a failure is not cached: the next request tries again
                self._cache[choice] = Served(obj, label, threading.Lock(), list(details))
            return self._cache[choice]

    def classifier(self, choice: str) -> Served:
        return self.get(self.classifiers, choice)

    def categories(self, choice: str) -> list[str]:
        """The class names of classifier ``choice`` (ImageNet's without loading, nor downloading, its weights)."""
        if choice == IMAGENET:
            return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
        return list(self.classifier(choice).obj.categories)

    def imagenet_available(self, probe: bool = True) -> bool:
        """Whether the ImageNet ResNet-50 can be had: loaded, or its file in torch's hub cache, or (``probe``,
        not with ``HDM_OFFLINE``) its URL answers a HEAD request within 3 s (remembered for 10 minutes)."""
        if IMAGENET in self._cache or imagenet_weights_path().is_file():
            return True
        if not probe or self.offline:
            return False
        now = time.monotonic()
        if self._probed is None or now - self._probed[0] > _PROBE_SECONDS:
            self._probed = (now, self._reachable(get_cfg("imagenet").url))
        return self._probed[1]

    @staticmethod
    def _reachable(url: str) -> bool:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=_PROBE_TIMEOUT):
                return True
        except (OSError, ValueError):
            return False

    def face_embedder(self) -> Served:
        """dlib's face-recognition ResNet (:class:`hdm.faces.FaceEmbedder`) with the hub's MTCNN detector."""
        path = self.weights_dir / get_cfg(FACE_WEIGHTS).file

        def load():
            if not path.is_file():
                raise MissingFile(f"no weights at {path}: dlib's face-recognition network is not there "
                                  "(`hdm convert-dlib-face` writes it; see docs/faces.md)")
            embedder = FaceEmbedder.from_pretrained(str(path), self.device, detector=self.face_detector())
            cfg = get_cfg(FACE_WEIGHTS)
            return embedder, "dlib's face-recognition ResNet", [
                *_file_lines(path), f"source: {cfg.source}, converted to torch; licence {cfg.licence}",
                "descriptors: 128-d; dlib calls two faces one person below a distance of 0.6"]
        return self.get({FACE_NETWORK: load}, FACE_NETWORK)

    @property
    def diffusion_shipped(self) -> list[str]:
        """The :data:`DIFFUSION` variants whose weights are in ``weights_dir``."""
        return [v for v, cfg in DIFFUSION.items() if (self.weights_dir / cfg.file).is_file()]

    def diffusion(self, variant: str) -> Served:
        """A :class:`hdm.diffusion.sampler.DiffusionSR` for a :data:`DIFFUSION` variant (a student runs one step)."""
        if variant not in DIFFUSION:
            raise BadArgument(f"unknown diffusion variant {variant!r}; choose from {list(DIFFUSION)}")
        path = self.weights_dir / DIFFUSION[variant].file
        one_step = DIFFUSION[variant].arch_args.get("stage") == "student"
        table = {variant: lambda: (DiffusionSR.from_pretrained(path, self.device, one_step=one_step),
                                   f"hdm's diffusion model ({variant})", [*_file_lines(path), *_notes(path)])}
        return self.get(table, variant)

    def face_detector(self):
        """The MTCNN face detector (facenet-pytorch ships its weights: works offline)."""
        return self.get({"MTCNN face detector": lambda: (FaceDetector(device=self.device), "MTCNN",
                                                         ["facenet-pytorch's MTCNN (weights bundled with it)"])},
                        "MTCNN face detector").obj

    def _imagenet(self):
        try:
            classifier = load_resnet50("imagenet")
        except HDMError:
            self._probed = (time.monotonic(), False)  # the download failed: Automatic goes offline for a while
            raise
        path = imagenet_weights_path()
        return classifier, "the ImageNet ResNet-50", [
            f"weights: torchvision's IMAGENET1K_V2 ({path.name}; its name carries the first 8 digits of its sha256)",
            "classes: the 1000 of ImageNet-1k"]

    def _shapes(self, path: Path):
        classifier = load_shapes_resnet50(path)
        return classifier, "hdm's shapes ResNet-50", [
            *_file_lines(path), "classes: the 8 shapes of hdm's CAM benchmark (disk, square, triangle, star, ring, "
            "cross, hexagon, crescent); it knows nothing else", *([classifier.note] if classifier.note else []),
            *(["HDM-CAM's alpha 'learned': the theta fitted on the benchmark"] if classifier.theta is not None else [])]

    def _generator(self, path: Path, label: str):
        if not Path(path).is_file():
            raise MissingFile(f"no weights at {path}: {label} is not there (train it with `hdm train-sr`, "
                              "see docs/sr.md, or pick another model)")
        return load_generator(path, self.device), label, [*_file_lines(path), *_notes(path)]

    def _registered(self, cfg: ModelCfg):
        """A registry model hdm does not ship: read from its package (converted from ncnn) or downloaded."""
        model = load_generator(cfg.name, self.device)
        return model, cfg.title, [*_file_lines(weights_path(cfg.name)), f"source: {cfg.source}",
                                  f"licence: {cfg.licence}"]


_SHIPPED_SHA = {file.rsplit("/", 1)[-1]: digest for entry in MODELS.values()
                for file, digest in (*entry.files, *entry.package_files)}


def _file_lines(path: Path) -> list[str]:
    """``weights: <file>, sha256 <digest>`` (the registry's digest for a shipped file name, else hashed here)."""
    path = Path(path)
    digest = _SHIPPED_SHA.get(path.name) or (sha256(path) if path.is_file() else "not found")
    return [f"weights: {path.name}, sha256 {digest}"]


def _note(note: str) -> str:
    """A training note as a visitor reads it: file lists become counts, folder paths are left out."""
    left_out = re.match(r"left out \(also in [^)]*\): (.*)", note)
    if left_out:
        n = len(left_out.group(1).split(","))
        return f"{n} training photo{'s' if n > 1 else ''} left out because {'they are' if n > 1 else 'it is'} " \
               "also evaluation photos"
    return re.sub(r"(\.\.?/|/)[\w./-]+", "a folder", note)


def _notes(path: Path) -> list[str]:
    """What a training run recorded about stand-ins or dropped terms (an hdm safetensors file's record),
    as ``trained with: ...`` lines; none for other files."""
    if Path(path).suffix != ".safetensors":
        return []
    try:
        notes = read_record(path)[1].get("notes", [])
    except (OSError, ValueError):
        return []
    return [f"trained with: {_note(n)}" for n in notes or []]
