"""The SR subcommands of ``hdm``: ``train-sr`` (and, registered here too, the others of
part C as they land). Each only parses arguments and calls the library."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from ..bench import report


def _cmd_train_sr(args) -> int:
    from ..training.sr import SRTrainConfig, train

    return _run_training(args, SRTrainConfig, train)


def _cmd_train_diffusion(args) -> int:
    from ..training.diffusion import DiffusionTrainConfig, train

    return _run_training(args, DiffusionTrainConfig, train)


def _run_training(args, config_class, train) -> int:
    """Build ``config_class`` from ``--config`` JSON overridden by the flags given, and train."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    values = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            print(f"error: no config file at {path}", file=sys.stderr)
            return 2
        values = json.loads(path.read_text())
        unknown = set(values) - fields
        if unknown:
            print(f"error: unknown config keys {sorted(unknown)} in {path}", file=sys.stderr)
            return 2
    values.update({k: v for k, v in vars(args).items() if k in fields and v is not None})
    if "hr" not in values:
        print("error: give --hr FOLDER (or 'hr' in --config)", file=sys.stderr)
        return 2
    values["command"] = report.hdm_command()
    from ..errors import WeightsUnavailable

    try:
        cfg = config_class(**values)
        train(cfg)
    except (FileNotFoundError, ValueError, WeightsUnavailable, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _jobs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs: ``source`` -> ``target``, or every visible file of the folder ->
    ``target/<stem>.png`` (``<name>.png`` when two inputs share a stem). Bad files are kept in the list:
    they are reported, not silently skipped."""
    if not source.is_dir():
        return [(source, target)]
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    stems = [p.stem for p in files]
    return [(p, target / (f"{p.stem}.png" if stems.count(p.stem) == 1 else f"{p.name}.png")) for p in files]


def _cmd_upscale(args) -> int:
    from ..errors import ImageError
    from ..io.images import MIN_SIDE, read_image, write_image

    if args.tile is not None and args.tile <= 0 or args.tile_pad is not None and args.tile_pad < 0:
        print("error: --tile must be > 0 and --tile-pad >= 0", file=sys.stderr)
        return 2
    from ..sr.pipeline import Upscaler

    source, target = Path(args.input), Path(args.output)
    if not source.exists():
        print(f"error: {source}: no such file or folder", file=sys.stderr)
        return 2
    if source.is_dir() and target.is_file():
        print(f"error: the input is a folder, so the output must be a folder; {target} is a file", file=sys.stderr)
        return 2
    try:
        upscaler = Upscaler(args.model, general=args.general_weights, face=args.face_weights, tile=args.tile,
                            tile_pad=args.tile_pad, device=args.device, diffusion=args.diffusion_weights, seed=args.seed)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    jobs = _jobs(source, target)
    if not jobs:
        print(f"error: no files in {source}", file=sys.stderr)
        return 2
    failed, done, skipped = [], 0, 0
    for path, out in jobs:
        if source.is_dir() and out.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            image = read_image(path, max_pixels=args.max_pixels, min_side=MIN_SIDE)
            result = upscaler(image)
            write_image(out, result.rgb, result.alpha, bits=image.bits)
            if args.intermediates and result.fusion is not None:
                f = result.fusion
                for name, rgb in (("general", f.general), ("face", f.face)):
                    write_image(out.with_name(f"{out.stem}.{name}.png"), rgb)
                write_image(out.with_name(f"{out.stem}.mask.png"), f.mask[..., None].repeat(3, axis=2))
        except Exception as e:  # one bad file (or out of memory) must not end a folder run
            why = str(e) if isinstance(e, ImageError) else f"{type(e).__name__}: {e}"
            failed.append((path, why))
            print(f"skipped {path.name}: {why}", file=sys.stderr)
            continue
        done += 1
        print(f"{path.name} -> {out} ({result.message})")
    if source.is_dir():
        print(f"{done} upscaled, {len(failed)} failed, {skipped} already done (--overwrite redoes them)")
        for path, why in failed:
            print(f"  failed: {path.name}: {why}", file=sys.stderr)
    return 0 if not failed else (1 if done or skipped else 2)


def _without_nan(value):
    """JSON has no NaN: undefined figures (e.g. face PSNR of an image without faces) become null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value


def _cmd_eval_sr(args) -> int:
    from ..bench import report
    from ..bench.sr import evaluate_folder, markdown, summarize
    from ..sr.faces import FaceDetector
    from ..sr.pipeline import load_generator

    if args.cards and not args.json:
        print("error: --cards needs --json (the cards quote that file)", file=sys.stderr)
        return 2
    folders = {name: folder for name, folder in (("natural", args.natural), ("faces", args.faces)) if folder}
    if not folders:
        print("error: give --natural DIR and/or --faces DIR (folders of HR images)", file=sys.stderr)
        return 2
    try:
        general = load_generator(args.general_weights, args.device)
        face = load_generator(args.face_weights, args.device)
        detector = FaceDetector(device=args.device)
        records = {name: evaluate_folder(folder, general, face, detector, scale=general.scale, tile=args.tile,
                                         limit=args.limit) for name, folder in folders.items()}
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = summarize(records, n_boot=args.bootstrap)
    notes = [f"general model: {args.general_weights}", f"face model: {args.face_weights}",
             "HR = the image cropped to a multiple of 4; LR = antialiased bicubic x1/4 (hdm.sr.degradations); "
             "outputs quantised to 8 bits; faces: MTCNN on the LR input, tight boxes x4 (hdm.sr.evaluate)"]
    data = "; ".join(f"{name} = {folder}" for name, folder in folders.items())
    text = markdown(summary, report.header("Super-resolution x4: bicubic, general, face and fusion", data), notes)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = _without_nan({"summary": summary, "images": records, "data": data})
        Path(args.json).write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if args.cards:
        from ..io.weights import resolve_weights
        from ..sr.pipeline import SHIPPED
        from ..training.cards import write_sr_card

        for role, weights in (("general", args.general_weights), ("face", args.face_weights)):
            path = resolve_weights(SHIPPED.get(weights, weights))
            if path.suffix == ".safetensors":
                print(f"wrote {write_sr_card(path, args.json, role)}")
    return 0


def _cmd_eval_diffusion(args) -> int:
    from ..bench import report
    from ..bench.diffusion import evaluate_models, markdown, no_reference_metrics, summarize
    from ..diffusion.loading import load_diffusion
    from ..losses.lpips import perceptual_distance

    given = {"teacher": args.teacher, "student": args.student, "teacher+HF": args.teacher_hf, "student+HF": args.student_hf,
             "student+GT": args.student_gt}
    if args.cards and not args.json:
        print("error: --cards needs --json (the cards quote that file)", file=sys.stderr)
        return 2
    try:
        models = {name: load_diffusion(path, one_step=name.startswith("student"), device=args.device)
                  for name, path in given.items() if path}
        if not models:
            raise ValueError("give at least one of --teacher, --student, --teacher-hf, --student-hf, --student-gt")
        distance, distance_name = perceptual_distance(args.perceptual, args.device)
        nr, skipped = no_reference_metrics(args.device) if not args.no_iqa else ({}, "CLIPIQA and MUSIQ skipped (--no-iqa)")
        records = evaluate_models(args.hr, models, distance, nr, seed=args.seed, limit=args.limit)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    evaluations = {name: m.evaluations for name, m in models.items()}
    summary = summarize(records, evaluations, [("teacher+HF", "teacher"), ("student+HF", "student"),
                                               ("student+GT", "student"), ("student+HF", "student+GT")], args.bootstrap)
    notes = [f"{name}: {path}" for name, path in given.items() if path]
    if "HaarPSI" in distance_name:
        notes.append("caution: models trained with the HF loss on the HaarPSI stand-in are also judged on it here; "
                     "PSNR, SSIM and the HF error are independent of the training loss")
    notes += [f"perceptual column: {distance_name}", *([skipped] if skipped else []),
              "HR = the image cropped to a multiple of 8; LR = antialiased bicubic x1/4 rounded to 8 bits; "
              f"teachers sample with ResShift's posterior (seed {args.seed}), students in one step (hdm.diffusion.evaluate)"]
    text = markdown(summary, report.header("Diffusion SR x4: teacher and one-step student, with and without the "
                                           "high-frequency error-map loss", str(args.hr)), notes, distance_name)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_without_nan({"summary": summary, "images": records}), indent=2,
                                              allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if args.cards:
        from ..training.cards import write_diffusion_card

        for name, path in given.items():
            if path and Path(path).suffix == ".safetensors":
                print(f"wrote {write_diffusion_card(path, args.json, method=name)}")
    return 0


def add_parsers(sub) -> None:
    """Register the SR subcommands on ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser(
        "train-sr", help="train an RRDBNet SR generator (general or face model; resumable; torchrun for DDP)",
        description="Train an RRDBNet x4 generator on HR photos (or faces found in them). Flags override --config. "
                    "Multi-process: torchrun --nproc_per_node N -m hdm train-sr ...")
    # defaults live in SRTrainConfig; None here means "not given"
    p.add_argument("--config", help="JSON file of SRTrainConfig fields")
    p.add_argument("--hr", help="folder of HR photos (general) or of photos with faces (face); several joined "
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
    p.add_argument("--exclude", action="append", help="a folder of evaluation photos: any training photo equal to "
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
    p.add_argument("--face-embedder", dest="face_embedder", help="vggface2, casia-webface, random or a file")
    p.add_argument("--missing", choices=["error", "standin", "drop"],
                   help="when a pretrained network cannot be loaded (default error)")
    p.add_argument("--val", help="folder of HR photos for the periodic PSNR check")
    p.add_argument("--val-every", dest="val_every", type=int)
    p.add_argument("--ckpt-every", dest="ckpt_every", type=int)
    p.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--export", help="write the EMA generator here (safetensors) when done")
    p.set_defaults(func=_cmd_train_sr)

    p = sub.add_parser(
        "train-diffusion", help="train the residual-shifting diffusion SR teacher, or distil its one-step student",
        description="Train the ResShift-style teacher (--stage teacher) or distil the SinSR-style one-step student "
                    "from it (--stage student --teacher FILE), with (--hf-weight > 0) or without the multi-scale "
                    "high-frequency error-map loss. Flags override --config; torchrun works as for train-sr.")
    p.add_argument("--config", help="JSON file of DiffusionTrainConfig fields")
    p.add_argument("--hr", help="folder of HR photos; several joined by os.pathsep (e.g. train:extra)")
    p.add_argument("--out", help="checkpoint and log folder (default runs/diffusion_teacher)")
    p.add_argument("--stage", choices=["teacher", "student"])
    p.add_argument("--teacher", help="the teacher's exported weights (for --stage student)")
    p.add_argument("--hr-size", dest="hr_size", type=int, help="HR patch side (default 128, at least 128)")
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=int)
    p.add_argument("--ema", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--hr-downscale", dest="hr_downscale", type=float)
    p.add_argument("--exclude", action="append", help="a folder of evaluation photos never to train on (repeatable)")
    p.add_argument("--width", type=int, help="denoiser width (default 64)")
    p.add_argument("--blocks", type=int, help="residual blocks per level (default 2)")
    p.add_argument("--timesteps", type=int, help="diffusion steps T (default 15, as ResShift)")
    p.add_argument("--kappa", type=float, help="noise scale (default 2, as ResShift)")
    p.add_argument("--power", type=float, help="schedule exponent p (default 0.3, as ResShift)")
    p.add_argument("--hf-weight", dest="hf_weight", type=float, help="weight of the HF error-map loss (0: without it)")
    p.add_argument("--perceptual", choices=["auto", "lpips", "haarpsi"], help="the HF loss's distance (default auto)")
    p.add_argument("--gt-weight", dest="gt_weight", type=float, help="student: weight of MSE(one-step output, ground truth), the control arm of the ablation (default 0)")
    p.add_argument("--val", help="HR photos for the periodic PSNR check (a monitor only)")
    p.add_argument("--val-every", dest="val_every", type=int)
    p.add_argument("--ckpt-every", dest="ckpt_every", type=int)
    p.add_argument("--stop-at", dest="stop_at", type=int)
    p.add_argument("--device")
    p.add_argument("--export", help="write the EMA denoiser here (safetensors) when done")
    p.set_defaults(func=_cmd_train_diffusion)

    p = sub.add_parser(
        "eval-diffusion", help="PSNR/SSIM, perceptual distance, HF error and time of the diffusion models vs bicubic",
        description="Degrade each HR image, upscale it with every given diffusion model and write the table with "
                    "paired CIs of with-minus-without the HF loss (e.g. docs/results/diffusion.md).")
    p.add_argument("--hr", required=True, help="folder of HR photos (e.g. ../shared/data/eval)")
    p.add_argument("--teacher", help="teacher trained without the HF loss")
    p.add_argument("--student", help="student distilled without the HF loss")
    p.add_argument("--teacher-hf", dest="teacher_hf", help="teacher trained with the HF loss")
    p.add_argument("--student-hf", dest="student_hf", help="student distilled with the HF loss")
    p.add_argument("--student-gt", dest="student_gt",
                   help="control: a student distilled with a ground-truth MSE term (--gt-weight) instead of the HF loss; distil it from the +HF teacher so that only the loss differs from --student-hf")
    p.add_argument("--perceptual", default="auto", choices=["auto", "lpips", "haarpsi"])
    p.add_argument("--no-iqa", action="store_true",
                   help="skip CLIPIQA and MUSIQ (by default they are added when pyiqa and their weights load)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--out", default=None, help="write the table here (e.g. docs/results/diffusion.md)")
    p.add_argument("--cards", action="store_true",
                   help="rewrite the model cards of the evaluated .safetensors models with these figures (needs --json)")
    p.add_argument("--json", default=None)
    p.set_defaults(func=_cmd_eval_diffusion)

    from ..io.images import MAX_PIXELS

    p = sub.add_parser(
        "upscale", help="upscale a photo (or a folder) x4 with the general model, the face model or their fusion",
        description="Upscale INPUT (a file or a folder of images) to OUTPUT (a file, or a folder for a folder). "
                    "Alpha is upscaled separately and kept; 16-bit inputs give 16-bit PNGs. In a folder, bad files "
                    "are reported and skipped, finished outputs are kept, and a rerun skips them. "
                    "Exit code: 0 all done, 1 some files failed, 2 nothing could be done.")
    p.add_argument("input", help="image file or folder")
    p.add_argument("output", help="output file (e.g. out.png) or folder")
    p.add_argument("--model", default="fusion", choices=["general", "face", "fusion", "diffusion", "diffusion-teacher"],
                   help="diffusion: the one-step student; diffusion-teacher: the multi-step teacher")
    p.add_argument("--diffusion-weights", default=None, help="diffusion model file (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0, help="diffusion noise seed (a seed gives the same result)")
    p.add_argument("--general-weights", default="general", help="'general' (shipped) or an RRDBNet checkpoint")
    p.add_argument("--face-weights", default="face", help="'face' (shipped) or an RRDBNet checkpoint")
    p.add_argument("--tile", type=int, default=512, help="tile side in input pixels (smaller: less memory)")
    p.add_argument("--tile-pad", type=int, default=None,
                   help="context pixels around each tile (default: the model's receptive radius, up to 64: seamless)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="refuse inputs with more pixels")
    p.add_argument("--intermediates", action="store_true",
                   help="fusion: also save the general output, the face output and the mask beside each result")
    p.add_argument("--overwrite", action="store_true", help="folder runs: redo outputs that exist")
    p.set_defaults(func=_cmd_upscale)

    p = sub.add_parser(
        "eval-sr", help="PSNR/SSIM (Y, border 4) of bicubic, general, face and fusion on HR folders",
        description="Degrade each HR image (bicubic x1/4), upscale it with every method and write the table "
                    "(whole image, inside and outside faces) with bootstrap CIs, e.g. to docs/results/sr.md.")
    p.add_argument("--natural", help="folder of HR natural photos (e.g. ../shared/data/eval)")
    p.add_argument("--faces", help="folder of HR photos with faces (e.g. ../shared/data/faces/eval)")
    p.add_argument("--general-weights", default="general", help="'general' (shipped) or an RRDBNet checkpoint")
    p.add_argument("--face-weights", default="face", help="'face' (shipped) or an RRDBNet checkpoint")
    p.add_argument("--tile", type=int, default=None, help="tile side in LR pixels (default: whole image)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--out", default=None, help="write the table here (e.g. docs/results/sr.md)")
    p.add_argument("--json", default=None, help="also write every figure as JSON here")
    p.add_argument("--cards", action="store_true",
                   help="rewrite the model cards of the evaluated .safetensors generators with these figures (needs --json)")
    p.set_defaults(func=_cmd_eval_sr)
