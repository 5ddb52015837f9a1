"""Face detection for the fusion pipeline, the face training data and the face chips: facenet-pytorch's MTCNN.

facenet-pytorch 2.5.3 ships MTCNN's weights inside the package, so detection works offline.
Boxes are ``(x0, y0, x1, y1)`` in pixels of the image given (continuous coordinates: ``x1``/``y1``
are the right/bottom edges), as MTCNN returns them; they may reach outside the image. MTCNN's 5 landmarks
(:meth:`FaceDetector.detect`) are ``(x, y)`` pixels of the image-left eye centre, the image-right eye centre,
the nose tip and the image-left and image-right mouth corners.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ..errors import BadArgument

__all__ = ["FaceDetector", "square_crop_box"]


class FaceDetector:
    """``detector(image) -> (n, 5)`` float array ``x0, y0, x1, y1, probability``, most confident first;
    :meth:`detect` adds the landmarks.

    Args:
        min_prob: faces below this MTCNN probability are dropped.
        min_face_size: MTCNN's smallest face, in pixels of the image given.
        device: torch device for MTCNN.
    """

    def __init__(self, min_prob: float = 0.9, min_face_size: int = 20, device="cpu"):
        from facenet_pytorch import MTCNN  # lazy: imported only when a face detector is built

        self.min_prob, self.min_face_size = float(min_prob), int(min_face_size)
        self.mtcnn = MTCNN(keep_all=True, min_face_size=int(min_face_size), device=device)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``image`` ``(H, W, 3)`` uint8 RGB."""
        return self.detect(image)[0]

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (n, 5), landmarks (n, 5, 2))`` of an ``(H, W, 3)`` uint8 RGB image: the boxes as
        :meth:`__call__` gives them, and each face's 5 MTCNN landmarks in the same order."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise BadArgument(f"face detection needs an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        if min(image.shape[:2]) < max(12, self.min_face_size):  # no face this small: MTCNN's pyramid is empty
            return np.zeros((0, 5)), np.zeros((0, 5, 2))
        boxes, probs, points = self.mtcnn.detect(Image.fromarray(image), landmarks=True)
        if boxes is None:
            return np.zeros((0, 5)), np.zeros((0, 5, 2))
        found = np.concatenate([np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                                np.asarray(probs, dtype=np.float64).reshape(-1, 1)], axis=1)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
        keep = found[:, 4] >= self.min_prob
        found, points = found[keep], points[keep]
        order = np.argsort(-found[:, 4], kind="stable")
        return found[order], points[order]


def square_crop_box(box, image_size: tuple[int, int], margin: float = 0.3) -> tuple[int, int, int, int]:
    """A square integer crop ``(x0, y0, x1, y1)`` around a face box: side ``(1 + 2 margin) * max(w, h)``,
    centred on the box, shifted (not shrunk) to stay inside an ``(H, W)`` image where it fits."""
    H, W = image_size
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    side = min(int(math.ceil((1 + 2 * margin) * max(x1 - x0, y1 - y0))), H, W)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(cx - side / 2))
    top = int(round(cy - side / 2))
    left, top = min(max(left, 0), W - side), min(max(top, 0), H - side)
    return left, top, left + side, top + side
