"""Training plans: epochs are the same on 1 or 8 processes, steps follow the global batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from csvr.train.config import ConfigError, FinetuneConfig, PretrainConfig, load_config
from csvr.train.plan import finetune_plan, per_process_batch, pretrain_plan, steps_per_epoch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
UCF101_TRAIN = 9537  # UCF101 split 1


def test_paper_config_plans_the_same_epochs_on_1_and_8_processes():
    cfg = load_config(PretrainConfig, CONFIGS / "pretrain" / "ucf101_r2plus1d_18.yaml")
    one, eight = pretrain_plan(cfg, UCF101_TRAIN, 1), pretrain_plan(cfg, UCF101_TRAIN, 8)
    assert [s["stage"] for s in one["stages"]] == ["pose", "context", "video", "joint"]
    assert one["steps_per_epoch"] == 9537 // 16 and eight["steps_per_epoch"] == (9537 // 8) // 16
    for a, b in zip(one["stages"], eight["stages"]):
        assert round(a["epochs"]) == round(b["epochs"]) and abs(a["epochs"] - b["epochs"]) < 0.01
        assert a["steps"] > 7 * b["steps"]                     # 8x the global batch: about 8x fewer steps
        assert b["lr"] == pytest.approx(8 * a["lr"]) and "linear" in a["lr_rule"]
    assert one["stages"][-1]["epochs"] == pytest.approx(200, abs=0.01)
    assert one["stages"][0]["warmup_steps"] == 2 * one["steps_per_epoch"]


def test_global_batch_gives_the_papers_literal_setting():
    cfg = load_config(PretrainConfig, CONFIGS / "pretrain" / "ucf101_r2plus1d_18.yaml", ["global_batch_size=16"])
    plan = pretrain_plan(cfg, UCF101_TRAIN, 2)
    assert (plan["batch_per_process"], plan["global_batch"]) == (8, 16)
    assert plan["stages"][0]["lr"] == pytest.approx(0.0005 * 16)
    with pytest.raises(ConfigError, match="does not split evenly over 3 processes"):
        per_process_batch(cfg, 3)


def test_steps_override_epochs_and_tiny_splits_are_refused():
    cfg = load_config(PretrainConfig, CONFIGS / "pretrain" / "tiny.yaml", ["stages.pose.steps=3"])
    plan = pretrain_plan(cfg, 72, 1)
    assert plan["stages"][0]["steps"] == 3 and plan["stages"][0]["length_from"] == "steps"
    assert [s["steps"] for s in plan["stages"][1:]] == [200, 80, 80]  # 50 / 20 / 20 epochs of 4 steps
    with pytest.raises(ConfigError, match="fewer than one batch"):
        steps_per_epoch(20, 2, 16)
    ft = load_config(FinetuneConfig, CONFIGS / "finetune" / "ucf101_r2plus1d_18.yaml")
    fp = finetune_plan(ft, UCF101_TRAIN, 4)
    assert fp["stages"][0]["epochs"] == 100 and fp["stages"][0]["steps"] == 100 * ((9537 // 4) // 32)


def test_dry_run_prints_the_plan_for_a_world_size(train_store):
    from csvr.train.cli import main

    out = {}
    for world in (1, 8):
        res = CliRunner().invoke(main, ["pretrain", "--config", str(CONFIGS / "pretrain" / "ucf101_r2plus1d_18.yaml"),
                                        "--store", str(train_store), "--dry-run", "--world-size", str(world),
                                        "--set", "batch_size=2"])
        assert res.exit_code == 0, res.output
        out[world] = json.loads(res.output)
    assert out[8]["world_size"] == 8 and out[1]["train_clips"] == 16
    assert [s["epochs"] for s in out[1]["stages"]] == [s["epochs"] for s in out[8]["stages"]]
    res = CliRunner().invoke(main, ["pretrain", "--config", str(CONFIGS / "pretrain" / "tiny.yaml"),
                                    "--store", str(train_store)])
    assert res.exit_code != 0 and "--run-dir is required" in res.output
    # planning before the store exists: UCF101 split 1's 9,537 train clips on 8 processes of 16
    res = CliRunner().invoke(main, ["finetune", "--config", str(CONFIGS / "finetune" / "ucf101_r2plus1d_18.yaml"),
                                    "--store", "no-store-yet.zarr", "--dry-run", "--world-size", "8",
                                    "--train-clips", str(UCF101_TRAIN)])
    assert res.exit_code == 0, res.output
    fp = json.loads(res.output)
    assert fp["train_clips"] == UCF101_TRAIN and fp["global_batch"] == 256
    assert fp["stages"][0]["steps"] == 100 * ((UCF101_TRAIN // 8) // 32)


from train_testdata import train_store  # noqa: E402,F401  (fixture)
