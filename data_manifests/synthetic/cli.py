"""`csvr synth OUT`: generate the synthetic action-video dataset and report its speed."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import click

from csvr.cli import json_option, write_json


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the figure that does not depend on load)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--videos-per-class", default=4, show_default=True, type=click.IntRange(min=2),
              help="Videos per class (split by group: --test-fraction of the groups go to the test list).")
@click.option("--test-fraction", default=0.3, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="Fraction of each class's groups (2 videos each) in the test list; at least one group stays in train.")
@click.option("--extra-test-groups", default=0, show_default=True, type=click.IntRange(min=0),
              help="More test groups (2 videos each) per class after the usual ones; the train videos stay those "
                   "of the same command without it (make benchmark: the demo's set with a bigger test split).")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same dataset.")
@click.option("--classes", "num_classes", default=12, show_default=True, type=click.IntRange(min=1),
              help="Number of classes (the first N of the class pool; at most 15).")
@click.option("--gop", default=12, show_default=True, type=click.IntRange(min=1),
              help="Frames between I-frames in the written streams.")
@click.option("--single-iframe", is_flag=True, help="One I-frame per video, like most real UCF101 files.")
@click.option("--codec", type=click.Choice(["mpeg4", "libx264"]), default="mpeg4", show_default=True,
              help="MPEG-4 Part 2 (as UCF101's XviD) or H.264.")
@click.option("--seconds", nargs=2, type=float, default=(3.0, 6.0), show_default=True,
              help="Range of video durations in seconds.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
              help="Worker processes rendering videos.")
@json_option(help="Write the timing summary as JSON to PATH; '-' = stdout (then nothing else goes to stdout).")
def synth(out: Path, videos_per_class: int, test_fraction: float, extra_test_groups: int, seed: int, num_classes: int, gop: int, single_iframe: bool,
          codec: str, seconds: tuple[float, float], workers: int, json_out: Path | None) -> None:
    """Generate a labelled synthetic action dataset in the UCF101 layout under OUT."""
    from csvr.data_manifests.synthetic.generate import generate, plan_videos, Options

    try:
        total = len(plan_videos(Options(videos_per_class=videos_per_class, num_classes=num_classes,
                                        test_fraction=test_fraction, extra_test_groups=extra_test_groups)))
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    with click.progressbar(length=total, label="rendering videos", show_pos=True) as bar:
        generate(out, videos_per_class=videos_per_class, seed=seed, num_classes=num_classes, gop=gop,
                 single_iframe=single_iframe, workers=workers, codec=codec, seconds=seconds, test_fraction=test_fraction,
                 extra_test_groups=extra_test_groups,
                 progress=lambda done, n: bar.update(1))
    dt = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    meta = json.loads((out / "synthetic.json").read_text())
    frames = sum(v["frames"] for v in meta["videos"])
    summary = {"videos": total, "classes": num_classes, "frames": frames, "seconds": round(dt, 3),
               "videos_per_s": round(total / dt, 2), "frames_per_s": round(frames / dt, 1), "workers": workers,
               "cpu_seconds": round(cpu, 2),
               "train": meta["counts"]["train"], "test": meta["counts"]["test"], "out": str(out)}
    click.echo(f"generated {total} videos ({frames} frames, {num_classes} classes, "
               f"{summary['train']} train / {summary['test']} test) in {dt:.1f} s: "
               f"{summary['videos_per_s']:.2f} videos/s, {summary['frames_per_s']:.0f} frames/s "
               f"with {workers} worker(s), {cpu:.1f} s of CPU -> {out}")
    if json_out is not None:
        write_json(json_out, summary, indent=1)
