"""Train the shapes ResNet-50 (:mod:`hdm.shapes`) from scratch: seeded, resumable, with tqdm progress.

Recipe: torchvision ResNet-50 (architecture unchanged, ``num_classes=8``, ``zero_init_residual``),
AdamW (lr 1e-3, weight decay 0.05 on weights only; or SGD with Nesterov momentum), linear warm-up
then cosine decay, label smoothing 0.1, channels-last. Two aids to get through the long plateau at
chance level that shape-only classes give a network trained from scratch (SGD at lr 0.05 and 0.02,
and AdamW at 1e-3, all stayed at chance for 400-560 steps of 128 px images in our runs):

- a curriculum: the images' ``difficulty`` (:func:`hdm.shapes.render_sample`) ramps linearly from 0
  (large instances, no distractors, no textures) to 1 (the benchmark's distribution) over the first
  ``curriculum_steps`` steps;
- progressive resizing: the first ``warm_steps`` steps use ``warm_size`` px images (4x cheaper at 64 px). Every step sees a fresh batch: step ``s`` draws samples
``s * batch .. (s + 1) * batch - 1`` of the training split, so a resumed run sees exactly the data
an uninterrupted one would. Held-out accuracy is measured on a split rendered on other photos.

Files: ``<out>/last.pt`` (checkpoint, rewritten every ``ckpt_every`` steps), ``<out>/log.jsonl``
(loss and accuracy), and ``export`` (fp16 safetensors whose metadata holds the class names and the
training record, read back by :func:`hdm.models.load_shapes_resnet50`).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

from ..bench.shapes import CLASSES, BackgroundBank, ShapesDataset
from ..io.cards import write_model_card as _write_card_file

__all__ = ["train", "accuracy", "export_weights", "write_model_card", "precise_bn", "calibrate_bn"]

#: Seed offset of the held-out split (any split seed differs from the training seed by this).
VAL_SEED_OFFSET = 1000


def make_model() -> torch.nn.Module:
    return torchvision.models.resnet50(num_classes=len(CLASSES), zero_init_residual=True)


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


@torch.no_grad()
def accuracy(model, dataset, batch_size: int = 64, progress: bool = False) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (items ``(x, label, mask)``)."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    correct = 0
    for x, y, _ in tqdm(loader, desc="accuracy", disable=not progress, leave=False):
        correct += (model(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum().item()
    return correct / len(dataset)


@torch.no_grad()
def precise_bn(model, dataset, batch_size: int = 64, progress: bool = False):
    """Recompute every BatchNorm's running mean and variance as the plain average of batch statistics
    over ``dataset`` ("precise BN", Wu & Johnson 2021): the statistics the trained weights meet on
    un-augmented images, instead of a moving average over augmented training batches. In place;
    returns ``model`` in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average of the batches seen
    model.train()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    for x, _, _ in tqdm(loader, desc="precise BN", disable=not progress, leave=False):
        model(x.contiguous(memory_format=torch.channels_last))
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    return model.eval()


#: Seed of the un-augmented split (training photos) that precise BN averages over.
PRECISE_BN_SEED = 5000


def calibrate_bn(weights, backgrounds, val_backgrounds, n: int = 2000, batch_size: int = 64, command: str = "",
                 progress: bool = True) -> dict:
    """Precise BN on an exported model: ``n`` images of split :data:`PRECISE_BN_SEED` on ``backgrounds``
    (the training photos); held-out accuracy before and after; the weights and card are rewritten
    with the record's ``precise_bn`` entry. Returns that entry."""
    import json

    from ..cam.classifiers import load_shapes_resnet50
    from ..io.weights import safetensors_metadata

    weights = Path(weights)
    record = json.loads(safetensors_metadata(weights).get("record", "{}"))
    if "precise_bn" in record:
        raise ValueError(f"{weights} already had precise BN ({record['precise_bn']})")
    model = load_shapes_resnet50(weights).model.to(memory_format=torch.channels_last)
    size = int(record.get("size", 128))
    heldout = ShapesDataset(int(record.get("heldout_n", 2000)), seed=int(record.get("heldout_seed", VAL_SEED_OFFSET)),
                            backgrounds=BackgroundBank(val_backgrounds) if val_backgrounds else None, size=size)
    before = accuracy(model, heldout, progress=progress)
    data = ShapesDataset(n, seed=PRECISE_BN_SEED, backgrounds=BackgroundBank(backgrounds) if backgrounds else None,
                         size=size)
    precise_bn(model, data, batch_size, progress)
    after = accuracy(model, heldout, progress=progress)
    entry = {"n": n, "seed": PRECISE_BN_SEED, "backgrounds": str(backgrounds) if backgrounds else "procedural",
             "batch_size": batch_size, "heldout_accuracy_before": before, "heldout_accuracy_after": after,
             "command": command}
    record = {**record, "precise_bn": entry, "heldout_accuracy": after}
    export_weights(model.to(memory_format=torch.contiguous_format), weights, record)
    write_model_card(weights)
    return entry


def export_weights(model, path, record: dict) -> Path:
    """Save ``model`` as fp16 safetensors; metadata: ``classes`` and ``record`` (JSON strings)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if v.dtype.is_floating_point}
    # BatchNorm's integer step counters are not needed for inference
    save_file(state, str(path), metadata={"classes": json.dumps(list(CLASSES)), "arch": "torchvision.resnet50",
                                          "record": json.dumps(record)})
    return path


def train(out_dir, backgrounds, val_backgrounds, *, steps: int = 3500, batch_size: int = 32, lr: float = 1e-3,
          optimizer: str = "adamw", warmup: int = 200, weight_decay: float | None = None, seed: int = 0, size: int = 128, eval_every: int = 500,
          val_n: int = 512, final_val_n: int = 2000, ckpt_every: int = 100, export=None, command: str = "",
          curriculum_steps: int = 0, warm_steps: int = 0, warm_size: int = 64, stop_at: int | None = None,
          augment: bool = False, bf16: bool = False, ema_decay: float = 0.0,
          progress: bool = True) -> dict | None:
    """Train (or resume from ``<out_dir>/last.pt``) and return the final record.

    ``stop_at``: checkpoint and return ``None`` after this step (resume later with the same ``steps``).
    ``augment``: training backgrounds and textures from :class:`~hdm.shapes.BackgroundBank` with
    ``augment=True``.
    ``bf16``: bfloat16 autocast for the forward pass (about 2x faster on CPUs with AVX512-BF16 or AMX;
    weights, optimizer and gradients stay float32).
    ``ema_decay``: keep an exponential moving average of the weights and BatchNorm statistics
    (``ema <- d * ema + (1 - d) * w`` after every step, from the current weights when it starts); the
    held-out checks and the export then use the average.

    ``backgrounds``/``val_backgrounds``: photo folders (or ``None`` for procedural backgrounds).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = make_model().to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    if weight_decay is None:
        weight_decay = 0.05 if optimizer == "adamw" else 5e-5
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}]
    opt = (torch.optim.AdamW(groups, lr=lr) if optimizer == "adamw"
           else torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True))
    start, ckpt = 0, out / "last.pt"
    # one dict per run of the command with other settings; a resume with other --steps moves the cosine
    segments, ema = [], None
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        segments = [_segment(s) for s in state.get("segments", [[0, start, 0]])]
        ema = state.get("ema")
        print(f"resuming from {ckpt} at step {start}", file=sys.stderr)
    settings = {"steps": steps, "lr": lr, "augment": int(augment), "bf16": int(bf16), "ema_decay": ema_decay}
    if not segments or {k: segments[-1][k] for k in settings} != settings:
        segments.append({"start": start, **settings, "command": command})
    if ema_decay > 0 and ema is None:
        ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    elif ema_decay <= 0:
        ema = None
    averaged = make_model().to(memory_format=torch.channels_last) if ema is not None else None

    def evaluated():
        """The model the held-out checks and the export use: the weight average when there is one."""
        if averaged is None:
            return model
        averaged.load_state_dict(ema)
        return averaged

    bank = BackgroundBank(backgrounds, augment=augment) if backgrounds else None
    val_bank = BackgroundBank(val_backgrounds) if val_backgrounds else None
    ramp = max(1, curriculum_steps * batch_size)
    difficulty = (lambda i: min(1.0, i / ramp)) if curriculum_steps > 0 else 1.0
    train_sets = {sz: ShapesDataset(steps * batch_size, seed=seed, backgrounds=bank, size=sz, difficulty=difficulty)
                  for sz in {size, warm_size}}
    val_sets = {sz: ShapesDataset(val_n, seed=seed + VAL_SEED_OFFSET, backgrounds=val_bank, size=sz)
                for sz in {size, warm_size}}
    log = open(out / "log.jsonl", "a")

    def save(step):
        tmp = out / "last.pt.tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "segments": segments, **({"ema": ema} if ema is not None else {})}, tmp)
        tmp.replace(ckpt)

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train", disable=not progress)
    t0, seen = time.time(), 0
    for step in bar:
        if stop_at is not None and step >= stop_at:
            save(step)
            bar.close()
            print(f"stopped at step {step} (checkpoint {ckpt}); run again to resume", file=sys.stderr)
            return None
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        current = warm_size if step < warm_steps else size
        train_set, val_set = train_sets[current], val_sets[current]
        items = [train_set[i] for i in range(step * batch_size, (step + 1) * batch_size)]
        x = torch.stack([it[0] for it in items]).contiguous(memory_format=torch.channels_last)
        y = torch.tensor([it[1] for it in items])
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"non-finite loss at step {step + 1}; the checkpoint {ckpt} is from before it "
                                     "(try without --bf16 or with a lower --lr)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(ema_decay).add_(v, alpha=1 - ema_decay)
                    else:
                        ema[k].copy_(v)
        seen += len(y)
        bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{seen / (time.time() - t0):.1f}")
        entry = {"step": step + 1, "loss": round(loss.item(), 4), "lr": opt.param_groups[0]["lr"]}
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            entry["val_acc"] = accuracy(evaluated(), val_set)
            entry["val_size"] = current
            bar.write(f"step {step + 1}: held-out accuracy {entry['val_acc']:.4f} ({val_n} images, {current} px)")
        log.write(json.dumps(entry) + "\n")
        log.flush()
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            save(step + 1)

    final_set = ShapesDataset(final_val_n, seed=seed + VAL_SEED_OFFSET, backgrounds=val_bank, size=size)
    final = evaluated()
    acc = accuracy(final, final_set, progress=progress)
    record = {
        "command": command, "date": time.strftime("%Y-%m-%d"), "steps": steps, "batch_size": batch_size,
        "images_seen": steps * batch_size, "optimizer": optimizer, "lr": lr, "warmup": warmup, "weight_decay": weight_decay,
        "label_smoothing": 0.1, "seed": seed, "size": size,
        "schedule_segments": segments, "ema_decay": ema_decay, "curriculum_steps": curriculum_steps, "warm_steps": warm_steps, "warm_size": warm_size,
        "train_backgrounds": str(backgrounds) if backgrounds else "procedural",
        "heldout_backgrounds": str(val_backgrounds) if val_backgrounds else "procedural",
        "heldout_seed": seed + VAL_SEED_OFFSET, "heldout_n": final_val_n, "heldout_accuracy": acc,
    }
    (out / "record.json").write_text(json.dumps(record, indent=2))
    print(f"held-out accuracy {acc:.4f} on {final_val_n} images", file=sys.stderr)
    if export:
        print(f"wrote {export_weights(final.to(memory_format=torch.contiguous_format), export, record)}", file=sys.stderr)
        print(f"wrote {write_model_card(export)}", file=sys.stderr)
    return record


def _segment(s) -> dict:
    """A schedule segment as a dict (older checkpoints stored ``[start, steps, augment]`` rows)."""
    if isinstance(s, dict):
        return s
    s = [int(v) for v in s] + [0] * (3 - len(s))
    return {"start": s[0], "steps": s[1], "lr": 1e-3, "augment": s[2], "bf16": 0, "ema_decay": 0.0}


def write_model_card(weights) -> Path:
    """``<stem>.md`` beside ``weights``: data, recipe command, steps, metrics, theta and sha256 of each
    file, all read from the files themselves (the training record lives in the safetensors metadata)."""
    from ..io.weights import safetensors_metadata

    weights = Path(weights)
    meta = safetensors_metadata(weights)
    r = json.loads(meta.get("record", "{}"))
    theta_path = weights.with_name(weights.name.removesuffix(".safetensors") + ".theta.json")
    lines = [
        f"# {weights.name}", "",
        "A torchvision ResNet-50 (architecture unchanged, 8 outputs) trained from scratch to classify the",
        "shapes of `hdm.shapes` (" + ", ".join(json.loads(meta.get("classes", "[]"))) + "): the model of the",
        "CAM benchmark (`hdm eval-cam`, results in `docs/results/cam.md`). It knows nothing else.", "",
        "Load it with `hdm.models.load_shapes_resnet50()`. Inputs: RGB in [0, 1], ImageNet-normalised, "
        f"{r.get('size', 128)} px. Stored as fp16 safetensors (loaded as float32).", "",
        "## Data", "",
        f"- training: fresh `hdm.shapes` images every step (split seed {r.get('seed')}, sample i = step x batch + k),"
        f" backgrounds and textures cut from `{r.get('train_backgrounds')}`"
        " (the photos are not shipped; for `../shared/data` see its manifest.tsv for sources and licences)",
        f"- held-out: split seed {r.get('heldout_seed')} rendered on `{r.get('heldout_backgrounds')}` (photos never seen in training)", "",
        "## Recipe", "",
        f"- command: `{r.get('command') or 'hdm train-cam-model ...'}`",
        f"- date: {r.get('date')}",
        f"- {r.get('steps')} steps x batch {r.get('batch_size')} = {r.get('images_seen')} images; "
        f"{'AdamW' if r.get('optimizer') == 'adamw' else 'SGD Nesterov momentum 0.9'}, lr {r.get('lr')} (warm-up {r.get('warmup')} steps, cosine to 0), weight decay {r.get('weight_decay')} "
        f"(not on biases and norms), label smoothing {r.get('label_smoothing')}, zero-init residual BN, channels-last, CPU",
        *([f"- trained in {len(r['schedule_segments'])} segments (each a run of the command with other settings; "
           "a longer `steps` moves the end of the cosine, a warm restart from the checkpoint):"]
          + [f"  - from step {g['start']}: schedule length {g['steps']}, peak lr {g['lr']}, background augmentation "
             f"{'on' if g['augment'] else 'off'}, {'bf16 autocast' if g['bf16'] else 'float32'}, weight EMA "
             f"{g['ema_decay'] or 'off'}" + (f"; `{g['command']}`" if g.get("command") else "")
             for g in map(_segment, r["schedule_segments"])]
          if len(r.get("schedule_segments", [])) > 1 else []),
        f"- curriculum: difficulty 0 -> 1 over the first {r.get('curriculum_steps')} steps; the first {r.get('warm_steps')} "
        f"steps at {r.get('warm_size')} px, the rest at {r.get('size')} px (see `hdm/train_classifier.py`)", "",
        "## Metrics", "",
        f"- held-out top-1 accuracy: **{r.get('heldout_accuracy', float('nan')):.4f}** on {r.get('heldout_n')} images "
        + ("(after precise BN, below)" if "precise_bn" in r else "(measured at the end of the training command)"),
    ]
    if "precise_bn" in r:
        b = r["precise_bn"]
        lines.insert(lines.index("## Metrics") - 1,
                     f"- precise BN after training: BatchNorm statistics recomputed as the average over {b['n']} "
                     f"un-augmented images (split seed {b['seed']}, backgrounds {b['backgrounds']}; "
                     f"`{b.get('command') or 'hdm calibrate-bn'}`): held-out accuracy "
                     f"{b['heldout_accuracy_before']:.4f} -> {b['heldout_accuracy_after']:.4f}")
    if theta_path.is_file():
        t = json.loads(theta_path.read_text())
        lines += ["", "## HDM-CAM learned scale weights (eq. 13)", "",
                  f"`{theta_path.name}`: theta = {[round(v, 4) for v in t['theta']]}, alpha = sigmoid(theta) = "
                  f"{[round(v, 4) for v in t['alpha']]}, fitted by `{t.get('command')}` on {t['calibration']['n']} "
                  f"calibration images (seed {t['calibration']['seed']}, backgrounds {t['calibration']['backgrounds']}), "
                  "minimising the classifier's cross-entropy on x * CAM.", "",
                  "| alpha mode | objective on the calibration split |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in t["objective"].items()]
    return _write_card_file(weights, lines, [theta_path] if theta_path.is_file() else [])
