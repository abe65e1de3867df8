"""`csvr ablate seeds`: mean and range over seeds, and orderings only where ranges do not overlap."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from csvr.evaluate.seeds import load_seed_results, seeds_markdown, summarize


def _write(tmp_path, seed, rows):
    d = tmp_path / f"seed{seed}" / "ablation"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"I": {k: {"synthetic video": v} for k, v in rows.items()}}))
    return d / "results.json"


def test_mean_range_and_separation(tmp_path):
    paths = [_write(tmp_path, 0, {"scratch": 0.30, "f_d": 0.50, "full": 0.45}),
             _write(tmp_path, 1, {"scratch": 0.36, "f_d": 0.40, "full": 0.55}),
             _write(tmp_path, 2, {"scratch": 0.33, "f_d": 0.45})]
    summary = summarize(load_seed_results(paths))
    s = summary["I"]["scratch"]["synthetic video"]
    assert s["n"] == 3 and s["min"] == 0.30 and s["max"] == 0.36 and s["mean"] == pytest.approx(0.33)
    assert summary["I"]["full"]["synthetic video"]["n"] == 2
    md = seeds_markdown(summary, ["seed0", "seed1", "seed2"])
    assert "| scratch | 33.0 [30.0, 36.0] |" in md and "50.0 [45.0, 55.0] (n=2)" in md
    # f_d [40, 50] and full [45, 55] overlap: no order between them; both are above scratch [30, 36]
    sep = md.split("ranges do not overlap): ")[1]
    assert "full > scratch" in sep and "f_d > scratch" in sep and "full > f_d" not in sep and "f_d > full" not in sep


def test_cli_names_the_unreadable_file(tmp_path):
    from csvr.evaluate.cli import ablate

    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    res = CliRunner().invoke(ablate, ["seeds", str(bad)])
    assert res.exit_code != 0 and str(bad) in res.output
