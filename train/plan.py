"""Training plans: stage lengths in epochs turned into steps for the global batch a run has.

The paper gives its schedules in epochs (200 pretraining, 100 fine-tuning); a step count only means
the same thing for one global batch. A plan fixes, per stage, the per-process and global batch, the
epochs, the steps that make them (`ceil(epochs x steps_per_epoch)`, where an epoch is one pass of
every process over its share of the train split in whole batches, exactly as `ShardLocalSampler` with
`drop_last` hands it out), the learning rate and the rule that scaled it. The trainer logs its plan at
start, and `csvr pretrain|finetune --dry-run --world-size N` prints the plan for N processes as JSON
without launching them: the epochs are the same for any N, the steps are not.
"""

from __future__ import annotations

import math
from typing import Any

from csvr.train.config import ConfigError, FinetuneConfig, PretrainConfig

LR_RULE = "linear: lr = optim.lr_per_sample x global batch"


def per_process_batch(cfg: PretrainConfig | FinetuneConfig, world_size: int) -> int:
    """The batch each process reads: `global_batch_size / world_size` when set, else `batch_size`."""
    if cfg.global_batch_size is None:
        return cfg.batch_size
    if cfg.global_batch_size % world_size:
        raise ConfigError(f"global_batch_size {cfg.global_batch_size} does not split evenly over {world_size} "
                          "processes; choose a multiple of the process count")
    return cfg.global_batch_size // world_size


def steps_per_epoch(split_size: int, world_size: int, batch: int) -> int:
    """Whole batches per epoch on each rank (the sampler drops the remainder across ranks, then batches)."""
    per_rank = split_size // world_size
    n = per_rank // batch
    if n == 0:
        raise ConfigError(f"the train split has {split_size} clips: {per_rank} per process, fewer than one batch "
                          f"of {batch}; lower the batch size or the process count")
    return n


def _optim_plan(optim, global_batch: int, spe: int) -> dict[str, Any]:
    lr = optim.lr_per_sample * global_batch
    warmup = optim.warmup_steps or int(round(optim.warmup_epochs * spe))
    return {"lr": lr, "disc_lr": lr * optim.disc_lr_mult, "lr_rule": LR_RULE, "schedule": optim.schedule,
            "warmup_steps": warmup}


def pretrain_plan(cfg: PretrainConfig, split_size: int, world_size: int) -> dict[str, Any]:
    """The plan of every enabled pretraining stage (see module docstring)."""
    batch = per_process_batch(cfg, world_size)
    spe = steps_per_epoch(split_size, world_size, batch)
    stages = []
    for s in cfg.stages:
        if not s.enabled:
            continue
        steps = s.steps if s.steps is not None else max(1, math.ceil(s.epochs * spe))
        stages.append({"stage": s.name, "length_from": "steps" if s.steps is not None else "epochs",
                       "epochs": steps / spe, "steps": steps, "init_from": list(s.init_from),
                       **_optim_plan(cfg.optim, batch * world_size, spe)})
    return {"command": "pretrain", "world_size": world_size, "batch_per_process": batch,
            "global_batch": batch * world_size, "train_clips": split_size, "steps_per_epoch": spe,
            "stages": stages}


def finetune_plan(cfg: FinetuneConfig, split_size: int, world_size: int) -> dict[str, Any]:
    """The fine-tuning plan: epochs x steps per epoch (`steps_per_epoch` in the config caps an epoch)."""
    batch = per_process_batch(cfg, world_size)
    full = steps_per_epoch(split_size, world_size, batch)
    spe = cfg.steps_per_epoch or full
    return {"command": "finetune", "world_size": world_size, "batch_per_process": batch,
            "global_batch": batch * world_size, "train_clips": split_size, "steps_per_epoch": spe,
            "stages": [{"stage": "finetune", "length_from": "epochs", "epochs": cfg.epochs * spe / full,
                        "steps": cfg.epochs * spe, **_optim_plan(cfg.optim, batch * world_size, spe)}]}


def train_split_size(store: str, split_index: int, allow_incomplete: bool = False) -> int:
    """Number of training clips per epoch (one per train video) in a store."""
    from csvr.train.data import StoreReader

    reader = StoreReader(store, allow_incomplete=allow_incomplete)
    return len(reader.videos.rows_in_split("train", split_index, reader.usable_statuses))


def format_plan(plan: dict[str, Any]) -> str:
    """One log line per stage."""
    head = (f"{plan['command']} plan: world size {plan['world_size']}, batch {plan['batch_per_process']} per "
            f"process = global {plan['global_batch']}, {plan['train_clips']} train clips = "
            f"{plan['steps_per_epoch']} steps/epoch")
    lines = [head] + [f"  {s['stage']}: {s['epochs']:.4g} epochs = {s['steps']} steps, lr {s['lr']:.4g} "
                      f"(disc {s['disc_lr']:.4g}; {s['lr_rule']}), {s['schedule']}, warmup {s['warmup_steps']} steps"
                      for s in plan["stages"]]
    return "\n".join(lines)
