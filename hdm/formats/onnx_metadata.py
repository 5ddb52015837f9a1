"""hdm's metadata in an exported ONNX file (``metadata_props``), written and read here.

Keys: ``hdm.model`` (its name), ``hdm.scale``, ``hdm.input`` (range and layout), ``hdm.inputs`` (the input
names, JSON), ``hdm.version``, ``hdm.checkpoint_sha256``, ``hdm.precision`` (``fp32`` / ``fp16``), ``hdm.config``
(the architecture, JSON), and what tiling needs: ``hdm.input_multiple`` and ``hdm.receptive_radius``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import BadArgument, MissingFile

__all__ = ["KEYS", "write_metadata", "read_metadata"]

#: The keys every file exported by hdm carries.
KEYS = ("hdm.model", "hdm.scale", "hdm.input", "hdm.inputs", "hdm.version", "hdm.checkpoint_sha256", "hdm.precision",
        "hdm.config", "hdm.input_multiple", "hdm.receptive_radius")


def write_metadata(path, meta: dict[str, str]) -> Path:
    """Replace the ``metadata_props`` of the ONNX file ``path`` by ``meta`` (every key of :data:`KEYS`, string
    values), check the model with ``onnx.checker`` and save it in place."""
    import onnx  # optional: the [export] extra

    missing = [k for k in KEYS if k not in meta]
    if missing:
        raise BadArgument(f"ONNX metadata lacks {', '.join(missing)}")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=str(v))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return Path(path)


def read_metadata(path) -> dict:
    """The ``hdm.*`` metadata of an exported file; :class:`MissingFile` if there is none, :class:`BadArgument`
    if it is not one."""
    import onnx  # optional: the [export] extra

    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no ONNX file at {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise BadArgument(f"{path} is not a readable ONNX file ({type(e).__name__}: {e})") from e
    meta = {p.key: p.value for p in proto.metadata_props}
    if "hdm.model" not in meta:
        raise BadArgument(f"{path} is an ONNX file without hdm metadata: not exported by `hdm export onnx`")
    return meta
