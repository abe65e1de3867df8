"""`train.smoke` (make smoke / make gpu-check): every stage and a fine-tune run, and the table is what ran."""

from __future__ import annotations

import json

from click.testing import CliRunner

from train_testdata import FAST, TINY_FINETUNE, TINY_PRETRAIN, train_store  # noqa: F401  (fixture)

FT_FAST = ("batch_size=4", "data.frames=4", "data.crop=32", "data.num_workers=0", "run.threads=1")


def _run(store, tmp_path, *extra):
    from csvr.train.smoke import main

    args = ["--config", str(TINY_PRETRAIN), "--finetune-config", str(TINY_FINETUNE), "--store", str(store),
            "--run-dir", str(tmp_path / "run"), "--json", str(tmp_path / "smoke.json"), *extra]
    for o in FAST:
        args += ["--set", o]
    for o in FT_FAST:
        args += ["--finetune-set", o]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    return res, json.loads((tmp_path / "smoke.json").read_text())


def test_smoke_runs_every_stage_and_a_finetune(train_store, tmp_path):
    res, table = _run(train_store, tmp_path, "--steps", "2")
    names = [r["stage"] for r in table["rows"]]
    assert names == ["pose", "context", "video", "joint", "finetune"]
    for row in table["rows"]:
        assert row["steps"] == 2, row
        assert row["step_s_median"] > 0 and 0 <= row["data_wait_frac"] <= 1
        assert row["peak_memory_gib_max_rank"] > 0.01  # a real high-water mark, not a zero default
    joint = table["rows"][3]
    assert {"loss/pose", "loss/context", "loss/video", "loss/total"} <= set(joint["losses"])
    assert set(joint["wasserstein"]) == {"loss/pose_wdist", "loss/video_r_wdist", "loss/video_p_wdist"}
    assert "loss/ce" in table["rows"][4]["losses"]
    assert "critic W estimates" in res.output and "smoke passed: 5 stages" in res.output
    # each stage trained in the same run directory, from the stages before it
    assert (tmp_path / "run" / "pretrain" / "checkpoints" / "joint" / "final.pt").is_file()


def test_gpu_check_without_a_gpu_says_so_and_runs_to_the_end(train_store, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res, table = _run(train_store, tmp_path, "--gpu-check", "--steps", "20", "--warmup", "5")
    assert "no CUDA GPU found -- skipped: bf16 autocast, NCCL" in res.output
    assert table["gpu_found"] is False and table["amp"] == "off"
    assert [r["steps"] for r in table["rows"]] == [1] * 5  # the CPU fallback's step count, not 20
