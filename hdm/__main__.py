"""``python -m hdm <subcommand>``: every command-line tool of hdm. ``python -m hdm --help`` lists them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _classifier(weights: str):
    """The ResNet-50 for ``--weights``, or ``None`` after printing why it could not be loaded."""
    from .models import WeightsUnavailable, load_resnet50

    try:
        return load_resnet50(weights)
    except (WeightsUnavailable, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _cmd_cam(args) -> int:
    from PIL import Image

    from .explain import METHODS, explain_photo, top_k
    from .images import load_rgb, to_model_input

    classifier = _classifier(args.weights)
    if classifier is None:
        return 2
    if classifier.note:
        print(f"note: {classifier.note}")
    methods = list(METHODS) if args.method == "all" else [args.method]
    try:
        rgb = load_rgb(args.image)
        result = explain_photo(classifier, rgb, methods=methods, category=args.target, layers=args.layers,
                               alpha=args.alpha, size=args.size)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for idx, name, p in top_k(classifier, to_model_input(rgb, size=args.size)):
        print(f"  {p:6.3f}  {idx:4d}  {name}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    for name, overlay in result.overlays.items():
        path = out / f"{stem}_{name.lower().replace('+', 'p').replace('-', '')}.png"
        Image.fromarray(overlay).save(path)
        print(f"{name:11s} class {result.category} ({result.category_name}): {result.seconds[name]:.3f} s -> {path}")
    return 0


def _cmd_bench_cam(args) -> int:
    from . import bench

    results = bench.cam_speed(tuple(args.batch), args.size, args.repeats, reference=not args.no_reference)
    text = bench.speed_markdown(results, args.size, args.repeats)
    print(text)
    if args.out:
        print(f"wrote {bench.write(args.out, text)}")
    return 0


def _cmd_compare_cam(args) -> int:
    from . import bench

    classifier = _classifier(args.weights)
    if classifier is None:
        return 2
    label = f"ResNet-50, {classifier.source}" + (f" ({classifier.note})" if classifier.note else "")
    text = bench.agreement_markdown(bench.hdm_vs_gradcampp(classifier.model), label)
    print(text)
    if args.out:
        print(f"wrote {bench.write(args.out, text)}")
    return 0


def _cmd_train_cam_model(args) -> int:
    from .train_classifier import train

    for folder in (args.backgrounds, args.val_backgrounds):
        if folder and not Path(folder).is_dir():
            print(f"error: background folder not found: {folder}", file=sys.stderr)
            return 2
    command = "python -m hdm " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py") else ""
    train(args.out, args.backgrounds, args.val_backgrounds, steps=args.steps, batch_size=args.batch, lr=args.lr,
          seed=args.seed, size=args.size, eval_every=args.eval_every, val_n=args.val_n,
          final_val_n=args.final_val_n, export=args.export, command=command)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hdm", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="<subcommand>")

    p = sub.add_parser("cam", help="explain a photo with Grad-CAM, Grad-CAM++ and HDM-CAM; save overlays",
                       description="Explain a photo with a ResNet-50 and save one heat-map overlay per method.")
    p.add_argument("image", help="image file (PNG, JPEG, ...)")
    p.add_argument("--method", default="all", choices=["all", "Grad-CAM", "Grad-CAM++", "HDM-CAM"])
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (torchvision, cached or downloaded), 'random' (untrained stand-in) or a state-dict file")
    p.add_argument("--target", type=int, default=None, help="class index to explain (default: the top class)")
    p.add_argument("--layers", nargs="+", default=["layer1", "layer2", "layer3", "layer4"], help="target layers")
    p.add_argument("--alpha", default="exp", choices=["exp", "inverse", "equal"], help="HDM-CAM scale weights (eq. 13)")
    p.add_argument("--size", type=int, default=224, help="model input side in px")
    p.add_argument("--out", default="cam_out", help="output folder")
    p.set_defaults(func=_cmd_cam)

    p = sub.add_parser("bench-cam", help="time Grad-CAM, Grad-CAM++, HDM-CAM and grad-cam's GradCAMPlusPlus",
                       description="CAM speed on ResNet-50 (layers 1-4, CPU): median times and ratios from one run.")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-reference", action="store_true", help="skip the grad-cam package")
    p.add_argument("--out", default=None, help="also write the table here (e.g. docs/results/cam_speed.md)")
    p.set_defaults(func=_cmd_bench_cam)

    p = sub.add_parser("compare-cam", help="Spearman rho between HDM-CAM and Grad-CAM++ maps",
                       description="How different HDM-CAM is from Grad-CAM++ on scikit-image's photos.")
    p.add_argument("--weights", default="random", help="'random' (default, works offline), 'imagenet' or a file")
    p.add_argument("--out", default=None, help="also write the table here (e.g. docs/results/hdm_vs_gradcampp.md)")
    p.set_defaults(func=_cmd_compare_cam)

    p = sub.add_parser("train-cam-model", help="train the shapes ResNet-50 of the CAM benchmark (resumable)",
                       description="Train a ResNet-50 from scratch on hdm.shapes images (resumes from OUT/last.pt).")
    p.add_argument("--backgrounds", default=None, help="photo folder for training backgrounds (default: procedural)")
    p.add_argument("--val-backgrounds", default=None, help="photo folder for the held-out split (default: procedural)")
    p.add_argument("--steps", type=int, default=3500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="image side in px")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--val-n", type=int, default=512, help="held-out images for the periodic check")
    p.add_argument("--final-val-n", type=int, default=2000, help="held-out images for the final accuracy")
    p.add_argument("--out", default="runs/shapes_resnet50", help="checkpoint and log folder")
    p.add_argument("--export", default=None, help="write fp16 safetensors here when done")
    p.set_defaults(func=_cmd_train_cam_model)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
