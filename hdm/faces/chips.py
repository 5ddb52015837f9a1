"""Aligned 150-px face chips, as dlib makes them for its face-recognition network.

dlib's ``get_face_chip_details(shape, 150, 0.25)`` fits the least-squares similarity transform (Umeyama, as
``find_similarity_transform``) from template points in a normalised chip to the face's landmarks, the template
being ``(padding + p) / (1 + 2 padding) * size`` for ``p`` in a unit square that spans the face from the outer
eyebrows to the chin. ``extract_image_chip`` then samples the image: it down-samples by dlib's 2x pyramid
(a 5x5 ``[1 4 6 4 1]`` binomial filter, integer arithmetic) while the chip rectangle shrunk once more still
has more pixels than the chip, and reads each chip pixel bilinearly (pixel centres at integer coordinates, the
value truncated to 8 bits, black outside the image). :func:`extract_chip` repeats all of that, dlib's
coordinate conventions included, so chips from dlib's landmarks (:func:`dlib_chip`) equal ``dlib.get_face_chip``
up to rare one-level rounding differences.

Two kinds of landmarks:

* dlib's 5-point shape predictor (``shape_predictor_5_face_landmarks.dat``) marks the outer and inner
  corner of each eye and the base of the nose (under the tip, between the nostrils): :data:`DLIB_5_TEMPLATE`,
  dlib's own template for it.
* MTCNN (:class:`~hdm.faces.detect.FaceDetector`) marks the centre of each eye, the tip of the nose and the two
  mouth corners. dlib has no template for these, so :data:`MTCNN_TEMPLATE` is derived from dlib's mean face
  (:data:`MEAN_FACE_68`, iBUG's 68 points, the template of ``get_face_chip_details`` for 68-point shapes):
  eye centre = the mean of that eye's six points (36-41, 42-47), nose tip = point 30, mouth corners = points 48
  and 54. The chips land in dlib's geometry, but the points are other points: eye centres and mouth corners
  move with gaze and expression where eye corners do not, and MTCNN's points are noisier, so an MTCNN chip
  differs a little from dlib's chip of the same face (measured in ``docs/faces.md``).

:func:`chip_grid` and :func:`warp_chips` give the same geometry as a differentiable torch warp of an image
tensor (bilinear, without dlib's pyramid: equal to :func:`extract_chip` when the face is small enough for no
pyramid level, i.e. a chip side below about 300 image pixels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadArgument
from .dlib_resnet import CHIP_SIZE

__all__ = ["ChipDetails", "chip_details", "extract_chip", "dlib_chip", "mtcnn_chip", "similarity_transform",
           "pyramid_down", "chip_grid", "warp_chips", "DLIB_5_TEMPLATE", "MEAN_FACE_68", "MTCNN_TEMPLATE",
           "PADDING"]

#: dlib's padding around the face for the face-recognition network (``compute_face_descriptor``'s default).
PADDING = 0.25

#: dlib's template for its 5-point shape, in the unit square: image-right eye outer and inner corners,
#: image-left eye outer and inner corners, nose base (``get_face_chip_details``).
DLIB_5_TEMPLATE = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                            [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                            [0.4901123135679, 0.6277975316475]])

#: dlib's mean face: iBUG points 17..67 (rows) in the unit square (``get_face_chip_details``).
MEAN_FACE_68 = np.array([[0.000213256, 0.106454], [0.0752622, 0.038915], [0.18113, 0.0187482], [0.29077, 0.0344891],
                         [0.393397, 0.0773906], [0.586856, 0.0773906], [0.689483, 0.0344891], [0.799124, 0.0187482],
                         [0.904991, 0.038915], [0.98004, 0.106454], [0.490127, 0.203352], [0.490127, 0.307009],
                         [0.490127, 0.409805], [0.490127, 0.515625], [0.36688, 0.587326], [0.426036, 0.609345],
                         [0.490127, 0.628106], [0.554217, 0.609345], [0.613373, 0.587326], [0.121737, 0.216423],
                         [0.187122, 0.178758], [0.265825, 0.179852], [0.334606, 0.231733], [0.260918, 0.245099],
                         [0.182743, 0.244077], [0.645647, 0.231733], [0.714428, 0.179852], [0.793132, 0.178758],
                         [0.858516, 0.216423], [0.79751, 0.244077], [0.719335, 0.245099], [0.254149, 0.780233],
                         [0.340985, 0.745405], [0.428858, 0.727388], [0.490127, 0.742578], [0.551395, 0.727388],
                         [0.639268, 0.745405], [0.726104, 0.780233], [0.642159, 0.864805], [0.556721, 0.902192],
                         [0.490127, 0.909281], [0.423532, 0.902192], [0.338094, 0.864805], [0.290379, 0.784792],
                         [0.428096, 0.778746], [0.490127, 0.785343], [0.552157, 0.778746], [0.689874, 0.784792],
                         [0.553364, 0.824182], [0.490127, 0.831803], [0.42689, 0.824182]])


def _ibug(i: int) -> np.ndarray:
    return MEAN_FACE_68[i - 17]


#: MTCNN's 5 points in dlib's unit square, MTCNN's order: image-left eye centre, image-right eye centre, nose
#: tip, image-left and image-right mouth corners (from :data:`MEAN_FACE_68`, see the module docstring).
MTCNN_TEMPLATE = np.array([np.mean([_ibug(i) for i in range(36, 42)], axis=0),
                           np.mean([_ibug(i) for i in range(42, 48)], axis=0), _ibug(30), _ibug(48), _ibug(54)])


@dataclass(frozen=True)
class ChipDetails:
    """dlib's ``chip_details``: the chip's rectangle in the image ``(left, top, right, bottom)`` (corner pixel
    centres, before rotation), its rotation ``angle`` (radians) about the rectangle's centre, and the chip's
    side ``size`` in pixels."""

    rect: tuple[float, float, float, float]
    angle: float
    size: int = CHIP_SIZE

    def corners(self, rect=None) -> np.ndarray:
        """The rotated top-left, top-right and bottom-left corners of ``rect`` (default: the chip's rectangle)
        ``(3, 2)``, as dlib's ``rotate_point`` gives them."""
        left, top, right, bottom = self.rect if rect is None else rect
        centre = np.array([(left + right) / 2, (top + bottom) / 2])
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, -s], [s, c]])
        pts = np.array([[left, top], [right, top], [left, bottom]]) - centre
        return pts @ rot.T + centre

    def matrix(self) -> np.ndarray:
        """``(2, 3)``: chip pixel ``(x, y, 1)`` -> image pixel coordinates (no pyramid)."""
        return _affine_from_corners(self.corners(), self.size)


def _affine_from_corners(corners: np.ndarray, size: int) -> np.ndarray:
    """The affine map taking the chip's corners ``(0, 0), (size-1, 0), (0, size-1)`` to ``corners``."""
    tl, tr, bl = corners
    return np.stack([(tr - tl) / (size - 1), (bl - tl) / (size - 1), tl], axis=1)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares similarity ``dst ~ A src + t`` (Umeyama 1991, eqs. 34-43; dlib's
    ``find_similarity_transform``): ``(A (2, 2), t (2,))`` for points ``(n, 2)``, ``n >= 2``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mean_src, mean_dst = src.mean(0), dst.mean(0)
    sigma_src = ((src - mean_src) ** 2).sum(1).mean()
    cov = (dst - mean_dst).T @ (src - mean_src) / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[1, 1] = -1  # numpy sorts the singular values: the flip goes to the smaller, as dlib's
    rot = u @ s @ vt
    scale = np.trace(np.diag(d) @ s) / sigma_src if sigma_src != 0 else 1.0
    return scale * rot, mean_dst - scale * rot @ mean_src


def chip_details(points, template, size: int = CHIP_SIZE, padding: float = PADDING) -> ChipDetails:
    """dlib's ``get_face_chip_details``: the chip whose ``template`` points (unit square, ``(n, 2)``) land on
    the face's ``points`` (image pixels, ``(n, 2)``)."""
    points, template = np.asarray(points, np.float64), np.asarray(template, np.float64)
    if points.shape != template.shape or points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
        raise BadArgument(f"landmarks of shape {template.shape} expected, got {points.shape}")
    if not np.isfinite(points).all():
        raise BadArgument("the landmarks are not finite")
    a, t = similarity_transform((padding + template) / (2 * padding + 1) * size, points)
    angle, scale = math.atan2(a[1, 0], a[0, 0]), math.hypot(a[0, 0], a[1, 0])
    cx, cy = a @ np.array([size / 2, size / 2]) + t
    half = (size * scale - 1) / 2  # dlib's centered_drect: a width w spans w - 1 between corner centres
    return ChipDetails((float(cx - half), float(cy - half), float(cx + half), float(cy + half)), angle, int(size))


def _point_down(x: float, y: float) -> tuple[float, float]:
    """dlib's ``pyramid_down<2>::point_down``."""
    return x / 2 - 1.25, y / 2 - 0.75


def _rect_down(rect):
    return (*_point_down(rect[0], rect[1]), *_point_down(rect[2], rect[3]))


def _area(rect) -> float:
    w, h = rect[2] - rect[0] + 1, rect[3] - rect[1] + 1
    return 0.0 if w <= 0 or h <= 0 else w * h


def pyramid_down(image: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>`` of an ``(H, W, C)`` uint8 image: ``[1 4 6 4 1]`` filter in both directions,
    every other pixel, integer sum divided by 256 and truncated; ``((H - 3) // 2, (W - 3) // 2, C)``."""
    h, w = image.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0) + image.shape[2:], np.uint8)
    x = image.astype(np.int32)
    c = 2 * np.arange((w - 3) // 2)
    rows = x[:, c] + 4 * x[:, c + 1] + 6 * x[:, c + 2] + 4 * x[:, c + 3] + x[:, c + 4]
    r = np.arange(2, h - 2, 2)
    out = rows[r - 2] + 4 * rows[r - 1] + 6 * rows[r] + 4 * rows[r + 1] + rows[r + 2]
    return (out // 256).astype(np.uint8)


def _bilinear(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """dlib's ``transform_image`` with ``interpolate_bilinear``: chip pixel ``(x, y)`` reads ``image`` at
    ``matrix @ (x, y, 1)``; truncated to uint8; black where a 2x2 neighbourhood leaves the image."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    px = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    py = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    left, top = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    h, w = image.shape[:2]
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    left, top = np.where(inside, left, 0), np.where(inside, top, 0)
    lr, tb = (px - left)[..., None], (py - top)[..., None]
    img = image.astype(np.float64)
    tl, tr = img[top, left], img[top, np.minimum(left + 1, w - 1)]
    bl, br = img[np.minimum(top + 1, h - 1), left], img[np.minimum(top + 1, h - 1), np.minimum(left + 1, w - 1)]
    value = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    return np.where(inside[..., None], value, 0).astype(np.uint8)


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadArgument(f"face chips need an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def extract_chip(image: np.ndarray, details: ChipDetails) -> np.ndarray:
    """dlib's ``extract_image_chip``: the ``(size, size, 3)`` uint8 chip of ``details`` from an ``(H, W, 3)``
    uint8 RGB image (through dlib's pyramid when the chip is much smaller than its rectangle). dlib's
    fast path for an unrotated, unscaled chip (a plain copy) is not taken: the sampling is the same there
    up to the rounding of the rectangle."""
    image = _check_image(image)
    size, rect = details.size, details.rect
    area = size * size
    depth, grow, down = 0, 2.0, _rect_down(rect)
    while _area(down) > area:
        down, depth, grow = _rect_down(down), depth + 1, grow * 2 + 2
    corners = np.vstack([details.corners(), _rotated_br(details)])
    h, w = image.shape[:2]
    box = [max(corners[:, 0].min() - grow, 0), max(corners[:, 1].min() - grow, 0),
           min(corners[:, 0].max() + grow, w - 1), min(corners[:, 1].max() + grow, h - 1)]
    if box[0] > box[2] or box[1] > box[3]:  # the chip lies outside the image
        return np.zeros((size, size, 3), np.uint8)
    x0, y0, x1, y1 = (int(math.floor(v + 0.5)) for v in box)  # dlib's lround (the values are >= 0)
    source = image[y0:y1 + 1, x0:x1 + 1]
    level_rect = (rect[0] - x0, rect[1] - y0, rect[2] - x0, rect[3] - y0)
    for _ in range(depth):
        level_rect, source = _rect_down(level_rect), pyramid_down(source)
    if source.size == 0:  # dlib's pyramid gives nothing below 9 pixels
        return np.zeros((size, size, 3), np.uint8)
    return _bilinear(source, _affine_from_corners(details.corners(level_rect), size), size)


def _rotated_br(details: ChipDetails) -> np.ndarray:
    left, top, right, bottom = details.rect
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    c, s = math.cos(details.angle), math.sin(details.angle)
    return np.array([[c, -s], [s, c]]) @ (np.array([right, bottom]) - centre) + centre


def dlib_chip(image: np.ndarray, shape5, size: int = CHIP_SIZE, padding: float = PADDING) -> np.ndarray:
    """The chip ``dlib.get_face_chip(image, shape, size, padding)`` gives for dlib's 5-point ``shape``
    (``(5, 2)`` pixels, the predictor's order)."""
    return extract_chip(image, chip_details(shape5, DLIB_5_TEMPLATE, size, padding))


def mtcnn_chip(image: np.ndarray, landmarks, size: int = CHIP_SIZE, padding: float = PADDING) -> np.ndarray:
    """The chip in dlib's geometry from MTCNN's 5 ``landmarks`` (``(5, 2)`` pixels, MTCNN's order), through
    :data:`MTCNN_TEMPLATE`."""
    return extract_chip(image, chip_details(landmarks, MTCNN_TEMPLATE, size, padding))


def chip_grid(details: list[ChipDetails], height: int, width: int, device=None,
              dtype=torch.float32) -> torch.Tensor:
    """``(N, S, S, 2)`` sampling grid for ``torch.nn.functional.grid_sample(..., align_corners=True)`` that
    reads the chips of ``details`` (one side ``S`` for all) from an image of ``height x width`` pixels."""
    sizes = {d.size for d in details}
    if len(sizes) != 1:
        raise BadArgument(f"chips of one size expected, got sizes {sorted(sizes)}")
    size = sizes.pop()
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    grids = []
    for d in details:
        m = d.matrix()
        px = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
        py = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
        grids.append(np.stack([2 * px / (width - 1) - 1, 2 * py / (height - 1) - 1], axis=-1))
    return torch.tensor(np.stack(grids), dtype=dtype, device=device)


def warp_chips(images: torch.Tensor, details: list[ChipDetails]) -> torch.Tensor:
    """Differentiable chips: ``images`` ``(N, C, H, W)`` (one image per chip) or ``(C, H, W)`` (all chips from
    it) -> ``(N, C, S, S)``, bilinear in dlib's geometry (no pyramid, zeros outside the image)."""
    if images.ndim == 3:
        images = images.unsqueeze(0).expand(len(details), -1, -1, -1)
    if images.ndim != 4 or len(images) != len(details):
        raise BadArgument(f"one (C, H, W) image or one image per chip expected, got {tuple(images.shape)} "
                          f"for {len(details)} chips")
    grid = chip_grid(details, images.shape[-2], images.shape[-1], images.device, images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
