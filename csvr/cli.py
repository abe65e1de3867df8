"""The single `csvr` command. Sub-commands are imported lazily so `csvr synth` never imports torch."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

# name -> "module:attribute" of a click command or group, owned by the stage that implements it.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("csvr.data_manifests.synthetic.cli:synth", "Generate the synthetic action-video dataset."),
    "manifest": ("csvr.data_manifests.cli:manifest", "Build a dataset manifest (videos, labels, splits)."),
    "download": ("csvr.data_manifests.download:download", "Download and extract UCF101 / HMDB51."),
    "preprocess": ("csvr.preprocess.cli:preprocess", "Videos -> sharded Zarr store (Dask-parallel)."),
    "shards": ("csvr.preprocess.shards_cli:shards", "Inspect a store: info, ls, show, verify, preview."),
    "bench": ("csvr.cli:bench", "Benchmarks that print numbers and write JSON."),
    "pretrain": ("csvr.train.cli:pretrain", "CSVR self-supervised pretraining."),
    "finetune": ("csvr.train.cli:finetune", "Fine-tune for action recognition."),
    "evaluate": ("csvr.evaluate.cli:evaluate", "Recognition, retrieval and pretext metrics + report."),
    "ablate": ("csvr.evaluate.cli:ablate", "Run the paper's ablation tables."),
}

BENCH_COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("csvr.benchmarks.preprocessing:bench_preprocess", "Preprocessing speed."),
    "memory": ("csvr.benchmarks.preprocessing:bench_memory", "Peak memory of one preprocessing worker vs video length."),
    "loader": ("csvr.benchmarks.loader:bench_loader", "Store loader vs PyAV decoding vs raw memmap."),
    "train": ("csvr.benchmarks.training:bench_train", "Training step speed per backbone."),
    "formats": ("csvr.benchmarks.formats:bench_formats", "Frame formats: size, projected datasets, PSNR, rate."),
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


# ---------------------------------------------------------------- conventions shared by every command

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# csvr's own top-level packages: `-v` turns these to DEBUG, `-vv` everything.
PACKAGES = ("csvr",)  # every stage lives under it: csvr.train, csvr.evaluate, ...


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each record (as `logging.lastResort` does), so a
    handler set up under click's CliRunner never holds a closed stream afterwards."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbose: int = 0, quiet: int = 0) -> Callable[[], None]:
    """Set the log level of everything below the command: INFO by default, `-q` WARNING (`-qq` ERROR)
    and no progress bars, `-v` DEBUG for csvr's own loggers (`-vv` for every library too).

    One handler on the root logger, to stderr. `-q` also sets TQDM_DISABLE=1, which tqdm reads when it is
    first imported (so in this process when a command has not imported it yet, and in every child
    process: loader workers, Dask workers); `progress_disabled()` tells the bars csvr creates itself.
    Returns a function that restores the previous state (used when the command's context closes, so
    in-process invocations such as tests leave logging as they found it)."""
    if verbose and quiet:
        raise click.UsageError("-v and -q exclude each other")
    root = logging.getLogger()
    saved_root = root.level
    saved_pkgs = {name: logging.getLogger(name).level for name in PACKAGES}
    saved_env = os.environ.get("TQDM_DISABLE")
    for h in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    if quiet:
        root.setLevel(logging.WARNING if quiet == 1 else logging.ERROR)
        os.environ["TQDM_DISABLE"] = "1"
    else:
        root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    for name in PACKAGES:  # NOTSET: follow the root, except -v
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)
    logging.getLogger(__name__).debug("log level: %s for csvr, %s for libraries",
                                      logging.getLevelName(logging.getLogger("csvr").getEffectiveLevel()),
                                      logging.getLevelName(root.level))

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, level in saved_pkgs.items():
            logging.getLogger(name).setLevel(level)
        if saved_env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved_env

    return restore


def progress_disabled() -> bool:
    """True under `csvr -q` (or TQDM_DISABLE set by the user): pass as tqdm's `disable=`."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def verbosity_options(f: Callable) -> Callable:
    """`-v/--verbose` and `-q/--quiet` on a group; its callback then calls `configure_logging`."""
    f = click.option("-q", "--quiet", count=True,
                     help="Less output: warnings and errors only, no progress bars (-qq: errors only).")(f)
    return click.option("-v", "--verbose", count=True,
                        help="More logging: -v debug messages of csvr, -vv of every library too "
                             "(default: info).")(f)


def setup_logging(verbose: int, quiet: int) -> None:
    """For a group callback: configure logging for the invocation, undone when its context closes."""
    restore = configure_logging(verbose, quiet)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(restore)


JSON_HELP = "Write the result as JSON to PATH; '-' = stdout (then nothing else goes to stdout)."
_json_stdout: contextvars.ContextVar[Any] = contextvars.ContextVar("csvr_json_stdout", default=None)


def is_stdout(path: Any) -> bool:
    return path is not None and str(path) == "-"


def json_option(help: str = JSON_HELP, required: bool = False, param: str = "json_out") -> Callable:
    """The one `--json PATH` of every csvr command: the command calls `write_json(json_out, obj)`.

    With `--json -` the document goes to stdout and everything else the command prints (click.echo,
    print) goes to stderr while it runs, so `csvr ... --json - | jq` works."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            if not is_stdout(kwargs.get(param)):
                return f(*args, **kwargs)
            token = _json_stdout.set(sys.stdout)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    return f(*args, **kwargs)
            finally:
                _json_stdout.reset(token)

        return click.option("--json", param, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
                            metavar="PATH", default=None, required=required, help=help)(wrapper)

    return decorate


def write_json(path: Any, obj: Any, *, indent: int | None = 1, announce: bool = False) -> None:
    """Write `obj` as JSON to `path` (parents created), or to stdout when `path` is '-'.
    `announce`: say "wrote PATH" on stdout after writing a file."""
    text = json.dumps(obj, indent=indent, default=str) + "\n"
    if is_stdout(path):
        out = _json_stdout.get() or sys.stdout
        out.write(text)
        out.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if announce:
        click.echo(f"wrote {path}")


# ---------------------------------------------------------------- the command tree

@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="csvr")
@verbosity_options
def main(verbose: int, quiet: int) -> None:
    """CSVR: videos -> sharded Zarr store -> pretraining -> fine-tuning -> evaluation.

    Logging goes to stderr at INFO (-q: warnings only, -v: debug). `--json PATH` writes a command's
    result as JSON; `--json -` writes it to stdout and nothing else."""
    setup_logging(verbose, quiet)


@click.group(cls=LazyGroup, lazy=BENCH_COMMANDS)
def bench() -> None:
    """Benchmarks that print numbers and write JSON."""
