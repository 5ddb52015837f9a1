"""The models the demo serves: loaded once, shared between requests, each with what the UI must say
about it (which weights are in use: shipped demo weights, a user's file, or downloaded official ones,
and any stand-in that replaces real weights).

Every choice is a display name -> a loader; a loader that cannot work here (offline, file missing)
raises an error whose message the view shows as is. Users add their own files through environment
variables (read once, when the hub is built):

- ``HDM_CLASSIFIER``: a ResNet-50 state dict (``.pth``/``.safetensors``);
- ``HDM_SR_GENERAL``, ``HDM_SR_FACE``: RRDBNet checkpoints (hdm, Real-ESRGAN or ESRGAN layouts) or
  exported ``.onnx`` generators (served by ONNX Runtime);
- ``HDM_WEIGHTS_DIR``: a folder to read the shipped file names from (default: the registry's folder,
  :func:`hdm.io.weights.weights_dir`: a checkout's ``weights/``, else ``$HDM_HOME/weights``);
- ``HDM_EXPORTS_DIR``: where ``hdm export onnx`` wrote its files (default ``exports/``): the SR
  views can then run the shipped generators with ONNX Runtime.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..cam.classifiers import load_resnet50, load_shapes_resnet50, shapes_theta_path
from ..cam.theta import read_theta
from ..diffusion.sampler import DiffusionSR
from ..errors import BadArgument, MissingFile
from ..faces.detect import FaceDetector
from ..io.weights import CHECKOUT_WEIGHTS, cached_download
from ..io.weights import weights_dir as shipped_weights_dir
from ..sr.loading import load_generator
from ..training.cards import read_record

__all__ = ["ModelHub", "Served", "REAL_ESRGAN_X4PLUS", "EXPORTS_DIR", "DIFFUSION_FILES"]

EXPORTS_DIR = CHECKOUT_WEIGHTS.parent / "exports"
#: Real-ESRGAN's official x4plus generator (23 RRDB blocks, 16.7M parameters; BSD-3-Clause).
REAL_ESRGAN_X4PLUS = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"
#: Diffusion SR variants of the app's Diffusion view -> file name in the weights folder.
DIFFUSION_FILES = {
    "one step, with HF loss": "diffusion_student_hf_x4.safetensors",
    "one step, without HF loss": "diffusion_student_x4.safetensors",
    "multi-step, with HF loss": "diffusion_teacher_hf_x4.safetensors",
    "multi-step, without HF loss": "diffusion_teacher_x4.safetensors",
}


@dataclass
class Served:
    """A loaded model with its provenance (``label``: what the UI says) and a lock. Plain inference is
    safe from several threads; CAMs are not (they hook the model), so CAM requests on one classifier
    take its lock and run in turn."""

    obj: object
    label: str
    lock: threading.Lock


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

        shapes = self.weights_dir / "shapes_resnet50.safetensors"
        self.classifiers: dict[str, Callable[[], tuple[object, str]]] = {}
        if shapes.is_file():
            self.classifiers["Shapes ResNet-50 (hdm demo weights)"] = lambda: self._shapes(shapes)
        if env.get("HDM_CLASSIFIER"):
            user = Path(env["HDM_CLASSIFIER"])
            self.classifiers[f"Your ResNet-50 ({user.name})"] = lambda u=user: (load_resnet50(str(u)), f"your file {u}")
        self.classifiers["ImageNet ResNet-50 (torchvision, downloaded)"] = lambda: (
            load_resnet50("imagenet"), "official torchvision IMAGENET1K_V2 weights")
        self.classifiers["Random ResNet-50 (stand-in)"] = lambda: (
            load_resnet50("random"), "STAND-IN: random weights; its classes and maps mean nothing")

        self.general: dict[str, Callable[[], tuple[object, str]]] = {}
        self.face: dict[str, Callable[[], tuple[object, str]]] = {}
        for slot, table, stem, user_var in (("general", self.general, "sr_general_x4", "HDM_SR_GENERAL"),
                                            ("face", self.face, "sr_face_x4", "HDM_SR_FACE")):
            shipped = self.weights_dir / f"{stem}.safetensors"
            table[f"hdm {slot} x4 (demo weights)"] = lambda p=shipped, s=slot: self._generator(p, f"hdm {s} demo weights {p.name}")
            onnx = self.exports_dir / f"{slot}_x4_fp32.onnx"
            if onnx.is_file():
                table[f"hdm {slot} x4 (ONNX Runtime)"] = lambda p=onnx: self._generator(p, f"exported {p.name} on ONNX Runtime")
            if env.get(user_var):
                user = Path(env[user_var])
                table[f"your {slot} model ({user.name})"] = lambda p=user: self._generator(p, f"your file {p}")
        self.general["Real-ESRGAN x4plus (official, downloaded)"] = self._real_esrgan

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
                obj, label = table[choice]()  # a failure is not cached: the next request tries again
                self._cache[choice] = Served(obj, label, threading.Lock())
            return self._cache[choice]

    def classifier(self, choice: str) -> Served:
        return self.get(self.classifiers, choice)

    @property
    def diffusion_shipped(self) -> list[str]:
        """The :data:`DIFFUSION_FILES` variants whose weights are in ``weights_dir``."""
        return [v for v, name in DIFFUSION_FILES.items() if (self.weights_dir / name).is_file()]

    def diffusion(self, variant: str) -> Served:
        """A :class:`hdm.diffusion.sampler.DiffusionSR` for a :data:`DIFFUSION_FILES` variant."""
        if variant not in DIFFUSION_FILES:
            raise BadArgument(f"unknown diffusion variant {variant!r}; choose from {list(DIFFUSION_FILES)}")
        path = self.weights_dir / DIFFUSION_FILES[variant]
        one_step = variant.startswith("one step")
        table = {variant: lambda: (DiffusionSR.from_pretrained(path, self.device, one_step=one_step, tile=256),
                                   f"hdm demo weights {path.name}" + _notes(path))}
        return self.get(table, variant)

    def face_detector(self):
        """The MTCNN face detector (facenet-pytorch ships its weights: works offline)."""
        return self.get({"MTCNN face detector": lambda: (FaceDetector(device=self.device),
                                                         "facenet-pytorch MTCNN (bundled weights)")},
                        "MTCNN face detector").obj

    def _shapes(self, path: Path) -> tuple[object, str]:
        classifier = load_shapes_resnet50(path)
        theta_file = shapes_theta_path(path)
        classifier.theta = torch.tensor(read_theta(theta_file)["theta"]) if theta_file.is_file() else None
        return classifier, f"hdm demo weights {path.name} ({classifier.note})"

    def _generator(self, path: Path, label: str) -> tuple[object, str]:
        if not Path(path).is_file():
            raise MissingFile(f"no weights at {path}: the {label} are not there (train them with "
                                    "`hdm train-sr`, see docs/sr.md, or pick another model)")
        return load_generator(path, self.device), label + _notes(path)

    def _real_esrgan(self) -> tuple[object, str]:
        path = cached_download(REAL_ESRGAN_X4PLUS, "Real-ESRGAN x4plus")
        return load_generator(path, self.device), f"official Real-ESRGAN x4plus ({path.name})"


def _notes(path: Path) -> str:
    """What a training run recorded about stand-ins or dropped terms (an hdm safetensors file's record),
    for the label; empty for other files."""
    if Path(path).suffix != ".safetensors":
        return ""
    try:
        notes = read_record(path)[1].get("notes", [])
    except (OSError, ValueError):
        return ""
    return f"; trained with: {'; '.join(notes)}" if notes else ""
