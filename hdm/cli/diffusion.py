"""The diffusion SR commands of ``hdm``: ``train-diffusion`` (the teacher, or its one-step student) and
``eval-diffusion``. Each parses its arguments and calls the library; hdm's errors end as one line
(:func:`hdm.cli.main`)."""
from __future__ import annotations

import json
from pathlib import Path

from ..bench import report
from ..bench.diffusion import evaluate_models, markdown, no_reference_metrics, summarize
from ..diffusion.sampler import DiffusionSR
from ..errors import BadArgument
from ..losses.lpips import perceptual_distance
from ..training.cards import write_diffusion_card
from ..training.diffusion import DiffusionTrainConfig, train
from .common import existing_file, folders, run_training, without_nan

__all__ = ["add_parsers"]


def _cmd_train_diffusion(args) -> int:
    return run_training(args, DiffusionTrainConfig, train)


def _cmd_eval_diffusion(args) -> int:
    given = {"teacher": args.teacher, "student": args.student, "teacher+HF": args.teacher_hf,
             "student+HF": args.student_hf, "student+GT": args.student_gt}
    if args.cards and not args.json:
        raise BadArgument("--cards needs --json (the cards quote that file)")
    if not any(given.values()):
        raise BadArgument("give at least one of --teacher, --student, --teacher-hf, --student-hf, --student-gt")
    models = {name: DiffusionSR.from_pretrained(path, args.device, one_step=name.startswith("student"))
              for name, path in given.items() if path}
    distance, distance_name = perceptual_distance(args.perceptual, args.device)
    nr, skipped = no_reference_metrics(args.device) if not args.no_iqa else ({}, "CLIPIQA and MUSIQ skipped (--no-iqa)")
    records = evaluate_models(args.hr, models, distance, nr, seed=args.seed, limit=args.limit)
    evaluations = {name: m.evaluations for name, m in models.items()}
    summary = summarize(records, evaluations, [("teacher+HF", "teacher"), ("student+HF", "student"),
                                               ("student+GT", "student"), ("student+HF", "student+GT")], args.bootstrap)
    notes = [f"{name}: {path}" for name, path in given.items() if path]
    if "HaarPSI" in distance_name:
        notes.append("caution: models trained with the HF loss on the HaarPSI stand-in are also judged on it here; "
                     "PSNR, SSIM and the HF error are independent of the training loss")
    notes += [f"perceptual column: {distance_name}", *([skipped] if skipped else []),
              "HR = the image cropped to a multiple of 8; LR = antialiased bicubic x1/4 rounded to 8 bits; "
              f"teachers sample with ResShift's posterior (seed {args.seed}), students in one step "
              "(hdm.bench.diffusion)"]
    text = markdown(summary, report.header("Diffusion SR x4: teacher and one-step student, with and without the "
                                           "high-frequency error-map loss", str(args.hr)), notes, distance_name)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(without_nan({"summary": summary, "images": records}), indent=2,
                                              allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if args.cards:
        for name, path in given.items():
            if path and Path(path).suffix == ".safetensors":
                print(f"wrote {write_diffusion_card(path, args.json, method=name)}")
    return 0


def add_parsers(sub) -> None:
    """Register the diffusion commands on ``sub`` (the ``hdm`` subparsers object)."""
    p = sub.add_parser(
        "train-diffusion", help="train the residual-shifting diffusion SR teacher, or distil its one-step student",
        description="Train the ResShift-style teacher (--stage teacher) or distil the SinSR-style one-step student "
                    "from it (--stage student --teacher FILE), with (--hf-weight > 0) or without the multi-scale "
                    "high-frequency error-map loss. Flags override --config; torchrun works as for train-sr.")
    p.add_argument("--config", type=existing_file, help="JSON file of DiffusionTrainConfig fields")
    p.add_argument("--hr", type=folders, help="folder of HR photos; several joined by os.pathsep (e.g. train:extra)")
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
    p.add_argument("--exclude", action="append", type=folders,
                   help="a folder of evaluation photos never to train on (repeatable)")
    p.add_argument("--width", type=int, help="denoiser width (default 64)")
    p.add_argument("--blocks", type=int, help="residual blocks per level (default 2)")
    p.add_argument("--timesteps", type=int, help="diffusion steps T (default 15, as ResShift)")
    p.add_argument("--kappa", type=float, help="noise scale (default 2, as ResShift)")
    p.add_argument("--power", type=float, help="schedule exponent p (default 0.3, as ResShift)")
    p.add_argument("--hf-weight", dest="hf_weight", type=float, help="weight of the HF error-map loss (0: without it)")
    p.add_argument("--perceptual", choices=["auto", "lpips", "haarpsi"], help="the HF loss's distance (default auto)")
    p.add_argument("--gt-weight", dest="gt_weight", type=float,
                   help="student: weight of MSE(one-step output, ground truth), the control arm of the ablation "
                        "(default 0)")
    p.add_argument("--val", type=folders, help="HR photos for the periodic PSNR check (a monitor only)")
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
    p.add_argument("--hr", required=True, type=folders, help="folder of HR photos (e.g. ../shared/data/eval)")
    p.add_argument("--teacher", help="teacher trained without the HF loss")
    p.add_argument("--student", help="student distilled without the HF loss")
    p.add_argument("--teacher-hf", dest="teacher_hf", help="teacher trained with the HF loss")
    p.add_argument("--student-hf", dest="student_hf", help="student distilled with the HF loss")
    p.add_argument("--student-gt", dest="student_gt",
                   help="control: a student distilled with a ground-truth MSE term (--gt-weight) instead of the HF "
                        "loss; distil it from the +HF teacher so that only the loss differs from --student-hf")
    p.add_argument("--perceptual", default="auto", choices=["auto", "lpips", "haarpsi"])
    p.add_argument("--no-iqa", action="store_true",
                   help="skip CLIPIQA and MUSIQ (by default they are added when pyiqa and their weights load)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--out", default=None, help="write the table here (e.g. docs/results/diffusion.md)")
    p.add_argument("--cards", action="store_true",
                   help="rewrite the model cards of the evaluated .safetensors models with these figures "
                        "(needs --json)")
    p.add_argument("--json", default=None)
    p.set_defaults(func=_cmd_eval_diffusion)
