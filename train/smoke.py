"""`make smoke` / `make gpu-check`: every pretraining stage and a fine-tune for a few steps at a config's real shapes.

Run under `torchrun --nproc_per_node N -m csvr.train.smoke ...` (or as one plain process). Each pretraining
stage runs as its own `pretrain()` call in one run directory (earlier stages are resumed as finished), so
peak memory is measured per stage; then a fine-tune from the result. Printed per stage (rank 0, over all
ranks): step seconds, samples/s, data-wait fraction, peak memory (CPU: resident set high-water mark
reset at each stage via /proc/self/clear_refs; CUDA: `max_memory_allocated`), the loss terms of the last
step and the critics' Wasserstein estimates (`*_wdist`: a critic running away shows as a value that
grows without bound). `--json` writes the same table.

`--gpu-check` asks for CUDA, bf16 autocast and NCCL. Without a GPU it says so on one line, names what it
skipped, and runs the same code on CPU (gloo, fp32) with a smaller batch so the script is tested here.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from pathlib import Path

import click
import torch

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
CPU_FALLBACK_STEPS, CPU_FALLBACK_BATCH = 1, 2  # `--gpu-check` without a GPU


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window for this process."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux >= 4.0: writing 5 resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process since the last `reset_peak_memory` (CUDA: allocated by torch)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _gather(value, dist_info) -> list:
    """`value` from every rank (a one-item list on a single process)."""
    if not dist_info.enabled:
        return [value]
    import torch.distributed as dist

    out = [None] * dist_info.world_size
    dist.all_gather_object(out, value)
    return out


def _summarise(name: str, records: list[dict], peaks: list[int], warmup: int) -> dict:
    """One row of the table from the stage's logged steps (rank 0) and every rank's peak memory."""
    timed = records[warmup:] or records
    step_s = [r["step_s"] for r in timed]
    last = records[-1] if records else {}
    return {
        "stage": name, "steps": len(records), "steps_timed": len(timed),
        "step_s_median": statistics.median(step_s) if step_s else None,
        "samples_per_s": statistics.median(r["samples_per_s"] for r in timed) if timed else None,
        "data_wait_frac": statistics.fmean(r["data_wait_frac"] for r in timed) if timed else None,
        "peak_memory_gib_max_rank": max(peaks) / 2 ** 30,
        "losses": {k: v for k, v in last.items() if k.startswith("loss/") and not k.endswith("wdist")},
        "wasserstein": {k: v for k, v in last.items() if k.endswith("wdist")},
    }


def _line(row: dict, mem_label: str) -> str:
    losses = " ".join(f"{k.split('/', 1)[1]}={v:.4g}" for k, v in row["losses"].items())
    wd = " ".join(f"{k.split('/', 1)[1]}={v:.4g}" for k, v in row["wasserstein"].items()) or "-"
    fmt = (lambda v, f: "n/a" if v is None else format(v, f))  # noqa: E731
    return (f"{row['stage']:9s} {row['steps']} steps  {fmt(row['step_s_median'], '.2f')} s/step  "
            f"{fmt(row['samples_per_s'], '.2f')} samples/s  data wait {fmt(row['data_wait_frac'], '.1%')}  "
            f"peak {mem_label} {row['peak_memory_gib_max_rank']:.2f} GiB\n"
            f"          losses: {losses}\n          critic W estimates: {wd}")


def run_smoke(config: Path, finetune_config: Path, store: str, run_dir: Path, *, steps: int, warmup: int,
              overrides: tuple[str, ...] = (), finetune_overrides: tuple[str, ...] = (), gpu_check: bool = False,
              echo=click.echo) -> dict:
    """Every stage of `config` for `steps` steps, then a fine-tune of `steps` steps; returns the table."""
    from csvr.train.config import FinetuneConfig, PretrainConfig, load_config
    from csvr.train.distributed import barrier, init_from_env, shutdown
    from csvr.train.finetune import finetune
    from csvr.contracts import read_jsonl
    from csvr.train.pretrain import pretrain

    cuda = torch.cuda.is_available()
    common: list[str] = ["run.image_every=0", "run.log_every=1", f"run.checkpoint_every={10 ** 9}",
                         "run.tensorboard=false"]
    if gpu_check and cuda:
        common += ["run.device=cuda", "run.amp=bf16"]
    elif gpu_check:  # no GPU: the same code on CPU, small enough to finish in minutes
        steps, warmup = min(steps, CPU_FALLBACK_STEPS), 0
        overrides = (*overrides, f"batch_size={CPU_FALLBACK_BATCH}", "global_batch_size=null")
        finetune_overrides = (*finetune_overrides, f"batch_size={CPU_FALLBACK_BATCH}", "global_batch_size=null")
    dist_info = init_from_env("cuda" if gpu_check and cuda else "auto")
    if dist_info.is_main:
        if gpu_check and not cuda:
            echo(f"gpu-check: no CUDA GPU found -- skipped: bf16 autocast, NCCL, GPU memory and GPU step times; "
                 f"running the same code on CPU (gloo, fp32) with batch {CPU_FALLBACK_BATCH} per process and "
                 f"{steps} step(s) per stage, to test the script")
        echo(f"smoke: {config.name} + {finetune_config.name} on {store}, {dist_info.world_size} process(es), "
             f"device {dist_info.device}, {steps} steps per stage (first {warmup} untimed)")
    base = load_config(PretrainConfig, config, [*common, *overrides])
    names = [s.name for s in base.stages if s.enabled]
    rows, pre_dir = [], run_dir / "pretrain"
    for i, name in enumerate(names):
        stage_over = [f"stages=[{', '.join(_stage_yaml(s, steps) for s in base.stages if s.name in names[:i + 1])}]"]
        cfg = load_config(PretrainConfig, config, [*common, *overrides, *stage_over])
        reset_peak_memory(dist_info.device)
        t0 = time.perf_counter()
        final = pretrain(cfg, store, pre_dir, resume=True, dist_info=dist_info)
        peaks = _gather(peak_memory_bytes(dist_info.device), dist_info)
        if dist_info.is_main:
            recs = [r for r in read_jsonl(pre_dir / "log.jsonl") if r.get("stage") == name and "step_s" in r]
            row = _summarise(name, recs[-steps:], peaks, warmup)
            row["wall_s"] = time.perf_counter() - t0
            rows.append(row)
            echo(_line(row, "GPU memory" if dist_info.device.type == "cuda" else "RSS per process"))
    ft_over = [*common, "epochs=1", f"steps_per_epoch={steps}",
               "max_eval_videos=4", "eval_clips_per_video=1", *finetune_overrides]
    ft_cfg = load_config(FinetuneConfig, finetune_config, ft_over)
    reset_peak_memory(dist_info.device)
    t0 = time.perf_counter()
    result = finetune(ft_cfg, store, run_dir / "finetune", pretrained=final, resume=True, dist_info=dist_info)
    peaks = _gather(peak_memory_bytes(dist_info.device), dist_info)
    if dist_info.is_main:
        recs = [r for r in read_jsonl(run_dir / "finetune" / "log.jsonl") if "step_s" in r]
        row = _summarise("finetune", recs[-steps:], peaks, warmup)
        row["wall_s"] = time.perf_counter() - t0
        row["top1_after"] = result.get("last_top1")
        rows.append(row)
        echo(_line(row, "GPU memory" if dist_info.device.type == "cuda" else "RSS per process"))
    barrier()
    table = {"config": str(config), "finetune_config": str(finetune_config), "store": str(store),
             "world_size": dist_info.world_size, "device": str(dist_info.device),
             "amp": "bf16" if gpu_check and cuda else "off", "gpu_found": cuda, "steps": steps, "rows": rows}
    shutdown()
    return table


def _stage_yaml(stage, steps: int) -> str:
    init = f", init_from: [{', '.join(stage.init_from)}]" if stage.init_from else ""
    return f"{{name: {stage.name}, steps: {steps}{init}}}"


@click.command()
@click.option("--config", "config_name", default="ucf101_r2plus1d_18", show_default=True,
              help="Pretraining config: a name under configs/pretrain/ or a path.")
@click.option("--finetune-config", "finetune_name", default=None,
              help="Fine-tuning config (default: the same name under configs/finetune/).")
@click.option("--store", required=True, type=click.Path(exists=True))
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Default: a fresh directory under runs/smoke/.")
@click.option("--steps", default=2, show_default=True, help="Steps per stage and for the fine-tune.")
@click.option("--warmup", default=0, show_default=True, help="Leading steps left out of the timings.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Pretraining config overrides.")
@click.option("--finetune-set", "finetune_overrides", multiple=True, metavar="KEY=VALUE",
              help="Fine-tuning config overrides.")
@click.option("--gpu-check", is_flag=True, help="CUDA + bf16 + NCCL on every visible GPU (falls back to CPU).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the table here.")
def main(config_name: str, finetune_name: str | None, store: str, run_dir: str | None, steps: int, warmup: int,
         overrides: tuple[str, ...], finetune_overrides: tuple[str, ...], gpu_check: bool,
         json_out: str | None) -> None:
    """Every pretraining stage and a fine-tune for a few steps; prints time, memory and losses per stage."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = _config_path("pretrain", config_name)
    ft = _config_path("finetune", finetune_name or config.stem)
    if steps < 1 or not 0 <= warmup < steps:
        raise click.BadParameter("need steps >= 1 and 0 <= warmup < steps")
    stamp = os.environ.get("TORCHELASTIC_RUN_ID", "") or time.strftime("%Y%m%d-%H%M%S")
    rd = Path(run_dir) if run_dir else REPO / "runs" / "smoke" / f"{config.stem}-{stamp}"
    table = run_smoke(config, ft, store, rd, steps=steps, warmup=warmup, overrides=overrides,
                      finetune_overrides=finetune_overrides, gpu_check=gpu_check)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"smoke passed: {len(table['rows'])} stages, run in {rd}")
        if json_out:
            Path(json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(json_out).write_text(json.dumps(table, indent=2))
            click.echo(f"wrote {json_out}")


def _config_path(kind: str, name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    p = REPO / "configs" / kind / f"{name}.yaml"
    if not p.is_file():
        raise click.BadParameter(f"no {kind} config {name!r} (looked for {p})")
    return p


if __name__ == "__main__":
    main()
