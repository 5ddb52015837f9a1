"""Deployment builds of hdm's super-resolution generators (ONNX, TensorRT).

The SR generators arrive with the face/general fusion and diffusion SR work; the exporters and
``python -m export`` follow them (see the project's issues). Nothing here yet runs.
"""
