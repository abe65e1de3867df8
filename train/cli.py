"""`csvr pretrain` and `csvr finetune`: load + validate the config, then run the trainer.

Both work as a single process or under `torchrun --nproc_per_node N -m csvr.train.cli pretrain ...`
(or `torchrun ... $(which csvr) pretrain ...`): the process group is joined from torchrun's env vars.
"""

from __future__ import annotations

import logging
import sys

import click

from csvr.cli import setup_logging, verbosity_options

log = logging.getLogger(__name__)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from None


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="YAML config (configs/pretrain/*.yaml).")
@click.option("--store", required=True, type=click.Path(), help="Preprocessed csvr-store/1 Zarr store.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run folder to create/continue.")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir (skips finished stages).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set batch_size=4 --set stages.pose.steps=10.")
@click.option("--verify-store", is_flag=True,
              help="Hash every store shard against its recorded sha256 on open (data.verify_checksums=true; "
                   "~1 s per GB from page cache). Sizes and the table are always checked.")
@click.option("--dry-run", is_flag=True, help="Print the training plan (per stage: epochs, steps, batch, lr) as "
              "JSON and exit without training.")
@click.option("--world-size", type=click.IntRange(min=1), default=None,
              help="With --dry-run: plan for this many processes (default: torchrun's WORLD_SIZE, else 1).")
@click.option("--train-clips", type=click.IntRange(min=1), default=None,
              help="With --dry-run: plan for a train split of this many clips (default: count the store's).")
def pretrain(config_path: str, store: str, run_dir: str | None, resume: bool, overrides: tuple[str, ...],
             verify_store: bool, dry_run: bool, world_size: int | None, train_clips: int | None) -> None:
    """CSVR self-supervised pretraining, staged as in the paper (pose, context, video, joint)."""
    from csvr.train.checkpoint import CheckpointError
    from csvr.train.config import ConfigError, PretrainConfig, load_config
    from csvr.train.distributed import shutdown
    from csvr.train.loop import NonFiniteLossError
    from csvr.train.pretrain import pretrain as run

    overrides = tuple(overrides) + (("data.verify_checksums=true",) if verify_store else ())
    try:
        cfg = load_config(PretrainConfig, config_path, overrides)
        if dry_run:
            _print_plan("pretrain", cfg, store, world_size, train_clips)
            return
    except (ConfigError, ValueError) as exc:
        _fail(exc)
    if run_dir is None:
        _fail(click.UsageError("--run-dir is required unless --dry-run"))
    try:
        out = run(cfg, store, run_dir, resume=resume)
    except (NonFiniteLossError, CheckpointError, FileExistsError, ConfigError, ValueError) as exc:
        shutdown()
        _fail(exc)
    shutdown()
    click.echo(f"pretraining done: {out}")


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="YAML config (configs/finetune/*.yaml).")
@click.option("--store", required=True, type=click.Path(), help="Preprocessed store of the target dataset.")
@click.option("--pretrained", type=click.Path(dir_okay=False), default=None,
              help="Pretraining checkpoint (RUN/checkpoints/final.pt); not for --variant scratch.")
@click.option("--variant", type=click.Choice(["fi", "fs", "fd", "concat", "scratch", "scratch_fs"]), default=None,
              help="Which pretrained feature to fine-tune (default: the config's, fi).")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run folder to create/continue.")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from checkpoints/last.pt.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value.")
@click.option("--verify-store", is_flag=True,
              help="Hash every store shard against its recorded sha256 on open (data.verify_checksums=true; "
                   "~1 s per GB from page cache). Sizes and the table are always checked.")
@click.option("--dry-run", is_flag=True, help="Print the fine-tuning plan as JSON and exit without training.")
@click.option("--world-size", type=click.IntRange(min=1), default=None,
              help="With --dry-run: plan for this many processes (default: torchrun's WORLD_SIZE, else 1).")
@click.option("--train-clips", type=click.IntRange(min=1), default=None,
              help="With --dry-run: plan for a train split of this many clips (default: count the store's).")
def finetune(config_path: str, store: str, pretrained: str | None, variant: str | None, run_dir: str | None,
             resume: bool, overrides: tuple[str, ...], verify_store: bool, dry_run: bool, world_size: int | None,
             train_clips: int | None) -> None:
    """Fine-tune for action recognition; clip-level top-1 on the test split every epoch."""
    from csvr.train.checkpoint import CheckpointError
    from csvr.train.config import ConfigError, FinetuneConfig, load_config
    from csvr.train.distributed import shutdown
    from csvr.train.finetune import finetune as run
    from csvr.train.loop import NonFiniteLossError

    overrides = tuple(overrides) + ((f"variant={variant}",) if variant else ()) + (
        ("data.verify_checksums=true",) if verify_store else ())
    try:
        cfg = load_config(FinetuneConfig, config_path, overrides)
        if dry_run:
            _print_plan("finetune", cfg, store, world_size, train_clips)
            return
    except (ConfigError, ValueError) as exc:
        _fail(exc)
    if run_dir is None:
        _fail(click.UsageError("--run-dir is required unless --dry-run"))
    try:
        result = run(cfg, store, run_dir, pretrained=pretrained, resume=resume)
    except (NonFiniteLossError, CheckpointError, FileExistsError, ConfigError, ValueError) as exc:
        shutdown()
        _fail(exc)
    shutdown()
    click.echo(f"fine-tuning done: last clip top-1 {result['last_top1']:.4f} -> {run_dir}")


def _print_plan(command: str, cfg, store: str, world_size: int | None, train_clips: int | None) -> None:
    """The plan for `world_size` processes (default: this launch's) over the store's train split (or
    `train_clips` clips, to plan before the store exists), as JSON on stdout."""
    import json
    import os

    from csvr.train.plan import finetune_plan, pretrain_plan, train_split_size

    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    if int(os.environ.get("RANK", "0")) != 0:
        return
    size = train_clips or train_split_size(store, cfg.data.split_index, cfg.data.allow_incomplete)
    plan = (pretrain_plan if command == "pretrain" else finetune_plan)(cfg, size, world)
    click.echo(json.dumps(plan, indent=2))


@click.group()
@verbosity_options
def main(verbose: int, quiet: int) -> None:
    """Entry point for `python -m csvr.train.cli` (used with torchrun); -v/-q as for `csvr`."""
    setup_logging(verbose, quiet)


main.add_command(pretrain)
main.add_command(finetune)

if __name__ == "__main__":
    sys.exit(main())
