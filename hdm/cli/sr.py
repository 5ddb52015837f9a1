"""The SR commands of ``hdm``: ``train-sr``, ``upscale`` and ``eval-sr``. Each parses its arguments and calls
the library; hdm's errors end as one line (:func:`hdm.cli.main`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..bench import report, upscale_cost
from ..bench.sr import METHODS, evaluate_folder, markdown, summarize
from ..data.degrade import LR_KINDS, REAL_WORLD
from ..errors import BadArgument, MissingFile
from ..faces.detect import FaceDetector
from ..faces.embedder import FaceEmbedder
from ..io.images import MAX_PIXELS, MIN_SIDE, read_image
from ..io.registry import DEFAULTS, generator_names
from ..io.weights import resolve_weights
from ..ops.tiling import DEFAULT_TILE
from ..sr.loading import load_generator
from ..training.cards import write_sr_card
from ..training.sr import SRTrainConfig, train
from ..upscaling.folder import folder_jobs, join_processes, leave_processes, save_result, upscale_folder
from ..upscaling.pipeline import MODES, Upscaler
from .common import existing_file, folders, run_training, without_nan

__all__ = ["add_parsers"]


def _cmd_train_sr(args) -> int:
    return run_training(args, SRTrainConfig, train)


#: Photos of at least this many pixels get a time estimate before they are upscaled (when it is 30 s or more).
ESTIMATE_PIXELS = 1_000_000


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _cmd_upscale(args) -> int:
    source, target = Path(args.input), Path(args.output)
    if not source.exists():
        raise MissingFile(f"{source}: no such file or folder")
    if source.is_dir() and target.is_file():
        raise BadArgument(f"the input is a folder, so the output must be a folder; {target} is a file")
    jobs = folder_jobs(source, target) if source.is_dir() else [(source, target)]
    if not jobs:
        raise BadArgument(f"no files in {source}")
    rank, world, device = join_processes(args.device)
    upscaler = Upscaler(args.model, general=args.general_weights, face=args.face_weights, tile=args.tile,
                        tile_pad=args.tile_pad, device=device, diffusion=args.diffusion_weights, seed=args.seed,
                        progress=not args.quiet)
    if not source.is_dir():  # one file: any problem is the command's error
        if rank == 0:
            image = read_image(source, max_pixels=args.max_pixels, min_side=MIN_SIDE)
            height, width = image.rgb.shape[:2]
            if height * width >= ESTIMATE_PIXELS and not args.quiet:
                seconds = upscaler.estimate_seconds(height, width)
                if seconds >= 30:
                    print(f"{source.name} is {width}x{height} px: about {_duration(seconds)} with the {args.model} "
                          f"mode on {upscaler.device.type}", flush=True)
            result = upscaler(image)
            save_result(target, result, image.bits, args.intermediates)
            print(f"{source.name} -> {target} ({result.message})")
        leave_processes()
        return 0
    tag = f"[{rank + 1}/{world}] " if world > 1 else ""
    run = upscale_folder(upscaler, jobs, overwrite=args.overwrite, max_pixels=args.max_pixels,
                         intermediates=args.intermediates, rank=rank, world=world, progress=not args.quiet,
                         log=lambda line: sys.stdout.write(f"{tag}{line}\n"))  # one write: processes share stdout
    leave_processes()
    done, failed, skipped = run.total
    if rank == 0:
        print(f"{done} upscaled, {failed} failed, {skipped} already done (--overwrite redoes them)"
              + (f"; {world} processes together" if world > 1 else ""))
    for path, why in run.failed:
        print(f"  failed: {path.name}: {why}", file=sys.stderr)
    return run.exit_code


#: What each LR kind is, for the results file (hdm.data.degrade).
LR_NOTES = {"clean": "LR = antialiased bicubic x1/4 on 8-bit levels (hdm.data.degrade.clean_lr)",
            "real-world": "LR = the real-world chain of hdm.data.degrade: Gaussian blur sigma {blur_sigma} HR px, "
                          "antialiased bicubic x1/4, Gaussian noise sigma {noise:.1f}/255 (seeded by file name), "
                          "8 bits, JPEG quality {jpeg_quality} (4:2:0)".format(noise=REAL_WORLD["noise_sigma"] * 255,
                                                                             **REAL_WORLD)}
#: Said beside a table with models trained with GAN and perceptual losses.
GAN_NOTE = ("models trained with GAN and perceptual losses (Real-ESRGAN) give up PSNR and SSIM by design: they "
            "draw plausible detail where an L1-trained model averages; HaarPSI, a perceptual measure, is the fairer "
            "column for them")


def _cmd_eval_sr(args) -> int:
    if args.cards and not args.json:
        raise BadArgument("--cards needs --json (the cards quote that file)")
    sources = {name: folder for name, folder in (("natural", args.natural), ("faces", args.faces)) if folder}
    if not sources:
        raise BadArgument("give --natural DIR and/or --faces DIR (folders of HR images)")
    general = load_generator(args.general_weights, args.device)
    face = load_generator(args.face_weights, args.device)
    others = {}
    for entry in args.compare_face or []:
        label, sep, weights = entry.partition("=")
        if not sep or not label or not weights or label in METHODS:
            raise BadArgument(f"--compare-face takes LABEL=WEIGHTS with a new label, got {entry!r}")
        others[label] = load_generator(weights, args.device)
    models = {}
    for spec in args.models or []:
        label = spec if spec in generator_names() else Path(spec).stem
        if label in METHODS or label in others or label in models:
            raise BadArgument(f"--models: {label!r} is already a method of the table; give each model once")
        models[label] = load_generator(spec, args.device)
    detector = FaceDetector(device=args.device)
    embedder = None if args.no_identity else FaceEmbedder.from_pretrained(device=args.device, detector=detector)
    records = {name: evaluate_folder(folder, general, face, detector, scale=general.scale, tile=args.tile,
                                     limit=args.limit, embedder=embedder, others=others, models=models,
                                     lr_kind=args.lr_kind)
               for name, folder in sources.items()}
    summary = summarize(records, n_boot=args.bootstrap, models=tuple(models))
    notes = [f"general model: {args.general_weights}", f"face model: {args.face_weights}",
             *(f"{label}: {entry.partition('=')[2]}" for label, entry in zip(others, args.compare_face or [])),
             *(f"run alone: {label} ({spec})" for label, spec in zip(models, args.models or [])),
             "HR = the image cropped to a multiple of 4; " + LR_NOTES[args.lr_kind]
             + "; outputs quantised to 8 bits; faces: MTCNN on the LR input, tight boxes x4 (hdm.bench.sr)",
             *([GAN_NOTE] if models else [])]
    data = "; ".join(f"{name} = {folder}" for name, folder in sources.items())
    title = "Super-resolution x4: bicubic, general, face and fusion" + (", and other models" if models else "")
    title += "" if args.lr_kind == "clean" else f" ({args.lr_kind} LR)"
    text = markdown(summary, report.header(title, data), notes)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = without_nan({"summary": summary, "images": records, "data": data})
        Path(args.json).write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if args.cards:
        for role, weights in (("general", args.general_weights), ("face", args.face_weights)):
            path = resolve_weights(DEFAULTS.get(weights, weights))
            if path.suffix == ".safetensors":
                print(f"wrote {write_sr_card(path, args.json, role)}")
    return 0


def _tile(text: str):
    """argparse type: a tile side in pixels, or ``none`` (whole images)."""
    if text == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tile side in pixels or 'none'") from None


def _cmd_bench_upscale(args) -> int:
    cases = [(side, tile) for side in args.sizes for tile in args.tiles if tile is None or tile < side]
    rows = upscale_cost.measure(args.model, cases, args.device)
    text = upscale_cost.markdown(args.model, rows, report.header(f"What hdm upscale costs: {args.model}",
                                                                 f"random images of {', '.join(map(str, args.sizes))} px"))
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    return 0


def add_parsers(sub) -> None:
    """Register the SR commands on ``sub`` (the ``hdm`` subparsers object)."""
    p = sub.add_parser(
        "train-sr", help="train an RRDBNet SR generator (general or face model; resumable; torchrun for DDP)",
        description="Train an RRDBNet x4 generator on HR photos (or faces found in them). Flags override --config. "
                    "Multi-process: torchrun --nproc_per_node N -m hdm train-sr ...")
    # defaults live in SRTrainConfig; None here means "not given"
    p.add_argument("--config", type=existing_file, help="JSON file of SRTrainConfig fields")
    p.add_argument("--hr", type=folders,
                   help="folder of HR photos (general) or of photos with faces (face); several joined "
                                "by os.pathsep (e.g. train:extra)")
    p.add_argument("--out", help="checkpoint and log folder (default runs/sr_general)")
    p.add_argument("--kind", choices=["general", "face"], help="default general")
    p.add_argument("--preset", choices=["compact", "esrgan"], help="generator size (default compact)")
    p.add_argument("--scale", type=int, choices=[1, 2, 4], help="default 4")
    p.add_argument("--hr-size", dest="hr_size", type=int, help="HR patch side (default 120)")
    p.add_argument("--batch", type=int, help="global batch (default 16; the paper used 8 for faces)")
    p.add_argument("--steps", type=int, help="default 5000")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 2e-4; cosine decay)")
    p.add_argument("--warmup", type=int, help="default 100 steps")
    p.add_argument("--ema", type=float, help="EMA decay of the exported weights (default 0.999)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--hr-downscale", dest="hr_downscale", type=float, help="shrink photos by this first (default 1)")
    p.add_argument("--exclude", action="append", type=folders,
                   help="a folder of evaluation photos: any training photo equal to "
                                                      "one of them (same pixels) is left out, and named (repeatable)")
    p.add_argument("--faces-aligned", dest="faces_aligned", action="store_true", default=None,
                   help="the folder holds aligned face images (FFHQ), not photos to detect faces in")
    p.add_argument("--init", help="generator weights to start from (the face model: the general model)")
    p.add_argument("--face-resize", dest="face_resize", type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="faces: shrink each crop to a random short side in [MIN, MAX] first (default hr-size..148)")
    p.add_argument("--stop-at", dest="stop_at", type=int, help="checkpoint and stop after this step (resume later)")
    p.add_argument("--pixel-weight", dest="pixel_weight", type=float, help="L1 weight (default 1)")
    p.add_argument("--perceptual-weight", dest="perceptual_weight", type=float, help="VGG19 conv5_4 (ESRGAN: 1)")
    p.add_argument("--gan-weight", dest="gan_weight", type=float, help="RaGAN with the U-Net discriminator (ESRGAN: 0.005)")
    p.add_argument("--identity-weight", dest="identity_weight", type=float, help="face-identity loss (paper: 10)")
    p.add_argument("--identity-n", dest="identity_n", type=int, help="the n of 1 - cos^n (default 6)")
    p.add_argument("--vgg", help="perceptual VGG19 weights: imagenet, random or a file")
    p.add_argument("--face-embedder", dest="face_embedder", help="the identity loss's network: dlib (default, shipped), vggface2, casia-webface (downloaded), "
                        "random (an untrained stand-in) or an InceptionResnetV1 file")
    p.add_argument("--missing", choices=["error", "standin", "drop"],
                   help="when a pretrained network cannot be loaded (default error)")
    p.add_argument("--val", type=folders, help="folder of HR photos for the periodic PSNR check")
    p.add_argument("--val-every", dest="val_every", type=int)
    p.add_argument("--ckpt-every", dest="ckpt_every", type=int)
    p.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--export", help="write the EMA generator here (safetensors) when done")
    p.set_defaults(func=_cmd_train_sr)

    p = sub.add_parser(
        "upscale", help="upscale a photo (or a folder) x4 with the general model, the face model or their fusion",
        description="Upscale INPUT (a file or a folder of images) to OUTPUT (a file, or a folder for a folder). "
                    "Alpha is upscaled separately and kept; 16-bit inputs give 16-bit PNGs. In a folder, bad files "
                    "are reported and skipped, finished outputs are kept, and a rerun skips them. A folder runs under "
                    "torchrun too (torchrun --nproc_per_node N -m hdm upscale IN OUT ...: each process takes its "
                    "share of the files; the summary counts all of them). "
                    "Exit code: 0 all done, 1 some files failed, 2 nothing could be done.")
    p.add_argument("input", help="image file or folder")
    p.add_argument("output", help="output file (e.g. out.png) or folder")
    p.add_argument("--model", default="fusion", metavar="MODE_OR_MODEL",
                   help=f"a mode ({', '.join(MODES)}; diffusion: the one-step student), or one model to run alone: a "
                        "registry generator (`hdm models --kind sr_general`) or a model file "
                        "(.pth/.safetensors of any architecture hdm or spandrel knows, ncnn .param, .onnx)")
    p.add_argument("--diffusion-weights", default=None,
                   help="diffusion modes: a model file or shipped name (default: the shipped one for the mode)")
    p.add_argument("--seed", type=int, default=None, help="diffusion modes: the noise seed (default 0; a seed gives "
                                                          "the same result)")
    p.add_argument("--general-weights", default=None,
                   help="general and fusion: 'general' (shipped, the default), a registry name or a model file")
    p.add_argument("--face-weights", default=None,
                   help="face and fusion: 'face' (shipped, the default), a registry name or a model file")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"tile side in input pixels (default {DEFAULT_TILE}; smaller: less memory)")
    p.add_argument("--tile-pad", type=int, default=None,
                   help="context pixels around each tile (default: the model's receptive radius, up to 64: seamless)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="refuse inputs with more pixels")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (tiles, images) and no time estimate for large photos")
    p.add_argument("--intermediates", action="store_true",
                   help="fusion: also save the general output, the face output and the mask beside each result")
    p.add_argument("--overwrite", action="store_true", help="folder runs: redo outputs that exist")
    p.set_defaults(func=_cmd_upscale)

    p = sub.add_parser(
        "eval-sr", help="PSNR/SSIM (Y, border 4) of bicubic, general, face and fusion on HR folders",
        description="Degrade each HR image (bicubic x1/4), upscale it with every method and write the table "
                    "(whole image, inside and outside faces) with bootstrap CIs, e.g. to docs/results/sr.md.")
    p.add_argument("--natural", type=folders, help="folder of HR natural photos (e.g. ../shared/data/eval)")
    p.add_argument("--faces", type=folders, help="folder of HR photos with faces (e.g. ../shared/data/faces/eval)")
    p.add_argument("--general-weights", default="general", help="'general' (shipped) or an RRDBNet checkpoint")
    p.add_argument("--face-weights", default="face", help="'face' (shipped) or an RRDBNet checkpoint")
    p.add_argument("--compare-face", action="append", metavar="LABEL=WEIGHTS",
                   help="another face model to run on the whole image and compare with the face model "
                        "(repeatable; e.g. 'face w/o identity=runs/x.safetensors')")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help="other SR models to run alone and compare with bicubic and the general model: registry "
                        "generators (`hdm models --kind sr_general`) or model files")
    p.add_argument("--lr-kind", default="clean", choices=LR_KINDS,
                   help="clean: bicubic x1/4; real-world: blur, x1/4, noise and JPEG first (hdm.data.degrade)")
    p.add_argument("--no-identity", action="store_true",
                   help="skip the identity columns (dlib descriptors of HR-aligned face chips)")
    p.add_argument("--tile", type=int, default=None, help="tile side in LR pixels (default: whole image)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--out", default=None, help="write the table here (e.g. docs/results/sr.md)")
    p.add_argument("--json", default=None, help="also write every figure as JSON here")
    p.add_argument("--cards", action="store_true",
                   help="rewrite the model cards of the evaluated .safetensors generators with these figures (needs --json)")
    p.set_defaults(func=_cmd_eval_sr)

    p = sub.add_parser("bench-upscale", help="time and peak memory of hdm upscale for one model, whole and tiled",
                       description="Upscale random square images with one model, each case in a fresh process: "
                                   "the time of the upscaling and the process's peak memory. Cases with a tile at "
                                   "least as large as the image are left out (they are the whole-image case).")
    p.add_argument("--model", default="general", help="a mode or a model (registry name or file), as hdm upscale")
    p.add_argument("--sizes", type=int, nargs="+", default=[256], help="input sides (px)")
    p.add_argument("--tiles", type=_tile, nargs="+", default=[None, 128], help="tile sides (px) or none")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="write the table here (e.g. docs/results/upscale_cost.md)")
    p.set_defaults(func=_cmd_bench_upscale)
