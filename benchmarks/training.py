"""`csvr bench train STORE --json OUT.json`: training step speed per backbone and stage, through the real trainer.

For every backbone and stage it runs `warmup + steps` pretraining steps of that stage alone (same code
path as `csvr pretrain`: loader, on-device augmentation, forward, one-stage GAN backward, SGD) and
reports, over the steps after the warm-up: wall seconds per step, samples/s, the fraction of step time
spent waiting for data, and the main process's CPU seconds per step (useful on a shared CPU, where wall
time depends on the other load). Next to it, the loader alone: samples/s of exactly what that stage
reads (`build_data(stage=...)`) through the same `ResumableBatches` the stage builds, with no training
step in between (`loader_samples_per_s`; `loader_vs_step` = how many times faster than the steps
consume it).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import click

from csvr.cli import json_option, write_json

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pretrain"
DEFAULT_BACKBONES = ("r2plus1d_18", "r3d_18", "c3d", "s3d")


def bench_stage_loader(cfg, store: str, stage: str, batches: int) -> dict:
    """Samples/s of the stage's input alone: the dataset, sampler and `ResumableBatches` exactly as
    `train.pretrain.run_stage` builds them (one process), timed after more batches than any prefetch
    holds, with no training step in between."""
    from csvr.benchmarks.loader import _steady_rate
    from csvr.train.distributed import DistInfo, default_loader_workers, resolve_device
    import numpy as np
    import torch

    from csvr.train.loop import Position, ResumableBatches, to_device
    from csvr.train.pretrain import _stage_plans, build_data

    device = resolve_device(cfg.run.device)
    dist_info = DistInfo(device=device)
    ds, sampler, augment = build_data(cfg, store, dist_info, stage=stage)
    batch_size = _stage_plans(cfg, store, 1)[0][stage]["batch_per_process"]
    workers = default_loader_workers(cfg.data.num_workers)
    batches_it = ResumableBatches(ds, sampler, batch_size, num_workers=workers,
                                  pin_memory=cfg.data.pin_memory and device.type == "cuda",
                                  seed=cfg.run.seed, position=Position(), device=device)
    it = iter(batches_it)
    try:
        res = _steady_rate(it, max(workers, 1) * 4 + 2, batches)
        aug_s = []  # what the step's data phase does after the loader: to_device + augmentation
        for _ in range(5):
            batch = next(it)
            t0 = time.perf_counter()
            augment(to_device(batch, device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            aug_s.append(time.perf_counter() - t0)
    finally:
        it.close()
    return {"loader_samples_per_s": res["clips_per_s"], "loader_batches_timed": batches,
            "loader_s_per_batch": batch_size / res["clips_per_s"], "augment_s_per_batch": statistics.median(aug_s),
            "loader": batches_it.loader, "loader_workers": workers,
            "bytes_per_sample": int(sum(np.prod(shape) * torch.empty(0, dtype=dt).element_size()
                                        for shape, dt in ds.batch_layout(1).values())),
            "reader_crop": ds.spec.crop}


def bench_stage(config: Path, store: str, backbone: str, stage: str, steps: int, warmup: int,
                overrides: tuple[str, ...] = (), loader_batches: int = 20) -> dict:
    """Time one stage for one backbone (and, with `loader_batches` > 0, its input alone); returns a row."""
    import torch

    from csvr.train.config import PretrainConfig, load_config
    from csvr.contracts import read_jsonl
    from csvr.train.pretrain import pretrain

    over = (f"model.backbone={backbone}", f"stages=[{{name: {stage}, steps: {warmup + steps}}}]",
            "run.image_every=0", "run.log_every=1", f"run.checkpoint_every={10 ** 9}", "run.tensorboard=false",
            *overrides)
    cfg = load_config(PretrainConfig, config, over)
    marks: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="csvr-bench-") as tmp:
        pretrain(cfg, store, Path(tmp) / "run",
                 step_hook=lambda _s, _i: marks.append((time.perf_counter(), time.process_time())))
        records = [r for r in read_jsonl(Path(tmp) / "run" / "log.jsonl") if r.get("stage") == stage]
    timed = records[warmup:]
    # marks[i] is taken right after step i + 1; deltas over the timed steps (warmup >= 1 anchors the first)
    wall = [marks[i][0] - marks[i - 1][0] for i in range(max(warmup, 1), len(marks))]
    cpu = [marks[i][1] - marks[i - 1][1] for i in range(max(warmup, 1), len(marks))]
    step_s = [r["step_s"] for r in timed]
    loader = bench_stage_loader(cfg, store, stage, loader_batches) if loader_batches > 0 else {}
    train_sps = cfg.batch_size / statistics.median(step_s)
    if loader:
        loader["loader_vs_step"] = loader["loader_samples_per_s"] / train_sps
        # data_wait_frac is the step's data phase: next(batches) + to_device + augmentation (ClipAugment
        # runs there, on the training device); these two split it by the measurements taken alone
        loader["loader_frac_of_step_est"] = loader["loader_s_per_batch"] / statistics.median(step_s)
        loader["augment_frac_of_step_est"] = loader["augment_s_per_batch"] / statistics.median(step_s)
    return {
        "backbone": backbone, "stage": stage, "batch_size": cfg.batch_size, "frames": cfg.data.frames,
        "crop": cfg.data.crop, "video_size": cfg.model.video_size, "steps_timed": len(timed),
        "step_s_median": statistics.median(step_s), "step_s_mean": statistics.fmean(step_s),
        "samples_per_s": cfg.batch_size / statistics.median(step_s),
        "data_wait_frac": statistics.fmean(r["data_wait_frac"] for r in timed),
        "step_s_incl_logging": statistics.median(wall) if wall else None,
        "cpu_s_per_step_main_process": statistics.median(cpu) if cpu else None,
        "device": "cuda" if torch.cuda.is_available() and cfg.run.device != "cpu" else "cpu",
        "threads": torch.get_num_threads(),
        **loader,
    }


@click.command("train")
@click.argument("store", type=click.Path(exists=True))
@json_option()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Base config (default: configs/pretrain/ucf101_<backbone>.yaml per backbone).")
@click.option("--backbone", "backbones", multiple=True, help=f"Repeatable; default {list(DEFAULT_BACKBONES)}.")
@click.option("--stage", "stages", multiple=True, type=click.Choice(["pose", "video", "context", "joint"]),
              help="Repeatable; default: joint.")
@click.option("--steps", default=5, show_default=True, help="Timed steps per (backbone, stage).")
@click.option("--warmup", default=2, show_default=True, help="Untimed steps first.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config overrides (e.g. batch_size=2).")
@click.option("--loader-batches", default=20, show_default=True,
              help="Timed batches of each stage's input alone (0 = skip the loader measurement).")
def bench_train(store: str, json_out: str | None, config_path: str | None, backbones: tuple[str, ...],
                stages: tuple[str, ...], steps: int, warmup: int, overrides: tuple[str, ...],
                loader_batches: int) -> None:
    """Training step time, samples/s and data-wait fraction per backbone and stage."""
    if warmup < 1:
        raise click.BadParameter("at least one warm-up step is needed (it also anchors the timing)", param_hint="--warmup")
    rows = []
    for bb in backbones or DEFAULT_BACKBONES:
        config = Path(config_path) if config_path else CONFIGS / f"ucf101_{bb}.yaml"
        for stage in stages or ("joint",):
            row = bench_stage(config, store, bb, stage, steps, warmup, overrides, loader_batches)
            rows.append(row)
            loader = (f"  loader alone {row['loader_samples_per_s']:.1f} samples/s ({row['loader_vs_step']:.1f}x the steps; "
                      f"augmentation {row['augment_s_per_batch']:.3f} s/batch)" if "loader_samples_per_s" in row else "")
            click.echo(f"{bb:12s} {stage:8s} batch {row['batch_size']:3d} {row['frames']}x{row['crop']}x{row['crop']}: "
                       f"{row['step_s_median']:.3f} s/step  {row['samples_per_s']:.2f} samples/s  "
                       f"data wait {row['data_wait_frac']:.1%}  cpu {row['cpu_s_per_step_main_process']:.2f} s/step"
                       + loader)
    if json_out:
        write_json(json_out, {"store": store, "results": rows}, indent=2, announce=True)
