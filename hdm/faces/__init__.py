"""Faces: detection (MTCNN), dlib-aligned 150-px chips and dlib's face-recognition ResNet in torch.

>>> from hdm.faces import FaceEmbedder, face_distance, SAME_PERSON_DISTANCE
>>> embedder = FaceEmbedder.from_pretrained()
>>> chips, boxes = embedder.chips(rgb)         # (N, 150, 150, 3) uint8, (N, 5)
>>> d = embedder(chips)                         # (N, 128) float32 descriptors
>>> face_distance(d[0], d[1]) < SAME_PERSON_DISTANCE   # one person?

Modules: :mod:`.detect` (:class:`FaceDetector`, MTCNN boxes and landmarks), :mod:`.chips` (dlib's chip
geometry and sampling), :mod:`.dlib_resnet` (:class:`DlibFaceResNet`), :mod:`.dlib_format` (dlib's ``.dat``
read without dlib, conversion to safetensors), :mod:`.embedder` (:class:`FaceEmbedder`).
"""
from .chips import ChipDetails, chip_details, dlib_chip, extract_chip, mtcnn_chip, warp_chips
from .detect import FaceDetector, square_crop_box
from .dlib_format import convert, read_dlib_model
from .dlib_resnet import CHIP_SIZE, DESCRIPTOR_SIZE, DlibFaceResNet
from .embedder import SAME_PERSON_DISTANCE, WEIGHTS, FaceEmbedder, face_distance, load_face_network

__all__ = ["FaceEmbedder", "face_distance", "SAME_PERSON_DISTANCE", "WEIGHTS", "load_face_network", "DlibFaceResNet",
           "CHIP_SIZE", "DESCRIPTOR_SIZE", "FaceDetector", "square_crop_box", "ChipDetails", "chip_details",
           "extract_chip", "dlib_chip", "mtcnn_chip", "warp_chips", "read_dlib_model", "convert"]
