"""A non-finite loss stops the run with a message naming the term and the step, keeping the last good checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

import csvr.train.losses
from csvr.train import checkpoint as ckpt
from csvr.train.config import PretrainConfig, load_config
from csvr.train.loop import NonFiniteLossError
from csvr.train.pretrain import pretrain
from train_testdata import FAST, TINY_PRETRAIN, stage_list, train_store  # noqa: F401  (fixture)


def test_nan_loss_stops_naming_term_and_step(train_store, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    real_l2 = csvr.train.losses.pose_l2
    calls = {"n": 0}

    def poisoned(pred, target, mask=None):
        calls["n"] += 1
        value = real_l2(pred, target, mask)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(csvr.train.losses, "pose_l2", poisoned)
    cfg = load_config(PretrainConfig, TINY_PRETRAIN, FAST + tuple(stage_list(pose=6)) + ("run.checkpoint_every=2",))
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        pretrain(cfg, train_store, run)
    msg = str(info.value)
    assert "'loss/pose_l2'" in msg and "step 3" in msg and "stage pose" in msg
    assert str(run / "checkpoints" / "pose" / "last.pt") in msg
    assert info.value.step == 3 and info.value.term == "loss/pose_l2"
    # the last good checkpoint is the one from step 2, intact and finite; no final checkpoint was written
    last = ckpt.load(run / "checkpoints" / "pose" / "last.pt")
    assert last["progress"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert not (run / "checkpoints" / "pose" / "final.pt").exists()
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if "loss/pose_l2" in e] == [1, 2]
    assert events[-1]["event"] == "non_finite_loss" and events[-1]["term"] == "loss/pose_l2"


def test_cli_reports_non_finite_loss(train_store, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from csvr.train.cli import pretrain as cli

    monkeypatch.setattr(csvr.train.losses, "mi_infonce", lambda *a, **k: torch.tensor(float("inf"), requires_grad=True))
    sets = [x for o in FAST + tuple(stage_list(context=2)) for x in ("--set", o)]
    result = CliRunner().invoke(cli, ["--config", str(TINY_PRETRAIN), "--store", str(train_store), "--run-dir",
                                      str(tmp_path / "r"), *sets])
    assert result.exit_code == 1, result.output
    assert "non-finite loss 'loss/context' = inf at step 1 (stage context)" in result.output
    assert "no checkpoint was written yet" in result.output
