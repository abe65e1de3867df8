"""Conventions every `csvr` command keeps: -v/-q logging, help on every option, one meaning of --json."""

from __future__ import annotations

import json
import logging
import os
import textwrap

import click
import pytest
from click.testing import CliRunner

from csvr.cli import COMMANDS, main

# The only --json that does not take '-' (its owner asked for its behaviour to stay as it is).
JSON_DASH_EXCEPTIONS = {"csvr evaluate code-probe"}


def walk(cmd: click.Command, path: tuple[str, ...] = ("csvr",)):
    """(path, command) for `cmd` and every command below it (lazy groups load their modules)."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path[-1])
        for name in cmd.list_commands(ctx):
            yield from walk(cmd.get_command(ctx, name), (*path, name))


def test_every_option_of_every_command_has_help():
    missing = [f"{' '.join(path)} {'/'.join(p.opts)}" for path, cmd in walk(main) for p in cmd.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, f"options without help text: {missing}"


def test_json_is_a_path_everywhere_with_dash_for_stdout():
    found = []
    for path, cmd in walk(main):
        for p in cmd.params:
            if isinstance(p, click.Option) and "--json" in p.opts:
                name = " ".join(path)
                found.append(name)
                assert not p.is_flag, f"{name}: --json is a flag, expected --json PATH"
                if name not in JSON_DASH_EXCEPTIONS:
                    assert isinstance(p.type, click.Path) and p.type.allow_dash, f"{name}: --json - not accepted"
    assert {"csvr shards info", "csvr shards verify", "csvr evaluate retrieval", "csvr ablate seeds",
            "csvr bench train", "csvr synth"} <= set(found)


PROBE = '''
import logging

import click
from tqdm import tqdm

from csvr.cli import json_option, progress_disabled, write_json


@click.command()
@json_option()
def probe(json_out):
    """Logs at every level, prints, and writes a JSON document."""
    logging.getLogger("csvr.train.probe").debug("csvr-debug")
    logging.getLogger("csvr.train.probe").info("csvr-info")
    logging.getLogger("csvr.train.probe").warning("csvr-warning")
    logging.getLogger("somelib").debug("lib-debug")
    click.echo("human text")
    print("printed text")
    bar = tqdm(total=1, desc="probebar", disable=progress_disabled())
    bar.update(1)
    bar.close()
    if json_out:
        write_json(json_out, {"root": logging.getLogger().level, "quiet": progress_disabled()})
'''


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A cheap `csvr probe` command registered like any stage's."""
    (tmp_path / "csvr_probe_cmd.py").write_text(textwrap.dedent(PROBE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(COMMANDS, "probe", ("csvr_probe_cmd:probe", "test probe"))
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    return tmp_path


def invoke(*args: str):
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_default_logs_info_not_debug(probe):
    out = invoke("probe").stderr
    assert "INFO csvr.train.probe: csvr-info" in out and "csvr-warning" in out
    assert "csvr-debug" not in out and "lib-debug" not in out
    assert "probebar" in out


def test_quiet_prints_no_info_and_no_progress_bar(probe):
    res = invoke("-q", "probe", "--json", "-")
    assert "csvr-warning" in res.stderr
    assert "INFO" not in res.output and "csvr-info" not in res.output
    assert "probebar" not in res.output  # progress bars off under -q
    doc = json.loads(res.stdout)
    assert doc == {"root": logging.WARNING, "quiet": True}


def test_verbose_sets_debug(probe):
    res = invoke("-v", "probe")
    assert "DEBUG csvr.train.probe: csvr-debug" in res.stderr and "lib-debug" not in res.stderr  # -v: csvr's loggers
    assert "DEBUG csvr.cli: log level: DEBUG for csvr, INFO for libraries" in res.stderr
    res = invoke("-vv", "probe", "--json", "-")
    assert "lib-debug" in res.stderr and json.loads(res.stdout)["root"] == logging.DEBUG  # -vv: everything


def test_verbose_and_quiet_exclude_each_other(probe):
    res = CliRunner().invoke(main, ["-v", "-q", "probe"])
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_logging_state_is_restored_after_the_command(probe):
    root = logging.getLogger()
    before = (root.level, list(root.handlers), logging.getLogger("csvr").level)
    invoke("-q", "probe")
    invoke("-v", "probe")
    assert (root.level, list(root.handlers), logging.getLogger("csvr").level) == before
    assert "TQDM_DISABLE" not in os.environ


def test_real_command_follows_the_group_level(tmp_path):
    """A real sub-command (a failing one is the cheapest): -v shows csvr's debug line, the default does not."""
    missing = str(tmp_path / "nope.zarr")
    assert "DEBUG csvr.cli" in CliRunner().invoke(main, ["-v", "shards", "info", missing]).stderr
    assert "DEBUG" not in CliRunner().invoke(main, ["shards", "info", missing]).stderr


def test_json_dash_is_the_only_thing_on_stdout(probe, tmp_path):
    res = invoke("probe", "--json", "-")
    json.loads(res.stdout)  # nothing else on stdout: it pipes into jq
    assert "human text" in res.stderr and "printed text" in res.stderr
    path = tmp_path / "sub" / "out.json"
    res = invoke("probe", "--json", str(path))
    assert json.loads(path.read_text())["quiet"] is False
    assert "human text" in res.stdout and "printed text" in res.stdout


def test_train_cli_group_has_the_same_verbosity_options():
    from csvr.train.cli import main as train_main

    opts = {o for p in train_main.params for o in p.opts}
    assert {"-v", "--verbose", "-q", "--quiet"} <= opts


class _FakeClient:
    def __init__(self, link):
        self._link = link

    @property
    def dashboard_link(self):
        if isinstance(self._link, Exception):
            raise self._link
        return self._link


def test_dask_dashboard_line(caplog):
    from csvr.preprocess import pipeline

    with caplog.at_level(logging.INFO, logger="csvr.preprocess.pipeline"):
        pipeline._log_dashboard(_FakeClient("http://127.0.0.1:8787/status"))
        pipeline._log_dashboard(_FakeClient("http://host:8787/status"), scheduler="tcp://host:8786")
        pipeline._log_dashboard(_FakeClient(KeyError("dashboard")), scheduler="tcp://host:8786")
        pipeline._log_dashboard(_FakeClient("http://127.0.0.1:40000/status"), bokeh=False)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "Dask dashboard: http://127.0.0.1:8787/status"
    assert lines[1] == "Dask dashboard of the scheduler at tcp://host:8786: http://host:8787/status"
    assert lines[2] == "the Dask scheduler at tcp://host:8786 serves no dashboard"
    assert lines[3] == "Dask dashboard off: pip install 'bokeh>=3.1' to get one"


def test_local_cluster_says_how_to_get_the_dashboard(caplog, monkeypatch):
    from csvr.preprocess import pipeline

    monkeypatch.setattr(pipeline, "_bokeh_usable", lambda: False)
    with caplog.at_level(logging.INFO, logger="csvr.preprocess.pipeline"), pipeline._executor(1, None) as client:
        assert client.submit(lambda: 1).result() == 1
    assert any("Dask dashboard off: pip install" in r.getMessage() for r in caplog.records)
