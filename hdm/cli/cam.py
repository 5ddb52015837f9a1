"""The CAM commands of ``hdm``: ``cam`` (explain a photo), ``bench-cam`` and ``compare-cam`` (speed and
agreement), ``train-cam-model`` and ``calibrate-bn`` (the benchmark's classifier), ``fit-theta`` and
``eval-cam`` (HDM-CAM's learned scale weights and the CAM benchmark). Each parses its arguments and
calls the library; hdm's errors end as one line (:func:`hdm.cli.main`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from ..bench import cam as cam_benchmark
from ..bench import cam_ladder, cam_speed, report
from ..cam.base import RESNET_LAYERS
from ..cam.classifiers import Classifier, load_shapes_resnet50, shapes_theta_path
from ..cam.explain import METHOD_NAMES, explain_photo, flat_note
from ..cam.faces import explain_face
from ..cam.hdm_cam import ALPHA_MODES
from ..cam.metrics import ROAD_PERCENTILES
from ..cam.theta import fit_theta, read_theta
from ..data.shapes import CLASSES, BackgroundBank, ShapesDataset
from ..errors import BadArgument
from ..faces.embedder import SAME_PERSON_DISTANCE
from ..io.registry import DEFAULTS, models_of
from ..io.weights import resolve_weights
from ..training.classifier import (
    VAL_SEED_OFFSET,
    accuracy_at_sizes,
    accuracy_markdown,
    calibrate_bn,
    train,
    write_model_card,
)
from .common import existing_file, folders, shard

__all__ = ["add_parsers"]


def _save_overlays(out_dir: str, stem: str, overlays: dict, describe) -> None:
    """Write one ``<stem>_<method>.png`` per overlay into ``out_dir`` and print ``describe(method)`` with its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, overlay in overlays.items():
        path = out / f"{stem}_{name.lower().replace('+', 'p').replace('-', '')}.png"
        Image.fromarray(overlay).save(path)
        print(f"{describe(name)} -> {path}")


def _cmd_cam(args) -> int:
    classifier = Classifier.from_pretrained(args.weights)
    if classifier.note:
        print(f"note: {classifier.note}")
    methods = list(METHOD_NAMES) if args.method == "all" else [args.method]
    result = explain_photo(classifier, args.image, methods=methods, category=args.target, layers=args.layers,
                           alpha=args.alpha, size=args.size)
    for idx, name, p in result.top:
        print(f"  {p:6.3f}  {idx:4d}  {name}")
    _save_overlays(args.out, Path(args.image).stem, result.overlays,
                   lambda name: f"{name:11s} class {result.category} ({result.category_name}): "
                                f"{result.seconds[name]:.3f} s")
    note = flat_note(result.maps)
    if note:
        print(f"note: {note}")
    return 0


def _cmd_cam_face(args) -> int:
    methods = list(METHOD_NAMES) if args.method == "all" else [args.method]
    e = explain_face(args.image, args.reference, methods=methods, alpha=args.alpha)
    what = ("its own descriptor (dot product)" if e.similarity is None else
            f"{args.reference} (cosine {e.similarity:.3f}, distance {e.distance:.3f}: "
            f"{'one person' if e.distance < SAME_PERSON_DISTANCE else 'not one person'} by dlib's 0.6)")
    print(f"face at {np.round(e.box[:4]).astype(int).tolist()} (MTCNN p = {e.box[4]:.3f}), explained against {what}")
    stem = Path(args.image).stem
    _save_overlays(args.out, f"{stem}_face", e.overlays,
                   lambda name: f"{name:11s} score {e.score:.4f}: {e.seconds[name]:.3f} s")
    Image.fromarray(e.chip).save(Path(args.out) / f"{stem}_chip.png")
    note = flat_note(e.maps)
    if note:
        print(f"note: {note}")
    return 0


def _cmd_bench_cam(args) -> int:
    results = cam_speed.cam_speed(tuple(args.batch), args.size, args.repeats, reference=not args.no_reference)
    text = cam_speed.speed_markdown(results, args.size, args.repeats)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    return 0


def _cmd_compare_cam(args) -> int:
    classifier = Classifier.from_pretrained(args.weights)
    label = f"ResNet-50, {classifier.source}" + (f" ({classifier.note})" if classifier.note else "")
    text = cam_speed.agreement_markdown(cam_speed.hdm_vs_gradcampp(classifier.model), label)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    return 0


def _cmd_train_cam_model(args) -> int:
    train(args.out, args.backgrounds, args.val_backgrounds, steps=args.steps, batch_size=args.batch, lr=args.lr,
          optimizer=args.optimizer, weight_decay=args.weight_decay, curriculum_steps=args.curriculum_steps,
          warm_steps=args.warm_steps, warm_size=args.warm_size, stop_at=args.stop_at, augment=args.augment,
          bf16=args.bf16, ema_decay=args.ema, seed=args.seed, size=args.size, eval_every=args.eval_every,
          val_n=args.val_n, final_val_n=args.final_val_n, export=args.export, init=args.init, mix_size=args.mix_size,
          command=report.hdm_command())
    return 0


def _cmd_calibrate_bn(args) -> int:
    args.weights = str(resolve_weights(args.weights))  # a shipped name -> its file, which is rewritten
    entry = calibrate_bn(args.weights, args.backgrounds, args.val_backgrounds, n=args.n,
                         command=report.hdm_command())
    print(f"precise BN on {entry['n']} images: held-out accuracy {entry['heldout_accuracy_before']:.4f} -> "
          f"{entry['heldout_accuracy_after']:.4f}; rewrote {args.weights} and its card")
    return 0


def _cmd_eval_cam_model(args) -> int:
    rows = accuracy_at_sizes(args.weights, args.sizes, args.backgrounds, n=args.n, seed=args.seed)
    data = (f"{args.n} hdm.data.shapes images of split seed {args.seed} at each side, backgrounds "
            f"{args.backgrounds or 'procedural'}")
    text = "\n".join(report.header("The CAM benchmark's classifiers: top-1 accuracy per image side", data)
                     + accuracy_markdown(rows)) + "\n"
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    return 0


def _shapes_classifier(weights: str) -> Classifier:
    """The classifier for ``--weights`` of the benchmark commands: the shapes ResNet-50 (a file or the shipped
    name), or for ``random`` an untrained 8-class stand-in."""
    if weights != "random":
        return load_shapes_resnet50(weights)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=len(CLASSES)).eval()
    return Classifier(model, "ResNet-50 (shapes)", "random stand-in", list(CLASSES),
                      "untrained stand-in: random weights, so the figures mean nothing", input_size=128)


def _bank(folder):
    return BackgroundBank(folder) if folder else None


def _cmd_fit_theta(args) -> int:
    classifier = _shapes_classifier(args.weights)
    if args.weights != "random":
        args.weights = str(resolve_weights(args.weights))  # a shipped name -> its file, beside which theta goes
    if args.size is None:  # the side the model was trained at
        args.size = classifier.input_size
    data = ShapesDataset(args.n, seed=args.seed, backgrounds=_bank(args.backgrounds), size=args.size)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch)
    fit = fit_theta(classifier.model, ((x, y) for x, y, _ in loader), levels=args.levels, epochs=args.epochs,
                    lr=args.lr)
    record = {"theta": fit.theta, "alpha": fit.alpha, "objective": fit.objective, "levels": args.levels,
              "calibration": {"n": args.n, "seed": args.seed, "backgrounds": args.backgrounds or "procedural",
                              "size": args.size},
              "epochs": args.epochs, "lr": args.lr, "command": report.hdm_command()}
    out = Path(args.out) if args.out else shapes_theta_path(args.weights)
    out.write_text(json.dumps(record, indent=2) + "\n")
    if not args.out and args.weights != "random":  # the shipped theta: refresh the model card
        print(f"wrote {write_model_card(args.weights)}")
    print(f"theta {fit.theta} -> alpha {fit.alpha}")
    for mode, value in fit.objective.items():
        print(f"  objective with alpha={mode}: {value:.4f}")
    print(f"wrote {out}")
    return 0


def _road(args):
    return () if args.no_road or args.no_faithfulness else tuple(args.road_percentiles)


def _cmd_eval_cam(args) -> int:
    if args.weights is None:
        by_size = {c.input_size: c.name for c in models_of("classifier", shipped=True)}
        args.weights = by_size.get(args.size, DEFAULTS["classifier"])
        if args.size not in by_size:
            print(f"note: no shipped classifier was trained at {args.size} px; using {args.weights} "
                  f"(trained at 128 px: check its accuracy in the table)")
    classifier = _shapes_classifier(args.weights)
    bank = _bank(args.backgrounds)
    data = ShapesDataset(args.n, seed=args.seed, backgrounds=bank, size=args.size)
    model = classifier.model
    data_line = (f"{args.n} hdm.data.shapes images, seed {args.seed}, {args.size} px, backgrounds "
                 f"{args.backgrounds or 'procedural'}; model {classifier.source}"
                 + (f" ({classifier.note})" if classifier.note else ""))
    run = {"batch_size": args.batch, "faithfulness": not args.no_faithfulness, "steps": args.steps,
           "road": _road(args), "road_n": args.road_n,
           "faithfulness_n": args.faithfulness_n, "checkpoint": args.checkpoint, "shard": args.shard}
    if args.shard and not args.checkpoint:
        raise BadArgument("--shard needs --checkpoint: the shards' values meet in that folder")
    if args.remeasure and args.ladder_choose:
        raise BadArgument("--remeasure re-measures rows of the method table or of --ladder; --ladder-choose runs whole")
    if args.shard and args.ladder_choose:
        raise BadArgument("--shard runs the method table or --ladder; --ladder-choose runs whole")
    if args.ladder_choose or args.ladder:
        return _eval_ladder(args, model, data, data_line, run)
    theta_file = (Path(args.theta) if args.theta else
                  None if args.weights == "random" else shapes_theta_path(args.weights))
    theta = read_theta(theta_file) if theta_file and theta_file.is_file() else None
    methods = cam_benchmark.default_methods(model, theta=theta["theta"] if theta else None, seed=args.seed,
                                            score_cam=args.score_cam > 0)
    result = _evaluate(args, model, data, methods, run, limits={cam_benchmark.SCORE_CAM: args.score_cam},
                       describe={"theta": theta["theta"] if theta else None})
    if result is None:
        return _shard_done(args)
    summary = cam_benchmark.summarize(result, n_boot=args.bootstrap)
    title = "CAM benchmark: localisation and faithfulness on hdm.data.shapes"
    text = cam_benchmark.markdown(summary, report.header(title, data_line), theta=theta)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    if args.csv:
        print(f"wrote {cam_benchmark.write_csv(args.csv, {'methods': result})}")
    if args.json:
        summary["data"] = data_line
        _write_json(args.json, summary)
    return 0


def _evaluate(args, model, data, methods, run, table="methods", **kw):
    """:func:`hdm.bench.cam.evaluate` of every method, or with ``--remeasure``: of those rows only, the others
    carried from ``--base`` after this run re-checks their maps (:func:`hdm.bench.cam.carry_rows`)."""
    if not args.remeasure:
        return cam_benchmark.evaluate(model, data, methods, **kw, **run)
    if not args.base:
        raise BadArgument("--remeasure needs --base: the JSON of the table whose other rows are carried over")
    unknown = [m for m in args.remeasure if m not in methods]
    if unknown:
        raise BadArgument(f"--remeasure: no row named {', '.join(map(repr, unknown))}; the rows are: "
                          f"{', '.join(methods)}")
    base = cam_benchmark.read_result(args.base, table)
    cam_benchmark.check_settings(base, cam_benchmark.run_meta(len(data), **run), f"`{args.base}`")
    limits = kw.get("limits") or {}
    fresh = cam_benchmark.evaluate(model, data, {m: methods[m] for m in args.remeasure}, **kw, **run)
    carried = {m: fn for m, fn in methods.items() if m not in args.remeasure and m in base.values
               and limits.get(m, len(data)) >= len(data)}  # a row run on a subset (Score-CAM) is carried unchecked
    maps = cam_benchmark.evaluate(model, data, carried, **kw, **{**run, "faithfulness": False, "road": ()})
    if fresh is None or maps is None:
        return None
    return cam_benchmark.carry_rows(fresh, maps, base, list(methods), source=f"`{args.base}`")


def _shard_done(args) -> int:
    i, k = args.shard
    print(f"eval-cam: shard {i + 1} of {k} is done; other shards' batches are still missing from {args.checkpoint}. "
          f"Run the other shards with the same command (or the command without --shard, which does every batch "
          f"still missing); the run that completes the folder writes the table.")
    return 0


def _write_json(path, record) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


def _eval_ladder(args, model, data, data_line, run) -> int:
    """``--ladder-choose``: walk the ladder on this split and write the choices; ``--ladder``: report the chosen
    ladder on this split, each rung against the one before."""
    if args.ladder_choose:
        def evaluate(configs):
            return cam_benchmark.evaluate(model, data, cam_ladder.config_methods(model, configs), **run)
        records = cam_ladder.walk(evaluate, metric=args.ladder_metric, n_boot=args.bootstrap)
        tables = {f"rung {i}": r.pop("result") for i, r in enumerate(records, 1)}
        for i, r in enumerate(records, 1):
            print(f"rung {i}, {r['title']}: {r['choice']} ({r['reason']})")
        lines = ["## Ablation ladder: choices on this split", ""]
        for i, r in enumerate(records, 1):
            lines.append(f"{i}. {r['title']}: options {', '.join(r['options'])}; {r['reason']}.")
            lines += [f"   - {o}: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
                      for o, means in r["means"].items()]
        record = {"data": data_line, "metric": args.ladder_metric, "command": report.hdm_command(), "rungs": records}
        _write_json(args.ladder_choose, record)
        title = "HDM-CAM ablation ladder: the choice of each rung (validation)"
    else:
        record = json.loads(Path(args.ladder).read_text())
        records = record["rungs"]
        methods = cam_ladder.ladder_methods(model, records)
        result = _evaluate(args, model, data, methods, run, table="ladder")
        if result is None:
            return _shard_done(args)
        tables = {"ladder": result}
        rows = cam_ladder.ladder_summary(result, records, n_boot=args.bootstrap)
        lines = cam_ladder.ladder_markdown(rows, records)
        if args.json:
            _write_json(args.json, {"data": data_line, "choices": args.ladder, "rows": rows})
        title = "HDM-CAM ablation ladder on hdm.data.shapes"
    text = cam_benchmark.markdown(None, report.header(title, data_line), ladder=lines)
    print(text)
    if args.out:
        print(f"wrote {report.write(args.out, text)}")
    if args.csv:
        print(f"wrote {cam_benchmark.write_csv(args.csv, tables)}")
    return 0


def add_parsers(sub) -> None:
    """Register the CAM commands on ``sub`` (the ``hdm`` subparsers object)."""
    p = sub.add_parser("cam", help="explain a photo with Grad-CAM, Grad-CAM++ and HDM-CAM; save overlays",
                       description="Explain a photo with a ResNet-50 and save one heat-map overlay per method.")
    p.add_argument("image", help="image file (PNG, JPEG, ...)")
    p.add_argument("--method", default="all", choices=["all", *METHOD_NAMES])
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (torchvision, cached or downloaded), 'random' (untrained stand-in), "
                        f"'{DEFAULTS['classifier']}' (the shipped CAM-benchmark model), another registry classifier "
                        "(`hdm models --kind classifier`) or a state-dict file")
    p.add_argument("--target", type=int, default=None, help="class index to explain (default: the top class)")
    p.add_argument("--layers", nargs="+", default=list(RESNET_LAYERS), help="target layers")
    p.add_argument("--alpha", default="exp", choices=ALPHA_MODES,
                   help="HDM-CAM scale weights (eq. 13); learned: the theta fitted with the model (hdm fit-theta)")
    p.add_argument("--size", type=int, default=None,
                   help="model input side in px (default: the model's own, 224 or 128)")
    p.add_argument("--out", default="cam_out", help="output folder")
    p.set_defaults(func=_cmd_cam)

    p = sub.add_parser("cam-face", help="explain face verification on dlib's face network (Grad-CAM, ++, HDM-CAM)",
                       description="Align the most confident face of IMAGE into dlib's 150-px chip and explain what "
                                   "makes its descriptor match --reference's face (cosine), or without one its own "
                                   "descriptor (dot product); save the chip and one overlay per method.")
    p.add_argument("image", help="photo with a face")
    p.add_argument("--reference", default=None, help="photo of the face to compare with (default: the face itself)")
    p.add_argument("--method", default="all", choices=["all", *METHOD_NAMES])
    p.add_argument("--alpha", default="exp", choices=ALPHA_MODES,
                   help="HDM-CAM scale weights (eq. 13); learned: the theta fitted with the model (hdm fit-theta)")
    p.add_argument("--out", default="cam_out", help="output folder")
    p.set_defaults(func=_cmd_cam_face)

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
                       description="Train a ResNet-50 from scratch on hdm.data.shapes images "
                                   "(resumes from OUT/last.pt).")
    p.add_argument("--backgrounds", default=None, type=folders,
                   help=f"photo folder for training backgrounds, or several joined by '{os.pathsep}' "
                        "(default: procedural)")
    p.add_argument("--val-backgrounds", default=None, type=folders,
                   help="photo folder for the held-out split (default: procedural)")
    p.add_argument("--steps", type=int, default=3500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--weight-decay", type=float, default=None, help="default 0.05 (adamw) or 5e-5 (sgd)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="image side in px")
    p.add_argument("--mix-size", type=int, default=None, metavar="PX",
                   help="after the warm-up, every other step at this side (one model for two resolutions)")
    p.add_argument("--init", default=None, metavar="WEIGHTS",
                   help=f"start from these exported weights (a file or registry name, e.g. {DEFAULTS['classifier']}) "
                        "instead of random ones: fine-tuning; a fresh run only")
    p.add_argument("--curriculum-steps", type=int, default=1500, help="difficulty ramps 0 -> 1 over these steps")
    p.add_argument("--warm-steps", type=int, default=2000, help="steps at --warm-size px before --size")
    p.add_argument("--warm-size", type=int, default=64)
    p.add_argument("--stop-at", type=int, default=None, help="checkpoint and stop after this step (resume later)")
    p.add_argument("--augment", action="store_true",
                   help="augment training backgrounds/textures (wider crops, colour jitter, some procedural)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (about 2x faster on CPUs with AVX512-BF16)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an EMA of the weights (e.g. 0.999); checks and export use it (default: off)")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--val-n", type=int, default=512, help="held-out images for the periodic check")
    p.add_argument("--final-val-n", type=int, default=2000, help="held-out images for the final accuracy")
    p.add_argument("--out", default=f"runs/{DEFAULTS['classifier']}", help="checkpoint and log folder")
    p.add_argument("--export", default=None, help="write fp16 safetensors here when done")
    p.set_defaults(func=_cmd_train_cam_model)

    shipped = DEFAULTS["classifier"]
    p = sub.add_parser("calibrate-bn",
                       help="precise BN for the shapes ResNet-50: BatchNorm statistics from un-augmented images",
                       description="Recompute the exported model's BatchNorm statistics over N un-augmented "
                                   "training-photo "
                                   "images, measure held-out accuracy before and after, rewrite the weights and card.")
    p.add_argument("--weights", default=shipped)
    p.add_argument("--backgrounds", default=None, type=folders, help="the training photos (default: procedural)")
    p.add_argument("--val-backgrounds", default=None, type=folders,
                   help="the held-out split's photos (default: procedural)")
    p.add_argument("--n", type=int, default=2000)
    p.set_defaults(func=_cmd_calibrate_bn)

    p = sub.add_parser("eval-cam-model", help="top-1 accuracy of shapes classifiers at several image sides",
                       description="Measure each model's top-1 accuracy on a held-out split of hdm.data.shapes "
                                   "rendered at each side (e.g. whether a model trained at 128 px reads 224 px).")
    p.add_argument("--weights", nargs="+", default=[shipped], help="safetensors files or shipped names")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="image sides in px")
    p.add_argument("--backgrounds", default=None, type=folders,
                   help="photo folder for backgrounds (default: procedural)")
    p.add_argument("--n", type=int, default=2000, help="images per side")
    p.add_argument("--seed", type=int, default=VAL_SEED_OFFSET, help="split seed (default: the held-out split)")
    p.add_argument("--out", default=None, help="also write the table here (e.g. docs/results/cam_models.md)")
    p.set_defaults(func=_cmd_eval_cam_model)

    p = sub.add_parser("fit-theta", help="fit HDM-CAM's learned scale weights alpha_j = sigmoid(theta_j) (eq. 13)",
                       description="Fit theta by minimising the classifier's loss on x * CAM over a calibration split.")
    p.add_argument("--weights", default=shipped, help="shapes ResNet-50 safetensors (or 'random')")
    p.add_argument("--backgrounds", default=None, type=folders,
                   help="photo folder for the calibration images (default: procedural)")
    p.add_argument("--n", type=int, default=256, help="calibration images")
    p.add_argument("--seed", type=int, default=3000, help="calibration split seed (differs from training and test)")
    p.add_argument("--size", type=int, default=None, help="image side in px (default: the model's training side)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--levels", type=int, default=2, help="DWT levels J (theta has J values)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--out", default=None, help="theta JSON (default: beside the weights, <stem>.theta.json)")
    p.set_defaults(func=_cmd_fit_theta)

    p = sub.add_parser("eval-cam", help="CAM benchmark: localisation and faithfulness of every method on "
                                        "hdm.data.shapes",
                       description="Render --n images, run every CAM method, score them against the true masks "
                                   "and write a table (and JSON) with bootstrap CIs.")
    p.add_argument("--weights", default=None,
                   help="shapes ResNet-50 safetensors, or 'random' (untrained stand-in) (default: the shipped one "
                        f"for --size: {', '.join(f'{c.input_size} px: {c.name}' for c in models_of('classifier', shipped=True))})")
    p.add_argument("--theta", default=None, type=existing_file,
                   help="theta JSON for HDM-CAM (learned) (default: the one beside the weights)")
    p.add_argument("--backgrounds", default=None, type=folders,
                   help="photo folder for backgrounds (default: procedural)")
    p.add_argument("--n", type=int, default=300, help="images")
    p.add_argument("--seed", type=int, default=2000, help="test split seed")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.add_argument("--no-faithfulness", action="store_true", help="skip deletion/insertion, ROAD and Average Drop")
    p.add_argument("--road-percentiles", type=int, nargs="+", default=list(ROAD_PERCENTILES), metavar="P",
                   help="ROAD's percentiles (removing 100 - P %% of the pixels each)")
    p.add_argument("--no-road", action="store_true", help="skip ROAD (its imputation is the costliest metric)")
    p.add_argument("--road-n", type=int, default=None, metavar="N", help="ROAD on the first N images only")
    p.add_argument("--faithfulness-n", type=int, default=None, metavar="N",
                   help="deletion/insertion, Average Drop and ROAD on the first N images only (the maps and "
                        "localisation on all)")
    p.add_argument("--score-cam", type=int, default=16, metavar="N",
                   help="run Score-CAM (2048 forward passes per image) on the first N images only; 0: not at all")
    p.add_argument("--ladder-choose", default=None, metavar="JSON",
                   help="walk HDM-CAM's ablation ladder on this split (a validation split) and write the choices")
    p.add_argument("--ladder", default=None, type=existing_file, metavar="JSON",
                   help="report the ladder chosen by --ladder-choose on this split (a test split)")
    p.add_argument("--ladder-metric", default="miou", help="the ladder's primary metric (default: mean IoU)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="save the values after every batch in this folder; a stopped run given the same folder "
                        "continues where it stopped, and a finished one is read back")
    p.add_argument("--shard", default=None, type=shard, metavar="I/K",
                   help="with --checkpoint: run only every K-th batch from the I-th (1/2 and 2/2 in two processes "
                        "share the work); the run that completes the folder writes the table")
    p.add_argument("--remeasure", nargs="+", default=None, metavar="ROW",
                   help="re-measure only these rows (method names as in the table); the other rows carry the "
                        "values of --base, after this run recomputes their maps and finds them unchanged")
    p.add_argument("--base", default=None, type=existing_file, metavar="JSON",
                   help="with --remeasure: the table's JSON (its --csv beside it) whose other rows are carried")
    p.add_argument("--out", default=None, help="write the table here (e.g. docs/results/cam.md)")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    p.add_argument("--csv", default=None, help="also write the per-image values behind every table here")
    p.set_defaults(func=_cmd_eval_cam)
