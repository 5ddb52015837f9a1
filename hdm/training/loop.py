"""Small pieces every hdm training loop shares: the learning-rate schedule, the weight average,
data-parallel set-up and its sanity check, loud warnings, file hashes."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["cosine_lr", "ema_update", "ema_decay_at", "init_distributed", "replicas_identical", "loud", "check_resume", "trim_log", "agree_on_step"]


def cosine_lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to 0 at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def ema_decay_at(step: int, decay: float) -> float:
    """``min(decay, (1 + step) / (10 + step))``: the average warms up, so that a short run's average is
    not mostly its random initialisation."""
    return min(decay, (1 + step) / (10 + step))


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
        raise ValueError(f"{ckpt} was made with other settings {changed} (checkpoint vs now): resume with the same "
                         "settings, or use another --out")


def trim_log(path: Path, step: int) -> None:
    """Drop the lines of a JSON-lines log whose ``step`` is after ``step`` (written after the last checkpoint)."""
    import json

    if Path(path).exists():
        lines = Path(path).read_text().splitlines()
        Path(path).write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= step))


def agree_on_step(step: int, device) -> None:
    """In a distributed run, check that every process resumes from the same step."""
    if dist.is_initialized():
        both = torch.tensor([step, -step], dtype=torch.float64, device=device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        if int(both[0]) != -int(both[1]):
            raise RuntimeError(f"the processes resume from different steps ({-int(both[1])}..{int(both[0])})")
