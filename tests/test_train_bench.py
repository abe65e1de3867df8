"""`csvr bench train` runs the real trainer for a few steps and reports speed numbers as JSON."""

from __future__ import annotations

import json

from click.testing import CliRunner

from csvr.benchmarks.training import bench_train
from train_testdata import FAST, TINY_PRETRAIN, train_store  # noqa: F401  (fixture)


def test_bench_train_writes_json_rows(train_store, tmp_path):
    out = tmp_path / "bench.json"
    sets = [x for o in FAST for x in ("--set", o)]
    result = CliRunner().invoke(bench_train, [str(train_store), "--json", str(out), "--config", str(TINY_PRETRAIN),
                                              "--backbone", "r3d_18", "--stage", "pose", "--steps", "2",
                                              "--warmup", "1", *sets])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["backbone"], row["stage"], row["batch_size"], row["steps_timed"]) == ("r3d_18", "pose", 4, 2)
    assert row["step_s_median"] > 0 and row["samples_per_s"] == 4 / row["step_s_median"]
    assert 0 <= row["data_wait_frac"] <= 1 and row["cpu_s_per_step_main_process"] >= 0
    assert "r3d_18" in result.output and "samples/s" in result.output
    # the stage's input alone, through the same ResumableBatches (pose stage: poses only, no pixels)
    assert row["loader_samples_per_s"] > 0 and row["loader_batches_timed"] == 20 and row["loader"] == "threads"
    assert row["loader_vs_step"] == row["loader_samples_per_s"] / row["samples_per_s"]
    assert 0 < row["bytes_per_sample"] < 4 * 32 * 32 * 3 and row["reader_crop"] == row["crop"]  # no pixels read
    assert row["augment_s_per_batch"] > 0 and 0 < row["loader_frac_of_step_est"]
    assert "loader alone" in result.output


def test_bench_train_can_skip_the_loader_measurement(train_store, tmp_path):
    out = tmp_path / "bench.json"
    sets = [x for o in FAST for x in ("--set", o)]
    result = CliRunner().invoke(bench_train, [str(train_store), "--json", str(out), "--config", str(TINY_PRETRAIN),
                                              "--backbone", "r3d_18", "--stage", "pose", "--steps", "1",
                                              "--warmup", "1", "--loader-batches", "0", *sets])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["results"][0]
    assert "loader_samples_per_s" not in row and "loader alone" not in result.output
