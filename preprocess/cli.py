"""``csvr preprocess DATASET --root PATH --out STORE``: build (or resume) a store with Dask."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

log = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    """'128x171' -> (128, 171) as (H, W)."""
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise click.BadParameter(f"expected HxW such as 128x171, got {text!r}") from exc
    if h < 8 or w < 8:
        raise click.BadParameter(f"frame size must be at least 8x8, got {text!r}")
    return h, w


@click.command("preprocess")
@click.argument("dataset")
@click.option("--root", type=click.Path(path_type=Path), required=True,
              help="Dataset root (the folder holding the videos and annotation files).")
@click.option("--out", "out", required=True, help="Output store: a local path or an fsspec URL.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Dask LocalCluster worker processes (0 = run in this process, no Dask).")
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler (overrides --workers).")
@click.option("--pose", type=click.Choice(["yolo", "groundtruth", "openpifpaf"]), default="yolo",
              show_default=True, help="2D pose backend: YOLO11n-pose (shipped weights), the synthetic "
              "dataset's ground truth, or OpenPifPaf (docs/pose.md).")
@click.option("--pose-option", "pose_option", multiple=True, metavar="KEY=VALUE",
              help="Keyword option of the pose backend (repeatable), e.g. checkpoint=/path, conf_threshold=0.1, "
                   "or a main-actor tracker setting track_<name>, e.g. track_min_frames=8 (docs/pose.md).")
@click.option("--iframe-policy", type=click.Choice(["native", "reencode"]), default="reencode",
              show_default=True, help="I-frames of the stream as is, or of an MPEG-4 re-encode with --gop.")
@click.option("--gop", type=int, default=12, show_default=True,
              help="Frames between I-frames of the re-encode (--iframe-policy reencode).")
@click.option("--frame-step", type=int, default=1, show_default=True, help="Keep every k-th source frame.")
@click.option("--size", "size", default="128x171", show_default=True, help="Stored frame size HxW.")
@click.option("--max-people", type=int, default=2, show_default=True,
              help="People stored per frame (P of poses/*; YOLO keeps the most confident).")
@click.option("--split", type=int, default=None, help="Only videos in train/test of this split.")
@click.option("--limit", type=int, default=None, help="Only the first N selected videos.")
@click.option("--shard-frames", type=int, default=4096, show_default=True, help="Frames per shard.")
@click.option("--codec", type=click.Choice(["lz4", "lz4-bitshuffle", "zstd", "none", "jpeg"]), default="none",
              show_default=True, help="Frame arrays: raw (none), a lossless Blosc compressor, or lossy per-frame "
              "JPEG (csvr.jpeg codec; docs/store.md, 'Compact formats').")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=90, show_default=True,
              help="JPEG quality with --codec jpeg.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store made with other options.")
@click.option("--no-progress", is_flag=True, help="No progress bar (also under csvr -q).")
@click.option("--no-space-check", is_flag=True,
              help="Start even when the free space is below the store's estimated size (printed before the run).")
@click.option("--skip-degraded", is_flag=True,
              help="Leave videos stored as degraded (decoder-reported damage, missing frames) out of training "
                   "and evaluation; they are stored and listed either way (csvr shards ls --status degraded).")
@click.option("--follow-links", is_flag=True,
              help="Read videos whose path resolves (through symlinks) outside --root; refused by default.")
def preprocess(dataset: str, root: Path, out: str, workers: int, scheduler: str | None, pose: str,
               pose_option: tuple[str, ...], iframe_policy: str, gop: int, frame_step: int, size: str,
               max_people: int, split: int | None, limit: int | None, shard_frames: int, codec: str,
               jpeg_quality: int, overwrite: bool, no_progress: bool, no_space_check: bool, skip_degraded: bool,
               follow_links: bool) -> None:
    """Turn DATASET's videos under --root into a sharded Zarr store at --out (rerun to resume)."""
    from csvr.cli import progress_disabled
    from csvr.data_manifests import build_manifest
    from csvr.preprocess.pipeline import preprocess_dataset
    from csvr.preprocess.schema import StoreError
    from csvr.preprocess.space import DiskSpaceError

    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().level))
    frame_size = parse_size(size)
    pose_options = {}
    for item in pose_option:
        if "=" not in item:
            raise click.BadParameter(f"--pose-option expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            pose_options[k] = json.loads(v)  # numbers, booleans
        except json.JSONDecodeError:
            pose_options[k] = v  # paths and other strings
    if not root.is_dir():
        raise click.ClickException(f"dataset root {root} does not exist or is not a directory")
    try:
        manifest = build_manifest(dataset, root=root)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise click.ClickException(f"cannot build the {dataset!r} manifest from {root}: {exc}") from exc
    try:
        summary = preprocess_dataset(
            manifest, out, pose=pose, pose_options=pose_options, workers=workers, scheduler=scheduler,
            frame_size=frame_size, frame_step=frame_step, iframe_policy=iframe_policy, gop=gop,
            max_people=max_people, split=split, limit=limit, shard_frames=shard_frames, codec=codec,
            jpeg_quality=jpeg_quality, overwrite=overwrite, progress=not (no_progress or progress_disabled()), follow_links=follow_links,
            use_degraded=not skip_degraded, space_check=not no_space_check)
    except (StoreError, ValueError, FileNotFoundError, DiskSpaceError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({k: v for k, v in summary.items() if k not in ("failures", "degraded_videos")}, indent=1))
    for f in summary.get("failures", []):
        click.echo(f"failed: {f['path']}: {f['reason']}", err=True)
    for f in summary.get("degraded_videos", []):
        click.echo(f"degraded: {f['path']}: {f['reason']}", err=True)
