"""`csvr manifest DATASET --root PATH`: build a manifest, print counts per split, write the CSV."""

from __future__ import annotations

from pathlib import Path

import click

from csvr.data_manifests import DATASETS, ManifestError, build_manifest
from csvr.data_manifests.manifest import Manifest


def default_out(dataset: str, root: Path) -> Path:
    """Where the manifest goes without --out: `ROOT/manifest-<dataset>.csv`, next to the data it lists."""
    return root / f"manifest-{dataset}.csv"


def format_counts(m: Manifest, split: int | None = None) -> str:
    """A small table: videos, classes, and train/test/unused per split (or only `split`)."""
    lines = [f"{m.dataset}: {len(m.videos)} videos, {len(m.classes)} classes (root {m.root})"]
    numbers = m.split_numbers if split is None else [split]
    lines.append(f"{'split':>5} {'train':>8} {'test':>8} {'unused':>8}")
    for n in numbers:
        c = m.split_counts(n)
        lines.append(f"{n:>5} {c['train']:>8} {c['test']:>8} {c['unused']:>8}")
    missing = m.meta.get("missing")
    if isinstance(missing, dict) and any(missing.values()):
        per = ", ".join(f"{k}: {len(v)}" for k, v in sorted(missing.items()))
        lines.append(f"missing videos (left out): {sum(len(v) for v in missing.values())} ({per})")
    elif missing:
        lines.append(f"missing videos (left out): {len(missing)}")
    if m.meta.get("extra"):
        lines.append(f"videos on disk in no annotation file (ignored): {len(m.meta['extra'])}")
    return "\n".join(lines)


@click.command("manifest")
@click.argument("dataset", type=click.Choice(DATASETS))
@click.option("--root", required=True, type=click.Path(file_okay=False, path_type=Path), help="Dataset folder.")
@click.option("--split", "split", type=int, default=None, help="Print counts of this split only (default: all).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Manifest CSV to write (default: ROOT/manifest-DATASET.csv).",
)
@click.option(
    "--strict/--no-strict",
    default=True,
    show_default=True,
    help="Check the official video/class/split counts (turn off for partial copies).",
)
@click.option("--allow-missing", is_flag=True, help="Leave out annotated videos absent on disk instead of failing.")
@click.option(
    "--split-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="folder only: CSV 'path,split1[,split2,...]' (default ROOT/splits.csv if present).",
)
@click.option(
    "--test-every",
    type=int,
    default=0,
    show_default=True,
    help="folder only, without a split file: every N-th video per class is 'test' (0 = all train).",
)
def manifest(
    dataset: str,
    root: Path,
    split: int | None,
    out: Path | None,
    strict: bool,
    allow_missing: bool,
    split_file: Path | None,
    test_every: int,
) -> None:
    """Build the manifest of DATASET at --root, print counts per split and write the CSV."""
    kw: dict = {}
    if dataset == "folder":
        kw = {"split_file": split_file, "test_every": test_every}
        if not strict:
            kw["expected_counts"] = False
    else:
        if split_file is not None or test_every:
            raise click.UsageError("--split-file/--test-every apply to the 'folder' dataset only")
        kw["expected_counts"] = strict
        if dataset != "kinetics400":  # Kinetics never fails on missing videos
            kw["allow_missing"] = allow_missing
    try:
        m = build_manifest(dataset, root, **kw)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from exc
    if split is not None and split not in m.split_numbers:
        raise click.ClickException(f"split {split} is not defined for {dataset}; defined: {m.split_numbers}")
    target = out or default_out(dataset, root)
    try:
        m.to_csv(target)
    except OSError as exc:
        raise click.ClickException(f"cannot write {target}: {exc} (choose another place with --out)") from exc
    click.echo(format_counts(m, split))
    click.echo(f"wrote {target} (sha256 {m.digest()})")
