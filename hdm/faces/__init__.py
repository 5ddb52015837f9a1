"""Faces: detection (MTCNN) with boxes and landmarks.

Modules: :mod:`.detect` (:class:`FaceDetector`, MTCNN boxes and landmarks).
"""
from .detect import FaceDetector, square_crop_box

__all__ = ["FaceDetector", "square_crop_box"]
