"""Deployment builds of hdm's super-resolution generators: ONNX (``to_onnx``), a runtime that needs only
ONNX Runtime (``runtime``), and TensorRT engines (``tensorrt_engine``). ``hdm export --help``."""
