"""The single `csvr` command. Sub-commands are imported lazily so `csvr synth` never imports torch."""

from __future__ import annotations

import importlib
import logging

import click

# name -> "module:attribute" of a click command or group, owned by the stage that implements it.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("data_manifests.synthetic.cli:synth", "Generate the synthetic action-video dataset."),
    "manifest": ("data_manifests.cli:manifest", "Build a dataset manifest (videos, labels, splits)."),
    "download": ("data_manifests.download:download", "Download and extract UCF101 / HMDB51."),
    "preprocess": ("preprocess.cli:preprocess", "Videos -> sharded Zarr store (Dask-parallel)."),
    "shards": ("preprocess.shards_cli:shards", "Inspect a store: info, ls, show, verify, preview."),
    "bench": ("csvr.cli:bench", "Benchmarks that print numbers and write JSON."),
    "pretrain": ("train.cli:pretrain", "CSVR self-supervised pretraining."),
    "finetune": ("train.cli:finetune", "Fine-tune for action recognition."),
    "evaluate": ("evaluate.cli:evaluate", "Recognition, retrieval and pretext metrics + report."),
    "ablate": ("evaluate.cli:ablate", "Run the paper's ablation tables."),
}

BENCH_COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("preprocess.bench:bench_preprocess", "Preprocessing speed."),
    "loader": ("train.data.bench:bench_loader", "Store loader vs PyAV decoding vs raw memmap."),
    "train": ("train.bench:bench_train", "Training step speed per backbone."),
}


def _load(spec: str) -> click.Command:
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when invoked (or listed)."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return None
        return _load(self.lazy[name][0])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List sub-commands from static help text, without importing them."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.lazy[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="csvr")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """CSVR: videos -> sharded Zarr store -> pretraining -> fine-tuning -> evaluation."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group(cls=LazyGroup, lazy=BENCH_COMMANDS)
def bench() -> None:
    """Benchmarks that print numbers and write JSON."""
