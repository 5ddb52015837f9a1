"""Train the shapes ResNet-50 (:mod:`hdm.data.shapes`) from scratch: seeded, resumable, with tqdm progress.

Recipe: torchvision ResNet-50 (architecture unchanged, ``num_classes=8``, ``zero_init_residual``),
AdamW (lr 1e-3, weight decay 0.05 on weights only; or SGD with Nesterov momentum), linear warm-up
then cosine decay, label smoothing 0.1, channels-last. Two aids to get through the long plateau at
chance level that shape-only classes give a network trained from scratch (SGD at lr 0.05 and 0.02,
and AdamW at 1e-3, all stayed at chance for 400-560 steps of 128 px images in our runs):

- a curriculum: the images' ``difficulty`` (:func:`hdm.data.shapes.render_sample`) ramps linearly from 0
  (large instances, no distractors, no textures) to 1 (the benchmark's distribution) over the first
  ``curriculum_steps`` steps;
- progressive resizing: the first ``warm_steps`` steps use ``warm_size`` px images (4x cheaper at 64 px).

``init`` starts from an exported model instead (fine-tuning; the parent's file, sha256 and record go into the
new record), and ``mix_size`` trains every other step after the warm-up at a second side, for one model
that reads the benchmark at two resolutions (e.g. 128 and 224 px).

Every step sees a fresh batch: step ``s`` draws samples ``s * batch .. (s + 1) * batch - 1`` of the
training split, so a resumed run (:func:`hdm.training.loop.fit`, with :class:`ClassifierTask` as this
model's part) sees exactly the data an uninterrupted one would. Held-out accuracy is measured on a
split rendered on other photos.

Files: ``<out>/last.pt`` (checkpoint, rewritten every ``ckpt_every`` steps), ``<out>/log.jsonl``
(loss and accuracy), and ``export`` (fp16 safetensors whose metadata holds the class names and the
training record, read back by :func:`hdm.cam.classifiers.load_shapes_resnet50`).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from tqdm import tqdm

from ..cam.classifiers import load_shapes_resnet50
from ..data.shapes import CLASSES, BackgroundBank, ShapesDataset
from ..errors import BadArgument
from ..io.cards import licence_line, sha256
from ..io.cards import write_model_card as _write_card_file
from ..io.registry import MODELS
from ..io.weights import resolve_weights, safetensors_metadata
from .cards import skipped_lines
from .loop import Env, Settings, Task, fit

__all__ = ["ClassifierTrainConfig", "ClassifierTask", "train", "accuracy", "export_weights", "write_model_card",
           "precise_bn", "calibrate_bn", "accuracy_at_sizes", "accuracy_markdown"]

#: Seed offset of the held-out split (any split seed differs from the training seed by this).
VAL_SEED_OFFSET = 1000


def make_model() -> torch.nn.Module:
    return torchvision.models.resnet50(num_classes=len(CLASSES), zero_init_residual=True)


@torch.no_grad()
def accuracy(model, dataset, batch_size: int = 64, progress: bool = False) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (items ``(x, label, mask)``)."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    correct = 0
    for x, y, _ in tqdm(loader, desc="accuracy", disable=not progress, leave=False):
        correct += (model(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum().item()
    return correct / len(dataset)


def _trained_sizes(record: dict) -> list[int]:
    """The image sides a training record's model was trained at: ``size``, then ``mix_size`` if any."""
    return [int(record.get("size", 128))] + ([int(record["mix_size"])] if record.get("mix_size") else [])


def accuracy_at_sizes(weights, sizes, backgrounds=None, n: int = 2000, seed: int = VAL_SEED_OFFSET,
                      progress: bool = True) -> list[dict]:
    """Top-1 accuracy of each exported model of ``weights`` (files or registry names) on ``n`` images of split
    ``seed`` rendered at each side of ``sizes`` (objects at the same fraction of the image) on
    ``backgrounds`` (a folder, or procedural). Rows: ``weights``, ``sha256``, ``trained`` (the sides the
    model was trained at), ``size``, ``accuracy``."""
    if not sizes or min(sizes) < 32:
        raise BadArgument(f"image sides must be at least 32 px, got {list(sizes)}")
    bank = BackgroundBank(backgrounds) if backgrounds else None
    rows = []
    for w in weights:
        path = resolve_weights(w)
        record = json.loads(safetensors_metadata(path).get("record", "{}"))
        trained = _trained_sizes(record)
        model = load_shapes_resnet50(path).model.to(memory_format=torch.channels_last)
        for side in sizes:
            acc = accuracy(model, ShapesDataset(n, seed=seed, backgrounds=bank, size=side), progress=progress)
            rows.append({"weights": str(w), "sha256": sha256(path), "trained": trained, "size": int(side),
                         "accuracy": acc})
    return rows


def accuracy_markdown(rows: list[dict]) -> list[str]:
    """:func:`accuracy_at_sizes`'s rows as a table: one row per model, one column per side."""
    sizes = sorted({r["size"] for r in rows})
    models = list(dict.fromkeys(r["weights"] for r in rows))
    lines = ["| model | trained at | sha256 | " + " | ".join(f"accuracy at {s} px" for s in sizes) + " |",
             "|---" * (len(sizes) + 3) + "|"]
    for m in models:
        mine = {r["size"]: r for r in rows if r["weights"] == m}
        first = next(iter(mine.values()))
        cells = [f"{mine[s]['accuracy']:.4f}" if s in mine else "-" for s in sizes]
        lines.append(f"| {m} | {' and '.join(f'{t} px' for t in first['trained'])} | `{first['sha256'][:12]}` | "
                     + " | ".join(cells) + " |")
    return lines


@torch.no_grad()
def precise_bn(model, *datasets, batch_size: int = 64, progress: bool = False):
    """Recompute every BatchNorm's running mean and variance as the plain average of batch statistics
    over the batches of ``datasets`` (e.g. one per image side) ("precise BN", Wu & Johnson 2021):
    the statistics the trained weights meet on un-augmented images, instead of a moving average over
    augmented training batches. In place; returns ``model`` in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average of the batches seen
    model.train()
    for data in datasets:
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
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
    (the training photos; half at each side for a model trained at two, ``mix_size``); held-out accuracy
    before and after; the weights and card are rewritten with the record's ``precise_bn`` entry. Returns
    that entry."""
    weights = Path(weights)
    record = json.loads(safetensors_metadata(weights).get("record", "{}"))
    if "precise_bn" in record:
        raise BadArgument(f"{weights} already had precise BN ({record['precise_bn']})")
    model = load_shapes_resnet50(weights).model.to(memory_format=torch.channels_last)
    sizes = _trained_sizes(record)
    val_bank = BackgroundBank(val_backgrounds) if val_backgrounds else None
    heldout = [ShapesDataset(int(record.get("heldout_n", 2000)), seed=int(record.get("heldout_seed", VAL_SEED_OFFSET)),
                             backgrounds=val_bank, size=side) for side in sizes]
    before = [accuracy(model, h, progress=progress) for h in heldout]
    bank = BackgroundBank(backgrounds) if backgrounds else None
    precise_bn(model, *[ShapesDataset(n // len(sizes), seed=PRECISE_BN_SEED, backgrounds=bank, size=side)
                        for side in sizes], batch_size=batch_size, progress=progress)
    after = [accuracy(model, h, progress=progress) for h in heldout]
    entry = {"n": n, "seed": PRECISE_BN_SEED, "backgrounds": str(backgrounds) if backgrounds else "procedural",
             "batch_size": batch_size, "sizes": sizes, "heldout_accuracy_before": before[0],
             "heldout_accuracy_after": after[0], "command": command}
    if len(sizes) > 1:
        entry.update(heldout_accuracy_mix_before=before[1], heldout_accuracy_mix_after=after[1])
    record = {**record, "precise_bn": entry, "heldout_accuracy": after[0],
              **({"heldout_accuracy_mix": after[1]} if len(sizes) > 1 else {})}
    export_weights(model.to(memory_format=torch.contiguous_format), weights, record)
    write_model_card(weights)
    return entry


def export_weights(model, path, record: dict) -> Path:
    """Save ``model`` as fp16 safetensors; metadata: ``classes`` and ``record`` (JSON strings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if v.dtype.is_floating_point}
    # BatchNorm's integer step counters are not needed for inference
    save_file(state, str(path), metadata={"classes": json.dumps(list(CLASSES)), "arch": "torchvision.resnet50",
                                          "record": json.dumps(record)})
    return path


@dataclass
class ClassifierTrainConfig:
    """The settings of :func:`train` (see there)."""

    out_dir: str
    backgrounds: str | None
    val_backgrounds: str | None
    steps: int = 3500
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adamw"
    warmup: int = 200
    weight_decay: float | None = None  # None: 0.05 for AdamW, 5e-5 for SGD
    seed: int = 0
    size: int = 128
    eval_every: int = 500
    val_n: int = 512
    final_val_n: int = 2000
    ckpt_every: int = 100
    export: str | None = None
    command: str = ""
    curriculum_steps: int = 0
    warm_steps: int = 0
    warm_size: int = 64
    stop_at: int | None = None
    augment: bool = False
    bf16: bool = False
    ema_decay: float = 0.0
    init: str | None = None  # exported weights (a file or registry name) to start from; fresh runs only
    mix_size: int | None = None  # after the warm-up, odd steps at this side


class ClassifierTask(Task):
    """The shapes ResNet-50's part of :func:`hdm.training.loop.fit`: fresh :class:`ShapesDataset` images
    (curriculum, progressive resizing), label-smoothed cross-entropy, held-out accuracy, schedule
    segments in the checkpoint, the fp16 export with its card. One process (BatchNorm statistics are
    per batch); a constant-decay weight average when ``ema_decay > 0``."""

    distributed = False
    log_digits = 4

    def __init__(self, cfg: ClassifierTrainConfig):
        if cfg.optimizer not in ("adamw", "sgd"):
            raise BadArgument(f"optimizer must be 'adamw' or 'sgd', got {cfg.optimizer!r}")
        if cfg.weight_decay is None:
            cfg.weight_decay = 0.05 if cfg.optimizer == "adamw" else 5e-5
        self.cfg = cfg
        self.settings = Settings(out=str(cfg.out_dir), steps=cfg.steps, batch=cfg.batch_size, lr=cfg.lr,
                                 warmup=cfg.warmup, seed=cfg.seed, ema=cfg.ema_decay if cfg.ema_decay > 0 else None,
                                 ema_warmup=False, val_every=cfg.eval_every, ckpt_every=cfg.ckpt_every,
                                 stop_at=cfg.stop_at, export=cfg.export, label="train-cam-model")

    def build(self, env: Env, state: dict | None) -> None:
        cfg, self.env = self.cfg, env
        model = make_model().to(memory_format=torch.channels_last)
        decay = [p for n, p in model.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0}]
        opt = (torch.optim.AdamW(groups, lr=cfg.lr) if cfg.optimizer == "adamw"
               else torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True))
        start = 0
        # one dict per run of the command with other settings; a resume with other --steps moves the cosine
        self.segments, self.parent = [], None
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start = int(state["step"])
            self.segments = [_segment(s) for s in state.get("segments", [[0, start, 0]])]
            self.parent = state.get("init")
        elif cfg.init:
            path = resolve_weights(cfg.init)
            model.load_state_dict(load_shapes_resnet50(path).model.state_dict())
            self.parent = {"file": path.name, "sha256": sha256(path),
                           "record": json.loads(safetensors_metadata(path).get("record", "{}"))}
        settings = {"steps": cfg.steps, "lr": cfg.lr, "augment": int(cfg.augment), "bf16": int(cfg.bf16),
                    "ema_decay": cfg.ema_decay}
        if not self.segments or {k: self.segments[-1][k] for k in settings} != settings:
            self.segments.append({"start": start, **settings, "command": cfg.command})
        self.model, self.opt, self.optimizers = model, opt, [opt]
        self.source = BackgroundBank(cfg.backgrounds, augment=cfg.augment) if cfg.backgrounds else None
        self.val_bank = BackgroundBank(cfg.val_backgrounds) if cfg.val_backgrounds else None
        ramp = max(1, cfg.curriculum_steps * cfg.batch_size)
        difficulty = (lambda i: min(1.0, i / ramp)) if cfg.curriculum_steps > 0 else 1.0
        sizes = {cfg.size, cfg.warm_size} | ({cfg.mix_size} if cfg.mix_size else set())
        self.train_sets = {sz: ShapesDataset(cfg.steps * cfg.batch_size, seed=cfg.seed, backgrounds=self.source,
                                             size=sz, difficulty=difficulty) for sz in sizes}
        self.val_sets = {sz: ShapesDataset(cfg.val_n, seed=cfg.seed + VAL_SEED_OFFSET, backgrounds=self.val_bank,
                                           size=sz) for sz in sizes}

    def checkpoint(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "segments": self.segments,
                "init": self.parent}

    def new_model(self) -> torch.nn.Module:
        return make_model().to(memory_format=torch.channels_last)

    def batch(self, step: int, part: slice):
        cfg = self.cfg
        if step < cfg.warm_steps:  # progressive resizing
            self.current = cfg.warm_size
        else:
            self.current = cfg.mix_size if cfg.mix_size and step % 2 else cfg.size
        train_set, first = self.train_sets[self.current], step * cfg.batch_size
        items = [train_set[i] for i in range(first + part.start, first + part.stop)]
        return (torch.stack([it[0] for it in items]).contiguous(memory_format=torch.channels_last),
                torch.tensor([it[1] for it in items]))

    def loss(self, batch):
        x, y = batch
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        return loss, {"loss": loss}

    @property
    def validates(self) -> bool:
        return True

    def validate(self, model) -> tuple[dict, str]:
        acc = accuracy(model, self.val_sets[self.current])
        return ({"val_acc": acc, "val_size": self.current},
                f"held-out accuracy {acc:.4f} ({self.cfg.val_n} images, {self.current} px)")

    def record(self, final, info: dict) -> dict:
        cfg = self.cfg
        final_set = ShapesDataset(cfg.final_val_n, seed=cfg.seed + VAL_SEED_OFFSET, backgrounds=self.val_bank,
                                  size=cfg.size)
        acc = accuracy(final, final_set, progress=self.env.progress)
        print(f"held-out accuracy {acc:.4f} on {cfg.final_val_n} images", file=sys.stderr)
        extra = {}
        if cfg.mix_size:
            mix_set = ShapesDataset(cfg.final_val_n, seed=cfg.seed + VAL_SEED_OFFSET, backgrounds=self.val_bank,
                                    size=cfg.mix_size)
            extra["heldout_accuracy_mix"] = accuracy(final, mix_set, progress=self.env.progress)
            print(f"held-out accuracy {extra['heldout_accuracy_mix']:.4f} at {cfg.mix_size} px", file=sys.stderr)
        if self.parent:
            extra["init"] = self.parent
        return {
            "command": cfg.command, "date": info["date"], "steps": cfg.steps, "batch_size": cfg.batch_size,
            "images_seen": cfg.steps * cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr,
            "warmup": cfg.warmup, "weight_decay": cfg.weight_decay, "label_smoothing": 0.1, "seed": cfg.seed,
            "size": cfg.size, "schedule_segments": self.segments, "ema_decay": cfg.ema_decay,
            "curriculum_steps": cfg.curriculum_steps, "warm_steps": cfg.warm_steps, "warm_size": cfg.warm_size,
            "train_backgrounds": str(cfg.backgrounds) if cfg.backgrounds else "procedural",
            "heldout_backgrounds": str(cfg.val_backgrounds) if cfg.val_backgrounds else "procedural",
            "heldout_seed": cfg.seed + VAL_SEED_OFFSET, "heldout_n": cfg.final_val_n, "heldout_accuracy": acc,
            "mix_size": cfg.mix_size, **extra,
        }

    def export(self, model, path, record: dict) -> list[Path]:
        return [export_weights(model.to(memory_format=torch.contiguous_format), path, record), write_model_card(path)]


def train(out_dir, backgrounds, val_backgrounds, *, progress: bool = True, **settings) -> dict | None:
    """Train (or resume from ``<out_dir>/last.pt``) and return the final record. ``settings``: the fields of
    :class:`ClassifierTrainConfig`, among them:

    ``stop_at``: checkpoint and return ``None`` after this step (resume later with the same ``steps``).
    ``augment``: training backgrounds and textures from :class:`~hdm.data.shapes.BackgroundBank` with
    ``augment=True``.
    ``bf16``: bfloat16 autocast for the forward pass (about 2x faster on CPUs with AVX512-BF16 or AMX;
    weights, optimizer and gradients stay float32).
    ``ema_decay``: keep an exponential moving average of the weights and BatchNorm statistics
    (``ema <- d * ema + (1 - d) * w`` after every step, from the current weights when it starts); the
    held-out checks and the export then use the average.

    ``backgrounds``/``val_backgrounds``: photo folders (or ``None`` for procedural backgrounds).
    """
    record, _ = fit(ClassifierTask(ClassifierTrainConfig(out_dir, backgrounds, val_backgrounds, **settings)), progress)
    return None if "stopped_at" in record else record


def _segment(s) -> dict:
    """A schedule segment as a dict (older checkpoints stored ``[start, steps, augment]`` rows)."""
    if isinstance(s, dict):
        return s
    s = [int(v) for v in s] + [0] * (3 - len(s))
    return {"start": s[0], "steps": s[1], "lr": 1e-3, "augment": s[2], "bf16": 0, "ema_decay": 0.0}


def write_model_card(weights) -> Path:
    """``<stem>.md`` beside ``weights``: data, recipe command, steps, metrics, theta and sha256 of each
    file, all read from the files themselves (the training record lives in the safetensors metadata)."""
    weights = Path(weights)
    meta = safetensors_metadata(weights)
    r = json.loads(meta.get("record", "{}"))
    theta_path = weights.with_name(weights.name.removesuffix(".safetensors") + ".theta.json")
    size, name = int(r.get("size", 128)), weights.name.removesuffix(".safetensors")
    results = "cam.md" if size == 128 else f"cam_{size}.md"
    warm = (f"the first {r.get('warm_steps')} steps at {r.get('warm_size')} px, the rest at {size} px"
            if r.get("warm_steps") else f"every step at {size} px")
    lines = [
        f"# {weights.name}", "",
        "A torchvision ResNet-50 (architecture unchanged, 8 outputs) "
        + ("fine-tuned from an earlier model (below)" if r.get("init") else "trained from scratch")
        + " to classify the",
        "shapes of `hdm.data.shapes` (" + ", ".join(json.loads(meta.get("classes", "[]"))) + "): the model of the",
        f"CAM benchmark (`hdm eval-cam{'' if size == 128 else f' --size {size}'}`, results in "
        f"`docs/results/{results}`). It knows nothing else.", "",
        "Load it with `hdm.cam.classifiers.Classifier.from_pretrained"
        f"(\"{name if name in MODELS else weights}\")`. Inputs: RGB in [0, 1], ImageNet-normalised, "
        f"{size} px. Stored as fp16 safetensors (loaded as float32).", "",
        licence_line(weights), "",
        "## Data", "",
        f"- training: fresh `hdm.data.shapes` images every step (split seed {r.get('seed')}, sample i = step x batch + k),"
        f" backgrounds and textures cut from `{r.get('train_backgrounds')}`"
        " (the photos are not shipped; for `../shared/data` see its manifest.tsv for sources and licences)",
        *skipped_lines(r),
        f"- held-out: split seed {r.get('heldout_seed')} rendered on `{r.get('heldout_backgrounds')}` "
        "(photos never seen in training)", "",
        "## Recipe", "",
        f"- command: `{r.get('command') or 'hdm train-cam-model ...'}`",
        f"- date: {r.get('date')}",
        f"- {r.get('steps')} steps x batch {r.get('batch_size')} = {r.get('images_seen')} images; "
        f"{'AdamW' if r.get('optimizer') == 'adamw' else 'SGD Nesterov momentum 0.9'}, lr {r.get('lr')} "
        f"(warm-up {r.get('warmup')} steps, cosine to 0), weight decay {r.get('weight_decay')} "
        f"(not on biases and norms), label smoothing {r.get('label_smoothing')}, zero-init residual BN, "
        "channels-last, CPU",
        *([f"- trained in {len(r['schedule_segments'])} segments (each a run of the command with other settings; "
           "a longer `steps` moves the end of the cosine, a warm restart from the checkpoint):"]
          + [f"  - from step {g['start']}: schedule length {g['steps']}, peak lr {g['lr']}, background augmentation "
             f"{'on' if g['augment'] else 'off'}, {'bf16 autocast' if g['bf16'] else 'float32'}, weight EMA "
             f"{g['ema_decay'] or 'off'}" + (f"; `{g['command']}`" if g.get("command") else "")
             for g in map(_segment, r["schedule_segments"])]
          if len(r.get("schedule_segments", [])) > 1 else []),
        (f"- curriculum: difficulty 0 -> 1 over the first {r.get('curriculum_steps')} steps; "
         if r.get("curriculum_steps") else "- no curriculum (full difficulty from the first step); ")
        + warm + (f", every other step at {r['mix_size']} px" if r.get("mix_size") else "")
        + " (see `hdm/training/classifier.py`)",
        *([f"- started from `{r['init']['file']}` (sha256 `{r['init']['sha256']}`), itself made by "
           f"`{r['init']['record'].get('command') or 'hdm train-cam-model'}` "
           f"({r['init']['record'].get('steps')} steps at {r['init']['record'].get('size')} px, held-out accuracy "
           f"{r['init']['record'].get('heldout_accuracy', float('nan')):.4f})"] if r.get("init") else []), "",
        "## Metrics", "",
        f"- held-out top-1 accuracy: **{r.get('heldout_accuracy', float('nan')):.4f}** on {r.get('heldout_n')} images "
        + ("(after precise BN, below)" if "precise_bn" in r else "(measured at the end of the training command)")
        + (f" at {r.get('size')} px" if r.get("mix_size") else ""),
        *([f"- held-out top-1 accuracy at {r['mix_size']} px: **{r['heldout_accuracy_mix']:.4f}** "
           + ("(after precise BN)" if "precise_bn" in r else "(measured at the end of the training command)")]
          if r.get("heldout_accuracy_mix") is not None else []),
    ]
    if "precise_bn" in r:
        b = r["precise_bn"]
        lines.insert(lines.index("## Metrics") - 1,
                     f"- precise BN after training: BatchNorm statistics recomputed as the average over {b['n']} "
                     f"un-augmented images (split seed {b['seed']}, backgrounds {b['backgrounds']}; "
                     f"`{b.get('command') or 'hdm calibrate-bn'}`): held-out accuracy "
                     f"{b['heldout_accuracy_before']:.4f} -> {b['heldout_accuracy_after']:.4f}"
                     + (f" ({b['sizes'][0]} px), {b['heldout_accuracy_mix_before']:.4f} -> "
                        f"{b['heldout_accuracy_mix_after']:.4f} ({b['sizes'][1]} px)" if "sizes" in b and
                        len(b["sizes"]) > 1 else ""))
    if theta_path.is_file():
        t = json.loads(theta_path.read_text())
        lines += ["", "## HDM-CAM learned scale weights (eq. 13)", "",
                  f"`{theta_path.name}`: theta = {[round(v, 4) for v in t['theta']]}, alpha = sigmoid(theta) = "
                  f"{[round(v, 4) for v in t['alpha']]}, fitted by `{t.get('command')}` on {t['calibration']['n']} "
                  f"calibration images (seed {t['calibration']['seed']}, "
                  f"backgrounds {t['calibration']['backgrounds']}), "
                  "minimising the classifier's cross-entropy on x * CAM.", "",
                  "| alpha mode | objective on the calibration split |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in t["objective"].items()]
    return _write_card_file(weights, lines, [theta_path] if theta_path.is_file() else [])
