"""`csvr evaluate ...` and `csvr ablate ...`: metrics, reports and ablation tables from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from evaluate.metrics import RETRIEVAL_KS


def _ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in value.split(",") if k.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not ks or min(ks) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return ks


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
    from evaluate.report import build_report, load_class_groups

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
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the result as JSON.")
def retrieval_cmd(features: Path, gallery: str, queries: str, ks: str, json_out: Path | None) -> None:
    """R@k video retrieval from a features file (HDF5 written by `csvr evaluate run`)."""
    from evaluate.features import read_attrs, read_features
    from evaluate.pipeline import retrieval_metrics

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
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")


@evaluate.command("run")
@click.option("--store", required=True, type=click.Path(exists=True, path_type=Path), help="The csvr-store/1 Zarr store.")
@click.option("--pretrain-run", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Pretraining run folder (retrieval features and pretext metrics).")
@click.option("--finetune-run", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Fine-tuning run folder (action recognition).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for metrics.json, report.md, plots/, eval/features.h5.")
@click.option("--groups", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--num-clips", default=10, show_default=True, help="Clips per video (sliding window).")
@click.option("--batch-size", default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def run_cmd(store: Path, pretrain_run: Path | None, finetune_run: Path | None, out_dir: Path,
            groups: Path | None, num_clips: int, batch_size: int, device: str) -> None:
    """Evaluate checkpoints on a store: recognition, retrieval, pretext metrics, then the report."""
    from evaluate.pipeline import EvalComponents, evaluate_run, video_id_map
    from evaluate.seams import SeamNotConnected, StoreInfo, eval_batches, load_model_callables

    if pretrain_run is None and finetune_run is None:
        raise click.UsageError("give --pretrain-run and/or --finetune-run")
    try:
        info = StoreInfo(store)
        fns = load_model_callables(pretrain_run, finetune_run, device)
        comps = EvalComponents(
            test_batches=eval_batches(store, "test", num_clips=num_clips, batch_size=batch_size, device=device),
            train_batches=eval_batches(store, "train", num_clips=num_clips, batch_size=batch_size, device=device),
            classify=fns.get("classify"), features=fns.get("features"), pretext=fns.get("pretext"),
            video_frame=info.middle_frame, video_ids=video_id_map(info.ids),
            attrs={"store": str(store), "pretrain_run": str(pretrain_run or ""), "finetune_run": str(finetune_run or "")},
        )
        written = evaluate_run(out_dir, comps, info.classes, info.class_groups(groups),
                               run_info={"store": str(store), "dataset": info.attrs.get("dataset", "")})
    except (SeamNotConnected, ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"metrics: {written['metrics']}\nreport: {written['report']}")


@click.group()
def ablate() -> None:
    """The paper's ablation tables (I, III, IV, V): run rows, or print tables from results."""


@ablate.command("table")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write Markdown here too.")
def ablate_table(results: Path, out: Path | None) -> None:
    """Print ablation results ({table: {row: {dataset: top-1}}}) as Markdown beside the paper's numbers."""
    from evaluate.ablation import ablation_report, load_results

    try:
        text = ablation_report(load_results(results))
    except (ValueError, KeyError) as e:
        raise click.ClickException(str(e).strip("'\"")) from e
    click.echo(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")


@ablate.command("run")
@click.option("--store", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--config", required=True, help="Pretraining/fine-tuning config name or file.")
@click.option("--tables", default="I", show_default=True, help="Comma-separated: I, III, IV, V.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
def ablate_run(store: Path, config: str, tables: str, out_dir: Path) -> None:
    """Pretrain + fine-tune every row of the tables and write results.json and ablation.md."""
    from evaluate.ablation import run_ablation
    from evaluate.seams import SeamNotConnected, StoreInfo

    def run_row(row, row_dir):  # SEAM (issue 6): pretrain per row.pretrain, fine-tune per row.finetune_variant
        raise SeamNotConnected(
            f"ablation row {row.key!r} needs the trainer: connect evaluate.cli.ablate_run.run_row "
            "to train.pretrain/finetune (docs/evaluation.md, 'Connecting the trainer')")

    try:
        info = StoreInfo(store)
        res = run_ablation([t.strip() for t in tables.split(",") if t.strip()], out_dir,
                           info.attrs.get("dataset", "dataset"), run_row)
    except (SeamNotConnected, ValueError, KeyError) as e:
        raise click.ClickException(str(e).strip("'\"")) from e
    click.echo(Path(res["markdown"]).read_text(encoding="utf-8"))
