"""`csvr evaluate ...` and `csvr ablate ...`: metrics, reports and ablation tables from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from csvr.cli import json_option, write_json
from csvr.evaluate.metrics import RETRIEVAL_KS


def _ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in value.split(",") if k.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not ks or min(ks) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return ks


DEVICE_HELP = "auto = CUDA when available, else CPU; or cpu, cuda, cuda:N."
THREADS_HELP = "Torch threads; 0 = the cores available to this process (train.distributed.cores_per_process)."
WORKERS_HELP = ("Loader worker processes (default: train.distributed.default_loader_workers: "
                "the cores available, at most 8; 0 = load in the main process).")


@click.group()
def evaluate() -> None:
    """Recognition, retrieval and pretext metrics, and the report of a run folder."""


@evaluate.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--groups", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON with a 'groups' mapping class -> motion|context|both (e.g. the dataset's synthetic.json).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write report.md and plots/ (default: RUN_DIR).")
def report_cmd(run_dir: Path, groups: Path | None, out_dir: Path | None) -> None:
    """Build report.md and PNG plots from RUN_DIR (metrics.json, *.jsonl logs, eval/examples.npz)."""
    from csvr.evaluate.plots import load_class_groups
    from csvr.evaluate.report import build_report

    try:
        written = build_report(run_dir, out_dir=out_dir, groups=load_class_groups(groups) if groups else None)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    plots = sorted(p for p in written.values() if p.suffix == ".png")
    click.echo(f"report: {written['report']}  ({len(plots)} plots)")


@evaluate.command("retrieval")
@click.argument("features", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gallery", default="train", show_default=True, help="Split searched (training videos).")
@click.option("--queries", default="test", show_default=True, help="Split of the query videos.")
@click.option("--ks", default=",".join(map(str, RETRIEVAL_KS)), show_default=True, help="Comma-separated k values.")
@json_option()
def retrieval_cmd(features: Path, gallery: str, queries: str, ks: str, json_out: Path | None) -> None:
    """R@k video retrieval from a features file (HDF5 written by `csvr evaluate run`)."""
    from csvr.evaluate.features import read_attrs, read_features
    from csvr.evaluate.pipeline import retrieval_metrics

    try:
        g, q = read_features(features, gallery), read_features(features, queries)
        res = retrieval_metrics(g, q, _ks(ks))
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise click.ClickException(str(e).strip("'\"")) from e
    res["features"] = str(features)
    res["attrs"] = read_attrs(features)
    for k, v in res["recall"].items():
        click.echo(f"R@{k:<3} {100 * v:6.2f}%")
    click.echo(f"({res['num_queries']} queries, {res['num_gallery']} gallery videos)")
    if json_out:
        write_json(json_out, res, indent=2)


@evaluate.command("run")
@click.option("--store", required=True, type=click.Path(exists=True, path_type=Path), help="The csvr-store/1 Zarr store.")
@click.option("--pretrain-run", type=click.Path(exists=True, path_type=Path), default=None,
              help="Pretraining run folder or .pt (retrieval features and pretext metrics, no fine-tuning).")
@click.option("--finetune-run", type=click.Path(exists=True, path_type=Path), default=None,
              help="Fine-tuning run folder or .pt (action recognition).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for metrics.json, report.md, plots/, eval/features.h5.")
@click.option("--groups", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON with 'groups' class -> motion|context|both (e.g. data/synthetic/synthetic.json).")
@click.option("--num-clips", default=10, show_default=True, help="Clips per video (uniformly spread).")
@click.option("--batch-size", default=16, show_default=True, help="Clips per evaluation batch.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help=THREADS_HELP)
@click.option("--workers", "num_workers", type=click.IntRange(min=0), default=None, help=WORKERS_HELP)
def run_cmd(store: Path, pretrain_run: Path | None, finetune_run: Path | None, out_dir: Path,
            groups: Path | None, num_clips: int, batch_size: int, device: str, threads: int,
            num_workers: int | None) -> None:
    """Evaluate checkpoints on a store: recognition, retrieval, pretext metrics, then the report."""
    import logging
    import time

    from csvr.evaluate.pipeline import evaluate_checkpoints
    from csvr.evaluate.components import eval_threads, loader_workers, resolve_device

    if pretrain_run is None and finetune_run is None:
        raise click.UsageError("give --pretrain-run and/or --finetune-run")
    t0 = time.perf_counter()
    try:
        import torch

        device = resolve_device(device)
        torch.set_num_threads(eval_threads(threads))
        num_workers = loader_workers(num_workers)
        logging.getLogger(__name__).info("evaluation on %s, %d torch threads, %d loader workers", device,
                                         torch.get_num_threads(), num_workers)
        written = evaluate_checkpoints(store, out_dir, pretrain_run=pretrain_run, finetune_run=finetune_run,
                                       groups=groups, num_clips=num_clips, batch_size=batch_size, device=device,
                                       num_workers=num_workers)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise click.ClickException(str(e)) from e
    plots = sorted(p for p in written.values() if p.suffix == ".png")
    click.echo(f"metrics: {written['metrics']}\nreport: {written['report']}  ({len(plots)} plots, "
               f"{time.perf_counter() - t0:.0f} s)")


@evaluate.command("code-probe")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--store", required=True, type=click.Path(exists=True, path_type=Path), help="The store it was pretrained on.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(min=1), help="Adam steps per code.")
@json_option()
def code_probe_cmd(checkpoint: Path, store: Path, steps: int, json_out: Path | None) -> None:
    """The reconstruction ceiling of a checkpoint's frozen code f_s, against an oracle colour code."""
    from csvr.evaluate.code_probe import ProbeConfig, probe_markdown, run_probe

    try:
        result = run_probe(checkpoint, store, ProbeConfig(steps=steps))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(probe_markdown(result))
    if json_out:
        write_json(json_out, result)


@click.group()
def ablate() -> None:
    """The paper's ablation tables (I, III, IV, V): run rows, or print tables from results."""


@ablate.command("table")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write Markdown here too.")
def ablate_table(results: Path, out: Path | None) -> None:
    """Print ablation results ({table: {row: {dataset: top-1}}}) as Markdown beside the paper's numbers."""
    from csvr.evaluate.ablation import ablation_report, load_results

    try:
        text = ablation_report(load_results(results))
    except (ValueError, KeyError) as e:
        raise click.ClickException(str(e).strip("'\"")) from e
    click.echo(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")


@ablate.command("seeds")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write Markdown here too.")
@json_option(help="Write the per-row mean/min/max as JSON to PATH; '-' = stdout (then nothing else goes to stdout).")
def ablate_seeds(results: tuple[Path, ...], out: Path | None, json_out: Path | None) -> None:
    """Mean and range over seeds of several ablation runs' results.json (one per seed)."""
    from csvr.evaluate.seeds import load_seed_results, seeds_markdown, summarize

    try:
        summary = summarize(load_seed_results(list(results)))
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    text = seeds_markdown(summary, [p.parent.parent.name if p.parent.name == "ablation" else p.parent.name
                                    for p in results])
    click.echo(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    if json_out:
        write_json(json_out, summary, indent=2)


@ablate.command("run")
@click.option("--store", required=True, type=click.Path(exists=True, path_type=Path),
              help="The csvr-store/1 Zarr store the rows pretrain, fine-tune and evaluate on.")
@click.option("--config", required=True,
              help="Config name (configs/pretrain/NAME.yaml; fine-tuning: configs/finetune/NAME_ablation.yaml "
                   "when it exists, else NAME.yaml) or a pretraining config file.")
@click.option("--finetune-config", default=None, help="Fine-tuning config name or file (overrides the default above).")
@click.option("--tables", default="I", show_default=True, help="Comma-separated: I, III, IV, V.")
@click.option("--rows", default=None, metavar="KEYS",
              help="Only these row keys of the tables, comma-separated (e.g. scratch,full); default: every row.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: one sub-folder per row, results.json, ablation.md. Rerunning resumes it.")
@click.option("--pretrain-run", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Reuse this staged pretraining run (e.g. the demo's) instead of pretraining one in OUT/pretrain.")
@click.option("--set-pretrain", "pretrain_overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a pretraining config value (rows that pretrain).")
@click.option("--set-finetune", "finetune_overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a fine-tuning config value for every row, e.g. epochs=2.")
@click.option("--epochs", type=int, default=None, help="Shortcut for --set-finetune epochs=N.")
@click.option("--report", "report_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="An evaluation folder (csvr evaluate run --out): add the tables and the per-row per-class "
                   "accuracy to its metrics.json and rebuild its report.md.")
@click.option("--num-clips", default=10, show_default=True, help="Test clips per video for each row's evaluation.")
@click.option("--device", default="auto", show_default=True,
              help=DEVICE_HELP + " Used for the evaluation; training takes run.device from its configs.")
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="Torch threads for the rows' evaluation (default: the cores available, or what the "
                   "training's run.threads left).")
@click.option("--workers", "num_workers", type=click.IntRange(min=0), default=None,
              help=WORKERS_HELP + " For the rows' evaluation; training takes data.num_workers from its configs.")
def ablate_run(store: Path, config: str, finetune_config: str | None, tables: str, rows: str | None, out_dir: Path,
               pretrain_run: Path | None, pretrain_overrides: tuple[str, ...], finetune_overrides: tuple[str, ...],
               epochs: int | None, report_dir: Path | None, num_clips: int, device: str, threads: int | None,
               num_workers: int | None) -> None:
    """Pretrain + fine-tune + evaluate every row of the tables; writes results.json and ablation.md
    (clip- and video-level top-1 beside the paper's numbers). Resumable: finished rows are kept."""
    import time

    from csvr.evaluate.ablation import run_ablation, select_rows
    import torch

    from csvr.evaluate.ablation_runner import RowRunner, ablation_finetune_config, resolve_config
    from csvr.evaluate.components import StoreInfo, eval_threads

    t0 = time.perf_counter()
    overrides = tuple(finetune_overrides) + ((f"epochs={epochs}",) if epochs is not None else ())
    try:
        from csvr.train.checkpoint import CheckpointError
        from csvr.train.config import ConfigError

        runner = RowRunner(store=store, pretrain_config=resolve_config("pretrain", config),
                           finetune_config=(resolve_config("finetune", finetune_config) if finetune_config
                                            else ablation_finetune_config(config)),
                           out_dir=out_dir, pretrain_run=pretrain_run, pretrain_overrides=tuple(pretrain_overrides),
                           finetune_overrides=overrides, device=device, num_clips=num_clips,
                           num_workers=num_workers, threads=threads)
        torch.set_num_threads(eval_threads(threads))
        info = StoreInfo(store)
        table_list = [t.strip() for t in tables.split(",") if t.strip()]
        res = run_ablation(table_list, out_dir, info.attrs.get("dataset", "dataset"), runner,
                           rows=select_rows(table_list, rows) if rows else None)
        if report_dir is not None:
            from csvr.evaluate.ablation_runner import attach_to_report

            attach_to_report(report_dir, res["results"], out_dir)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, CheckpointError,
            ConfigError) as e:
        raise click.ClickException(str(e).strip("'\"")) from e
    click.echo(Path(res["markdown"]).read_text(encoding="utf-8"))
    times = ", ".join(f"{k} {v:.0f} s" for k, v in runner.timings.items())
    click.echo(f"ablation: {res['markdown']}  ({time.perf_counter() - t0:.0f} s{'; ' + times if times else ''})")


def _is_regex(pattern: str) -> bool:
    import re

    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


@ablate.command("benchmark")
@click.option("--store", required=True, type=click.Path(exists=True, path_type=Path),
              help="The csvr-store/1 Zarr store the rows pretrain, fine-tune and evaluate on.")
@click.option("--config", default="tiny", show_default=True,
              help="Config name (configs/pretrain/NAME.yaml, fine-tuning configs/finetune/NAME_ablation.yaml "
                   "when it exists, else NAME.yaml) or a pretraining config file.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Pretraining/fine-tuning seeds, comma- or space-separated.")
@click.option("--protocols", default="pose_rgb,rgb", show_default=True,
              help="Comma-separated: pose_rgb (the f_i network), rgb (the V-Network alone), and optionally "
                   "table_iv, table_v (the paper's Tables IV and V in the same form).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: seed*/..., benchmark.json, benchmark.md. Rerunning resumes it.")
@click.option("--set-pretrain", "pretrain_overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a pretraining config value.")
@click.option("--set-finetune", "finetune_overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a fine-tuning config value for every row.")
@click.option("--num-clips", default=10, show_default=True, type=click.IntRange(min=1),
              help="Test clips per video for each row's evaluation.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--workers", "num_workers", type=click.IntRange(min=0), default=None, help=WORKERS_HELP)
@click.option("--subset", "subsets", multiple=True, metavar="NAME=REGEX",
              help="Also summarise every row on the test videos whose id matches REGEX (a column NAME), e.g. "
                   "demo='_g0[12]_' for the demo's own test videos. Changes only the summary, no row reruns.")
def ablate_benchmark(store: Path, config: str, seeds: str, protocols: str, out_dir: Path,
                     pretrain_overrides: tuple[str, ...], finetune_overrides: tuple[str, ...], num_clips: int,
                     device: str, num_workers: int | None, subsets: tuple[str, ...]) -> None:
    """Table I over several seeds and two protocols, with paired bootstrap intervals for the paper's
    orderings; writes benchmark.json and benchmark.md (evaluate.benchmark). Resumable."""
    import json
    import shlex
    import sys

    from csvr.evaluate.benchmark import PROTOCOL_TITLES, Benchmark, benchmark_markdown, machine
    from csvr.evaluate.ablation_runner import ablation_finetune_config, resolve_config
    from csvr.train.checkpoint import CheckpointError
    from csvr.train.config import ConfigError

    try:
        seed_list = [int(s) for s in seeds.replace(",", " ").split()]
        names = tuple(p.strip() for p in protocols.split(",") if p.strip())
        unknown = [p for p in names if p not in PROTOCOL_TITLES]
        if unknown or not names or not seed_list:
            raise click.UsageError(f"--protocols: unknown {unknown}, known {list(PROTOCOL_TITLES)}; --seeds: give at least one")
        bad = [s for s in subsets if "=" not in s or not s.split("=", 1)[0] or not _is_regex(s.split("=", 1)[1])]
        if bad:
            raise click.UsageError(f"--subset takes NAME=REGEX with a valid regular expression, got {bad}")
        bench = Benchmark(store=store, out_dir=out_dir, seeds=seed_list,
                          pretrain_config=resolve_config("pretrain", config),
                          finetune_config=ablation_finetune_config(config),
                          pretrain_overrides=tuple(pretrain_overrides), finetune_overrides=tuple(finetune_overrides),
                          protocols=names, num_clips=num_clips, device=device, num_workers=num_workers,
                          echo=click.echo, subsets=dict(s.split("=", 1) for s in subsets))
        summary = bench.run()
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, CheckpointError, ConfigError) as e:
        raise click.ClickException(str(e).strip("'\"")) from e
    summary["machine"] = machine()
    summary["seconds"] = bench.seconds
    command = "csvr " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    text = benchmark_markdown(summary, command)
    (out_dir / "benchmark.md").write_text(text, encoding="utf-8")
    click.echo(text)
    click.echo(f"benchmark: {out_dir / 'benchmark.md'}, {out_dir / 'benchmark.json'}")
