"""`csvr preprocess` on the real synthetic generator + manifest: a complete, verifiable store; clear errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from csvr.preprocess.cli import parse_size, preprocess
from csvr.preprocess.shards_cli import shards


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from csvr.data_manifests.synthetic import generate

    out = tmp_path_factory.mktemp("ppcli") / "data"
    generate(out, videos_per_class=2, num_classes=2, seed=0, size=(64, 80), seconds=(1.0, 1.2))
    return out


def test_preprocess_synthetic_then_verify(synth, tmp_path):
    store = tmp_path / "s.zarr"
    res = CliRunner().invoke(preprocess, ["synthetic", "--root", str(synth), "--out", str(store),
                                          "--pose", "groundtruth", "--workers", "0", "--limit", "3",
                                          "--shard-frames", "64", "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["videos"] == 3 and summary["ok"] == 3 and summary["failed"] == 0
    assert summary["pose_coverage"] > 0.9
    v = CliRunner().invoke(shards, ["verify", str(store)])
    assert v.exit_code == 0, v.output
    info = json.loads(CliRunner().invoke(shards, ["info", str(store), "--json", "-"]).stdout)
    assert info["options"]["limit"] == 3 and info["dataset"] == "synthetic"
    assert info["iframe_policy"] == {"policy": "reencode", "gop": 12}


def test_wrong_dataset_and_root_fail_before_work(synth, tmp_path):
    store = tmp_path / "x.zarr"
    res = CliRunner().invoke(preprocess, ["nosuchdataset", "--root", str(synth), "--out", str(store)])
    assert res.exit_code != 0 and "nosuchdataset" in res.output
    res = CliRunner().invoke(preprocess, ["synthetic", "--root", str(tmp_path / "missing"), "--out", str(store)])
    assert res.exit_code != 0 and "does not exist" in res.output
    res = CliRunner().invoke(preprocess, ["ucf101", "--root", str(tmp_path), "--out", str(store)])
    assert res.exit_code != 0 and "ucf101" in res.output
    assert not store.exists()


def test_parse_size():
    assert parse_size("128x171") == (128, 171)
    import click

    with pytest.raises(click.BadParameter):
        parse_size("big")
