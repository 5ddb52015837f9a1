"""One training loop for every hdm model; each model kind supplies its part through a :class:`Task`
(BasicSR's model classes: the loop is shared, the task is the model).

:func:`fit` owns what every run does the same way: device and data-parallel set-up (``torchrun``:
NCCL on GPU, gloo on CPU; each of ``W`` processes takes ``batch / W`` items of every step), seeding,
the step loop with its tqdm bar, the learning-rate schedule (:func:`cosine_lr`), the optimiser step,
the weight average (:func:`ema_update`), periodic validation of the average and the JSON-lines log
``<out>/log.jsonl``, the checkpoint ``<out>/last.pt`` and an exact resume from it, ``stop_at``, and
the final export with its model card. A run resumes exactly because step ``s`` uses only items
``s * batch ..`` of data that depend on ``(seed, item)``, and the checkpoint holds every state the
next step reads (weights, optimisers, average, step).

Also the small pieces around it: the schedules, data-parallel checks, loud warnings, resume checks.
"""
from __future__ import annotations

import abc
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from ..errors import BadArgument, TrainingError

__all__ = ["Settings", "Env", "Task", "fit", "cosine_lr", "ema_update", "ema_decay_at", "init_distributed",
           "replicas_identical", "loud", "check_resume", "trim_log", "agree_on_step"]


def cosine_lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to 0 at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """``min(decay, (1 + step) / (10 + step))``: the average warms up, so that a short run's average is
    not mostly its random initialisation. ``warmup=False``: the constant ``decay``."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


@torch.no_grad()
def ema_update(ema: dict, model: nn.Module, decay: float) -> None:
    """``ema <- decay ema + (1 - decay) w`` for every floating tensor of ``model.state_dict()`` (weights
    and BatchNorm statistics); integer buffers are copied."""
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
        else:
            ema[k].copy_(v)


def init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by ``torchrun`` with more than one
    process: NCCL for a CUDA ``device`` (each process on GPU ``LOCAL_RANK``), gloo for the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def replicas_identical(model: nn.Module) -> bool:
    """In a distributed run: do all processes hold exactly the same parameters? (A float64 checksum
    with position-dependent weights, gathered from every rank.) ``True`` outside one."""
    if not dist.is_initialized():
        return True
    flat = torch.cat([p.detach().flatten().double() for p in model.parameters()])  # on the model's device (NCCL)
    weights = torch.linspace(1, 2, flat.numel(), dtype=torch.float64, device=flat.device)
    check = torch.stack([flat.sum(), (flat * weights).sum()])
    gathered = [torch.zeros_like(check) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, check)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def loud(message: str, rank: int = 0) -> None:
    """A warning nobody can miss in a training log (printed by rank 0 only)."""
    if rank == 0:
        bar = "!" * 78
        print(f"\n{bar}\n{message}\n{bar}\n", file=sys.stderr)


def check_resume(ckpt: Path, before: dict, now: dict, fixed) -> None:
    """Refuse to resume ``ckpt`` (made with settings ``before``) with other values of the ``fixed`` keys."""
    changed = {k: (before.get(k), now.get(k)) for k in fixed if k in before and before.get(k) != now.get(k)}
    if changed:
        raise BadArgument(f"{ckpt} was made with other settings {changed} (checkpoint vs now): resume with the same "
                         "settings, or use another --out")


def trim_log(path: Path, step: int) -> None:
    """Drop the lines of a JSON-lines log whose ``step`` is after ``step`` (written after the last checkpoint)."""
    if Path(path).exists():
        lines = Path(path).read_text().splitlines()
        Path(path).write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= step))


def agree_on_step(step: int, device) -> None:
    """In a distributed run, check that every process resumes from the same step."""
    if dist.is_initialized():
        both = torch.tensor([step, -step], dtype=torch.float64, device=device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        if int(both[0]) != -int(both[1]):
            raise TrainingError(f"the processes resume from different steps ({-int(both[1])}..{int(both[0])})")


@dataclass
class Settings:
    """What :func:`fit` needs of a run."""

    out: str                        # folder of last.pt, log.jsonl, record.json
    steps: int                      # the schedule's length
    batch: int                      # global batch (split over the processes)
    lr: float                       # peak learning rate of :func:`cosine_lr`
    warmup: int
    seed: int = 0
    ema: float | None = 0.999       # weight-average decay; None: no average (validation and export use the weights)
    ema_warmup: bool = True         # :func:`ema_decay_at`'s warm-up, or the constant decay
    val_every: int = 250
    ckpt_every: int = 100
    stop_at: int | None = None      # checkpoint and stop before this step
    device: str = "cpu"             # "cuda": GPU LOCAL_RANK of each process
    export: str | None = None       # the exported weights (and their card beside them)
    label: str = "train"            # the progress bar's


@dataclass
class Env:
    """Where a task runs: this process's rank of ``world``, its device, whether it shows progress bars."""

    rank: int
    world: int
    device: torch.device
    progress: bool

    def parallel(self, module: nn.Module) -> nn.Module:
        """``module`` wrapped for data-parallel training (gradients averaged over the processes) when there
        are several processes; else ``module``."""
        return nn.parallel.DistributedDataParallel(module) if self.world > 1 else module


class Task(abc.ABC):
    """One model kind's part of a training run. :meth:`build` sets ``model`` (the trained network: averaged,
    checked across processes, validated and exported), ``optimizers`` (the first steps on :meth:`loss`;
    all follow the learning-rate schedule) and ``source`` (the training data folder or ``None``; its
    ``skipped`` files go into the record)."""

    settings: Settings
    model: nn.Module
    optimizers: list
    source = None
    distributed = True              # False: refuse to run under torchrun with several processes
    log_digits = 5                  # losses in the log are rounded to this many digits
    fixed: tuple = ()               # config keys a resume must not change (checked against the checkpoint's)

    def config(self) -> dict | None:
        """The run's settings (JSON-able), stored in the checkpoint and given to :meth:`record`."""
        return None

    @abc.abstractmethod
    def build(self, env: Env, state: dict | None) -> None:
        """Data, networks, optimisers and losses, in this order of random draws (the loop has seeded torch);
        from ``state`` (the checkpoint) when resuming."""

    @abc.abstractmethod
    def checkpoint(self) -> dict:
        """The task's part of ``last.pt`` (weights, optimisers, ...); the loop adds ``ema``, ``step``,
        ``seconds`` and ``config``."""

    @abc.abstractmethod
    def new_model(self) -> nn.Module:
        """A network of ``model``'s architecture on the CPU (to hold the weight average)."""

    @abc.abstractmethod
    def batch(self, step: int, part: slice):
        """This process's share ``part`` of step ``step``'s global batch (``slice(0, batch)`` in one process)."""

    @abc.abstractmethod
    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """``(loss to minimise, {name: scalar tensor to log})``."""

    def after_step(self, batch, logs: dict) -> None:
        """Anything to update after the optimiser step (e.g. a discriminator); may add to ``logs``."""

    @property
    @abc.abstractmethod
    def validates(self) -> bool:
        """Whether this process has validation data (then :meth:`validate` runs every ``val_every`` steps)."""

    @abc.abstractmethod
    def validate(self, model: nn.Module) -> tuple[dict, str]:
        """``({name: value to log}, one line for the progress bar)`` of the averaged ``model``."""

    @abc.abstractmethod
    def record(self, final: nn.Module, info: dict) -> dict:
        """The training record of the finished run. ``info``: ``config``, ``world_size``,
        ``replicas_identical``, ``date``, ``train_seconds``, ``device``."""

    @abc.abstractmethod
    def export(self, model: nn.Module, path, record: dict) -> list[Path]:
        """Write the weights file ``path`` (``record`` in its metadata) and its model card; returns the files."""


def fit(task: Task, progress: bool = True) -> tuple[dict, nn.Module]:
    """Run (or resume from ``<out>/last.pt``) ``task``'s training. Returns the record and the final model
    (the weight average, eval mode, on the CPU), or ``({"stopped_at": step}, the trained network)``."""
    s = task.settings
    if not task.distributed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BadArgument(f"{s.label} runs in one process, not under torchrun with several")
    rank, world = init_distributed(s.device)
    if s.batch % world:
        raise BadArgument(f"the batch ({s.batch}) must split evenly over {world} processes")
    device = torch.device(s.device if s.device != "cuda" else f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    out, env = Path(s.out), Env(rank, world, device, progress and rank == 0)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s.seed)
    ckpt = out / "last.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True) if ckpt.exists() else None
    if state is not None and task.fixed:
        check_resume(ckpt, json.loads(state.get("config", "{}")), task.config(), task.fixed)
    task.build(env, state)
    model, step, seconds_before = task.model, 0, 0.0
    ema = None
    if s.ema is not None:
        ema = ({k: v.to(device) for k, v in state["ema"].items()} if state is not None and "ema" in state
               else {k: v.detach().clone() for k, v in model.state_dict().items()})
    if state is not None:
        step, seconds_before = int(state["step"]), float(state.get("seconds", 0.0))
        if rank == 0:
            trim_log(out / "log.jsonl", step)  # lines of steps after the checkpoint (a crash)
            print(f"resuming from {ckpt} at step {step}", file=sys.stderr)
    agree_on_step(step, device)  # e.g. checkpoints on separate disks
    config = task.config()
    config_json = json.dumps(config) if config is not None else None

    def averaged(on) -> nn.Module:
        """The network validation and export use: the weight average, or the weights when there is none."""
        if ema is None:
            return model
        net = task.new_model().to(on)
        net.load_state_dict({k: v.to(on) for k, v in ema.items()})
        return net.eval()

    def save(at: int) -> None:
        if rank == 0:
            parts = {**task.checkpoint(), **({"ema": ema} if ema is not None else {}), "step": at,
                     "seconds": seconds_before + time.time() - t0}
            if config_json is not None:
                parts["config"] = config_json
            torch.save(parts, out / "last.pt.tmp")
            (out / "last.pt.tmp").replace(ckpt)

    per_rank = s.batch // world
    part = slice(rank * per_rank, (rank + 1) * per_rank)
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    bar = tqdm(range(step, s.steps), initial=step, total=s.steps, desc=s.label, disable=not env.progress)
    t0, started = time.time(), step
    try:
        for step in bar:
            if s.stop_at is not None and step >= s.stop_at:
                save(step)
                if rank == 0:
                    print(f"stopped at step {step} (checkpoint {ckpt}); run again to resume", file=sys.stderr)
                return {"stopped_at": step}, model
            model.train()
            lr = cosine_lr(step, s.steps, s.lr, s.warmup)
            for opt in task.optimizers:
                for group in opt.param_groups:
                    group["lr"] = lr
            batch = task.batch(step, part)
            loss, logs = task.loss(batch)
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss at step {step + 1}; the checkpoint {ckpt} is from before it "
                                         "(try a lower --lr; with --bf16, try without it)")
            task.optimizers[0].zero_grad(set_to_none=True)
            loss.backward()
            task.optimizers[0].step()
            task.after_step(batch, logs)
            if ema is not None:
                ema_update(ema, model, ema_decay_at(step, s.ema, s.ema_warmup))
            if rank == 0:
                entry = {"step": step + 1, "lr": lr, **{k: round(v.item(), task.log_digits) for k, v in logs.items()}}
                bar.set_postfix(loss=f"{loss.item():.4f}", s_step=f"{(time.time() - t0) / (step + 1 - started):.2f}")
                if task.validates and ((step + 1) % s.val_every == 0 or step + 1 == s.steps):
                    values, line = task.validate(averaged(device))
                    entry.update(values)
                    bar.write(f"step {step + 1}: {line}")
                log.write(json.dumps(entry) + "\n")
                log.flush()
            if (step + 1) % s.ckpt_every == 0 or step + 1 == s.steps:
                save(step + 1)
    finally:
        bar.close()
        if log is not None:
            log.close()
    identical = replicas_identical(model)
    if not identical:
        raise TrainingError("the processes' parameters differ: the distributed run is broken")
    final = averaged(torch.device("cpu"))
    info = {"config": json.loads(config_json) if config_json is not None else None, "world_size": world,
            "replicas_identical": identical, "date": time.strftime("%Y-%m-%d"),
            "train_seconds": round(seconds_before + time.time() - t0, 1), "device": str(device)}
    record = task.record(final, info)
    record["skipped_files"] = [str(p) for p, _ in getattr(task.source, "skipped", [])]
    if rank == 0:
        (out / "record.json").write_text(json.dumps(record, indent=2))
        if s.export:
            for path in task.export(final, s.export, record):
                print(f"wrote {path}", file=sys.stderr)
    if world > 1:
        dist.barrier()
    return record, final
