"""The `csvr` entry point: lazy sub-commands and help that imports no stage module."""

import subprocess
import sys

from click.testing import CliRunner

from csvr.cli import BENCH_COMMANDS, COMMANDS, main


def test_help_lists_every_stage_without_importing_them():
    code = (
        "import sys; from click.testing import CliRunner; from csvr.cli import main;"
        "r = CliRunner().invoke(main, ['--help']); print(r.output);"
        "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out
    assert "NOTORCH" in out


def test_every_registered_command_imports():
    for name, (spec, _) in {**COMMANDS, **{f"bench {k}": v for k, v in BENCH_COMMANDS.items()}}.items():
        module, attr = spec.split(":")
        cmd = getattr(__import__(module, fromlist=[attr]), attr)
        assert hasattr(cmd, "invoke"), f"{name} -> {spec} is not a click command"


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["no-such-stage"])
    assert result.exit_code == 2
    assert "No such command" in result.output
