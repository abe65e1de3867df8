"""Kill-and-resume: in deterministic mode a resumed pretraining run ends with the same parameters."""

from __future__ import annotations

import json

import pytest
import torch

from train import checkpoint as ckpt
from train.config import PretrainConfig, load_config
from train.pretrain import pretrain
from train_testdata import FAST, TINY_PRETRAIN, stage_list, train_store  # noqa: F401  (fixture)


class Killed(RuntimeError):
    pass


def _cfg(*extra: str) -> PretrainConfig:
    over = FAST + tuple(stage_list(pose=4, video=4)) + ("run.deterministic=true", "run.checkpoint_every=1") + extra
    return load_config(PretrainConfig, TINY_PRETRAIN, over)


def _params(path) -> dict[str, torch.Tensor]:
    return ckpt.load(path)["model"]


def test_resume_after_kill_matches_uninterrupted_run(train_store, tmp_path):
    torch.set_num_threads(1)
    full = pretrain(_cfg(), train_store, tmp_path / "full")

    def kill_at(stage: str, step: int) -> None:
        if stage == "video" and step == 2:
            raise Killed("simulated kill")

    with pytest.raises(Killed):
        pretrain(_cfg(), train_store, tmp_path / "resumed", step_hook=kill_at)
    assert (tmp_path / "resumed" / "checkpoints" / "pose" / "final.pt").is_file()
    assert not (tmp_path / "resumed" / "checkpoints" / "video" / "final.pt").exists()
    assert ckpt.load(tmp_path / "resumed" / "checkpoints" / "video" / "last.pt")["progress"]["step"] == 2
    # a plain re-run refuses to overwrite; --resume continues from video step 2
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(_cfg(), train_store, tmp_path / "resumed")
    resumed = pretrain(_cfg(), train_store, tmp_path / "resumed", resume=True)

    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs after resume"
    # the video stage did train: its generator differs from a fresh initialisation's
    init = ckpt.load(tmp_path / "full" / "checkpoints" / "pose" / "final.pt")["model"]
    for k in a:
        if k.startswith("video_gen_r.") and a[k].is_floating_point():
            moved += int(not torch.equal(a[k], init[k]))
    assert moved > 0


def test_checkpoints_load_weights_only_and_hold_only_plain_data(train_store, tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(PretrainConfig, TINY_PRETRAIN, FAST + tuple(stage_list(pose=2)) + ("run.image_every=2",))
    out = pretrain(cfg, train_store, tmp_path / "run")
    obj = torch.load(out, weights_only=True)  # must not need any allow-listed class
    assert obj["format"] == ckpt.FORMAT and obj["trained_groups"] == ["pose_gen", "pose_disc"]
    assert obj["config"]["batch_size"] == 4 and isinstance(obj["config"], dict)
    last = torch.load(tmp_path / "run" / "checkpoints" / "pose" / "last.pt", weights_only=True)
    assert set(last["rng"]) >= {"torch", "numpy", "python"}
    assert last["progress"]["stage"] == "pose" and last["progress"]["step"] == 2
    assert {"epoch", "batch"} <= set(last["progress"]) and last["optimizer"] is not None
    assert (tmp_path / "run" / "config.yaml").is_file()
    # per-step log records with the documented keys, and a skeleton plot of generated poses
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert {"step", "stage", "epoch", "lr", "samples_per_s", "data_wait_frac", "loss/pose_l2", "loss/pose_gp",
                "loss/pose_d", "loss/pose_g", "grad_norm/pose_gen", "grad_norm/pose_disc"} <= set(r)
        assert r["stage"] == "pose" and r["lr"] > 0 and 0 <= r["data_wait_frac"] <= 1
    png = tmp_path / "run" / "images" / "pose" / "step_000002_poses.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
