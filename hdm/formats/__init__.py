"""File formats hdm writes and reads, one module each, read and written in the same place: :mod:`.onnx_metadata`
(hdm's metadata in exported ONNX files)."""
