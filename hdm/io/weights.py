"""Weights: the registry of hdm's shipped models, and reading weights files.

Every shipped model has a name in :data:`REGISTRY` (``"sr_general_x4"``, ``"shapes_resnet50"``, ...) with
its files and their sha256; :func:`weights_path` turns a name into a local file, the one way every loader,
command and the app finds shipped weights. The files live in one folder, :func:`weights_dir`:

1. ``$HDM_WEIGHTS_DIR`` when set (a folder of your own copies, used as it is);
2. else the ``weights/`` folder of a checkout (beside the ``hdm`` package: a clone, an editable install,
   a Hugging Face Space);
3. else ``$HDM_HOME/weights`` (``HDM_HOME`` defaults to ``~/.cache/hdm``): the cache of an installed copy.
   A file placed there by hand is checked against its sha256 once per process; a missing file is
   downloaded from ``$HDM_WEIGHTS_URL/<file>`` when that base URL is set (a mirror of a checkout's
   ``weights/`` folder, e.g. its raw-file URL), checked, and kept. Offline, :class:`WeightsUnavailable`
   names the file to place and where.

Third-party weights (torchvision's ImageNet ResNet-50, VGG, Real-ESRGAN) go through torch's hub cache:
:func:`torchvision_state_dict`, :func:`cached_download`.
"""
from __future__ import annotations

import math
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm import tqdm

from ..errors import BadArgument, MissingFile, WeightsUnavailable
from .cards import sha256

__all__ = ["ShippedWeights", "REGISTRY", "CHECKOUT_WEIGHTS", "hdm_home", "weights_dir", "weights_path", "resolve_weights",
           "load_state_dict_file", "safetensors_metadata", "count_parameters", "torchvision_state_dict",
           "cached_download", "hub_checkpoint_path"]

#: The shipped weights of a checkout (``weights/`` beside the ``hdm`` package).
CHECKOUT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


@dataclass(frozen=True)
class ShippedWeights:
    """A shipped model: ``name``, what it is, and its ``files`` as ``(file name, sha256)`` pairs (the weights
    first, then companions such as a fitted theta, and the model card last)."""

    name: str
    description: str
    files: tuple[tuple[str, str], ...]

    @property
    def file(self) -> str:
        """The weights file name (``<name>.safetensors``)."""
        return self.files[0][0]

    @property
    def card(self) -> str:
        """The model card's file name (``<name>.md``)."""
        return self.files[-1][0]


#: name -> the shipped files and their sha256 (a test checks them against ``weights/``).
REGISTRY: dict[str, ShippedWeights] = {
    "shapes_resnet50": ShippedWeights("shapes_resnet50", "ResNet-50 of the CAM benchmark (8 shape classes) and HDM-CAM's fitted theta", (
        ("shapes_resnet50.safetensors", "78c9a22b8cbe9aed359130ec1cec958b44a3c0c74bdd7424c749b305459df59d"),
        ("shapes_resnet50.theta.json", "28057d2fdf3a158a84ccb3e58da7323187c4efd8f99a532a4ac1bbd2fe3671cb"),
        ("shapes_resnet50.md", "75004cc9c661006bb1603a49bcb175159cba965526ca939c341918cad54b7da7"))),
    "shapes_resnet50_224": ShippedWeights("shapes_resnet50_224", "the CAM benchmark's ResNet-50 fine-tuned at 224 px, and HDM-CAM's fitted theta", (
        ("shapes_resnet50_224.safetensors", "8a45598ece1da76c6cc66e59b366f39fd92d4d7644aa682744b6d7db03c1b590"),
        ("shapes_resnet50_224.theta.json", "340d46dbcfa9320264a35c2cc0077495d9a882c87b0f6fc3edbb1500e813479d"),
        ("shapes_resnet50_224.md", "d77d78b398ad05893b7ba3071b686f0cf7238cc4795c882d596e4a39b94392db"))),
    "sr_general_x4": ShippedWeights("sr_general_x4", "compact RRDBNet x4, the general SR model", (
        ("sr_general_x4.safetensors", "74faaa211ba05f4803f4f6b6efa7fd2b796687c5145ea37bb73e43bd8da1976b"),
        ("sr_general_x4.md", "ea98a8369867290497efe5098c25908c363a1a7291bdca2a420798442621180e"))),
    "sr_face_x4": ShippedWeights("sr_face_x4", "compact RRDBNet x4 fine-tuned on faces, the face SR model", (
        ("sr_face_x4.safetensors", "d76e4b2ace7e73f047f0a65eea9fb64ece9ca7cc366cbf784053cb07d789f78e"),
        ("sr_face_x4.md", "68cc3bf69e2bb97bce79d84db41f92974e43ab21d899429b5e8b128f0daee9dd"))),
    "diffusion_teacher_x4": ShippedWeights("diffusion_teacher_x4", "diffusion SR x4 teacher (15 steps), without the HF loss", (
        ("diffusion_teacher_x4.safetensors", "929caf5d4e801a47537f9e941aa84e2d232ecff34d06c16f5830c93c2ce6dfea"),
        ("diffusion_teacher_x4.md", "8b67b099603fbd2ba723225a51179f93587c9641d4fdefb984f397893b313e92"))),
    "diffusion_teacher_hf_x4": ShippedWeights("diffusion_teacher_hf_x4", "diffusion SR x4 teacher (15 steps), with the HF loss", (
        ("diffusion_teacher_hf_x4.safetensors", "9efcfcea15a41909339374c4790f9e6dd24c04308bafd2a034880872c355fd9e"),
        ("diffusion_teacher_hf_x4.md", "938f00eab4fc61426e774c93e6dbf584737db347e564bffc0accfcd9a0eaafea"))),
    "diffusion_student_x4": ShippedWeights("diffusion_student_x4", "one-step diffusion SR x4 student, without the HF loss", (
        ("diffusion_student_x4.safetensors", "c582f2fa233dde66dca936037af8408e6ef3d0635d21da0fac86c50c63a641be"),
        ("diffusion_student_x4.md", "0d3824935c730f15aa217fba40c0d00aad84e8797a5a5f98017047b369b7f964"))),
    "diffusion_student_hf_x4": ShippedWeights("diffusion_student_hf_x4", "one-step diffusion SR x4 student, with the HF loss", (
        ("diffusion_student_hf_x4.safetensors", "5c6f6e1dd00901ed9ca832183484d834fed483b9c3a96b1f3afe3232e982d443"),
        ("diffusion_student_hf_x4.md", "a04cc701ca3ba3a4a628b5d046b6d106f48e5ab1c22951fd8735a72e4b1b1cf2"))),
    "dlib_face_resnet_v1": ShippedWeights("dlib_face_resnet_v1", "dlib's face-recognition ResNet (converted), 128-d face descriptors", (
        ("dlib_face_resnet_v1.safetensors", "0a0b360ec8c05cdfd63c4b0f4866a7f52f73c6ae2a358526c7b9af96763a6dcf"),
        ("dlib_face_resnet_v1.md", "0d4fcf22a71ae2c1a8ee68ae2891a8cec64ecce90ccf3f8d8a715573b6bf0819"))),
}


def hdm_home() -> Path:
    """``$HDM_HOME``, default ``~/.cache/hdm``: hdm's cache (shipped weights, TensorRT engines)."""
    return Path(os.environ.get("HDM_HOME") or Path.home() / ".cache" / "hdm").expanduser()


def weights_dir() -> Path:
    """The folder of the shipped weights: ``$HDM_WEIGHTS_DIR``, else a checkout's ``weights/``, else
    ``$HDM_HOME/weights``."""
    if os.environ.get("HDM_WEIGHTS_DIR"):
        return Path(os.environ["HDM_WEIGHTS_DIR"]).expanduser()
    if CHECKOUT_WEIGHTS.is_dir():
        return CHECKOUT_WEIGHTS
    return hdm_home() / "weights"


_checked: dict[Path, tuple[float, int]] = {}  # cache files already found to match their sha256 (mtime, size)


def _check(path: Path, expected: str) -> None:
    """Raise :class:`WeightsUnavailable` if ``path`` does not hash to ``expected`` (checked once per file)."""
    stat = path.stat()
    if _checked.get(path) == (stat.st_mtime, stat.st_size):
        return
    found = sha256(path)
    if found != expected:
        raise WeightsUnavailable(f"{path} has sha256 {found}, not the shipped file's {expected}: delete it (it is "
                                 "fetched again where a download URL is set) or place the right file there")
    _checked[path] = (stat.st_mtime, stat.st_size)


def _fetch(file: str, expected: str, target: Path) -> None:
    """Download ``$HDM_WEIGHTS_URL/file`` to ``target`` with a progress bar; keep it only if its sha256 is
    ``expected``."""
    url = os.environ["HDM_WEIGHTS_URL"].rstrip("/") + "/" + file
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {file}") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        found = sha256(partial)
        if found != expected:
            raise WeightsUnavailable(f"{url} gave a file with sha256 {found}, not the shipped file's {expected}; "
                                     "it was not kept")
        os.replace(partial, target)
    except OSError as e:  # URLError, HTTPError, timeouts, disk errors
        raise WeightsUnavailable(f"could not download {url} ({type(e).__name__}: {e}). Place {file} in {target.parent} "
                                 "by hand (it is in the weights/ folder of an hdm checkout)") from e
    finally:
        partial.unlink(missing_ok=True)


def weights_path(name: str, file: str | None = None) -> Path:
    """The local path of shipped model ``name``'s weights (or of its companion ``file``, e.g. the theta or
    the card), fetched and checked where needed (see the module docstring).

    Raises :class:`WeightsUnavailable` for an unknown name, and for a file that is neither here nor
    downloadable, naming the file and the folder to place it in."""
    if name not in REGISTRY:
        raise WeightsUnavailable(f"no shipped weights named {name!r}; the names are {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    file = file or entry.file
    expected = dict(entry.files).get(file)
    if expected is None:
        raise WeightsUnavailable(f"{name} has no file {file!r}; its files are {', '.join(f for f, _ in entry.files)}")
    folder = weights_dir()
    path = folder / file
    cache = folder == hdm_home() / "weights" and not os.environ.get("HDM_WEIGHTS_DIR")
    if path.is_file():
        if cache:
            _check(path, expected)
        return path
    if cache and os.environ.get("HDM_WEIGHTS_URL"):
        _fetch(file, expected, path)
        return path
    raise WeightsUnavailable(
        f"the shipped weights {name} are not installed: place {file} (sha256 {expected[:16]}..., in the weights/ "
        f"folder of an hdm checkout) in {folder}"
        + (", or set HDM_WEIGHTS_URL to a folder URL that serves it" if cache else "")
        + (", or unset HDM_WEIGHTS_DIR" if os.environ.get("HDM_WEIGHTS_DIR") else "")
        + ("" if cache or os.environ.get("HDM_WEIGHTS_DIR") else " (this checkout's weights/ folder lacks it)"))


def resolve_weights(spec: str | Path) -> Path:
    """A registry name (:func:`weights_path`) or a file path -> an existing local file.

    Raises :class:`WeightsUnavailable` for a shipped file that cannot be had, :class:`MissingFile` for a
    path that is not a file."""
    if isinstance(spec, str) and spec in REGISTRY:
        return weights_path(spec)
    path = Path(spec)
    if not path.is_file():
        raise MissingFile(f"no weights file at {path}" + ("" if path.suffix else
                          f" (a shipped model is one of {', '.join(REGISTRY)})"))
    return path


def hub_checkpoint_path(url: str) -> Path:
    """Where torch's hub cache keeps the file of ``url`` (``$TORCH_HOME/hub/checkpoints/<name>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def torchvision_state_dict(meta, what: str, alternatives: str) -> dict:
    """The state dict of torchvision weights ``meta`` (a ``WeightsEnum`` member, or anything with ``url``
    and ``get_state_dict``) from the torch hub cache, else downloaded; offline, :class:`WeightsUnavailable`
    naming the file to place where (``what`` names the weights, ``alternatives`` says what else to do)."""
    path = hub_checkpoint_path(meta.url)
    try:
        return meta.get_state_dict(progress=False, check_hash=False)
    except Exception as e:  # offline: URLError, socket errors, ...
        raise WeightsUnavailable(
            f"could not load torchvision's {what} ({type(e).__name__}: {e}). Offline, place the file {path.name} "
            f"(from {meta.url}) at {path}, or set TORCH_HOME to a folder holding hub/checkpoints/ with it, "
            f"or {alternatives}."
        ) from e


def cached_download(url: str, what: str, alternatives: str = "") -> Path:
    """The file at ``url``, kept in the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and downloaded
    only once; offline, :class:`WeightsUnavailable` naming where to place the file by hand (and
    ``alternatives``, what else the user can do)."""
    path = hub_checkpoint_path(url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as e:  # offline: URLError, socket errors, HTTP errors ...
        raise WeightsUnavailable(f"could not download {what} from {url} ({type(e).__name__}: {e}). "
                                 f"Offline, place the file {path.name} at {path}"
                                 + (f", or {alternatives}." if alternatives else ".")) from e
    return path




def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file (hdm stores ``arch``, ``config``, ``record``, ... there),
    read without loading the tensors; ``{}`` if it has none."""
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except FileNotFoundError as e:
        raise MissingFile(f"no weights file at {path}") from e
    except Exception as e:  # safetensors' own error for a file of another kind
        raise BadArgument(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from e


def count_parameters(path: str | Path) -> int:
    """The number of values stored in a ``.safetensors`` file, from the tensor shapes alone."""
    with safe_open(str(path), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (``weights_only=True``), unwrapping the common
    ``{"state_dict": ...}`` / ``{"model": ...}`` nesting and DataParallel ``module.`` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no weights file at {path}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a weights file: safetensors' and pickle's errors, truncated zips, ...
        raise BadArgument(f"{path} is not a readable weights file ({type(e).__name__}: {e})") from e
    for key in ("state_dict", "model", "params_ema", "params"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadArgument(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v.float() for k, v in state.items()}








